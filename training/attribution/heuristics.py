"""Rule-based attribution: first touch, last touch, linear, time decay, position based.

Each journey's conversions (and revenue) are split over its touches by a fixed rule; a channel
or content item is credited with the sum over its touches. Repeated channels count once per
touch (ChannelAttribution's convention), so a path ``a > a > b`` gives ``a`` two thirds under
linear touch.
"""

from __future__ import annotations

import numpy as np

from training.attribution.credit import Attribution, from_touch_weights, require_conversions
from training.attribution.errors import AttributionError
from training.attribution.journeys import Journeys

DAY_NS = 86400e9


def _normalise(journeys: Journeys, raw: np.ndarray) -> np.ndarray:
    totals = np.bincount(journeys.touch_journey, weights=raw, minlength=journeys.n_journeys)
    return raw / totals[journeys.touch_journey]


def first_touch(journeys: Journeys) -> Attribution:
    """All credit to each journey's first touch."""
    require_conversions(journeys)
    weights = np.zeros(journeys.n_touches)
    weights[journeys.first_touch[journeys.lengths > 0]] = 1.0
    return from_touch_weights(journeys, "first_touch", weights)


def last_touch(journeys: Journeys) -> Attribution:
    """All credit to each journey's last touch."""
    require_conversions(journeys)
    weights = np.zeros(journeys.n_touches)
    weights[journeys.last_touch[journeys.lengths > 0]] = 1.0
    return from_touch_weights(journeys, "last_touch", weights)


def linear(journeys: Journeys) -> Attribution:
    """Equal credit to every touch of a journey."""
    require_conversions(journeys)
    weights = 1.0 / journeys.lengths[journeys.touch_journey]
    return from_touch_weights(journeys, "linear", weights)


def time_decay(
    journeys: Journeys, half_life_days: float = 7.0, half_life_touches: float = 2.0
) -> Attribution:
    """Credit halving every half-life before the end of the journey.

    With touch times (lead journeys) a touch ``d`` days before the conversion (or the last
    touch) weighs ``2 ** (-d / half_life_days)``; without times (aggregated paths) a touch ``k``
    steps before the last weighs ``2 ** (-k / half_life_touches)``. Weights are normalised within
    each journey.

    Raises:
        AttributionError: a half-life that is not > 0.
    """
    require_conversions(journeys)
    if journeys.has_time:
        if not half_life_days > 0:
            raise AttributionError(f"half_life_days must be > 0, got {half_life_days}")
        assert journeys.ended_at is not None and journeys.touched_at is not None
        gap = journeys.ended_at[journeys.touch_journey] - journeys.touched_at
        age = np.maximum(gap.astype(np.int64), 0) / DAY_NS
        half_life, unit = half_life_days, "days"
    else:
        if not half_life_touches > 0:
            raise AttributionError(f"half_life_touches must be > 0, got {half_life_touches}")
        age = (journeys.lengths[journeys.touch_journey] - 1 - journeys.position).astype(float)
        half_life, unit = half_life_touches, "touches"
    # Subtracting each journey's youngest age keeps the largest weight at 1 (no underflow).
    youngest = np.full(journeys.n_journeys, np.inf)
    np.minimum.at(youngest, journeys.touch_journey, age)
    raw = np.exp2(-(age - youngest[journeys.touch_journey]) / half_life)
    return from_touch_weights(
        journeys,
        "time_decay",
        _normalise(journeys, raw),
        {"half_life": half_life, "half_life_unit": unit},
    )


def position_based(journeys: Journeys, first: float = 0.4, last: float = 0.4) -> Attribution:
    """``first`` to the first touch, ``last`` to the last, the rest split over the middle.

    A single-touch journey gives its touch everything; a two-touch journey splits in
    proportion ``first : last``.

    Raises:
        AttributionError: weights outside [0, 1] or summing to more than 1.
    """
    require_conversions(journeys)
    if not (0 <= first <= 1 and 0 <= last <= 1 and first + last <= 1 and first + last > 0):
        raise AttributionError(
            f"position weights must be in [0, 1] and sum to <= 1 "
            f"(and > 0), got first={first}, last={last}"
        )
    length = journeys.lengths[journeys.touch_journey]
    position = journeys.position
    middle = (1.0 - first - last) / np.maximum(length - 2, 1)
    weights = np.where(position == 0, first, np.where(position == length - 1, last, middle))
    weights = np.where(length == 1, 1.0, weights)
    two = length == 2
    weights = np.where(two, np.where(position == 0, first, last) / (first + last), weights)
    return from_touch_weights(journeys, "position_based", weights, {"first": first, "last": last})
