"""The Feast store of a data directory: build, apply, materialise and the fast online read.

Every path lives under ``settings.data_dir``: feature tables in ``<data_dir>/features/``, the
registry in ``<data_dir>/feast/registry.db`` and the SQLite online store in
``<data_dir>/feast/online.db``. The store is built from a :class:`feast.RepoConfig`, never from
the YAML, so tests and ``--data-dir`` get their own.

Materialisation writes Feast's own SQLite layout (one row per entity and feature, values as
serialised ``ValueProto``, keys by :func:`feast.infra.key_encoding_utils.serialize_entity_key`)
with the values encoded column-wise in numpy and fanned out by SQLite, into a new file that is
renamed over the old one, then records the interval in the registry as ``feast materialize``
does. Feast's ``get_online_features`` reads the result unchanged; a failure changes nothing.
"""

from __future__ import annotations

import os
import sqlite3
import struct
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from feast import FeatureStore, FeatureView, FileSource, RepoConfig
from feast.infra.key_encoding_utils import serialize_entity_key
from feast.infra.online_stores.helpers import compute_table_id
from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
from feast.protos.feast.types.Value_pb2 import Value as ValueProto

from crm.io import atomic_dir, atomic_file, write_parquet
from crm.settings import Settings
from features import data_sources, entities, feature_services, feature_views
from features.pipeline import (
    FeatureInputError,
    account_label_table,
    build_account_features,
    build_content_features,
    check_tables,
    lead_feature_batches,
    lead_label_table,
    read_feature_tables,
)
from features.schema import ENTITIES

PROJECT = "crm_intel"
# Page size of the online store materialisation writes: 16 KiB pages take the ~6 M-row build of
# 100k leads x 63 features from 12.4 s (4 KiB) to 7.7 s, for +0.02 ms on a one-lead read (p99).
PAGE_SIZE = 16_384
OFFLINE_STORES = {
    "duckdb_asof": "features.offline_store.DuckDBAsofOfflineStore",
    "file": "file",
}
Progress = Callable[[str], None]


class UnknownEntityError(ValueError):
    """An entity name that is not ``lead``, ``account`` or ``content``."""


class FeatureStoreNotReadyError(RuntimeError):
    """A step ran before the one it needs (build before apply, apply before materialize)."""


def _noop(_: str) -> None:
    pass


def repo_config(settings: Settings, offline_store: str = "duckdb_asof") -> RepoConfig:
    """The Feast config of ``settings.data_dir`` (local provider, SQLite online, file registry).

    Args:
        offline_store: ``"duckdb_asof"`` (default, see :mod:`features.offline_store`) or
            ``"file"`` (Feast's dask store, the benchmark's peer).
    """
    feast_dir = settings.feast_dir.resolve()  # Feast resolves relative paths against repo_path
    return RepoConfig(
        project=PROJECT,
        provider="local",
        registry={"registry_type": "file", "path": str(feast_dir / "registry.db")},
        online_store={"type": "sqlite", "path": str(feast_dir / "online.db")},
        offline_store={"type": OFFLINE_STORES[offline_store]},
        entity_key_serialization_version=3,
        repo_path=str(Path(__file__).resolve().parent),
    )


def feature_store(settings: Settings, offline_store: str = "duckdb_asof") -> FeatureStore:
    """A :class:`feast.FeatureStore` over ``settings.data_dir``.

    Feast writes an empty registry when there is none yet, so this creates ``<data_dir>/feast/``.
    """
    settings.feast_dir.mkdir(parents=True, exist_ok=True)
    return FeatureStore(config=repo_config(settings, offline_store))


def definitions(settings: Settings) -> dict[str, Any]:
    """The Feast objects of this data directory: entities, views and services by name."""
    views = feature_views.feature_views(data_sources.sources(settings.features_dir))
    services = feature_services.feature_services(views)
    return {"entities": list(entities.ENTITIES), "views": views, "services": services}


def entity_info(entity: str) -> tuple[str, str, tuple[str, ...], tuple[str, ...]]:
    """(join key, view name, numeric features, categorical features) of an entity."""
    if entity not in ENTITIES:
        raise UnknownEntityError(f"unknown entity {entity!r}: expected one of {sorted(ENTITIES)}")
    return ENTITIES[entity]


