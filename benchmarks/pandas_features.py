"""Contract tables → point-in-time feature tables, as plain vectorised functions.

Every feature row describes one entity *as of* a snapshot time ``event_timestamp`` and uses only
events at or before it. Snapshots are weekly at Monday 00:00 UTC (see :func:`snapshot_times`).

How the windows are counted without a Python loop: each event stream (touches of a lead, usage
weeks of an account, …) is sorted by ``(entity, time)`` and turned into one monotone int64 key,
``entity_code * span + time_ms``. The number of an entity's events at or before ``t`` is then one
``searchsorted``, a window ``(t - w, t]`` is the difference of two, and per-category counts are
differences of a cumulative sum read at those two positions. Event times are rounded *up* to the
millisecond, which keeps ``<= t`` exact for snapshot boundaries (whole milliseconds).

Populations follow the simulator's truth rows exactly:

* lead at ``t``: ``created_at < t <= created_at + lead_scoring_horizon_days`` and not converted
  at or before ``t``;
* account at ``t``: a subscription with ``start < t`` not cancelled at or before ``t``;
* content at ``t``: ``published_at < t``.

Rules that keep the future out: ``usage.date`` closes the week before it, so a usage row counts
from ``date``; a ticket is open at ``t`` if ``opened_at <= t < closed_at``; satisfaction counts
from ``closed_at``; opportunities count from ``closed_at``; ``leads.status`` and ``email_hash``
are never read.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from crm.contract import CHANNELS, CONTENT_TYPES, HIGH_INTENT_TYPES, INTERACTION_TYPES
from crm.settings import Settings
from features.job_titles import read_titles
from features.pipeline import (  # the raw tables it reads: the product's, the same errors
    NON_EMPTY,
    OPTIONAL,
    REFERENCES,
    REQUIRED,
    TIMESTAMPS,
    FeatureInputError,
    as_of_time,
)
from features.schema import (
    ACCOUNT_CATEGORICAL,
    ACCOUNT_NUMERIC,
    CONTENT_CATEGORICAL,
    CONTENT_NUMERIC,
    LEAD_CATEGORICAL,
    LEAD_NUMERIC,
    LEAD_WINDOWS_DAYS,
)

NS_PER_MS = 1_000_000
MS_PER_DAY = 86_400_000
NS_PER_DAY = 86_400_000_000_000
ANNUAL_TERM_DAYS = 365  # the simulator's (and most CRMs') annual term: renewal every 365 days
MONDAY_EPOCH_NS = pd.Timestamp("2024-01-01", tz="UTC").value  # any Monday 00:00 UTC

LEAD_CHUNK_ROWS = 1_000_000


# --------------------------------------------------------------------------------------- input


def check_tables(tables: Mapping[str, pd.DataFrame]) -> None:
    """Check the tables the pipeline reads: present, typed, non-empty, ids known.

    Raises:
        FeatureInputError: naming the table and column at fault.
    """
    for name, columns in REQUIRED.items():
        if name not in tables:
            raise FeatureInputError(f"table '{name}' is missing")
        missing = [c for c in columns if c not in tables[name].columns]
        if missing:
            raise FeatureInputError(f"table '{name}' lacks column(s) {missing}")
    for name in NON_EMPTY:
        if len(tables[name]) == 0:
            raise FeatureInputError(f"table '{name}' is empty: nothing to build features from")
    for name, columns in TIMESTAMPS.items():
        for col in columns:
            dtype = tables[name][col].dtype
            if not isinstance(dtype, pd.DatetimeTZDtype):
                raise FeatureInputError(
                    f"{name}.{col} is not a UTC timestamp column (dtype {dtype}); malformed "
                    "timestamps must be fixed on import (crm-intel import validates them)"
                )
    for col in ("created_at",):
        if tables["leads"][col].isna().any():
            raise FeatureInputError(f"leads.{col} has missing timestamps")
    if tables["interactions"]["occurred_at"].isna().any():
        raise FeatureInputError("interactions.occurred_at has missing timestamps")
    for table, col, ref, key in REFERENCES:
        codes = _codes(tables[table][col], tables[ref][key])
        unknown = (codes < 0) & tables[table][col].notna().to_numpy()
        if unknown.any():
            first = tables[table][col][unknown].iloc[0]
            raise FeatureInputError(
                f"{table}.{col} names {int(unknown.sum())} unknown {ref} (first: {first!r})"
            )


def read_feature_tables(raw_dir: Path) -> dict[str, pd.DataFrame]:
    """The contract tables, only the columns the pipeline reads, with contract dtypes.

    Reads through Arrow straight into ``string[pyarrow]`` columns: about 4x faster than
    :func:`crm.io.read_tables` on 10M interactions, and it never loads ``leads.status`` or
    ``email_hash``.

    Raises:
        FeatureInputError: a table file is missing or lacks a column.
    """
    strings = pd.StringDtype("pyarrow")
    mapper = {pa.string(): strings, pa.large_string(): strings}.get
    out = {}
    for name, columns in REQUIRED.items():
        path = Path(raw_dir) / f"{name}.parquet"
        if not path.exists():
            raise FeatureInputError(
                f"{path} does not exist: run `crm-intel simulate` or `crm-intel import` first"
            )
        # a file, or a Parquet folder of parts (benchmarks/scale_data.py): the dataset's schema
        present = set(pq.ParquetDataset(path).schema.names)
        missing = [c for c in columns if c not in present]
        if missing:
            raise FeatureInputError(f"table '{name}' ({path}) lacks column(s) {missing}")
        columns += tuple(c for c in OPTIONAL.get(name, ()) if c in present)
        out[name] = pq.read_table(path, columns=list(columns)).to_pandas(types_mapper=mapper)
    return out


def _optional(table: pd.DataFrame, column: str) -> pd.Series:
    """An optional column of ``table``, all missing when the table does not have it."""
    if column in table.columns:
        return table[column]
    return pd.Series(pd.NA, index=table.index, dtype="string[pyarrow]")


def _arrow(values: pd.Series) -> pa.Array:
    arr = pa.array(values.astype("string[pyarrow]"))
    return arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr


def _codes(values: pd.Series, keys: pd.Series) -> np.ndarray:
    """Position of each value in ``keys`` (-1 when null or unknown), via Arrow's hash lookup."""
    idx = pc.index_in(_arrow(values), value_set=_arrow(keys))
    return idx.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)


