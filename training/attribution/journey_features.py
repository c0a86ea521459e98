"""What a learned conversion model sees of a journey: counts alone, or order, position and recency.

Two feature sets, both one row per journey and both recomputable for a journey with some of its
touches removed (which is how removal credit and model-based Shapley ask "what if"):

* ``counts``: per channel, its number of touches. A model on these sees journeys as bags.
* ``sequence``: the counts, and per channel whether it was the first touch, whether it was the
  last, its recency (days from its last touch to the journey's last touch; touches after it when the
  journeys have no times; missing when absent), and per ordered pair of channels ``(a, b)``
  whether a touch of ``a`` came before a touch of ``b``. These carry order (a demo after a
  webinar), repeats (the count), position and recency.

Removing touches keeps the others' times, so their recency does not change; positions and first
and last are recomputed on what remains.
"""

from __future__ import annotations

import numpy as np

from training.attribution.journeys import Journeys

FEATURE_SETS = ("counts", "order", "sequence")
# Exposure (adstock): a channel's touches each weighted 0.5 ** (age / half-life), for half-lives
# that bracket a week (days when the journeys have times, else touches before the end).
EXPOSURE_HALF_LIVES_DAYS: tuple[float, ...] = (3.0, 14.0, 60.0)
EXPOSURE_HALF_LIVES_TOUCHES: tuple[float, ...] = (1.0, 3.0)
_NS_PER_DAY = 86_400e9


def feature_names(feature_set: str, channels: tuple[str, ...], timed: bool) -> list[str]:
    """Column names of a feature set, in the order :func:`journey_matrix` gives them
    (``timed``: the journeys have touch times)."""
    half_lives = EXPOSURE_HALF_LIVES_DAYS if timed else EXPOSURE_HALF_LIVES_TOUCHES
    names = [f"count[{c}]" for c in channels]
    if feature_set == "counts":
        return names
    names += [f"first[{c}]" for c in channels]
    if feature_set == "order":
        return names + [f"before[{a},{b}]" for a in channels for b in channels if a != b]
    names += [f"last[{c}]" for c in channels]
    names += [f"recency[{c}]" for c in channels]
    names += [f"exposure{h:g}[{c}]" for h in half_lives for c in channels]
    names += [f"before[{a},{b}]" for a in channels for b in channels if a != b]
    return names


def count_columns(feature_set: str, n_channels: int) -> np.ndarray:
    """Indices of the touch-count columns (the ones a monotone model constrains)."""
    del feature_set
    return np.arange(n_channels)


def days_before_last_touch(journeys: Journeys) -> np.ndarray | None:
    """Per touch, days from it to its journey's last touch, or None when there are no times.

    Measured to the last touch and not to the journey's end: a converting journey ends at its
    conversion and the others at their last touch, so the time to the end would tell the model
    the outcome.
    """
    if journeys.touched_at is None or journeys.n_touches == 0:
        return None
    at = journeys.touched_at.astype("datetime64[ns]").astype(np.int64)
    lengths = journeys.lengths
    last = np.where(lengths > 0, journeys.offsets[1:] - 1, 0)
    return (at[last][journeys.touch_journey] - at) / _NS_PER_DAY


def journey_matrix(
    journeys: Journeys,
    feature_set: str,
    keep: np.ndarray | None = None,
    days: np.ndarray | None = None,
) -> np.ndarray:
    """One feature row per journey, from its touches where ``keep`` (all when None).

    Args:
        journeys: the journeys.
        feature_set: ``"counts"`` or ``"sequence"``.
        keep: per touch, whether it stays (to ask what a journey would be without some touches).
        days: per touch, :func:`days_before_last_touch` (computed when None and there are times).

    Returns:
        ``(n_journeys, n_features)`` float array; see :func:`feature_names`.
    """
    if feature_set not in FEATURE_SETS:
        raise ValueError(f"unknown feature set {feature_set!r}; known: {', '.join(FEATURE_SETS)}")
    n, k = journeys.n_journeys, len(journeys.channels)
    journey, channel = journeys.touch_journey, journeys.channel
    if days is None:
        days = days_before_last_touch(journeys)
    if keep is not None:
        journey, channel = journey[keep], channel[keep]
        days = None if days is None else days[keep]
    cell = journey * k + channel
    counts = np.bincount(cell, minlength=n * k).reshape(n, k).astype(np.float64)
    if feature_set == "counts":
        return counts
    # positions among the kept touches, in journey order
    length = np.bincount(journey, minlength=n)
    starts = np.r_[0, np.cumsum(length)][:-1]
    position = np.arange(len(journey)) - starts[journey]
    first_flat = np.full(n * k, np.inf)
    np.minimum.at(first_flat, cell, position)
    last_flat = np.full(n * k, -np.inf)
    np.maximum.at(last_flat, cell, position)
    first, last = first_flat.reshape(n, k), last_flat.reshape(n, k)
    present = counts > 0
    is_first = np.zeros((n, k))
    is_last = np.zeros((n, k))
    has = length > 0
    rows = np.flatnonzero(has)
    is_first[rows, channel[starts[has]]] = 1.0
    is_last[rows, channel[starts[has] + length[has] - 1]] = 1.0
    a, b = np.where(~np.eye(k, dtype=bool))
    before = (first[:, a] < last[:, b]).astype(np.float64)
    if feature_set == "order":
        return np.hstack([counts, is_first, before])
    if days is None:
        recency = (length[:, None] - 1 - last).astype(np.float64)
        age, half_lives = (
            (length[journey] - 1 - position).astype(np.float64),
            EXPOSURE_HALF_LIVES_TOUCHES,
        )
    else:
        latest = np.full(n * k, np.inf)
        np.minimum.at(latest, cell, days)
        recency = latest.reshape(n, k)
        age, half_lives = days, EXPOSURE_HALF_LIVES_DAYS
    recency[~present] = np.nan
    exposure = [
        np.bincount(cell, weights=0.5 ** (age / h), minlength=n * k).reshape(n, k)
        for h in half_lives
    ]
    return np.hstack([counts, is_first, is_last, recency, *exposure, before])
