"""Training data: the time-based split, the is-there-enough-data check and a fingerprint.

A training frame has one row per entity and snapshot: the entity key, ``event_timestamp``, a 0/1
``label`` and the feature columns.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

TIMESTAMP = "event_timestamp"
LABEL = "label"


class NotEnoughData(ValueError):
    """Raised when a split has too few positives or negatives to train or evaluate honestly."""


@dataclass(frozen=True)
class Minimums:
    """Least rows per split before training starts.

    The training defaults follow the published minimum of Salesforce Einstein Lead Scoring
    (1,000 records with 120 conversions); evaluation splits need enough of each class for ROC AUC
    and calibration to mean something.
    """

    train_rows: int = 1000
    train_positives: int = 120
    train_negatives: int = 120
    eval_positives: int = 30
    eval_negatives: int = 30


@dataclass(frozen=True)
class SplitCounts:
    name: str
    rows: int
    positives: int
    negatives: int
    start: str | None = None
    end: str | None = None


@dataclass(frozen=True)
class DataCheck:
    """Counts per split and the problems found (empty when training may go ahead)."""

    counts: tuple[SplitCounts, ...]
    problems: tuple[str, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        return not self.problems

    def raise_if_failed(self) -> None:
        if self.problems:
            raise NotEnoughData("not enough data to train: " + "; ".join(self.problems))


def split_counts(name: str, labels: pd.Series, timestamps: pd.Series | None = None) -> SplitCounts:
    pos = int(np.asarray(labels, dtype=int).sum())
    start = end = None
    if timestamps is not None and len(timestamps):
        start, end = str(timestamps.min().date()), str(timestamps.max().date())
    return SplitCounts(name, int(len(labels)), pos, int(len(labels)) - pos, start, end)


def split_window(counts: list[SplitCounts]) -> dict[str, str | None]:
    """First and last day of each split (train, validation, test, in that order), as the
    training result's ``window`` reports them."""
    out: dict[str, str | None] = {}
    for name, c in zip(("train", "validation", "test"), counts, strict=True):
        out[f"{name}_start"], out[f"{name}_end"] = c.start, c.end
    return out


def check_counts(counts: list[SplitCounts], minimums: Minimums) -> DataCheck:
    """Compare each split's counts with ``minimums``; training splits are named ``train*``."""
    problems = []
    for c in counts:
        if c.name.startswith("train"):
            need = [
                ("rows", c.rows, minimums.train_rows),
                ("positives", c.positives, minimums.train_positives),
                ("negatives", c.negatives, minimums.train_negatives),
            ]
        else:
            need = [
                ("positives", c.positives, minimums.eval_positives),
                ("negatives", c.negatives, minimums.eval_negatives),
            ]
        for what, have, least in need:
            if have < least:
                problems.append(f"{c.name} has {have} {what}, needs at least {least}")
    return DataCheck(tuple(counts), tuple(problems))


@dataclass(frozen=True)
class TimeSplit:
    """Row masks of a time-based split and the snapshot dates that bound each part."""

    train: np.ndarray
    validation: np.ndarray
    test: np.ndarray
    validation_start: pd.Timestamp
    test_start: pd.Timestamp


def time_split(
    frame: pd.DataFrame,
    timestamp: str = TIMESTAMP,
    validation_fraction: float = 0.2,
    test_fraction: float = 0.2,
    gap_days: int = 0,
) -> TimeSplit:
    """Split by snapshot date: the earliest snapshots train, later ones validate, the last test.

    Fractions are of the distinct snapshot dates. ``gap_days`` drops training snapshots that fall
    within that many days before validation starts, so that no training label is still open when
    validation begins (the model is never fitted on validation rows, so none are dropped there).
    """
    ts = pd.to_datetime(frame[timestamp], utc=True)
    dates = np.sort(ts.unique())
    if len(dates) < 3:
        raise NotEnoughData(
            f"need at least 3 distinct snapshot dates for a time split, got {len(dates)}"
        )
    n_test = max(1, int(round(test_fraction * len(dates))))
    n_val = max(1, int(round(validation_fraction * len(dates))))
    if n_test + n_val >= len(dates):
        raise NotEnoughData(f"{len(dates)} snapshot dates are too few for the split")
    test_start = pd.Timestamp(dates[len(dates) - n_test])
    val_start = pd.Timestamp(dates[len(dates) - n_test - n_val])
    gap = pd.Timedelta(days=gap_days)
    train = (ts < val_start - gap).to_numpy()
    validation = ((ts >= val_start) & (ts < test_start)).to_numpy()
    test = (ts >= test_start).to_numpy()
    return TimeSplit(train, validation, test, val_start, test_start)


def fingerprint(frame: pd.DataFrame) -> str:
    """SHA-256 of the frame's column names, dtypes and values (row order matters)."""
    h = hashlib.sha256()
    h.update(repr([(c, str(t)) for c, t in frame.dtypes.items()]).encode())
    h.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return h.hexdigest()