def _ns(values: pd.Series) -> np.ndarray:
    """UTC nanoseconds (NaT → int64 min)."""
    return np.asarray(values.array.asi8)


def _ms_up(ns: np.ndarray) -> np.ndarray:
    return -((-ns) // NS_PER_MS)


def snapshot_times(tables: Mapping[str, pd.DataFrame], settings: Settings) -> pd.DatetimeIndex:
    """The snapshot grid: every ``snapshot_frequency_days`` at Monday 00:00 UTC.

    It starts on the Monday on or before the first event of the log (lead created, touch, ticket
    opened, usage week start) and ends at the last grid time strictly before :func:`as_of_time`.
    """
    step = settings.snapshot_frequency_days * NS_PER_DAY
    firsts = [tables["leads"]["created_at"].min(), tables["interactions"]["occurred_at"].min()]
    if len(tables["tickets"]):
        firsts.append(tables["tickets"]["opened_at"].min())
    if len(tables["usage"]):
        firsts.append(tables["usage"]["date"].min() - pd.Timedelta(days=7))
    first = min(pd.Timestamp(t).value for t in firsts if not pd.isna(t))
    start = MONDAY_EPOCH_NS + ((first - MONDAY_EPOCH_NS) // step) * step
    end = as_of_time(tables).value
    grid = np.arange(start, end, step, dtype=np.int64)
    return pd.DatetimeIndex(pd.to_datetime(grid, utc=True), name="event_timestamp")


# ------------------------------------------------------------------------------ event indexes


class _Events:
    """Events of one stream sorted by (entity, time) for window counts by ``searchsorted``."""

    def __init__(
        self,
        codes: np.ndarray,
        times_ns: np.ndarray,
        n_entities: int,
        t0_ms: int,
        t1_ms: int,
        **columns: np.ndarray,
    ):
        keep = codes >= 0
        times = _ms_up(times_ns[keep])
        codes = codes[keep]
        self.t0 = t0_ms
        self.span = max(t1_ms - t0_ms + 2, 2)
        if (n_entities + 1) * self.span >= 2**62:
            raise FeatureInputError("time span too long for the event index")
        rel = np.clip(times - t0_ms, 0, self.span - 1)
        keys = codes * self.span + rel
        order = np.argsort(keys, kind="stable")
        self.keys = keys[order]
        self.codes = codes[order]
        self.times = times[order]
        self.columns = {k: v[keep][order] for k, v in columns.items()}
        self._cums: dict[object, np.ndarray] = {}

    def pos(self, codes: np.ndarray, t_ms: np.ndarray) -> np.ndarray:
        """Index just past the entity's last event at or before ``t_ms``."""
        rel = np.clip(t_ms - self.t0, -1, self.span - 1)
        return np.searchsorted(self.keys, codes * self.span + rel, side="right")

    def cum(self, name: object, weights: np.ndarray) -> np.ndarray:
        if name not in self._cums:
            # counts fit int32 (half the memory of int64 on 10M-event streams)
            out = np.zeros(
                len(weights) + 1, dtype=np.float64 if weights.dtype.kind == "f" else np.int32
            )
            np.cumsum(weights, out=out[1:])
            self._cums[name] = out
        return self._cums[name]

    def last_time(self, codes: np.ndarray, hi: np.ndarray) -> np.ndarray:
        """Time (ms) of the entity's last event before position ``hi``, NaN when none."""
        idx = hi - 1
        ok = idx >= 0
        ok[ok] = self.codes[idx[ok]] == codes[ok]
        out = np.full(len(codes), np.nan)
        out[ok] = self.times[idx[ok]]
        return out


def _window(
    ev: _Events, codes: np.ndarray, t_ms: np.ndarray, days: int, hi: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    hi = ev.pos(codes, t_ms) if hi is None else hi
    return ev.pos(codes, t_ms - days * MS_PER_DAY), hi


def _between(cum: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    return (cum[hi] - cum[lo]).astype(np.float32)


def _f32(x: np.ndarray) -> np.ndarray:
    return np.asarray(x, dtype=np.float32)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan).astype(np.float32)


def _trend(now: np.ndarray, before: np.ndarray) -> np.ndarray:
    """Relative change ``now / before - 1``; NaN when there is nothing before."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(before > 0, now / np.where(before > 0, before, 1) - 1, np.nan).astype(
            np.float32
        )


def _category_codes(values: pd.Series, vocabulary: tuple[str, ...]) -> np.ndarray:
    return _codes(values, pd.Series(vocabulary, dtype="string[pyarrow]"))


def _strings(values: pd.Series, index: np.ndarray) -> pa.Array:
    """Take ``values[index]`` as an Arrow string array; index -1 gives null."""
    arr = _arrow(values.reset_index(drop=True))
    safe = pa.array(index, type=pa.int64(), mask=index < 0)
    return arr.take(safe)


@dataclass(frozen=True)
class _Context:
    grid_ns: np.ndarray
    t0_ms: int
    t1_ms: int
    as_of: pd.Timestamp


def _context(
    tables: Mapping[str, pd.DataFrame], settings: Settings, validate: bool = True
) -> _Context:
    if validate:
        check_tables(tables)
    grid = snapshot_times(tables, settings)
    grid_ns = grid.asi8
    starts = [tables["interactions"]["occurred_at"].min(), tables["leads"]["created_at"].min()]
    for name, col in (
        ("tickets", "opened_at"),
        ("usage", "date"),
        ("subscriptions", "start"),
        ("opportunities", "closed_at"),
    ):
        if len(tables[name]) and not pd.isna(tables[name][col].min()):
            starts.append(tables[name][col].min())
    t0 = min(pd.Timestamp(t).value for t in starts) // NS_PER_MS - 400 * MS_PER_DAY
    t1 = max(as_of_time(tables).value, int(grid_ns.max()) if len(grid_ns) else 0) // NS_PER_MS
    return _Context(grid_ns, int(t0), int(t1) + 1, as_of_time(tables))


def _pairs(
    start_ns: np.ndarray, end_ns: np.ndarray, grid_ns: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(row, snapshot index) for every grid time g with ``start < g`` and ``g < end``."""
    first = np.searchsorted(grid_ns, start_ns, side="right")
    stop = np.searchsorted(grid_ns, end_ns, side="left")
    n = np.maximum(stop - first, 0)
    rows = np.repeat(np.arange(len(start_ns)), n)
    offsets = np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n)
    return rows, (np.repeat(first, n) + offsets).astype(np.int64)


def _empty_frame(key: str, numeric: tuple[str, ...], categorical: tuple[str, ...]) -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            key: pd.Series(dtype="string[pyarrow]"),
            "event_timestamp": pd.Series(dtype="datetime64[ns, UTC]"),
        }
    )
    for col in numeric:
        frame[col] = pd.Series(dtype=np.float32)
    for col in categorical:
        frame[col] = pd.Series(dtype="string[pyarrow]")
    return frame