# ------------------------------------------------------------------------------------- build


def build(settings: Settings, progress: Progress = _noop) -> dict[str, int]:
    """Raw contract tables → feature and label tables in ``<data_dir>/features/``, atomically.

    On any error the previous feature tables are left exactly as they were.

    Returns:
        rows written per table.
    """
    progress("reading raw tables")
    tables = read_feature_tables(settings.raw_dir)
    progress("checking raw tables")
    check_tables(tables)
    counts: dict[str, int] = {}
    with atomic_dir(settings.features_dir) as tmp:
        progress("lead features")
        writer = None
        rows = 0
        try:
            for batch in lead_feature_batches(tables, settings, validate=False):
                if writer is None:
                    writer = pq.ParquetWriter(
                        tmp / "lead_features.parquet", batch.schema, compression="zstd"
                    )
                writer.write_table(batch)
                rows += batch.num_rows
        finally:
            if writer is not None:
                writer.close()
        if writer is None:
            raise FeatureInputError("no lead is open at any snapshot: no lead features to build")
        counts["lead_features"] = rows
        steps = {
            "account_features": lambda: build_account_features(tables, settings, False),
            "content_features": lambda: build_content_features(tables, settings, False),
            "lead_labels": lambda: lead_label_table(tables, settings, False),
            "account_labels": lambda: account_label_table(tables, settings, False),
        }
        for name, step in steps.items():
            progress(name.replace("_", " "))
            frame = step()
            write_parquet(frame, tmp / f"{name}.parquet")
            counts[name] = len(frame)
    return counts


# ------------------------------------------------------------------------------------- apply


def apply(settings: Settings, store: FeatureStore | None = None) -> list[str]:
    """Register entities, feature views and the versioned feature services.

    Returns:
        names of the objects applied.
    """
    for entity in ENTITIES:
        path = settings.features_dir / f"{ENTITIES[entity][1]}.parquet"
        if not path.exists():
            raise FeatureStoreNotReadyError(
                f"{path} does not exist: run `crm-intel features build` first"
            )
    store = store or feature_store(settings)
    defs = definitions(settings)
    objects = [*defs["entities"], *defs["views"].values(), *defs["services"].values()]
    store.apply(objects)
    return [o.name for o in objects]


# ------------------------------------------------------------------------------- materialize


def _float32_slots(block: np.ndarray) -> np.ndarray:
    """Per row, the serialised ``ValueProto(float_val=v)`` of each column, 5 bytes apiece.

    A slot starts with the tag ``0x35`` (field 6, 32-bit) when the value is present and ``0x00``
    for NaN, which the loader stores as an empty ``ValueProto`` (null), as Feast does.
    """
    n, m = block.shape
    slots = np.empty((n, m, 5), dtype=np.uint8)
    values = np.ascontiguousarray(block, dtype="<f4")
    slots[:, :, 0] = np.where(np.isnan(values), 0x00, 0x35)
    slots[:, :, 1:] = values.view(np.uint8).reshape(n, m, 4)
    return slots.reshape(n, m * 5)


def _string_values(values: pa.Array) -> tuple[list[bytes], list[str | None]]:
    """Serialised ``ValueProto(string_val=v)`` (empty, i.e. null, for null) and the text.

    Categorical columns hold few distinct values, so each is serialised once by protobuf.
    """
    encoded = pc.dictionary_encode(values).combine_chunks()
    words = encoded.dictionary.to_pylist()
    protos = [ValueProto(string_val=w).SerializeToString() for w in words]
    codes = encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False)
    table = np.array([*protos, b""], dtype=object)  # code -1 → the last entry, null
    texts = np.array([*words, None], dtype=object)
    return table[codes].tolist(), texts[codes].tolist()


