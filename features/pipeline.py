"""Contract tables → point-in-time feature and label tables, on the configured engine.

The features are defined once, as Ibis expressions (:mod:`features.lead_features`,
:mod:`features.account_features`, windows in :mod:`features.as_of`); this module reads the raw
tables into the engine (:mod:`features.engines`: DuckDB in-process by default, Spark by
configuration), checks them, fixes the snapshot grid and the as-of time, and writes each table.

Every feature row describes one entity *as of* a snapshot time ``event_timestamp`` and uses only
events at or before it. Snapshots are weekly at Monday 00:00 UTC (see :func:`snapshot_grid`).
Populations follow the simulator's truth rows exactly:

* lead at ``t``: ``created_at < t <= created_at + lead_scoring_horizon_days`` and not converted
  at or before ``t``;
* account at ``t``: a subscription with ``start < t`` not cancelled at or before ``t``;
* content at ``t``: ``published_at < t``.

The numpy/pandas pipeline this replaces is kept in ``benchmarks/pandas_features.py`` as the
benchmark's peer; its output on the test CRM is frozen in ``tests/fixtures/pandas_features/`` and
both engines must reproduce it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ibis
import ibis.expr.types as ir
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from crm.settings import Settings
from features.account_features import account_features, account_rows, content_features
from features.account_features import account_labels as account_label_rows
from features.as_of import NS_PER_DAY, TIME, SnapshotGrid, Snapshots, present
from features.engines import DuckDBEngine, Engine, frame_as_arrow
from features.lead_features import lead_features, lead_rows, title_readings
from features.lead_features import lead_labels as lead_label_rows
from features.schema import ENTITIES

MONDAY_EPOCH_NS = pd.Timestamp("2024-01-01", tz="UTC").value  # any Monday 00:00 UTC

# table → columns the pipeline reads (never leads.status nor leads.email_hash)
REQUIRED: dict[str, tuple[str, ...]] = {
    "accounts": ("account_id", "industry", "employee_band", "region", "created_at"),
    "leads": (
        "lead_id",
        "account_id",
        "source",
        "created_at",
        "seniority",
        "country",
        "converted_at",
    ),
    "opportunities": ("account_id", "amount", "closed_at", "won"),
    "content": ("content_id", "type", "topic", "published_at"),
    "interactions": ("occurred_at", "lead_id", "account_id", "channel", "type", "content_id"),
    "subscriptions": ("account_id", "plan", "mrr", "seats", "start", "cancelled_at"),
    "usage": ("account_id", "date", "active_users", "logins", "key_feature_events"),
    "tickets": ("account_id", "opened_at", "closed_at", "priority", "satisfaction"),
}
# optional contract columns the pipeline reads when a table has them (an absent one is all missing)
OPTIONAL: dict[str, tuple[str, ...]] = {"leads": ("purchase_timeframe", "job_title")}
TIMESTAMPS: dict[str, tuple[str, ...]] = {
    "accounts": ("created_at",),
    "leads": ("created_at", "converted_at"),
    "opportunities": ("closed_at",),
    "content": ("published_at",),
    "interactions": ("occurred_at",),
    "subscriptions": ("start", "cancelled_at"),
    "usage": ("date",),
    "tickets": ("opened_at", "closed_at"),
}
# event columns that define the as-of time (renewal dates and campaign ends lie in the future)
AS_OF_COLUMNS: dict[str, tuple[str, ...]] = {
    "leads": ("created_at", "converted_at"),
    "interactions": ("occurred_at",),
    "opportunities": ("closed_at",),
    "subscriptions": ("start", "cancelled_at"),
    "usage": ("date",),
    "tickets": ("opened_at", "closed_at"),
}
NON_EMPTY: tuple[str, ...] = ("leads", "accounts", "interactions")
NOT_NULL: tuple[tuple[str, str], ...] = (("leads", "created_at"), ("interactions", "occurred_at"))
# the first events of the log, where the snapshot grid starts (a usage row closes its week)
FIRST_EVENTS: tuple[tuple[str, str, int], ...] = (
    ("leads", "created_at", 0),
    ("interactions", "occurred_at", 0),
    ("tickets", "opened_at", 0),
    ("usage", "date", 7 * 86_400_000_000_000),
)
REFERENCES: tuple[tuple[str, str, str, str], ...] = (
    ("interactions", "lead_id", "leads", "lead_id"),
    ("interactions", "account_id", "accounts", "account_id"),
    ("interactions", "content_id", "content", "content_id"),
    ("leads", "account_id", "accounts", "account_id"),
    ("subscriptions", "account_id", "accounts", "account_id"),
    ("usage", "account_id", "accounts", "account_id"),
    ("tickets", "account_id", "accounts", "account_id"),
    ("opportunities", "account_id", "accounts", "account_id"),
)
BATCH_ROWS = 500_000
RawSource = Path | Mapping[str, pd.DataFrame]


class FeatureInputError(ValueError):
    """Raw tables the pipeline cannot build from (missing, empty, malformed, unknown ids)."""


# --------------------------------------------------------------------------------------- input


def _columns_of(name: str, present: set[str]) -> list[str]:
    missing = [c for c in REQUIRED[name] if c not in present]
    if missing:
        raise FeatureInputError(f"table '{name}' lacks column(s) {missing}")
    return [*REQUIRED[name], *(c for c in OPTIONAL.get(name, ()) if c in present)]


def _raw_file(raw_dir: Path, name: str) -> tuple[Path, pa.Schema, list[str]]:
    """A raw table's path (a Parquet file or folder), schema and the columns the pipeline reads.

    Raises:
        FeatureInputError: the table is missing or lacks a column.
    """
    path = raw_dir / f"{name}.parquet"
    if not path.exists():
        raise FeatureInputError(
            f"{path} does not exist: run `crm-intel simulate` or `crm-intel import` first"
        )
    schema = Engine.schema_of(path)
    return path, schema, _columns_of(name, set(schema.names))


def _check_times(name: str, types: Mapping[str, object]) -> None:
    for col in TIMESTAMPS[name]:
        dtype = types[col]
        is_time = isinstance(dtype, pd.DatetimeTZDtype) or (
            isinstance(dtype, pa.DataType) and pa.types.is_timestamp(dtype)
        )
        if not is_time:
            raise FeatureInputError(
                f"{name}.{col} is not a UTC timestamp column (dtype {dtype}); malformed "
                "timestamps must be fixed on import (crm-intel import validates them)"
            )


def load_raw(engine: Engine, source: RawSource) -> dict[str, ir.Table]:
    """The contract tables the pipeline reads, as engine tables with times in int64 ns.

    Args:
        source: the raw directory (``<table>.parquet`` files or folders), or in-memory tables
            with contract dtypes (tests, merged duplicates).

    Raises:
        FeatureInputError: a table is missing, lacks a column or has a malformed time column.
    """
    out = {}
    for name in REQUIRED:
        if isinstance(source, Path):
            path, schema, columns = _raw_file(source, name)
            _check_times(name, {f.name: f.type for f in schema})
            table = engine.read_parquet(path, columns)
        else:
            if name not in source:
                raise FeatureInputError(f"table '{name}' is missing")
            frame = source[name]
            columns = _columns_of(name, set(frame.columns))
            _check_times(name, dict(frame.dtypes))
            table = engine.from_arrow(frame_as_arrow(frame, columns))
        absent = {c: ibis.null("string") for c in OPTIONAL.get(name, ()) if c not in columns}
        out[name] = table.mutate(**absent) if absent else table
    return out


def raw_facts(engine: Engine, raw: Mapping[str, ir.Table]) -> dict[str, Any]:
    """What the checks and the calendar need, one aggregate query per table: row counts,
    missing times, the latest event times and the first event times (``"table.fact"`` keys)."""
    wanted: dict[str, dict[str, ir.Scalar]] = defaultdict(dict)
    for name in NON_EMPTY:
        wanted[name]["rows"] = raw[name].count()
    for name, col in NOT_NULL:
        wanted[name][f"{col}_nulls"] = raw[name][col].isnull().sum()
    for name, cols in AS_OF_COLUMNS.items():
        for col in cols:
            wanted[name][f"{col}_max"] = raw[name][col].max()
    for name, col, _ in FIRST_EVENTS:
        wanted[name][f"{col}_min"] = raw[name][col].min()
    facts: dict[str, Any] = {}
    for name, aggregates in wanted.items():
        row = engine.fetch(raw[name].aggregate(**aggregates)).to_pylist()[0]
        facts |= {f"{name}.{fact}": value for fact, value in row.items()}
    return facts


def check_raw(
    engine: Engine, raw: Mapping[str, ir.Table], facts: Mapping[str, Any] | None = None
) -> None:
    """Check what the pipeline reads: non-empty tables, times present, every id known (one
    query for all the references).

    Raises:
        FeatureInputError: naming the table and column at fault.
    """
    facts = facts if facts is not None else raw_facts(engine, raw)
    for name in NON_EMPTY:
        if facts[f"{name}.rows"] == 0:
            raise FeatureInputError(f"table '{name}' is empty: nothing to build features from")
    for name, col in NOT_NULL:
        if facts[f"{name}.{col}_nulls"]:
            raise FeatureInputError(f"{name}.{col} has missing timestamps")
    counts = []
    for i, (table, col, ref, key) in enumerate(REFERENCES):
        rows = present(raw[table], col)
        known = raw[ref].select(known_key=raw[ref][key])
        unknown = rows.anti_join(known, rows[col] == known.known_key)
        counts.append(
            unknown.aggregate(
                reference=ibis.literal(i, "int64"),
                n=unknown.count(),
                first=unknown[col].cast("string").min(),
            )
        )
    found = sorted(engine.fetch(ibis.union(*counts)).to_pylist(), key=lambda r: r["reference"])
    for row in found:
        if row["n"]:
            table, col, ref, _ = REFERENCES[row["reference"]]
            raise FeatureInputError(
                f"{table}.{col} names {row['n']} unknown {ref} (first: {row['first']!r})"
            )


@dataclass(frozen=True)
class Calendar:
    """The data's as-of time and its weekly snapshot grid (int64 ns)."""

    as_of_ns: int
    grid_ns: tuple[int, ...]
    step_ns: int

    @property
    def grid(self) -> SnapshotGrid:
        """The snapshot times as a start and a step."""
        return SnapshotGrid(self.grid_ns[0] if self.grid_ns else None, self.step_ns)

    @property
    def as_of(self) -> pd.Timestamp:
        return pd.Timestamp(self.as_of_ns, tz="UTC")

    @property
    def last_snapshot_ns(self) -> int | None:
        return self.grid_ns[-1] if self.grid_ns else None


