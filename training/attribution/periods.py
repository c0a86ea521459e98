"""Attribution over a period: the journeys that end in it, and the calendar periods of the data."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import date

import numpy as np
import pandas as pd

from training.attribution.credit import Attribution
from training.attribution.errors import AttributionError, EmptyJourneysError
from training.attribution.journeys import Journeys
from training.attribution.models import ModelOptions, run_models


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


@dataclass(frozen=True)
class Period:
    """A calendar period of the data: ``start`` to ``end`` (UTC days, both included), its
    label, and whether the data covers only part of it (``partial``, with ``covered`` saying
    which days)."""

    start: date
    end: date
    label: str
    partial: bool = False
    covered: str = ""


def _day(value: np.datetime64) -> date:
    return pd.Timestamp(value).date()


def calendar_quarters(journeys: Journeys) -> list[Period]:
    """The calendar quarters in which journeys end, first to last. A quarter the data starts
    after (first touch) or ends before (last conversion or touch) is ``partial``.

    Raises:
        AttributionError: the journeys have no times.
    """
    if journeys.ended_at is None or journeys.touched_at is None or journeys.n_journeys == 0:
        raise AttributionError(
            f"{journeys.source or 'these journeys'} have no times: periods cannot be chosen"
        )
    first = _day(journeys.touched_at.min())
    last = _day(max(journeys.ended_at.max(), journeys.touched_at.max()))
    ends = pd.to_datetime(journeys.ended_at)
    quarters = pd.period_range(ends.min(), ends.max(), freq="Q")
    periods = []
    for quarter in quarters:
        start, end = quarter.start_time.date(), quarter.end_time.date()
        partial = first > start or last < end
        lo, hi = max(first, start), min(last, end)
        covered = f"data from {lo:%-d %b} to {hi:%-d %b %Y}" if partial else ""
        periods.append(Period(start, end, f"Q{quarter.quarter} {quarter.year}", partial, covered))
    return periods


@dataclass(frozen=True)
class PeriodCredit:
    """Each model's credit for the journeys ending in one period."""

    period: Period
    journeys: Journeys
    results: list[Attribution]


def credit_by_period(
    journeys: Journeys,
    models: Sequence[str],
    options: ModelOptions | None = None,
    periods: Sequence[Period] | None = None,
    on_period: Callable[[Period], None] | None = None,
) -> list[PeriodCredit]:
    """Every model on the journeys ending in each period (default: the calendar quarters); a
    period without a conversion is left out. ``on_period`` is called as each one is done.

    With ``options.conversion_model`` (the whole run's, say), the data-driven models credit each
    period with that fitted model instead of choosing and fitting one per period."""
    done = []
    for period in calendar_quarters(journeys) if periods is None else periods:
        try:
            part = ending_within(journeys, period.start, period.end)
        except EmptyJourneysError:
            continue
        if part.total_conversions > 0:
            done.append(PeriodCredit(period, part, run_models(part, models, options)))
        if on_period is not None:
            on_period(period)
    return done