def _entity_keys(join_key: str, ids: Sequence[str]) -> list[bytes]:
    """Feast's serialised entity keys (version 3) of one string join key, built by prefix.

    The layout is ``<count><type><len>join_key<type><len>value``; the prefix comes from Feast's
    own serialiser and the first key is checked against it, so a change in Feast fails loudly.
    """
    if not ids:
        return []

    def feast_key(value: str) -> bytes:
        return serialize_entity_key(
            EntityKeyProto(join_keys=[join_key], entity_values=[ValueProto(string_val=value)]),
            entity_key_serialization_version=3,
        )

    prefix = feast_key("")[:-4]  # without the empty value's length
    pack = struct.Struct("<I").pack
    keys = [prefix + pack(len(b)) + b for b in (i.encode() for i in ids)]
    if keys[0] != feast_key(ids[0]):
        raise RuntimeError("Feast's entity key serialisation changed: update _entity_keys")
    return keys


def latest_rows(path: Path, key: str, end: datetime | None = None) -> pa.Table:
    """The latest row per entity with ``event_timestamp <= end`` (what materialisation stores).

    DuckDB reads the Parquet file and picks the rows in parallel; ``event_timestamp`` comes back
    as ``timestamp[ns, UTC]`` like the file's own, rows in no particular order.
    """
    where = "" if end is None else "WHERE CAST(event_timestamp AS TIMESTAMPTZ) <= $end"
    query = (
        f"SELECT * FROM read_parquet($path) {where} QUALIFY row_number() OVER "
        f'(PARTITION BY "{key}" ORDER BY event_timestamp DESC) = 1'
    )
    params: dict[str, Any] = {"path": str(path)}
    if end is not None:
        params["end"] = end
    with duckdb.connect() as con:
        table = con.sql(query, params=params).to_arrow_table()
    column = table.schema.get_field_index("event_timestamp")
    return table.set_column(
        column,
        "event_timestamp",
        table["event_timestamp"].cast(pa.timestamp("ns", tz="UTC")),
    )


@dataclass(frozen=True)
class MaterializeResult:
    """What :func:`materialize` wrote."""

    rows: dict[str, int]
    seconds: float

    @property
    def rows_per_second(self) -> float:
        return sum(self.rows.values()) / self.seconds if self.seconds else float("nan")


def materialize(
    settings: Settings,
    store: FeatureStore | None = None,
    entities_: Sequence[str] = ("lead", "account", "content"),
    end: datetime | None = None,
    progress: Progress = _noop,
) -> MaterializeResult:
    """Write each entity's latest feature row into the online store, replacing it atomically.

    The new store is built in a file beside ``online.db`` (the tables of the views not
    materialised are copied from the current one) and renamed over it once complete and synced
    to disk, so readers never wait on a lock and a failure leaves the current store untouched.
    Readers holding the old file keep reading it until they reopen: the service's
    :class:`OnlineReader` notices the new file on its next read. Run one materialisation at a
    time; a write Feast makes to the old file while this runs is not carried over.

    Args:
        entities_: which entities' views to materialise.
        end: only rows at or before ``end`` (default: all).

    Raises:
        FeatureStoreNotReadyError: features not built or the store not applied.
    """
    store = store or feature_store(settings)
    config = store.config
    start_time = time.perf_counter()
    db_path = settings.feast_dir / "online.db"
    plans = {}
    for entity in entities_:
        key, view_name, numeric, categorical = entity_info(entity)
        try:
            view = store.get_feature_view(view_name)
        except Exception as err:  # FeatureViewNotFoundException, registry missing
            raise FeatureStoreNotReadyError(
                f"feature view {view_name!r} is not registered: run `crm-intel features apply`"
            ) from err
        table_name = compute_table_id(
            config.project, view, config.registry.enable_online_feature_view_versioning
        )
        plans[table_name] = (entity, key, view, numeric, categorical)
    if not db_path.exists():
        raise FeatureStoreNotReadyError(f"{db_path} does not exist: run `crm-intel features apply`")
    now = datetime.now(UTC)
    written: dict[str, int] = {}
    with atomic_file(db_path) as tmp:
        conn = sqlite3.connect(tmp, isolation_level=None)
        try:
            # a private file until the rename: no journal, no syncs, until the one fsync below
            conn.execute(f"PRAGMA page_size = {PAGE_SIZE}")
            conn.execute("PRAGMA journal_mode = OFF")
            conn.execute("PRAGMA synchronous = OFF")
            conn.execute("PRAGMA locking_mode = EXCLUSIVE")
            conn.execute("PRAGMA cache_size = -262144")  # 256 MiB
            conn.execute("PRAGMA temp_store = MEMORY")
            conn.execute("ATTACH DATABASE ? AS current", (f"file:{db_path}?mode=ro",))
            conn.execute("BEGIN")
            tables = _copy_schema(conn)
            for name in tables:
                if name not in plans:
                    conn.execute(f'INSERT INTO main."{name}" SELECT * FROM current."{name}"')
            missing = sorted(set(plans) - set(tables))
            if missing:
                raise FeatureStoreNotReadyError(
                    f"online table {missing[0]!r} does not exist: run `crm-intel features apply`"
                )
            for name, (entity, key, view, numeric, categorical) in plans.items():
                progress(f"{entity} features")
                source = view.batch_source
                assert isinstance(source, FileSource)
                table = latest_rows(Path(source.path), key, end)
                written[entity] = _write_view(
                    conn, name, view, table, key, numeric, categorical, now
                )
            conn.execute("COMMIT")
            conn.execute("DETACH DATABASE current")
        finally:
            conn.close()
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
    elapsed = time.perf_counter() - start_time
    interval_end = end or now
    for _, _, view, _, _ in plans.values():
        store.registry.apply_materialization(
            view, config.project, datetime(1970, 1, 1, tzinfo=UTC), interval_end
        )
    return MaterializeResult(written, elapsed)