def _to_pandas(table: pa.Table) -> pd.DataFrame:
    frame = table.to_pandas()
    for name, column in zip(table.column_names, table.columns, strict=True):
        if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
            frame[name] = frame[name].astype("string[pyarrow]")
    return frame


# ------------------------------------------------------------------------------------- leads


def _lead_population(
    leads: pd.DataFrame, ctx: _Context, settings: Settings
) -> tuple[np.ndarray, np.ndarray]:
    created = _ns(leads["created_at"])
    horizon = created + settings.lead_scoring_horizon_days * NS_PER_DAY
    converted = _ns(leads["converted_at"])
    converted = np.where(leads["converted_at"].isna().to_numpy(), np.iinfo(np.int64).max, converted)
    # created < t, t <= created + horizon (i.e. t < horizon + 1ns), t < converted
    end = np.minimum(horizon + 1, converted)
    return _pairs(created, end, ctx.grid_ns)


def _lead_rows(
    leads: pd.DataFrame, ctx: _Context, settings: Settings, creation_rows: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """(lead row, time in ns) of every lead feature row: each weekly snapshot of the population,
    then, with ``creation_rows``, one row at ``created_at`` for every lead created at or after
    the last snapshot and not converted (the leads no snapshot describes yet).

    A creation row's time is ``created_at`` rounded up to the whole second, the online store's
    resolution, so that the online row carries the offline row's timestamp and the lead's age
    there is 0, not a hair below; its features are those known at that time, like any row's.
    """
    rows, snaps = _lead_population(leads, ctx, settings)
    if not creation_rows:
        return rows, ctx.grid_ns[snaps]
    created = _ns(leads["created_at"])
    last = ctx.grid_ns[-1] if len(ctx.grid_ns) else np.iinfo(np.int64).min
    new = np.flatnonzero((created >= last) & leads["converted_at"].isna().to_numpy())
    second = 1000 * NS_PER_MS
    at = -((-created[new]) // second) * second
    return np.concatenate([rows, new]), np.concatenate([ctx.grid_ns[snaps], at])


def lead_feature_batches(
    tables: Mapping[str, pd.DataFrame],
    settings: Settings,
    chunk_rows: int = LEAD_CHUNK_ROWS,
    validate: bool = True,
    creation_rows: bool = False,
) -> Iterator[pa.Table]:
    """Lead features as Arrow tables of at most ``chunk_rows`` rows (bounded memory).

    Rows are ordered by lead (in the order of the leads table), then snapshot. ``validate=False``
    skips :func:`check_tables` for callers that ran it already. ``creation_rows=True`` adds,
    after the weekly snapshots, the creation rows of :func:`_lead_rows`: the same features at
    ``event_timestamp = created_at`` (what was known when the lead was created: firmographics,
    source and account, touches at or before that instant, age 0), so that the online store holds
    a vector for a lead created since the last snapshot (``crm-intel features build`` writes
    them; no training set reaches them, being later than every labelled snapshot).
    """
    ctx = _context(tables, settings, validate)
    leads, accounts = tables["leads"], tables["accounts"]
    inter = tables["interactions"]
    content = tables["content"]
    n_leads = len(leads)
    lead_rows, row_ns = _lead_rows(leads, ctx, settings, creation_rows)
    if len(lead_rows) == 0:
        return

    i_lead = _codes(inter["lead_id"], leads["lead_id"])
    i_ns = _ns(inter["occurred_at"])
    channel = _category_codes(inter["channel"], CHANNELS).astype(np.int8)
    itype = _category_codes(inter["type"], INTERACTION_TYPES).astype(np.int8)
    content_idx = _codes(inter["content_id"], content["content_id"])
    ctype_of_content = _category_codes(content["type"], CONTENT_TYPES)
    ctype = np.where(content_idx >= 0, ctype_of_content[np.maximum(content_idx, 0)], -1).astype(
        np.int8
    )
    touches = _Events(
        i_lead, i_ns, n_leads, ctx.t0_ms, ctx.t1_ms, channel=channel, type=itype, ctype=ctype
    )
    high_types = np.array([INTERACTION_TYPES.index(t) for t in HIGH_INTENT_TYPES])
    high = np.isin(itype, high_types)
    high_intent = _Events(np.where(high, i_lead, -1), i_ns, n_leads, ctx.t0_ms, ctx.t1_ms)

    # first touch of each (lead, content) and (lead, topic): distinct counts become event counts
    with_content = (i_lead >= 0) & (content_idx >= 0)
    topic_code = _codes(
        content["topic"], pd.Series(content["topic"].dropna().unique(), dtype="string[pyarrow]")
    )
    first_content = _first_events(
        i_lead[with_content], content_idx[with_content], i_ns[with_content], n_leads, ctx
    )
    topics = np.where(content_idx >= 0, topic_code[np.maximum(content_idx, 0)], -1)
    first_topic = _first_events(
        i_lead[with_content], topics[with_content], i_ns[with_content], n_leads, ctx
    )

    # customers among the leads' accounts, by subscription start/cancel events
    subs = tables["subscriptions"]
    s_acc = _codes(subs["account_id"], accounts["account_id"])
    cancelled = subs["cancelled_at"].notna().to_numpy()
    sub_start = _Events(s_acc, _ns(subs["start"]), len(accounts), ctx.t0_ms, ctx.t1_ms)
    sub_end = _Events(
        np.where(cancelled, s_acc, -1),
        _ns(subs["cancelled_at"]),
        len(accounts),
        ctx.t0_ms,
        ctx.t1_ms,
    )
    lead_account = _codes(leads["account_id"], accounts["account_id"])
    timeframe = _optional(leads, "purchase_timeframe")
    title = read_titles(_optional(leads, "job_title"))
    created_ms = _ns(leads["created_at"]) / NS_PER_MS

    cums = {
        **{
            ("channel", c): touches.cum(("channel", c), touches.columns["channel"] == c)
            for c in range(len(CHANNELS))
        },
        **{
            ("type", t): touches.cum(("type", t), touches.columns["type"] == t)
            for t in range(len(INTERACTION_TYPES))
        },
        **{
            ("ctype", c): touches.cum(("ctype", c), touches.columns["ctype"] == c)
            for c in range(len(CONTENT_TYPES))
        },
    }
    t_index = {t: i for i, t in enumerate(INTERACTION_TYPES)}

    for start in range(0, len(lead_rows), chunk_rows):
        rows = lead_rows[start : start + chunk_rows]
        t_ns = row_ns[start : start + chunk_rows]
        codes = rows.astype(np.int64)
        t = t_ns // NS_PER_MS  # row times are whole milliseconds
        out: dict[str, np.ndarray] = {}
        out["days_since_created"] = _f32((t - created_ms[rows]) / MS_PER_DAY)
        hi = touches.pos(codes, t)
        lo = {w: touches.pos(codes, t - w * MS_PER_DAY) for w in (7, 14, 28, 30, 90)}
        for w in LEAD_WINDOWS_DAYS:
            out[f"touches_{w}d"] = _f32(hi - lo[w])
        for c, name in enumerate(CHANNELS):
            out[f"touches_{name}_90d"] = _between(cums[("channel", c)], lo[90], hi)
        for w in (30, 90):
            for ti, name in enumerate(INTERACTION_TYPES):
                out[f"touches_{name}_{w}d"] = _between(cums[("type", ti)], lo[w], hi)
        last = touches.last_time(codes, hi)
        out["days_since_last_touch"] = _f32((t - last) / MS_PER_DAY)
        last_high = high_intent.last_time(codes, high_intent.pos(codes, t))
        out["days_since_last_high_intent"] = _f32((t - last_high) / MS_PER_DAY)
        out["touches_14d"] = _f32(hi - lo[14])
        out["touches_prev_14d"] = _f32(lo[14] - lo[28])
        out["touch_velocity_14d"] = out["touches_14d"] - out["touches_prev_14d"]
        lo_all = touches.pos(codes, np.full_like(t, ctx.t0_ms - 1))
        for c, name in enumerate(CONTENT_TYPES):
            out[f"content_{name}_touches"] = _between(cums[("ctype", c)], lo_all, hi)
        out["distinct_content"] = _f32(
            first_content.pos(codes, t) - first_content.pos(codes, t * 0 + ctx.t0_ms - 1)
        )
        out["distinct_topics"] = _f32(
            first_topic.pos(codes, t) - first_topic.pos(codes, t * 0 + ctx.t0_ms - 1)
        )
        opens = out["touches_email_open_90d"]
        out["email_click_rate_90d"] = _ratio(out["touches_email_click_90d"], opens)
        out["email_reply_rate_90d"] = _ratio(out["touches_email_reply_90d"], opens)
        out["calls_total"] = _between(cums[("type", t_index["call"])], lo_all, hi)
        out["meetings_total"] = _between(cums[("type", t_index["meeting"])], lo_all, hi)
        acc = lead_account[rows]
        has_acc = acc >= 0
        acc_safe = np.maximum(acc, 0)
        live = (sub_start.pos(acc_safe, t) - sub_start.pos(acc_safe, t * 0 + ctx.t0_ms - 1)) - (
            sub_end.pos(acc_safe, t) - sub_end.pos(acc_safe, t * 0 + ctx.t0_ms - 1)
        )
        out["account_is_customer"] = _f32(np.where(has_acc, live > 0, np.nan))

        arrays: dict[str, pa.Array] = {
            "lead_id": _strings(leads["lead_id"], rows),
            "event_timestamp": pa.array(t_ns, type=pa.timestamp("ns", tz="UTC")),
        }
        for name in LEAD_NUMERIC:
            arrays[name] = pa.array(out[name], type=pa.float32())
        arrays["seniority"] = _strings(leads["seniority"], rows)
        arrays["source"] = _strings(leads["source"], rows)
        arrays["country"] = _strings(leads["country"], rows)
        arrays["purchase_timeframe"] = _strings(timeframe, rows)
        acc_idx = np.where(has_acc, acc, -1)
        arrays["account_employee_band"] = _strings(accounts["employee_band"], acc_idx)
        arrays["account_industry"] = _strings(accounts["industry"], acc_idx)
        arrays["account_region"] = _strings(accounts["region"], acc_idx)
        arrays["title_rank"] = _strings(title["title_rank"], rows)
        arrays["title_department"] = _strings(title["title_department"], rows)
        assert tuple(arrays)[2:] == LEAD_NUMERIC + LEAD_CATEGORICAL
        yield pa.table(arrays)


def _first_events(
    entity: np.ndarray, item: np.ndarray, ns: np.ndarray, n_entities: int, ctx: _Context
) -> _Events:
    """Events at the first time each (entity, item) pair occurs."""
    keep = (entity >= 0) & (item >= 0)
    entity, item, ns = entity[keep], item[keep], ns[keep]
    order = np.lexsort((ns, item, entity))
    e, i, t = entity[order], item[order], ns[order]
    first = np.ones(len(e), dtype=bool)
    first[1:] = (e[1:] != e[:-1]) | (i[1:] != i[:-1])
    return _Events(e[first], t[first], n_entities, ctx.t0_ms, ctx.t1_ms)


def build_lead_features(tables: Mapping[str, pd.DataFrame], settings: Settings) -> pd.DataFrame:
    """Lead features at every weekly snapshot a lead is open (see module docstring).

    Args:
        tables: contract tables (contract dtypes), as from :func:`crm.io.read_tables`.
        settings: windows and the snapshot frequency.

    Returns:
        ``lead_id``, ``event_timestamp`` (UTC snapshot) and the columns of
        :data:`features.schema.LEAD_FEATURES` (numeric ``float32``, categorical ``string``).

    Raises:
        FeatureInputError: the tables cannot be built from.
    """
    batches = list(lead_feature_batches(tables, settings))
    if not batches:
        return _empty_frame("lead_id", LEAD_NUMERIC, LEAD_CATEGORICAL)
    return _to_pandas(pa.concat_tables(batches))


# ----------------------------------------------------------------------------------- accounts


def _rfm_segment(recency: np.ndarray, frequency: np.ndarray) -> np.ndarray:
    """Rule-based RFM segment (fixed thresholds, so a segment means the same thing every week)."""
    seg = np.full(len(recency), "no_deals", dtype=object)
    has = frequency > 0
    seg[has & (recency > 365)] = "lapsed"
    seg[has & (recency > 180) & (recency <= 365)] = "at_risk"
    seg[has & (recency <= 180)] = "recent"
    seg[has & (frequency >= 2) & (recency <= 365)] = "loyal"
    seg[has & (frequency >= 2) & (recency <= 90)] = "champion"
    return seg


def build_account_features(
    tables: Mapping[str, pd.DataFrame], settings: Settings, validate: bool = True
) -> pd.DataFrame:
    """Account features at every weekly snapshot the account is a live customer.

    Returns:
        ``account_id``, ``event_timestamp`` and :data:`features.schema.ACCOUNT_FEATURES`
        (numeric ``float32``, categorical ``string``). Usage windows are 28 days (four of the
        weekly usage rows) against the 28 days before.

    Raises:
        FeatureInputError: the tables cannot be built from.
    """
    ctx = _context(tables, settings, validate)
    accounts, subs = tables["accounts"], tables["subscriptions"].reset_index(drop=True)
    n_acc = len(accounts)
    s_acc = _codes(subs["account_id"], accounts["account_id"])
    start_ns = _ns(subs["start"])
    cancel_ns = np.where(
        subs["cancelled_at"].isna().to_numpy(), np.iinfo(np.int64).max, _ns(subs["cancelled_at"])
    )
    # start < t and cancelled > t, i.e. t < cancelled
    sub_rows, snaps = _pairs(start_ns, cancel_ns, ctx.grid_ns)
    if len(sub_rows) == 0:
        return _empty_frame("account_id", ACCOUNT_NUMERIC, ACCOUNT_CATEGORICAL)
    # one row per (account, snapshot): the live subscription that started last
    pairs = pd.DataFrame(
        {"acc": s_acc[sub_rows], "snap": snaps, "sub": sub_rows, "start": start_ns[sub_rows]}
    )
    pairs = pairs.sort_values(["acc", "snap", "start"]).drop_duplicates(
        ["acc", "snap"], keep="last"
    )
    codes = pairs["acc"].to_numpy(np.int64)
    sub = pairs["sub"].to_numpy()
    t_ns = ctx.grid_ns[pairs["snap"].to_numpy()]
    t = t_ns // NS_PER_MS
    out: dict[str, np.ndarray] = {}
    seats = subs["seats"].astype("float64").to_numpy()[sub]
    out["mrr"] = _f32(subs["mrr"].to_numpy(np.float64)[sub])
    out["seats"] = _f32(seats)
    first_start = pd.Series(start_ns).groupby(s_acc).min()
    out["tenure_days"] = _f32((t_ns - first_start.reindex(codes).to_numpy()) / NS_PER_DAY)
    age_days = (t_ns - start_ns[sub]) / NS_PER_DAY
    out["days_to_renewal"] = _f32(ANNUAL_TERM_DAYS - np.mod(age_days, ANNUAL_TERM_DAYS))

    usage = tables["usage"]
    u = _Events(
        _codes(usage["account_id"], accounts["account_id"]),
        _ns(usage["date"]),
        n_acc,
        ctx.t0_ms,
        ctx.t1_ms,
        active=usage["active_users"].astype("float64").fillna(0).to_numpy(),
        logins=usage["logins"].astype("float64").fillna(0).to_numpy(),
        key=usage["key_feature_events"].astype("float64").fillna(0).to_numpy(),
    )
    hi = u.pos(codes, t)
    mid = u.pos(codes, t - 28 * MS_PER_DAY)
    lo = u.pos(codes, t - 56 * MS_PER_DAY)
    weeks_now = (hi - mid).astype(np.float64)
    weeks_before = (mid - lo).astype(np.float64)
    sums = {}
    for name in ("active", "logins", "key"):
        cum = u.cum(name, u.columns[name])
        sums[name] = (cum[hi] - cum[mid], cum[mid] - cum[lo])
    active_now = _ratio(sums["active"][0], weeks_now)
    active_before = _ratio(sums["active"][1], weeks_before)
    out["active_user_ratio_28d"] = _ratio(active_now, seats)
    out["active_users_28d"] = active_now
    out["active_users_prev_28d"] = active_before
    out["active_users_trend"] = _trend(active_now, active_before)
    for name, stem in (("logins", "logins"), ("key", "key_feature_events")):
        now, before = sums[name]
        out[f"{stem}_28d"] = np.where(weeks_now > 0, now, np.nan).astype(np.float32)
        out[f"{stem}_prev_28d"] = np.where(weeks_before > 0, before, np.nan).astype(np.float32)
        out[f"{stem}_trend"] = _trend(now, np.where(weeks_before > 0, before, 0))

    tickets = tables["tickets"]
    t_acc = _codes(tickets["account_id"], accounts["account_id"])
    high = tickets["priority"].isin(["high", "urgent"]).fillna(False).to_numpy()
    opened_ns = _ns(tickets["opened_at"])
    closed = tickets["closed_at"].notna().to_numpy()
    opened = _Events(
        t_acc,
        opened_ns,
        n_acc,
        ctx.t0_ms,
        ctx.t1_ms,
        high=high.astype(np.int64),
        opened=_ms_up(opened_ns).astype(np.float64),
    )
    closes = _Events(
        np.where(closed, t_acc, -1),
        _ns(tickets["closed_at"]),
        n_acc,
        ctx.t0_ms,
        ctx.t1_ms,
        opened=_ms_up(opened_ns).astype(np.float64),
    )
    sat = tickets["satisfaction"].to_numpy(np.float64, na_value=np.nan)
    rated = closed & ~np.isnan(sat)
    ratings = _Events(
        np.where(rated, t_acc, -1),
        _ns(tickets["closed_at"]),
        n_acc,
        ctx.t0_ms,
        ctx.t1_ms,
        sat=np.nan_to_num(sat),
    )
    o_hi, o_lo = opened.pos(codes, t), opened.pos(codes, t - 90 * MS_PER_DAY)
    out["tickets_90d"] = _f32(o_hi - o_lo)
    out["high_priority_tickets_90d"] = _between(
        opened.cum("high", opened.columns["high"]), o_lo, o_hi
    )
    r_hi, r_lo = ratings.pos(codes, t), ratings.pos(codes, t - 90 * MS_PER_DAY)
    sat_cum = ratings.cum("sat", ratings.columns["sat"])
    out["mean_satisfaction_90d"] = _ratio(sat_cum[r_hi] - sat_cum[r_lo], r_hi - r_lo)
    base = np.full_like(t, ctx.t0_ms - 1)
    o_all, c_hi, c_all = opened.pos(codes, base), closes.pos(codes, t), closes.pos(codes, base)
    n_open = (o_hi - o_all) - (c_hi - c_all)
    opened_sum = (
        opened.cum("opened", opened.columns["opened"])[o_hi]
        - opened.cum("opened", opened.columns["opened"])[o_all]
    ) - (
        closes.cum("opened", closes.columns["opened"])[c_hi]
        - closes.cum("opened", closes.columns["opened"])[c_all]
    )
    out["open_tickets"] = _f32(n_open)
    with np.errstate(divide="ignore", invalid="ignore"):
        age = np.where(
            n_open > 0,
            (n_open * t.astype(np.float64) - opened_sum) / np.maximum(n_open, 1) / MS_PER_DAY,
            np.nan,
        )
    out["open_ticket_mean_age_days"] = _f32(age)

    opps = tables["opportunities"]
    won = opps["won"].fillna(False).astype(bool).to_numpy() & opps["closed_at"].notna().to_numpy()
    o_acc = np.where(won, _codes(opps["account_id"], accounts["account_id"]), -1)
    wins = _Events(
        o_acc,
        _ns(opps["closed_at"]),
        n_acc,
        ctx.t0_ms,
        ctx.t1_ms,
        amount=opps["amount"].to_numpy(np.float64, na_value=0.0),
    )
    w_hi, w_all = wins.pos(codes, t), wins.pos(codes, base)
    frequency = (w_hi - w_all).astype(np.float64)
    recency = (t - wins.last_time(codes, w_hi)) / MS_PER_DAY
    amount = wins.cum("amount", wins.columns["amount"])
    out["rfm_recency_days"] = _f32(recency)
    out["rfm_frequency"] = _f32(frequency)
    out["rfm_monetary"] = _f32(amount[w_hi] - amount[w_all])

    inter = tables["interactions"]
    a_touch = _Events(
        _codes(inter["account_id"], accounts["account_id"]),
        _ns(inter["occurred_at"]),
        n_acc,
        ctx.t0_ms,
        ctx.t1_ms,
    )
    a_hi = a_touch.pos(codes, t)
    out["account_touches_30d"] = _f32(a_hi - a_touch.pos(codes, t - 30 * MS_PER_DAY))
    out["account_touches_90d"] = _f32(a_hi - a_touch.pos(codes, t - 90 * MS_PER_DAY))

    frame = pd.DataFrame(
        {
            "account_id": pd.Series(
                _strings(accounts["account_id"], codes), dtype="string[pyarrow]"
            ),
            "event_timestamp": pd.to_datetime(t_ns, utc=True),
        }
    )
    for name in ACCOUNT_NUMERIC:
        frame[name] = out[name].astype(np.float32)
    frame["plan"] = pd.Series(_strings(subs["plan"], sub), dtype="string[pyarrow]")
    frame["rfm_segment"] = pd.Series(_rfm_segment(recency, frequency), dtype="string[pyarrow]")
    for col in ("employee_band", "industry", "region"):
        frame[col] = pd.Series(_strings(accounts[col], codes), dtype="string[pyarrow]")
    return frame.reset_index(drop=True)


# ------------------------------------------------------------------------------------ content


def build_content_features(
    tables: Mapping[str, pd.DataFrame], settings: Settings, validate: bool = True
) -> pd.DataFrame:
    """Content reach and conversions among engaged leads, weekly, for reports.

    ``engaged_leads`` counts leads with a touch carrying the content at or before ``t``;
    ``converted_engaged_leads`` those of them that converted after that first touch and at or
    before ``t``.

    Returns:
        ``content_id``, ``event_timestamp`` and :data:`features.schema.CONTENT_FEATURES`.
    """
    ctx = _context(tables, settings, validate)
    content, inter, leads = tables["content"], tables["interactions"], tables["leads"]
    n = len(content)
    pub_ns = _ns(content["published_at"])
    rows, snaps = _pairs(pub_ns, np.full(n, np.iinfo(np.int64).max), ctx.grid_ns)
    if len(rows) == 0:
        return _empty_frame("content_id", CONTENT_NUMERIC, CONTENT_CATEGORICAL)
    t_ns = ctx.grid_ns[snaps]
    t = t_ns // NS_PER_MS
    codes = rows.astype(np.int64)
    c_idx = _codes(inter["content_id"], content["content_id"])
    i_ns = _ns(inter["occurred_at"])
    reach = _Events(c_idx, i_ns, n, ctx.t0_ms, ctx.t1_ms)
    base = np.full_like(t, ctx.t0_ms - 1)
    hi = reach.pos(codes, t)
    l_idx = _codes(inter["lead_id"], leads["lead_id"])
    first = _first_events(c_idx, l_idx, i_ns, n, ctx)
    # (content, lead) first-touch times, to find conversions that followed engagement
    keep = (c_idx >= 0) & (l_idx >= 0)
    pairs = pd.DataFrame({"c": c_idx[keep], "l": l_idx[keep], "ns": i_ns[keep]})
    pairs = pairs.groupby(["c", "l"], sort=False)["ns"].min().reset_index()
    conv_ns = _ns(leads["converted_at"])
    conv_ok = leads["converted_at"].notna().to_numpy()[pairs["l"].to_numpy()]
    conv_at = conv_ns[pairs["l"].to_numpy()]
    after = conv_ok & (conv_at >= pairs["ns"].to_numpy())
    converted = _Events(
        np.where(after, pairs["c"].to_numpy(), -1), conv_at, n, ctx.t0_ms, ctx.t1_ms
    )
    engaged = _f32(first.pos(codes, t) - first.pos(codes, base))
    conversions = _f32(converted.pos(codes, t) - converted.pos(codes, base))
    frame = pd.DataFrame(
        {
            "content_id": pd.Series(
                _strings(content["content_id"], codes), dtype="string[pyarrow]"
            ),
            "event_timestamp": pd.to_datetime(t_ns, utc=True),
            "days_since_published": _f32((t_ns - pub_ns[rows]) / NS_PER_DAY),
            "reach": _f32(hi - reach.pos(codes, base)),
            "reach_30d": _f32(hi - reach.pos(codes, t - 30 * MS_PER_DAY)),
            "engaged_leads": engaged,
            "converted_engaged_leads": conversions,
            "engaged_conversion_rate": _ratio(conversions, engaged),
            "content_type": pd.Series(_strings(content["type"], codes), dtype="string[pyarrow]"),
            "topic": pd.Series(_strings(content["topic"], codes), dtype="string[pyarrow]"),
        }
    )
    return frame


# ------------------------------------------------------------------------------------- labels


def _labels(
    key: str,
    ids: pa.Array,
    t_ns: np.ndarray,
    event_ns: np.ndarray,
    has_event: np.ndarray,
    window_days: int,
    as_of: pd.Timestamp,
) -> pa.Table:
    window = window_days * NS_PER_DAY
    happened = has_event & (event_ns > t_ns) & (event_ns <= t_ns + window)
    labelled = t_ns + window <= as_of.value
    return pa.table(
        {
            key: ids,
            "event_timestamp": pa.array(t_ns, type=pa.timestamp("ns", tz="UTC")),
            "label": pa.array(happened.astype(np.int64), mask=~labelled),
        }
    )


def _label_frame(table: pa.Table) -> pd.DataFrame:
    frame = _to_pandas(table)
    frame["label"] = frame["label"].astype("Int64")
    return frame


def lead_label_table(
    tables: Mapping[str, pd.DataFrame],
    settings: Settings,
    validate: bool = True,
    creation_rows: bool = False,
) -> pa.Table:
    """:func:`lead_labels` as an Arrow table (``label`` int64 with nulls); ``creation_rows``
    adds those of :func:`lead_feature_batches`' creation rows (all unlabelled: their window is
    open at the as-of time)."""
    ctx = _context(tables, settings, validate)
    leads = tables["leads"]
    rows, t_ns = _lead_rows(leads, ctx, settings, creation_rows)
    conv = leads["converted_at"]
    return _labels(
        "lead_id",
        _strings(leads["lead_id"], rows),
        t_ns,
        _ns(conv)[rows],
        conv.notna().to_numpy()[rows],
        settings.conversion_window_days,
        ctx.as_of,
    )


def lead_labels(
    tables: Mapping[str, pd.DataFrame], settings: Settings, validate: bool = True
) -> pd.DataFrame:
    """Did the lead convert within ``conversion_window_days`` after each of its snapshots?

    Returns:
        ``lead_id``, ``event_timestamp``, ``label`` (``Int64``: 1 when ``converted_at`` is in
        ``(t, t + window]``, 0 otherwise, ``<NA>`` while the window is not over at the as-of time).
        One row per lead feature row.
    """
    return _label_frame(lead_label_table(tables, settings, validate))


def account_label_table(
    tables: Mapping[str, pd.DataFrame], settings: Settings, validate: bool = True
) -> pa.Table:
    """:func:`account_labels` as an Arrow table (``label`` int64 with nulls)."""
    ctx = _context(tables, settings, validate)
    accounts, subs = tables["accounts"], tables["subscriptions"].reset_index(drop=True)
    s_acc = _codes(subs["account_id"], accounts["account_id"])
    start_ns = _ns(subs["start"])
    cancel = subs["cancelled_at"].notna().to_numpy()
    cancel_ns = np.where(cancel, _ns(subs["cancelled_at"]), np.iinfo(np.int64).max)
    rows, snaps = _pairs(start_ns, cancel_ns, ctx.grid_ns)
    pairs = pd.DataFrame({"acc": s_acc[rows], "snap": snaps, "sub": rows, "start": start_ns[rows]})
    pairs = pairs.sort_values(["acc", "snap", "start"]).drop_duplicates(
        ["acc", "snap"], keep="last"
    )
    sub = pairs["sub"].to_numpy()
    return _labels(
        "account_id",
        _strings(accounts["account_id"], pairs["acc"].to_numpy()),
        ctx.grid_ns[pairs["snap"].to_numpy()],
        cancel_ns[sub],
        cancel[sub],
        settings.churn_window_days,
        ctx.as_of,
    )


def account_labels(
    tables: Mapping[str, pd.DataFrame], settings: Settings, validate: bool = True
) -> pd.DataFrame:
    """Did the account cancel within ``churn_window_days`` after each snapshot it was live?

    Returns:
        ``account_id``, ``event_timestamp``, ``label`` (``Int64``: 1 when the live
        subscription's ``cancelled_at`` is in ``(t, t + window]``, ``<NA>`` when unlabelled).
        One row per account feature row.
    """
    return _label_frame(account_label_table(tables, settings, validate))
