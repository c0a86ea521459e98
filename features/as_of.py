"""Point-in-time windows in relational form: what an entity's events add up to as of each row.

Every feature row describes an entity *as of* a time ``t_ns`` and may use only events at or
before it. In relational form: the rows to describe ("probes") are joined to their entity's
events with ``event time <= t`` (an event at the snapshot instant counts, anything later cannot
join), and each measure is a conditional aggregate over the joined events; a window of ``w``
days keeps the events with ``event time > t − w``, i.e. ``(t − w, t]`` (:func:`windowed`).
That join holds every (row, earlier event) pair, about twenty per event for weekly rows over half
a year, so rows on the snapshot grid take the equivalent running sum instead
(:func:`snapshot_windowed`): linear in events plus rows, the same values.

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


@dataclass(frozen=True)
class SnapshotGrid:
    """The snapshot times ``start_ns + k * step_ns`` (whole milliseconds); ``start_ns`` is
    ``None`` when there is no snapshot."""

    start_ns: int | None
    step_ns: int


@dataclass(frozen=True)
class Snapshots:
    """A build's snapshot grid in the two forms its queries use.

    Attributes:
        rows: one row per snapshot time, ``g_ns`` (to pair entities with snapshots).
        times: the same times as a start and a step (for :func:`snapshot_windowed`).
        last_ns: the last snapshot time; ``None`` when there is none.
    """

    rows: ir.Table
    times: SnapshotGrid
    last_ns: int | None


def snapshot_windowed(
    probes: ir.Table,
    key: str,
    events: ir.Table,
    measures: Sequence[Measure],
    grid: SnapshotGrid,
) -> ir.Table:
    """:func:`windowed` for probe rows on the snapshot grid ``start_ns + k * step_ns``, in time
    linear in events plus rows (no probe is joined to its entity's events).

    An event at ``e`` first counts at snapshot ``k0 = ceil((e − start) / step)`` (the first with
    ``g_k >= e``) and, in a window of ``w`` days, last counts at the snapshot before
    ``k_w = ceil((e + w − start) / step)`` (the first with ``g_k >= e + w``, where ``e > g_k − w``
    stops holding). So each event adds its value at ``k0`` and takes it back at each ``k_w`` (the
    event is read once and repeated once per window length); a running sum over each entity's
    snapshots, in order, is every measure at every snapshot. A latest time is a running maximum.
    Deltas before an entity's first probe are moved onto it and deltas after its last probe are
    dropped (fewer rows to sum; a running sum over the gaps between probes keeps them).

    The bucket of an event is computed in whole milliseconds: the quotient of two integers below
    2^53 rounds to a double that ``ceil`` reads exactly (a non-integer quotient is at least
    ``1 / step_ms`` from the next integer, far above the double's spacing).

    Args:
        probes: ``key``, ``t_ns`` (distinct, each ``t_ns`` a grid time).
        key, events, measures: as :func:`windowed` (a ``last`` measure has no window).
        grid: the snapshot times (without any, ``probes`` are empty and :func:`windowed` does).

    Returns:
        what :func:`windowed` returns for ``probes``.
    """
    if any(m.last and m.days is not None for m in measures):
        raise ValueError("a latest-time measure has no window")
    if grid.start_ns is None:
        return windowed(probes, key, events, measures)
    start_ns, step_ns = grid.start_ns, grid.step_ns
    start_ms, step_ms = start_ns // NS_PER_MS, step_ns // NS_PER_MS
    rows = probes.select(key, k=((probes[TIME] - start_ns) / step_ns).round().cast("int64"))
    span = rows.group_by(key).aggregate(k_first=rows.k.min(), k_last=rows.k.max())
    columns = sorted({m.column for m in measures})
    stream = events.select(ev_key=events[key], ev_t=events[TIME], **{c: events[c] for c in columns})
    sums = [m for m in measures if not m.last]
    latest = [m for m in measures if m.last]
    no_time = ibis.null("int64")

    # every event once per shift: 0 where it starts to count, each window's length where it stops
    # (in milliseconds: a literal list of days would be 32-bit integers on DuckDB)
    shifts = sorted({0} | {m.days * MS_PER_DAY for m in sums if m.days is not None})
    fanned = stream.mutate(shift=ibis.literal(shifts, type="array<int64>").unnest())
    since_start = whole_ms(fanned.ev_t) + fanned.shift - start_ms
    starts = fanned.shift == 0

    def value(measure: Measure) -> ir.FloatingValue:
        read = fanned[measure.column]
        if measure.equals is not None:
            read = read == measure.equals
        return read.cast("float64")

    def delta(measure: Measure) -> ir.FloatingValue:
        read = value(measure)
        if measure.days is None:
            return ibis.ifelse(starts, read, 0.0)
        return ibis.cases(
            (starts, read),
            (fanned.shift == measure.days * MS_PER_DAY, -read),
            else_=0.0,
        )

    moved = fanned.select(
        "ev_key",
        k=(since_start / step_ms).ceil().cast("int64"),
        **{m.name: delta(m) for m in sums},
        **{m.name: ibis.ifelse(starts & (value(m) > 0), fanned.ev_t, no_time) for m in latest},
    )
    moved = moved.join(span, moved.ev_key == span[key])
    moved = moved.filter(moved.k <= moved.k_last)
    moved = moved.select(
        key,
        k=ibis.greatest(moved.k, moved.k_first),
        **{m.name: moved[m.name] for m in measures},
        probe=ibis.literal(0, "int8"),
    )
    asked = rows.select(
        key,
        "k",
        **{m.name: ibis.literal(0.0) for m in sums},
        **{m.name: no_time for m in latest},
        probe=ibis.literal(1, "int8"),
    )
    both = ibis.union(asked, moved, distinct=False)
    per_snapshot = both.group_by([key, "k"]).aggregate(
        probe=both.probe.max(),
        **{m.name: both[m.name].sum() for m in sums},
        **{m.name: both[m.name].max() for m in latest},
    )
    running = per_snapshot.mutate(
        **{m.name: per_snapshot[m.name].cumsum(group_by=key, order_by="k") for m in sums},
        **{m.name: per_snapshot[m.name].cummax(group_by=key, order_by="k") for m in latest},
    )
    described = running.filter(running.probe == 1)
    return described.select(
        key,
        **{TIME: described.k * step_ns + start_ns},
        **{m.name: described[m.name] for m in measures},
    )