def _copy_schema(conn: sqlite3.Connection) -> list[str]:
    """Create the attached ``current`` store's tables and indexes in ``main``; their names."""
    objects = conn.execute(
        "SELECT type, name, sql FROM current.sqlite_master WHERE sql IS NOT NULL "
        "AND name NOT LIKE 'sqlite_%' ORDER BY type = 'index', rowid"
    ).fetchall()
    for _, _, sql in objects:
        conn.execute(sql)
    return [name for kind, name, _ in objects if kind == "table"]


def _write_view(
    conn: sqlite3.Connection,
    name: str,
    view: FeatureView,
    table: pa.Table,
    key: str,
    numeric: Sequence[str],
    categorical: Sequence[str],
    now: datetime,
) -> int:
    """Fill the view's (empty) online table with ``table`` (one row per entity), Feast's layout.

    Python binds one row per *entity* into a temporary table (numeric values packed in one
    blob of serialised ``ValueProto``s); SQLite then fans it out to one row per (entity,
    feature) in primary-key order, so every B-tree (the table, its key and Feast's entity
    index) is appended to in order. Binding one row per value from Python, as Feast does, is
    what limits it to about 1-2k entities/s.

    Args:
        name: the view's online table (Feast's ``compute_table_id``).
    """
    n = table.num_rows
    if n == 0:
        return 0
    keys = np.array(_entity_keys(key, table[key].to_pylist()), dtype=object)
    order = np.argsort(keys, kind="stable")  # bytes order = SQLite's BLOB order
    keys = keys[order]
    table = table.take(pa.array(order))
    event_ts = (table["event_timestamp"].cast(pa.int64()).to_numpy() // 1_000_000_000).tolist()
    present = {f.name for f in view.features}
    numeric = [f for f in numeric if f in present]
    categorical = [f for f in categorical if f in present]
    block = (
        np.column_stack([table[f].to_numpy().astype(np.float32) for f in numeric])
        if numeric
        else np.zeros((n, 0), dtype=np.float32)
    )
    width = 5 * len(numeric)
    packed = _float32_slots(block).tobytes()
    blobs = [packed[i : i + width] for i in range(0, n * width, width)]
    s_cols = "".join(f", s{j} BLOB, t{j} TEXT" for j in range(len(categorical)))
    conn.execute("DROP TABLE IF EXISTS temp.crm_entity")
    conn.execute("DROP TABLE IF EXISTS temp.crm_feature")
    conn.execute(f"CREATE TEMP TABLE crm_entity (k BLOB, ts INTEGER, b BLOB{s_cols})")
    conn.execute("CREATE TEMP TABLE crm_feature (name TEXT, slot INTEGER)")
    # rowid order of crm_feature = feature-name order, so the fan-out arrives in key order
    slots = {f: j for j, f in enumerate(numeric)} | {
        f: len(numeric) + j for j, f in enumerate(categorical)
    }
    conn.executemany("INSERT INTO temp.crm_feature VALUES (?, ?)", sorted(slots.items()))
    columns = [keys.tolist(), event_ts, blobs]
    for f in categorical:
        columns += _string_values(table[f])
    marks = ", ".join(["?"] * len(columns))
    conn.executemany(f"INSERT INTO temp.crm_entity VALUES ({marks})", zip(*columns, strict=True))
    value = (
        f"CASE WHEN f.slot < {len(numeric)} THEN CASE WHEN "
        "substr(e.b, f.slot * 5 + 1, 1) = x'35' THEN substr(e.b, f.slot * 5 + 1, 5) "
        "ELSE x'' END"
    )
    text = "CASE"
    for j in range(len(categorical)):
        value += f" WHEN f.slot = {len(numeric) + j} THEN e.s{j}"
        text += f" WHEN f.slot = {len(numeric) + j} THEN e.t{j}"
    value += " END"
    text = text + " END" if categorical else "NULL"
    conn.execute(
        f'INSERT INTO main."{name}" (entity_key, feature_name, value, value_text, event_ts, '
        f"created_ts) SELECT e.k, f.name, {value}, {text}, e.ts, {int(now.timestamp())} "
        "FROM temp.crm_entity e CROSS JOIN temp.crm_feature f"
    )
    conn.execute("DROP TABLE temp.crm_entity")
    conn.execute("DROP TABLE temp.crm_feature")
    return n


def feast_materialize(
    settings: Settings,
    store: FeatureStore | None = None,
    views: Sequence[str] | None = None,
    end: datetime | None = None,
) -> float:
    """Plain ``FeatureStore.materialize`` (Feast's own path), for comparison; returns seconds."""
    store = store or feature_store(settings, "file")
    started = time.perf_counter()
    store.materialize(
        start_date=datetime(1970, 1, 1, tzinfo=UTC),
        end_date=end or datetime.now(UTC),
        feature_views=list(views or []) or None,
    )
    return time.perf_counter() - started


# --------------------------------------------------------------------------------- online read


class OnlineReader:
    """Reads feature vectors through the store's Feast online store, caching the views.

    One SQLite query per call (Feast's ``online_read``), values decoded straight from the
    ``ValueProto``s; this is the read the scoring service uses. Thread-safe. :func:`materialize`
    replaces the store's file, so before each read the reader checks that its connection is
    still on the file at the store's path and reopens it when not (one ``stat``, ~2 µs).

    Args:
        busy_timeout_ms: how long a read waits on a locked store before SQLite raises
            ``database is locked`` (default: Python's 5 s).
    """

    def __init__(self, store: FeatureStore, busy_timeout_ms: int | None = None):
        self.store = store
        self.path = Path(store.config.online_store.path)
        self.busy_timeout_ms = busy_timeout_ms
        # Feast's SQLite store (its reader and its one connection, ``_conn``)
        self._online: Any = store._get_provider().online_store  # noqa: SLF001
        self._views: dict[str, tuple[FeatureView, list[str]]] = {}
        self._file: tuple[int, int] | None = None  # (device, inode) the connection is on
        self._lock = threading.Lock()

    def _connect(self) -> None:
        """Point Feast's connection at the file now at :attr:`path` (never creating one)."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            raise FeatureStoreNotReadyError(
                f"online store {self.path} does not exist: run `crm-intel features apply` and "
                "`crm-intel features materialize`"
            ) from None
        current = (st.st_dev, st.st_ino)
        if current == self._file:
            return
        with self._lock:
            if current == self._file:
                return
            self._disconnect()
            conn = self._online._get_conn(self.store.config)  # noqa: SLF001
            if self.busy_timeout_ms is not None:
                conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
            self._file = current

    def _disconnect(self) -> None:
        # Feast's SQLite store keeps one connection in ``_conn``; drop it so the next read
        # opens the file at the path again.
        conn = getattr(self._online, "_conn", None)
        if conn is not None:
            conn.close()
            self._online._conn = None  # noqa: SLF001
        self._file = None

    def close(self) -> None:
        """Close the connection; the next read reopens it."""
        with self._lock:
            self._disconnect()

    def _view(self, entity: str) -> tuple[FeatureView, list[str]]:
        if entity not in self._views:
            _, view_name, numeric, categorical = entity_info(entity)
            try:
                view = self.store.get_feature_view(view_name)
            except Exception as err:
                raise FeatureStoreNotReadyError(
                    f"feature view {view_name!r} is not registered: run "
                    "`crm-intel features apply` and `crm-intel features materialize`"
                ) from err
            self._views[entity] = (view, [*numeric, *categorical])
        return self._views[entity]

    def rows(self, entity: str, ids: Sequence[str]) -> list[dict[str, Any]]:
        """One dict per id: the join key, ``event_timestamp`` (None when unknown), ``found`` and
        every feature (float, str or None)."""
        key, _, _, _ = entity_info(entity)
        view, names = self._view(entity)
        self._connect()
        protos = [
            EntityKeyProto(join_keys=[key], entity_values=[ValueProto(string_val=str(i))])
            for i in ids
        ]
        read = self._online.online_read(self.store.config, view, protos, names)
        out = []
        for entity_id, (ts, values) in zip(ids, read, strict=True):
            row: dict[str, Any] = {
                key: entity_id,
                "event_timestamp": ts,
                "found": values is not None,
            }
            values = values or {}
            for name in names:
                proto = values.get(name)
                kind = proto.WhichOneof("val") if proto is not None else None
                row[name] = getattr(proto, kind) if kind else None
            out.append(row)
        return out

    def frame(self, entity: str, ids: Sequence[str]) -> pd.DataFrame:
        """:meth:`rows` as a DataFrame: numeric features ``float64`` (NaN when missing),
        categorical ones ``string``, ``event_timestamp`` UTC (NaT for unknown ids)."""
        key, _, numeric, categorical = entity_info(entity)
        rows = self.rows(entity, ids)
        nan = float("nan")
        block = np.array(
            [[nan if r[n] is None else r[n] for n in numeric] for r in rows], dtype=np.float64
        ).reshape(len(rows), len(numeric))
        columns: dict[str, Any] = {
            key: pd.array([r[key] for r in rows], dtype="string[pyarrow]"),
            "event_timestamp": pd.to_datetime([r["event_timestamp"] for r in rows], utc=True),
            "found": np.array([r["found"] for r in rows], dtype=bool),
        }
        columns.update(zip(numeric, block.T, strict=True))
        for name in categorical:
            columns[name] = pd.array([r[name] for r in rows], dtype="string[pyarrow]")
        return pd.DataFrame(columns, copy=False)


_READERS: dict[str, OnlineReader] = {}


def online_reader(settings_or_store: Settings | FeatureStore) -> OnlineReader:
    """A cached :class:`OnlineReader` for a data directory (or a reader over a given store)."""
    if isinstance(settings_or_store, FeatureStore):
        cache_key = f"store:{id(settings_or_store)}"
        if cache_key not in _READERS or _READERS[cache_key].store is not settings_or_store:
            _READERS[cache_key] = OnlineReader(settings_or_store)
        return _READERS[cache_key]
    cache_key = str(Path(settings_or_store.data_dir).resolve())
    if cache_key not in _READERS:
        _READERS[cache_key] = OnlineReader(feature_store(settings_or_store))
    return _READERS[cache_key]


def online_features(
    settings_or_store: Settings | FeatureStore, entity: str, ids: Sequence[str]
) -> pd.DataFrame:
    """The online feature vectors of ``ids``, one row per id in the order given.

    Columns: the join key (``lead_id``/``account_id``/``content_id``), ``event_timestamp`` (the
    snapshot the vector describes; NaT when unknown), ``found`` (False for an id the online store
    does not hold: reported per id, never raised) and the entity's features (numeric ``float64``,
    categorical ``string``).

    Raises:
        UnknownEntityError: ``entity`` is not ``lead``, ``account`` or ``content``.
        FeatureStoreNotReadyError: the store has not been applied.
    """
    entity_info(entity)
    return online_reader(settings_or_store).frame(entity, list(ids))
