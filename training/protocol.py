"""The deploy-faithful protocol: what a model trained "as of" a date may see.

A snapshot at time ``t`` is labelled by what happens in ``(t, t + window]``, so its label is known
("closed") only from ``t + window`` on. A model trained as of ``T``:

* trains and validates only on snapshots whose label closed by ``T`` (``t + window <= T``);
* validates (early stopping, calibration, model selection) on the latest ``validation_days`` of
  those, and trains on snapshots whose label closed before the validation part begins, so the
  parts are separated by the label window (purged) and no training label counts an outcome that
  a validation label also counts;
* is tested on the snapshots of the period that follows ``T`` (``[T, T + test_days)``), whose
  labels it could not have known.

The production model is trained the same way as of the last date the data knows, so it uses every
closed label. Back-tests repeat the as-of training at rolling cutoffs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

DAY = pd.Timedelta(days=1)


@dataclass(frozen=True)
class Protocol:
    """Lengths that define the purged protocol, in days.

    Args:
        label_window_days: how far ahead a label looks (the conversion or churn window).
        validation_days: length of the validation part (snapshot dates) inside an as-of fit.
        test_days: length of the period scored after each cutoff.
        min_train_days: least span of training snapshots an as-of fit needs.
    """

    label_window_days: int = 90
    validation_days: int = 28
    test_days: int = 91
    min_train_days: int = 56

    @property
    def name(self) -> str:
        return (
            f"purged_as_of(window={self.label_window_days}d, validation="
            f"{self.validation_days}d, test={self.test_days}d)"
        )

    @property
    def window(self) -> pd.Timedelta:
        return self.label_window_days * DAY

    def history_needed_days(self) -> int:
        """Days of labelled snapshots one back-test cutoff needs: training, a label window,
        validation, a label window, then the test period."""
        return (
            self.min_train_days
            + self.label_window_days
            + self.validation_days
            + self.label_window_days
            + self.test_days
        )


@dataclass(frozen=True)
class AsOfParts:
    """Row masks of an as-of fit and the dates that bound them."""

    as_of: pd.Timestamp
    train: np.ndarray
    validation: np.ndarray
    validation_start: pd.Timestamp
    train_end: pd.Timestamp  # last training snapshot allowed (inclusive)


def _timestamps(ts: pd.Series | pd.DatetimeIndex | np.ndarray) -> pd.DatetimeIndex:
    return pd.DatetimeIndex(pd.to_datetime(ts, utc=True))


def as_of_parts(ts: pd.Series | np.ndarray, as_of: pd.Timestamp, protocol: Protocol) -> AsOfParts:
    """Training and validation rows of a model trained as of ``as_of``.

    Validation: snapshots in ``[as_of - window - validation_days, as_of - window]`` (labels
    closed by ``as_of``). Training: snapshots whose label closed by the validation part's start.
    """
    stamps = _timestamps(ts)
    as_of = pd.Timestamp(as_of)
    last_closed = as_of - protocol.window
    validation_start = last_closed - protocol.validation_days * DAY
    train_end = validation_start - protocol.window
    validation = np.asarray((stamps >= validation_start) & (stamps <= last_closed))
    train = np.asarray(stamps <= train_end)
    return AsOfParts(as_of, train, validation, validation_start, train_end)


def scored_period_rows(
    ts: pd.Series | np.ndarray, cutoff: pd.Timestamp, protocol: Protocol
) -> np.ndarray:
    """Snapshots of the period scored after ``cutoff``: ``[cutoff, cutoff + test_days)``."""
    stamps = _timestamps(ts)
    cutoff = pd.Timestamp(cutoff)
    return np.asarray((stamps >= cutoff) & (stamps < cutoff + protocol.test_days * DAY))


def data_as_of(ts: pd.Series | np.ndarray, protocol: Protocol) -> pd.Timestamp:
    """The latest date the labelled data speaks for: the last labelled snapshot + the window.

    Every label in a training set is closed, so the data knows outcomes up to this date.
    """
    return _timestamps(ts).max() + protocol.window


def cutoffs(ts: pd.Series | np.ndarray, protocol: Protocol, count: int) -> list[pd.Timestamp]:
    """Up to ``count`` back-test cutoffs, latest last, each followed by a full test period.

    The latest cutoff leaves exactly one test period of labelled snapshots after it; earlier ones
    step back by one test period, so test periods do not overlap. Cutoffs too early to leave
    ``min_train_days`` of training snapshots are dropped.
    """
    stamps = _timestamps(ts)
    first, last = stamps.min(), stamps.max()
    latest = last + DAY - protocol.test_days * DAY
    out = []
    for k in range(count):
        cutoff = latest - k * protocol.test_days * DAY
        parts_end = cutoff - 2 * protocol.window - protocol.validation_days * DAY
        if parts_end - first < protocol.min_train_days * DAY:
            break
        out.append(cutoff)
    return sorted(out)
