"""Attribution over a period: the journeys that end in it."""

from __future__ import annotations

from dataclasses import replace
from datetime import date

import numpy as np

from training.attribution.errors import AttributionError, EmptyJourneysError
from training.attribution.journeys import Journeys


def ending_within(journeys: Journeys, start: date, end: date) -> Journeys:
    """The journeys that end (convert, or for the others their last touch) on a day from
    ``start`` to ``end``, both included (UTC days): a period's conversions and the journeys
    that did not convert by its end.

    ``dropped`` then counts only ``journeys_outside_period``: what was left out at loading
    (conversions without a touch, ...) is known for all the data, not per period.

    Raises:
        AttributionError: the journeys have no times (an aggregated path file), or none ends
            in the period.
    """
    if journeys.ended_at is None:
        raise AttributionError(
            f"{journeys.source or 'these journeys'} have no times: a period cannot be chosen"
        )
    lo = np.datetime64(start, "ns")
    hi = np.datetime64(end, "ns") + np.timedelta64(1, "D")
    keep = (journeys.ended_at >= lo) & (journeys.ended_at < hi)
    if not keep.any():
        raise EmptyJourneysError(
            f"no journey of {journeys.source or 'the data'} ends from {start} to {end}"
        )
    return replace(journeys.select(keep), dropped={"journeys_outside_period": int((~keep).sum())})