def calendar(
    engine: Engine,
    raw: Mapping[str, ir.Table],
    settings: Settings,
    facts: Mapping[str, Any] | None = None,
) -> Calendar:
    """The as-of time (the latest event time; renewal dates and campaign ends are plans, not
    events) and the snapshot grid: every ``snapshot_frequency_days`` at Monday 00:00 UTC from the
    Monday on or before the first event (lead created, touch, ticket opened, usage week start)
    to the last grid time strictly before the as-of time.

    Raises:
        FeatureInputError: the tables hold no event time.
    """
    facts = facts if facts is not None else raw_facts(engine, raw)
    latest = [
        facts[f"{name}.{col}_max"]
        for name, cols in AS_OF_COLUMNS.items()
        for col in cols
        if facts[f"{name}.{col}_max"] is not None
    ]
    if not latest:
        raise FeatureInputError("the raw tables hold no event timestamps")
    firsts = [
        facts[f"{name}.{col}_min"] - shift
        for name, col, shift in FIRST_EVENTS
        if facts[f"{name}.{col}_min"] is not None
    ]
    step = settings.snapshot_frequency_days * NS_PER_DAY
    first = min(firsts)
    start = MONDAY_EPOCH_NS + ((first - MONDAY_EPOCH_NS) // step) * step
    as_of = max(int(v) for v in latest)
    return Calendar(as_of, tuple(range(start, as_of, step)), step)


# ------------------------------------------------------------------------------------ tables


PART = "lead_part"


def lead_parts(
    engine: Engine, raw: Mapping[str, ir.Table], parts: int
) -> tuple[dict[str, ir.Table], list[dict[str, ir.Table]]]:
    """The raw tables split into ``parts`` disjoint sets of leads (by a hash of the lead id), each
    with those leads' touches: lead features and labels are built part by part, so that the
    running sums of touches over each lead's snapshots (:func:`features.as_of.snapshot_windowed`)
    never hold more than one part's rows. The leads and touches are restaged clustered by part
    (:meth:`Engine.clustered`), so that each part reads its own rows only, and their first staged
    copies are freed (:meth:`Engine.forget`).

    Returns:
        the raw tables to use in place of ``raw`` (every part together), and the parts.
    """
    whole = dict(raw)
    if parts <= 1:
        return whole, [whole]
    clustered = {}
    for name in ("leads", "interactions"):
        part_of = (raw[name].lead_id.hash() % parts + parts) % parts  # a hash may be negative
        clustered[name] = engine.clustered(raw[name], PART, part_of)
        engine.forget(raw[name])
        whole[name] = clustered[name].drop(PART)
    out = []
    for i in range(parts):
        part = dict(whole)
        for name, table in clustered.items():
            part[name] = table.filter(table[PART] == i).drop(PART)
        out.append(part)
    return whole, out


@dataclass
class FeatureTables:
    """The expressions of every feature and label table of one raw source (the lead tables in
    parts, see :func:`lead_parts`)."""

    tables: dict[str, list[ir.Table]]
    keys: dict[str, str]
    calendar: Calendar


def feature_tables(
    engine: Engine,
    raw: Mapping[str, ir.Table],
    settings: Settings,
    creation_rows: bool = True,
    facts: Mapping[str, Any] | None = None,
) -> FeatureTables:
    """The five tables ``crm-intel features build`` writes, as expressions on ``engine``:
    ``lead_features``, ``account_features``, ``content_features``, ``lead_labels`` and
    ``account_labels`` (each with its key and ``t_ns``; see the feature modules).

    When the lead tables are built in parts (:func:`lead_parts`), the leads and touches of
    ``raw`` are restaged and their first staged copies freed: ``raw`` is not queried after."""
    facts = facts if facts is not None else raw_facts(engine, raw)
    cal = calendar(engine, raw, settings, facts)
    grid = engine.from_arrow(pa.table({"g_ns": pa.array(cal.grid_ns, pa.int64())}))
    snapshots = Snapshots(grid, cal.grid, cal.last_snapshot_ns)
    titles_present = engine.fetch(present(raw["leads"].select("job_title"), "job_title").distinct())
    titles = engine.from_arrow(title_readings(titles_present))
    raw, parts = lead_parts(engine, raw, engine.lead_parts(facts["interactions.rows"]))
    accounts = account_rows(raw, snapshots)
    tables: dict[str, list[ir.Table]] = {
        "lead_features": [],
        "account_features": [account_features(raw, accounts, snapshots)],
        "content_features": [content_features(raw, snapshots)],
        "lead_labels": [],
        "account_labels": [account_label_rows(accounts, cal.as_of_ns, settings)],
    }
    for part in parts:
        leads = lead_rows(part, snapshots, settings, creation_rows)
        tables["lead_features"].append(lead_features(part, leads, titles, settings))
        tables["lead_labels"].append(lead_label_rows(part, leads.all(), cal.as_of_ns, settings))
    keys = {
        "lead_features": "lead_id",
        "account_features": "account_id",
        "content_features": "content_id",
        "lead_labels": "lead_id",
        "account_labels": "account_id",
    }
    return FeatureTables(tables, keys, cal)


def _stored_schema(name: str, key: str) -> pa.Schema:
    """The Arrow schema a table is stored with. The account and content features carry pandas'
    metadata (they were written from DataFrames), so that pandas reads their strings as
    ``string``, as every reader has always seen them; the others were written from Arrow."""
    fields = [pa.field(key, pa.string()), pa.field("event_timestamp", pa.timestamp("ns", "UTC"))]
    dtypes: dict[str, object] = {key: "string[pyarrow]", "event_timestamp": "datetime64[ns, UTC]"}
    if name.endswith("_labels"):
        fields.append(pa.field("label", pa.int64()))
        dtypes["label"] = "Int64"
    else:
        entity = next(e for e, (k, stem, _, _) in ENTITIES.items() if stem == name and k == key)
        _, _, numeric, categorical = ENTITIES[entity]
        fields += [pa.field(c, pa.float32()) for c in numeric]
        fields += [pa.field(c, pa.string()) for c in categorical]
        dtypes |= {c: "float32" for c in numeric} | {c: "string[pyarrow]" for c in categorical}
    schema = pa.schema(fields)
    if name not in ("account_features", "content_features"):
        return schema
    empty = pd.DataFrame({c: pd.Series(dtype=d) for c, d in dtypes.items()})
    return schema.with_metadata(pa.Schema.from_pandas(empty, preserve_index=False).metadata)


def _as_stored(batch: pa.RecordBatch, schema: pa.Schema, key: str) -> pa.RecordBatch:
    """An engine's batch in the stored form: ``event_timestamp`` from ``t_ns``; floats
    float32 with missing values as NaN (as the feature files have always held them)."""
    arrays = []
    for field in schema:
        if field.name == "event_timestamp":
            column = batch.column(TIME).cast(pa.int64()).cast(field.type)
        else:
            column = batch.column(field.name)
            if pa.types.is_floating(field.type):
                column = pc.fill_null(column.cast(pa.float32()), np.float32("nan"))
            column = column.cast(field.type)
        arrays.append(column)
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def stored_batches(
    engine: Engine,
    parts: list[ir.Table],
    name: str,
    key: str,
    rows: int = BATCH_ROWS,
    on_part: Callable[[int, int], None] | None = None,
) -> Iterator[pa.RecordBatch]:
    """The rows of one table as stored, part by part, each ordered by key then time.

    Args:
        on_part: told ``(part, parts)``, counting from 1, as each part starts (when in parts).
    """
    schema = _stored_schema(name, key)
    for number, expr in enumerate(parts, start=1):
        if on_part is not None and len(parts) > 1:
            on_part(number, len(parts))
        for batch in engine.batches(expr.order_by([key, TIME]), rows):
            if batch.num_rows:
                yield _as_stored(batch, schema, key)


def write_table(
    engine: Engine,
    parts: list[ir.Table],
    name: str,
    key: str,
    path: Path,
    on_part: Callable[[int, int], None] | None = None,
) -> int:
    """Stream one table into the Parquet file ``path`` (the caller's temp directory).

    Args:
        on_part: see :func:`stored_batches`.

    Returns:
        rows written.
    """
    schema = _stored_schema(name, key)
    rows = 0
    with pq.ParquetWriter(path, schema, compression="zstd") as writer:
        for batch in stored_batches(engine, parts, name, key, on_part=on_part):
            writer.write_batch(batch)
            rows += batch.num_rows
    return rows


# ---------------------------------------------------------------------- in-memory (tests, CLI)


def _frame(engine: Engine, parts: list[ir.Table], name: str, key: str) -> pd.DataFrame:
    schema = _stored_schema(name, key)
    batches = list(stored_batches(engine, parts, name, key))
    return stored_frame(pa.Table.from_batches(batches, schema=schema))


def stored_frame(table: pa.Table) -> pd.DataFrame:
    """A feature or label table in its stored form (built, or read back from its file) as
    :func:`build_frames` returns it: strings as ``string[pyarrow]``, labels as ``Int64``."""
    frame = table.to_pandas()
    for field in table.schema:
        if pa.types.is_string(field.type):
            frame[field.name] = frame[field.name].astype("string[pyarrow]")
    if "label" in frame:
        frame["label"] = frame["label"].astype("Int64")
    return frame


def build_frames(
    source: RawSource,
    settings: Settings,
    names: tuple[str, ...] = ("lead_features", "account_features", "content_features"),
    engine: Engine | None = None,
    creation_rows: bool = False,
) -> dict[str, pd.DataFrame]:
    """Feature and label tables of ``source`` as pandas frames (small data: tests, notebooks).

    Raises:
        FeatureInputError: the tables cannot be built from.
    """
    own = engine is None
    engine = engine or DuckDBEngine()
    try:
        raw = load_raw(engine, source)
        facts = raw_facts(engine, raw)
        check_raw(engine, raw, facts)
        built = feature_tables(engine, raw, settings, creation_rows, facts)
        return {n: _frame(engine, built.tables[n], n, built.keys[n]) for n in names}
    finally:
        if own:
            engine.close()
        else:
            engine.release()


def build_lead_features(source: RawSource, settings: Settings, **kw: object) -> pd.DataFrame:
    """Lead features at every weekly snapshot a lead is open (see the module docstring)."""
    return build_frames(source, settings, ("lead_features",), **kw)["lead_features"]  # type: ignore[arg-type]


def build_account_features(source: RawSource, settings: Settings, **kw: object) -> pd.DataFrame:
    """Account features at every weekly snapshot the account is a live customer."""
    return build_frames(source, settings, ("account_features",), **kw)["account_features"]  # type: ignore[arg-type]


def build_content_features(source: RawSource, settings: Settings, **kw: object) -> pd.DataFrame:
    """Content reach and conversions among engaged leads, weekly."""
    return build_frames(source, settings, ("content_features",), **kw)["content_features"]  # type: ignore[arg-type]


def lead_labels(source: RawSource, settings: Settings, **kw: object) -> pd.DataFrame:
    """Did the lead convert within ``conversion_window_days`` after each of its snapshots?

    Returns:
        ``lead_id``, ``event_timestamp``, ``label`` (``Int64``: 1 when ``converted_at`` is in
        ``(t, t + window]``, 0 otherwise, ``<NA>`` while the window is not over at the as-of time).
        One row per lead feature row.
    """
    return build_frames(source, settings, ("lead_labels",), **kw)["lead_labels"]  # type: ignore[arg-type]


def account_labels(source: RawSource, settings: Settings, **kw: object) -> pd.DataFrame:
    """Did the account cancel within ``churn_window_days`` after each snapshot it was live?

    Returns:
        ``account_id``, ``event_timestamp``, ``label`` (``Int64``: 1 when the live
        subscription's ``cancelled_at`` is in ``(t, t + window]``, ``<NA>`` when unlabelled).
        One row per account feature row.
    """
    return build_frames(source, settings, ("account_labels",), **kw)["account_labels"]  # type: ignore[arg-type]


# ------------------------------------------------------------------------- pandas-side helpers


def read_raw_frames(raw_dir: Path, names: tuple[str, ...]) -> dict[str, pd.DataFrame]:
    """The pipeline's columns of some raw tables as pandas frames (contract dtypes): for the
    lifecycle tables and merging duplicate leads, which work per entity, not per event."""
    strings = pd.StringDtype("pyarrow")
    mapper = {pa.string(): strings, pa.large_string(): strings}.get
    out = {}
    for name in names:
        path, _, columns = _raw_file(raw_dir, name)
        out[name] = pq.read_table(path, columns=columns).to_pandas(types_mapper=mapper)
    return out


def as_of_time(tables: Mapping[str, pd.DataFrame]) -> pd.Timestamp:
    """The data's as-of time of in-memory tables: the latest event timestamp.

    Renewal dates and campaign ends are excluded: they are plans, not events.
    """
    latest = [
        tables[name][col].max()
        for name, cols in AS_OF_COLUMNS.items()
        for col in cols
        if name in tables and col in tables[name] and len(tables[name])
    ]
    latest = [t for t in latest if not pd.isna(t)]
    if not latest:
        raise FeatureInputError("the raw tables hold no event timestamps")
    return pd.Timestamp(max(latest)).tz_convert("UTC")


def snapshot_times(source: RawSource, settings: Settings) -> pd.DatetimeIndex:
    """The snapshot grid of ``source`` (see :func:`calendar`)."""
    engine = DuckDBEngine()
    try:
        cal = calendar(engine, load_raw(engine, source), settings)
    finally:
        engine.close()
    return pd.DatetimeIndex(pd.to_datetime(list(cal.grid_ns), utc=True), name="event_timestamp")
