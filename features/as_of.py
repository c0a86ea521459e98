"""Point-in-time windows in relational form: what an entity's events add up to as of each row.

Every feature row describes an entity *as of* a time ``t_ns`` and may use only events at or
before it. In relational form: the rows to describe ("probes") are joined to their entity's
events with ``event time <= t`` (an event at the snapshot instant counts, anything later cannot
join), and each measure is a conditional aggregate over the joined events; a window of ``w``
days keeps the events with ``event time > t − w``, i.e. ``(t − w, t]`` (:func:`windowed`).

Times are int64 nanoseconds. Event times are rounded *up* to the millisecond first
(:func:`up_to_ms`), as the pandas pipeline did, and snapshot times are whole milliseconds, so an
event a nanosecond after a snapshot stays after it and ``<= t`` is exact. No time is ever divided
in integer arithmetic: Ibis compiles integer floor division through a double, which would move a
nanosecond time across a millisecond boundary.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import ibis
import ibis.expr.types as ir

NS_PER_MS = 1_000_000
NS_PER_SECOND = 1_000_000_000
MS_PER_DAY = 86_400_000
NS_PER_DAY = 86_400_000_000_000
TIME = "t_ns"


def up_to(ns: ir.IntegerValue, unit: int) -> ir.IntegerValue:
    """``ns`` rounded up to a whole ``unit`` of nanoseconds (exact integer arithmetic).

    Both engines' ``%`` keeps the dividend's sign, so a negative remainder is already a round-up.
    """
    remainder = ns % unit
    return ns - remainder + ibis.ifelse(remainder > 0, unit, 0)


def up_to_ms(ns: ir.IntegerValue) -> ir.IntegerValue:
    """An event time rounded up to the millisecond, in nanoseconds."""
    return up_to(ns, NS_PER_MS)


def whole_ms(ns: ir.IntegerValue) -> ir.IntegerValue:
    """A time that is a whole number of milliseconds, in milliseconds (exact: the double quotient
    is within 1e-3 of the integer, so rounding recovers it)."""
    return (ns / NS_PER_MS).round().cast("int64")


def present(table: ir.Table, column: str) -> ir.Table:
    """The rows of ``table`` where ``column`` is not missing."""
    return table.filter(table[column].notnull())


def f32(value: ir.NumericValue) -> ir.FloatingValue:
    """A feature value as stored: single precision (computed in double, rounded once)."""
    return value.cast("float32")


def ratio(num: ir.NumericValue, den: ir.NumericValue) -> ir.FloatingValue:
    """``num / den`` in single precision; missing unless ``den > 0``."""
    return f32(ibis.ifelse(den > 0, num.cast("float64") / den.cast("float64"), None))


@dataclass(frozen=True)
class Measure:
    """One windowed value of a probe row.

    Attributes:
        name: the output column.
        column: the event column it reads (an indicator, an amount or a category).
        days: the window ``(t − days, t]``; ``None``: every event at or before ``t``.
        last: the time (ns) of the latest event it counts instead of a sum.
        equals: count the events whose ``column`` equals this category (the events carry their
            categories once, not one indicator column per category: less to join and move).
    """

    name: str
    column: str
    days: int | None = None
    last: bool = False
    equals: str | None = None


def windowed(
    probes: ir.Table,
    key: str,
    events: ir.Table,
    measures: Sequence[Measure],
) -> ir.Table:
    """``probes`` (``key``, ``t_ns``; distinct) with each measure as of its row's time.

    Each probe row is joined to its entity's events at or before its time (``e <= t``), and
    every measure is one conditional aggregate over them: a window ``(t − w, t]`` is
    ``e > t − w``. One join and one grouped aggregate compute every measure together, which both
    engines do in a single pass (a window function per measure would sort or scan once each).

    Args:
        probes: the rows to describe.
        key: the entity column the events and probes share.
        events: ``key``, ``t_ns`` (rounded up to the ms) and the measure columns.
        measures: what to compute.

    Returns:
        ``key``, ``t_ns`` and one column per measure (sums are float64, 0 without events; last
        times int64 ns, missing without events).
    """
    columns = sorted({m.column for m in measures})
    stream = events.select(ev_key=events[key], ev_t=events[TIME], **{c: events[c] for c in columns})
    rows = probes.select(key, TIME)
    joined = rows.left_join(stream, [rows[key] == stream.ev_key, stream.ev_t <= rows[TIME]])
    out: dict[str, ir.Value] = {}
    for measure in measures:
        value = joined[measure.column]
        if measure.equals is not None:
            value = value == measure.equals
        value = value.cast("float64")
        if measure.days is not None:
            since = joined[TIME] - (measure.days * NS_PER_DAY)
            value = ibis.ifelse(joined.ev_t > since, value, 0.0)
        if measure.last:
            out[measure.name] = ibis.ifelse(value > 0, joined.ev_t, None).max()
        else:
            out[measure.name] = value.sum()
    grouped = joined.group_by([key, TIME]).aggregate(**out)
    return grouped.mutate(
        **{m.name: grouped[m.name].fill_null(0.0) for m in measures if not m.last}
    )
