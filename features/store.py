"""The Feast store of a data directory: build, apply, materialise and the fast online read.

Every path lives under ``settings.data_dir``: feature tables in ``<data_dir>/features/``, the
registry in ``<data_dir>/feast/registry.db`` and the online store in
``<data_dir>/feast/online.db``. The store is built from a :class:`feast.RepoConfig`, never from
the YAML, so tests and ``--data-dir`` get their own; it names the project's online store
(:class:`features.online_store.CrmSqliteOnlineStore`, Feast's SQLite layout written in whole
generations, or with ``online_store="redis"`` :class:`features.redis_store.CrmRedisOnlineStore`,
Feast's Redis layout on a server the service replicas share) and provider
(:class:`features.provider.CrmProvider`).

:func:`materialize` hands each view's latest rows to the online store's bulk writer
(``write_generation``), then records the interval in the registry as ``feast materialize`` does.
Feast's ``get_online_features`` reads the result unchanged.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
from feast import FeatureStore, FeatureView, FileSource, RepoConfig
from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
from feast.protos.feast.types.Value_pb2 import Value as ValueProto

from crm.io import atomic_dir, write_parquet
from crm.settings import Settings
from features import data_sources, entities, feature_services, feature_views
from features.duplicates import read_duplicate_leads
from features.engines import Engine, engine_for
from features.lifecycle import account_status_table, lead_status_table, read_lead_status
from features.merging import merge_duplicate_leads
from features.online_store import CrmSqliteOnlineStore, FeatureStoreNotReadyError
from features.pipeline import (
    REQUIRED,
    FeatureInputError,
    RawSource,
    check_raw,
    feature_tables,
    load_raw,
    raw_facts,
    read_raw_frames,
    write_table,
)
from features.redis_store import CrmRedisOnlineStore, CrmRedisOnlineStoreConfig
from features.schema import ENTITIES, STATUS_TABLES

PROJECT = "crm_intel"
ONLINE_STORE = "features.online_store.CrmSqliteOnlineStore"
REDIS_ONLINE_STORE = "features.redis_store.CrmRedisOnlineStore"
# a bulk write's batch may queue behind other clients' commands: not the service's short timeout
REDIS_WRITE_TIMEOUT_MS = 30_000
PROVIDER = "features.provider.CrmProvider"
OFFLINE_STORES = {
    "duckdb_asof": "features.offline_store.DuckDBAsofOfflineStore",
    "file": "file",
}


class Progress(Protocol):
    """Told as each step of a long job starts: ``amount`` is how many of the job's counted steps
    it is (0 for a step within one, e.g. one part of a table built in parts)."""

    def __call__(self, step: str, amount: float = 1, /) -> None: ...


class UnknownEntityError(ValueError):
    """An entity name that is not ``lead``, ``account`` or ``content``."""


def _noop(step: str, amount: float = 1, /) -> None:
    pass


def repo_config(settings: Settings, offline_store: str = "duckdb_asof") -> RepoConfig:
    """The Feast config of ``settings.data_dir``: the project's provider and online store
    (``<data_dir>/feast/online.db``, or the Redis server at ``settings.redis_url`` when
    ``settings.online_store`` is ``"redis"``), a file registry (``<data_dir>/feast/registry.db``).

    Args:
        offline_store: ``"duckdb_asof"`` (default, see :mod:`features.offline_store`) or
            ``"file"`` (Feast's dask store, the benchmark's peer).
    """
    feast_dir = settings.feast_dir.resolve()  # Feast resolves relative paths against repo_path
    return RepoConfig(
        project=PROJECT,
        provider=PROVIDER,
        registry={"registry_type": "file", "path": str(feast_dir / "registry.db")},
        online_store=online_store_config(settings),
        offline_store={"type": OFFLINE_STORES[offline_store]},
        entity_key_serialization_version=3,
        repo_path=str(Path(__file__).resolve().parent),
    )


def online_store_config(settings: Settings) -> dict[str, Any]:
    """The ``online_store`` section of :func:`repo_config` for ``settings.online_store``."""
    if settings.online_store == "redis":
        return {
            "type": REDIS_ONLINE_STORE,
            "url": settings.redis_url.get_secret_value(),
            "timeout_ms": settings.online_store_timeout_ms,
        }
    return {"type": ONLINE_STORE, "path": str(settings.feast_dir.resolve() / "online.db")}


def online_store_for(
    config: RepoConfig, busy_timeout_ms: int | None = None, timeout_ms: int | None = None
) -> CrmSqliteOnlineStore | CrmRedisOnlineStore:
    """A new instance of the config's online store class, for reads and bulk writes.

    Args:
        busy_timeout_ms: SQLite: how long a read waits on a locked file.
        timeout_ms: Redis: how long a command waits on the server (default: the config's).
    """
    if isinstance(config.online_store, CrmRedisOnlineStoreConfig):
        return CrmRedisOnlineStore(timeout_ms=timeout_ms)
    return CrmSqliteOnlineStore(busy_timeout_ms=busy_timeout_ms)


def feature_store(settings: Settings, offline_store: str = "duckdb_asof") -> FeatureStore:
    """A :class:`feast.FeatureStore` over ``settings.data_dir``.

    Feast writes an empty registry when there is none yet, so this creates ``<data_dir>/feast/``.
    """
    settings.feast_dir.mkdir(parents=True, exist_ok=True)
    return FeatureStore(config=repo_config(settings, offline_store))


def definitions(settings: Settings) -> dict[str, Any]:
    """The Feast objects of this data directory: entities, views and services by name.

    ``views`` are the feature views by entity (what the feature services name); ``status_views``
    the lifecycle views by entity (:mod:`features.lifecycle`), which no service names.
    """
    views = feature_views.feature_views(data_sources.sources(settings.features_dir))
    status = feature_views.status_views(data_sources.status_sources(settings.features_dir))
    services = feature_services.feature_services(views)
    return {
        "entities": list(entities.ENTITIES),
        "views": views,
        "status_views": status,
        "services": services,
    }


def entity_info(entity: str) -> tuple[str, str, tuple[str, ...], tuple[str, ...]]:
    """(join key, view name, numeric features, categorical features) of an entity."""
    if entity not in ENTITIES:
        raise UnknownEntityError(f"unknown entity {entity!r}: expected one of {sorted(ENTITIES)}")
    return ENTITIES[entity]


# ------------------------------------------------------------------------------------- build


def build(
    settings: Settings, progress: Progress = _noop, engine: Engine | None = None
) -> dict[str, int]:
    """Raw contract tables → feature, label and lifecycle tables in ``<data_dir>/features/``,
    atomically, on ``settings.engine`` (:mod:`features.engines`; or the ``engine`` given).

    ``lead_features`` holds the weekly snapshots and, after them, one creation row per lead
    created since the last snapshot and not converted (features as known at ``created_at``;
    ``lead_labels`` has their unlabelled rows too), so that the online store can score a new
    lead. ``lead_status`` and ``account_status`` say where each entity stands as of the data's
    as-of time (:mod:`features.lifecycle`). With ``settings.merge_duplicate_leads`` (a dedupe
    output), duplicate leads' engagement is merged onto their surviving lead first
    (:mod:`features.merging`, in memory), so leads are scored per person.

    On any error the previous feature tables are left exactly as they were.

    Returns:
        rows written per table.
    """
    progress("reading raw tables")
    source: RawSource = settings.raw_dir
    frames: dict[str, pd.DataFrame] | None = None
    if settings.merge_duplicate_leads is not None:
        progress("merging duplicate leads")
        frames = merge_duplicate_leads(
            read_raw_frames(settings.raw_dir, tuple(REQUIRED)),
            read_duplicate_leads(settings.merge_duplicate_leads),
        )
        source = frames
    own = engine is None
    engine = engine or engine_for(settings)
    counts: dict[str, int] = {}
    try:
        raw = load_raw(engine, source)
        progress("checking raw tables")
        facts = raw_facts(engine, raw)
        check_raw(engine, raw, facts)
        built = feature_tables(engine, raw, settings, creation_rows=True, facts=facts)
        with atomic_dir(settings.features_dir) as tmp:
            for name, parts in built.tables.items():
                label = name.replace("_", " ")
                progress(label)
                path = tmp / f"{name}.parquet"
                counts[name] = write_table(
                    engine, parts, name, built.keys[name], path, _each_part(progress, label)
                )
                if name == "lead_features" and counts[name] == 0:
                    raise FeatureInputError(
                        "no lead is open at any snapshot: no lead features to build"
                    )
            # lifecycle tables: one row per entity, well under a second (no progress step)
            if frames is None:
                frames = read_raw_frames(settings.raw_dir, ("leads", "accounts", "subscriptions"))
            as_of = built.calendar.as_of
            status = {
                "lead_status": lead_status_table(
                    frames["leads"], as_of, read_lead_status(settings.raw_dir)
                ),
                "account_status": account_status_table(
                    frames["accounts"], frames["subscriptions"], as_of
                ),
            }
            for name, frame in status.items():
                write_parquet(frame, tmp / f"{name}.parquet")
                counts[name] = len(frame)
    finally:
        if own:
            engine.close()
        else:
            engine.release()
    return counts


def _each_part(progress: Progress, label: str) -> Callable[[int, int], None]:
    """A table's per-part progress: at 100 M interactions the lead tables take an hour each."""

    def started(part: int, parts: int) -> None:
        progress(f"{label}, part {part} of {parts}", 0)

    return started


# ------------------------------------------------------------------------------------- apply


def apply(settings: Settings, store: FeatureStore | None = None) -> list[str]:
    """Register entities, feature views and the versioned feature services.

    Returns:
        names of the objects applied.
    """
    stems = [stem for _, stem, _, _ in ENTITIES.values()]
    stems += [stem for _, stem, _ in STATUS_TABLES.values()]
    for stem in stems:
        path = settings.features_dir / f"{stem}.parquet"
        if not path.exists():
            raise FeatureStoreNotReadyError(
                f"{path} does not exist: run `crm-intel features build` first"
            )
    store = store or feature_store(settings)
    defs = definitions(settings)
    objects = [
        *defs["entities"],
        *defs["views"].values(),
        *defs["status_views"].values(),
        *defs["services"].values(),
    ]
    store.apply(objects)
    return [o.name for o in objects]


# ------------------------------------------------------------------------------- materialize


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

    SQLite: the online store's bulk writer builds a new generation of the file (the tables of the
    views not materialised are copied from the current one) and renames it over the old one
    once complete and synced, so readers never wait on a lock and a failure leaves the current
    store untouched. Readers holding the old file keep reading it until they reopen: the
    service's :class:`OnlineReader` notices the new file on its next read. A write in place
    made meanwhile (``write_to_online_store``) waits for the switch and lands in the new file.
    Redis: each entity's hash is replaced in one command, features and lifecycle together, in
    pipelined batches (:mod:`features.redis_store`); readers never wait.

    Args:
        entities_: which entities' views to materialise; an entity with a lifecycle view
            (``lead_status``, ``account_status``) has it written in the same generation, so the
            service never reads features and status of different builds.
        end: only rows at or before ``end`` (default: all).

    Returns:
        rows written per entity (its feature view) and per lifecycle view name.

    Raises:
        FeatureStoreNotReadyError: features not built or the store not applied.
    """
    store = store or feature_store(settings)
    start_time = time.perf_counter()
    views: dict[str, FeatureView] = {}
    # view name → (join key, the name its row count is reported under)
    plan: dict[str, tuple[str, str]] = {}
    for entity in entities_:
        key, view_name, _, _ = entity_info(entity)
        names = [(view_name, entity)]
        if entity in STATUS_TABLES:
            names.append((STATUS_TABLES[entity][1], STATUS_TABLES[entity][1]))
        for name, label in names:
            try:
                views[name] = store.get_feature_view(name)
            except Exception as err:  # FeatureViewNotFoundException, registry missing
                raise FeatureStoreNotReadyError(
                    f"feature view {name!r} is not registered: run `crm-intel features apply`"
                ) from err
            plan[name] = (key, label)

    def rows(view: FeatureView) -> pa.Table:
        key, label = plan[view.name]
        if label in ENTITIES:  # a lifecycle table is one small row per entity: no step of its own
            progress(f"{label} features")
        source = view.batch_source
        assert isinstance(source, FileSource)
        return latest_rows(Path(source.path), key, end)

    now = datetime.now(UTC)
    writer = online_store_for(store.config, timeout_ms=REDIS_WRITE_TIMEOUT_MS)
    written = writer.write_generation(store.config, list(views.values()), rows, now)
    elapsed = time.perf_counter() - start_time
    for view in views.values():
        store.registry.apply_materialization(
            view, store.config.project, datetime(1970, 1, 1, tzinfo=UTC), end or now
        )
    return MaterializeResult({plan[v][1]: n for v, n in written.items()}, elapsed)


def feast_materialize(
    settings: Settings,
    store: FeatureStore | None = None,
    views: Sequence[str] | None = None,
    end: datetime | None = None,
) -> float:
    """Feast's own ``FeatureStore.materialize`` (one ``online_write_batch`` per batch of rows,
    each view one store generation through :class:`features.provider.CrmProvider`), for
    comparison; returns seconds."""
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
    """Reads feature vectors through the project's online store class, caching the views.

    One read per call (``online_read_views`` of an online store instance of its own: one SQLite
    query, or one Redis round trip), values decoded straight from the ``ValueProto``s; this is
    the read the scoring service uses, with the entity's lifecycle row (``status=True``) in the
    same query. Thread-safe. Materialisation replaces the SQLite store's file, so before each
    read the store checks that its connection is still on the file at the path and reopens it
    when not (one ``stat``, ~2 µs); a Redis client reconnects by itself after a failure.

    Args:
        busy_timeout_ms: SQLite: how long a read waits on a locked store before SQLite raises
            ``database is locked`` (default: the config's, else Python's 5 s).
        timeout_ms: Redis: how long a read waits on the server (default: the config's).
    """

    def __init__(
        self,
        store: FeatureStore,
        busy_timeout_ms: int | None = None,
        timeout_ms: int | None = None,
    ):
        self.store = store
        self.busy_timeout_ms = busy_timeout_ms
        self.online = online_store_for(store.config, busy_timeout_ms, timeout_ms)
        self._views: dict[str, tuple[FeatureView, list[str]]] = {}

    def close(self) -> None:
        """Close the connection; the next read reopens it."""
        self.online.disconnect()

    def _registered(self, name: str) -> FeatureView:
        try:
            return self.store.get_feature_view(name)
        except Exception as err:
            raise FeatureStoreNotReadyError(
                f"feature view {name!r} is not registered: run "
                "`crm-intel features apply` and `crm-intel features materialize`"
            ) from err

    def _view(self, entity: str) -> tuple[FeatureView, list[str]]:
        if entity not in self._views:
            _, view_name, numeric, categorical = entity_info(entity)
            self._views[entity] = (self._registered(view_name), [*numeric, *categorical])
        return self._views[entity]

    def _status_view(self, entity: str) -> tuple[FeatureView, list[str]] | None:
        if entity not in STATUS_TABLES:
            return None
        cache_key = f"{entity}:status"
        if cache_key not in self._views:
            _, view_name, fields = STATUS_TABLES[entity]
            self._views[cache_key] = (self._registered(view_name), list(fields))
        return self._views[cache_key]

    def ttl(self, entity: str) -> timedelta | None:
        """How long a feature row of ``entity`` answers for (its feature view's registered
        TTL); None when the view has none."""
        view, _ = self._view(entity)
        return view.ttl or None

    def rows(self, entity: str, ids: Sequence[str], status: bool = False) -> list[dict[str, Any]]:
        """One dict per id: the join key, ``event_timestamp`` (None when unknown), ``found`` and
        every feature (float, str or None).

        With ``status``, also ``lifecycle``: the entity's lifecycle row read in the same query
        (:mod:`features.lifecycle`: ``as_of``, the row's timestamp, i.e. the time the CRM data
        describes, and its fields), or None when the store holds none for the id (or the entity
        has no lifecycle view).

        Raises:
            FeatureStoreNotReadyError: a view is not registered or the store does not exist.
        """
        key, _, _, _ = entity_info(entity)
        view, names = self._view(entity)
        views, wanted = [view], [names]
        status_view = self._status_view(entity) if status else None
        if status_view is not None:
            views.append(status_view[0])
            wanted.append(status_view[1])
        protos = [
            EntityKeyProto(join_keys=[key], entity_values=[ValueProto(string_val=str(i))])
            for i in ids
        ]
        read = self.online.online_read_views(self.store.config, views, protos, wanted)
        out = []
        for n, entity_id in enumerate(ids):
            ts, values = read[0][n]
            row: dict[str, Any] = {
                key: entity_id,
                "event_timestamp": ts,
                "found": values is not None,
            }
            row.update(_decoded(values, names))
            if status:
                row["lifecycle"] = None
                if status_view is not None and read[1][n][1] is not None:
                    as_of, fields = read[1][n]
                    row["lifecycle"] = {"as_of": as_of, **_decoded(fields, status_view[1])}
            out.append(row)
        return out

    def frame(self, entity: str, ids: Sequence[str], status: bool = False) -> pd.DataFrame:
        """:meth:`rows` as a DataFrame: numeric features ``float64`` (NaN when missing),
        categorical ones ``string``, ``event_timestamp`` UTC (NaT for unknown ids); with
        ``status`` a ``lifecycle`` column of dicts (or None)."""
        key, _, numeric, categorical = entity_info(entity)
        rows = self.rows(entity, ids, status)
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
        if status:
            columns["lifecycle"] = pd.Series([r["lifecycle"] for r in rows], dtype=object)
        return pd.DataFrame(columns, copy=False)


def _decoded(values: dict[str, ValueProto] | None, names: Sequence[str]) -> dict[str, Any]:
    """Feature → Python value (float, str or None) of one online row."""
    values = values or {}
    out: dict[str, Any] = {}
    for name in names:
        proto = values.get(name)
        kind = proto.WhichOneof("val") if proto is not None else None
        out[name] = getattr(proto, kind) if kind else None
    return out


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
