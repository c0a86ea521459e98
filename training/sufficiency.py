"""Is the data enough? A verdict in plain words before training, with the fallback it takes.

Three things decide it: labelled rows and conversions (or churns), and how much history the
labelled snapshots cover against what the purged protocol needs (training, a label window,
validation, a label window, a test period; :meth:`training.protocol.Protocol.history_needed_days`).

* ``enough``: every candidate is fitted, selected on purged validation and tested out of time.
* ``no_test``: history covers an as-of fit but not a period after it to test on: the points score
  (rules fixed in advance, nothing tuned that a test would have to check) is served, its points
  mapped to probabilities on the latest closed labels.
* ``insufficient``: not even one as-of fit fits in the history, or a class is missing; training
  stops with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from training.data import Minimums
from training.protocol import Protocol


@dataclass(frozen=True)
class Verdict:
    """What the data allows, why, and what is short."""

    level: str  # enough, no_test, insufficient
    history_days: int
    needed_days: int
    rows: int
    positives: int
    messages: tuple[str, ...] = field(default_factory=tuple)

    @property
    def text(self) -> str:
        return " ".join(self.messages)

    def as_dict(self) -> dict[str, object]:
        return {
            "level": self.level,
            "history_days": self.history_days,
            "needed_days": self.needed_days,
            "rows": self.rows,
            "positives": self.positives,
            "text": self.text,
        }


def assess(
    ts: pd.Series, y: np.ndarray, protocol: Protocol, minimums: Minimums, what: str = "conversions"
) -> Verdict:
    """The verdict for labelled snapshots at ``ts`` with 0/1 labels ``y``.

    Args:
        what: the positive outcome in the user's words (``conversions``, ``churned accounts``).
    """
    stamps = pd.to_datetime(ts, utc=True)
    history = int((stamps.max() - stamps.min()).days) + 1 if len(stamps) else 0
    rows, positives = int(len(y)), int(np.asarray(y).sum())
    needed = protocol.history_needed_days()
    fit_only = protocol.min_train_days + protocol.label_window_days + protocol.validation_days
    messages = [
        f"{rows:,} labelled snapshots with {positives:,} {what}, covering {history} days "
        f"(labels close {protocol.label_window_days} days after each snapshot)."
    ]
    short_counts = []
    if rows < minimums.train_rows:
        short_counts.append(f"{rows:,} rows (needs {minimums.train_rows:,})")
    if positives < minimums.train_positives:
        short_counts.append(f"{positives:,} {what} (needs {minimums.train_positives:,})")
    if rows - positives < minimums.train_negatives:
        short_counts.append(f"{rows - positives:,} without (needs {minimums.train_negatives:,})")
    if positives == 0 or positives == rows or history < fit_only:
        if history < fit_only:
            messages.append(
                f"Too little history: one model trained as of a date needs {fit_only} days "
                f"({protocol.min_train_days} of training snapshots, a {protocol.label_window_days}"
                f"-day label window, {protocol.validation_days} of validation)."
            )
        else:
            messages.append("Every label is the same: there is nothing to learn.")
        messages.append("No model is trained.")
        return Verdict("insufficient", history, needed, rows, positives, tuple(messages))
    if history < needed or short_counts:
        if history < needed:
            messages.append(
                f"History is short: testing a model on a period it has not seen needs about "
                f"{needed} days ({protocol.min_train_days} training + "
                f"{protocol.label_window_days} label window + {protocol.validation_days} "
                f"validation + {protocol.label_window_days} label window + "
                f"{protocol.test_days} test)."
            )
        if short_counts:
            messages.append("Too few examples: " + ", ".join(short_counts) + ".")
        messages.append(
            "Fallback: the points score (fixed rules, nothing tuned) serves, its points mapped "
            "to probabilities on the latest closed labels; retrain when more history arrives."
        )
        return Verdict("no_test", history, needed, rows, positives, tuple(messages))
    messages.append("Enough to select and test every candidate out of time.")
    return Verdict("enough", history, needed, rows, positives, tuple(messages))
