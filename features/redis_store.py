"""The project's Redis online store: Feast's Redis layout, written in bulk, read in one round trip.

Configure it with ``online_store: {type: features.redis_store.CrmRedisOnlineStore, url: …}``
(``feature_store.yaml``, or ``CRM_INTEL_ONLINE_STORE=redis`` and ``CRM_INTEL_REDIS_URL`` for
:func:`features.store.repo_config`). Several service replicas read one Redis server, which is the
point of it: the embedded SQLite store (:mod:`features.online_store`) is one file per machine.

The keys and values are exactly those of Feast's ``redis`` store, so either reads what the other
wrote: one hash per entity, keyed by Feast's serialised entity key followed by the project name;
per feature view a field per feature (named by the murmur3 hash of ``"<view>:<feature>"``, the
value a serialised ``ValueProto``) and a ``_ts:<view>`` field (a serialised protobuf
``Timestamp``). A lead's features and its lifecycle row are fields of the same hash.

Why a class of our own and not Feast's ``RedisOnlineStore`` (measured, ``make bench-online``):

- **Writes.** Feast's ``online_write_batch`` builds a ``ValueProto`` per value in Python, packs
  every command argument by argument and (unless ``skip_dedup``) first reads every entity's
  timestamp back.
  :meth:`CrmRedisOnlineStore.write_generation` encodes a view's values column-wise in numpy
  straight into Redis's wire protocol (:mod:`features.redis_layout`) and sends one ``HSET`` per
  entity, holding all the entity's views of the run, in batches on two connections at once:
  an entity's features and lifecycle always change together.
- **Reads.** Feast's ``online_read`` takes one view per call (a round trip each) and hashes
  every feature name on every read. :meth:`CrmRedisOnlineStore.online_read_views` reads all
  the views of a key with one ``HMGET`` (field names hashed once per view), for all the keys in
  one pipeline: one round trip per request.
- **Failures.** Short socket timeouts and no client-side retries: an unreachable server is an
  :class:`OnlineStoreUnreachableError` at once (the service answers 503), and the connection
  pool reconnects by itself on the next read once the server is back.
- **Loaded or not.** Each run records the views it wrote in a marker hash; a read of a view the
  server does not mark (a Redis restarted empty, or never materialised) is a
  :class:`~features.online_store.FeatureStoreNotReadyError`, not a wall of unknown ids.

Unlike the SQLite store's generations, a materialisation is not one atomic switch: each entity's
hash is replaced atomically (features and lifecycle together), entity by entity, and entities no
longer in the tables lose the run's views at the end. Readers never wait.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import pyarrow as pa
import redis
from feast import Entity, FeatureView
from feast.infra.key_encoding_utils import serialize_entity_key, serialize_entity_key_prefix
from feast.infra.online_stores.helpers import compute_versioned_name
from feast.infra.online_stores.online_store import OnlineStore
from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.repo_config import FeastConfigBaseModel, RepoConfig
from google.protobuf.timestamp_pb2 import Timestamp
from pydantic import Field, StrictInt, StrictStr, field_validator
from redis.backoff import NoBackoff
from redis.retry import Retry

from features.online_layout import bulk_layout, entity_keys
from features.online_store import FeatureStoreNotReadyError
from features.redis_layout import (
    command,
    field_name,
    hset_command,
    timestamp_field,
    view_segments,
)

DEFAULT_URL = "redis://127.0.0.1:6379/0"
DEFAULT_TIMEOUT_MS = 250
DEFAULT_BATCH_ENTITIES = 500  # entities (HSETs) per pipelined round trip of a bulk write
WRITERS = 2  # connections a bulk write sends batches on at once
SCAN_COUNT = 10_000  # keys per SCAN step when looking for entities a run no longer holds
MARKER = b"crm_intel:materialized:"  # + project: a hash, view name → when a run wrote it
_GLOB_SPECIALS = re.compile(rb"([*?\[\]\\])")


class OnlineStoreUnreachableError(RuntimeError):
    """The online store's server does not answer (down, unreachable, or too slow)."""


class CrmRedisOnlineStoreConfig(FeastConfigBaseModel):
    """Config of :class:`CrmRedisOnlineStore`."""

    type: Literal["features.redis_store.CrmRedisOnlineStore"] = (
        "features.redis_store.CrmRedisOnlineStore"
    )
    url: StrictStr = DEFAULT_URL
    """The server, as a Redis URL: ``redis://[[user]:password@]host:port/db`` (``rediss://``
    for TLS, ``unix:///path/redis.sock?db=0`` for a socket)."""
    timeout_ms: StrictInt = Field(default=DEFAULT_TIMEOUT_MS, gt=0)
    """Connect and read timeout of one command: how long a read waits on a silent server."""
    batch_entities: StrictInt = Field(default=DEFAULT_BATCH_ENTITIES, gt=0)
    """Entities per pipelined batch of the bulk writer."""

    @field_validator("url")
    @classmethod
    def _variables_expanded(cls, url: str) -> str:
        # Feast expands ${VAR} in feature_store.yaml but leaves an unset one as it is.
        unset = re.search(r"\$\{?(\w+)", url)
        if unset:
            raise ValueError(
                f"online store url uses ${unset[1]}, which is not set: set it (e.g. "
                "CRM_INTEL_REDIS_URL=redis://127.0.0.1:6379/0) before running feast"
            )
        return url


def marker_key(config: RepoConfig) -> bytes:
    """The hash recording, per view name, when a materialisation last wrote it."""
    return MARKER + config.project.encode()


def view_name(config: RepoConfig, view: FeatureView) -> str:
    """The view's name in the field names, as Feast's Redis store computes it."""
    return compute_versioned_name(view, config.registry.enable_online_feature_view_versioning)


@dataclass(frozen=True)
class _ReadPlan:
    """The fields one ``HMGET`` asks for and, per view, its features' names and positions."""

    views: list[str]
    fields: list[bytes]
    slices: list[tuple[list[str], int, int]]  # names, first field, timestamp field


class CrmRedisOnlineStore(OnlineStore):
    """Feast's Redis layout, bulk-written in pipelined batches and read in one round trip.

    Feast builds one per provider (no arguments, settings from the config); the service reads
    through its own (:class:`features.store.OnlineReader`). Thread-safe: the client keeps a pool
    of connections and reconnects on the next command after a failure.

    Args:
        timeout_ms: connect and read timeout of a command; default: the config's.
    """

    def __init__(self, timeout_ms: int | None = None) -> None:
        self.timeout_ms = timeout_ms
        self._lock = threading.Lock()
        self._client: redis.Redis | None = None
        self._client_url: str | None = None
        self._plans: dict[tuple[Any, ...], _ReadPlan] = {}

    # ------------------------------------------------------------------------- connection

    def client(self, config: RepoConfig) -> redis.Redis:
        """The client of the config's server (one connection pool per instance)."""
        options = config.online_store
        with self._lock:
            if self._client is None or self._client_url != options.url:
                if self._client is not None:
                    self._client.close()
                timeout = (self.timeout_ms or options.timeout_ms) / 1000
                self._client = redis.Redis.from_url(
                    options.url,
                    socket_timeout=timeout,
                    socket_connect_timeout=timeout,
                    # a dead server must be a fast 503, not seconds of backed-off retries:
                    # the next request tries again on a fresh connection anyway
                    retry=Retry(NoBackoff(), 0),
                )
                self._client_url = options.url
            return self._client

    @staticmethod
    def server(config: RepoConfig) -> str:
        """The server's address for messages, without credentials."""
        kwargs = redis.ConnectionPool.from_url(config.online_store.url).connection_kwargs
        if "path" in kwargs:
            return f"{kwargs['path']} (db {kwargs.get('db', 0)})"
        return f"{kwargs.get('host')}:{kwargs.get('port', 6379)}/{kwargs.get('db', 0)}"

    def _unreachable(
        self, config: RepoConfig, err: redis.RedisError
    ) -> OnlineStoreUnreachableError:
        return OnlineStoreUnreachableError(
            f"Redis online store at {self.server(config)} cannot be reached: {err}"
        )

    def disconnect(self) -> None:
        """Close the client's connections; the next command opens new ones."""
        with self._lock:
            if self._client is not None:
                self._client.close()
            self._client = None
            self._client_url = None

    async def close(self) -> None:
        """Feast's (async) shutdown hook: :meth:`disconnect`."""
        self.disconnect()

    def ping(self, config: RepoConfig) -> None:
        """Raises :class:`OnlineStoreUnreachableError` unless the server answers."""
        try:
            self.client(config).ping()
        except redis.RedisError as err:
            raise self._unreachable(config, err) from None

    # ----------------------------------------------------------------------------- writes

    def write_generation(
        self,
        config: RepoConfig,
        views: Sequence[FeatureView],
        rows: Callable[[FeatureView], pa.Table],
        now: datetime | None = None,
    ) -> dict[str, int]:
        """The fast bulk writer: each entity's hash gets ``rows(view)`` of every view in one
        ``HSET``; then entities no longer in the tables lose these views' fields, and the views
        are marked materialised.

        Same contract as :meth:`features.online_store.CrmSqliteOnlineStore.write_generation`:
        ``rows(view)`` is called once per view, in order, and returns at most one row per
        entity (the join key, ``event_timestamp`` and the view's ``Float32`` and ``String``
        features). Views sharing a join key are written together, one ``HSET`` per entity.

        Returns:
            rows (entities) written per view name.

        Raises:
            OnlineStoreUnreachableError: the server does not answer (what was written stays;
                run again).
            ValueError: a view the bulk writer does not handle.
        """
        now = now or datetime.now(UTC)
        by_key: dict[str, list[FeatureView]] = {}
        for view in views:
            by_key.setdefault(bulk_layout(view)[0], []).append(view)
        client = self.client(config)
        written: dict[str, int] = {}
        try:
            client.ping()  # before any work: the common failure, said at once
            for join_key, group in by_key.items():
                # hash key → (the view's place in the group, its field count, its encoded pairs)
                parts: dict[bytes, list[tuple[int, int, bytes]]] = {}
                for at, view in enumerate(group):
                    table = rows(view)
                    keys = self.redis_keys(config, join_key, table[join_key].to_pylist())
                    fields, segments = view_segments(view_name(config, view), view, table)
                    for key, segment in zip(keys, segments, strict=True):
                        parts.setdefault(key, []).append((at, fields, segment))
                    written[view.name] = table.num_rows
                self._write_hashes(client, config, group, parts)
                every = [f for view in group for f in self._view_fields(config, view)]
                self._drop_fields(client, config, join_key, set(parts), every)
                self.mark_materialized(config, group, now)
        except redis.RedisError as err:
            raise self._unreachable(config, err) from None
        return written

    def redis_keys(self, config: RepoConfig, join_key: str, ids: Sequence[Any]) -> list[bytes]:
        """The hash keys of ``ids`` of one string join key (Feast's serialised key + project)."""
        project = config.project.encode()
        version = config.entity_key_serialization_version
        return [k + project for k in entity_keys(join_key, [str(i) for i in ids], version)]

    def _view_fields(self, config: RepoConfig, view: FeatureView) -> list[bytes]:
        name = view_name(config, view)
        return [*(field_name(name, f.name) for f in view.features), timestamp_field(name)]

    def _write_hashes(
        self,
        client: redis.Redis,
        config: RepoConfig,
        group: Sequence[FeatureView],
        parts: dict[bytes, list[tuple[int, int, bytes]]],
    ) -> None:
        """One ``HSET`` per entity, holding all its views of the run, sent in batches of
        pre-encoded commands (:mod:`features.redis_layout`); an entity missing some of the views
        loses their old fields first (``HDEL``), so no view of an earlier run lingers."""
        fields = [self._view_fields(config, view) for view in group]
        commands: list[bytes] = []
        for key, views in parts.items():
            if len(views) < len(group):
                there = {at for at, _, _ in views}
                gone = [f for at, names in enumerate(fields) if at not in there for f in names]
                commands.append(command(b"HDEL", key, *gone))
            commands.append(
                hset_command(key, sum(n for _, n, _ in views), [s for _, _, s in views])
            )
        size = config.online_store.batch_entities
        pool = client.connection_pool

        def send(start: int) -> None:
            batch = commands[start : start + size]
            connection = pool.get_connection()
            try:
                connection.send_packed_command([b"".join(batch)])
                for _ in batch:
                    connection.read_response()
            except BaseException:
                connection.disconnect()  # replies may be left unread: never reuse it
                raise
            finally:
                pool.release(connection)

        # Batches on WRITERS connections at once: one thread encodes and sends a batch while
        # another waits on the server's replies (the socket wait releases the GIL), so the
        # client's work and the server's overlap.
        with ThreadPoolExecutor(WRITERS) as threads:
            for _ in threads.map(send, range(0, len(commands), size)):
                pass

    def _drop_fields(
        self,
        client: redis.Redis,
        config: RepoConfig,
        join_key: str,
        keep: set[bytes],
        fields: list[bytes],
    ) -> int:
        """Delete ``fields`` from every hash of ``join_key`` not in ``keep`` (a hash left with
        no field disappears); the number of hashes changed."""
        dropped = 0
        for batch in _batches(self._scan(client, config, join_key), SCAN_COUNT):
            stale = [key for key in batch if key not in keep]
            if stale:
                with client.pipeline(transaction=False) as pipe:
                    for key in stale:
                        pipe.execute_command("HDEL", key, *fields)
                    dropped += sum(1 for removed in pipe.execute() if removed)
        return dropped

    @staticmethod
    def _scan(client: redis.Redis, config: RepoConfig, join_key: str) -> Iterator[bytes]:
        """Every hash key of ``join_key`` in the project (Feast's key layout)."""
        prefix = serialize_entity_key_prefix([join_key], config.entity_key_serialization_version)
        pattern = (
            _GLOB_SPECIALS.sub(rb"\\\1", prefix)
            + b"*"
            + _GLOB_SPECIALS.sub(rb"\\\1", config.project.encode())
        )
        yield from client.scan_iter(match=pattern, count=SCAN_COUNT)

    def mark_materialized(
        self, config: RepoConfig, views: Iterable[FeatureView], now: datetime | None = None
    ) -> None:
        """Record that ``views`` were materialised (what reads check the server holds)."""
        stamp = (now or datetime.now(UTC)).isoformat()
        mapping = {view_name(config, v): stamp for v in views}
        if mapping:
            try:
                self.client(config).hset(marker_key(config), mapping=mapping)  # type: ignore[arg-type]
            except redis.RedisError as err:
                raise self._unreachable(config, err) from None

    # ----------------------------------------------------------------------------- erasure

    def count_holding(self, config: RepoConfig, view: FeatureView, keys: Sequence[bytes]) -> int:
        """How many of the hashes ``keys`` (:meth:`redis_keys`) hold a row of ``view``."""
        field = timestamp_field(view_name(config, view))
        try:
            with self.client(config).pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.hexists(key, field)  # type: ignore[arg-type]
                return sum(1 for held in pipe.execute() if held)
        except redis.RedisError as err:
            raise self._unreachable(config, err) from None

    def delete_rows(
        self, config: RepoConfig, rows: Sequence[tuple[FeatureView, Sequence[bytes]]]
    ) -> None:
        """Delete the rows of the hashes ``keys`` from each ``view``, all in one transaction
        (``MULTI``/``EXEC``: no reader sees part of it); a hash left empty disappears."""
        try:
            with self.client(config).pipeline(transaction=True) as pipe:
                for view, keys in rows:
                    fields = self._view_fields(config, view)
                    for key in keys:
                        pipe.hdel(key, *fields)  # type: ignore[arg-type]
                pipe.execute()
        except redis.RedisError as err:
            raise self._unreachable(config, err) from None

    # ------------------------------------------------------------------- Feast's interface

    def online_write_batch(
        self,
        config: RepoConfig,
        table: FeatureView,
        data: list[tuple[EntityKeyProto, dict[str, ValueProto], datetime, datetime | None]],
        progress: Callable[[int], Any] | None,
    ) -> None:
        """Upsert rows (``feast materialize``, ``write_to_online_store``): one ``HSET`` per
        entity, pipelined; the latest write wins. ``feast materialize`` marks the view
        materialised once it is done (:class:`features.provider.CrmProvider`)."""
        name = view_name(config, table)
        version = config.entity_key_serialization_version
        project = config.project.encode()
        names: dict[str, bytes] = {}
        client = self.client(config)
        try:
            with client.pipeline(transaction=False) as pipe:
                for entity_key, values, event_ts, _ in data:
                    stamp = Timestamp()
                    stamp.FromDatetime(
                        event_ts if event_ts.tzinfo else event_ts.replace(tzinfo=UTC)
                    )
                    fields: list[bytes] = [timestamp_field(name), stamp.SerializeToString()]
                    for feature, value in values.items():
                        if feature not in names:
                            names[feature] = field_name(name, feature)
                        fields += [names[feature], value.SerializeToString()]
                    key = serialize_entity_key(entity_key, entity_key_serialization_version=version)
                    pipe.execute_command("HSET", key + project, *fields)
                pipe.execute()
        except redis.RedisError as err:
            raise self._unreachable(config, err) from None
        if progress:
            progress(len(data))

    def online_read(
        self,
        config: RepoConfig,
        table: FeatureView,
        entity_keys: list[EntityKeyProto],
        requested_features: list[str] | None = None,
    ) -> list[tuple[datetime | None, dict[str, ValueProto] | None]]:
        """One (event timestamp, feature → value) per key, ``(None, None)`` for unknown keys.

        Raises:
            OnlineStoreUnreachableError: the server does not answer.
            FeatureStoreNotReadyError: the server holds no materialisation of the view.
        """
        return self.online_read_views(config, [table], entity_keys, [requested_features])[0]

    def online_read_views(
        self,
        config: RepoConfig,
        tables: Sequence[FeatureView],
        entity_keys: list[EntityKeyProto],
        requested_features: Sequence[list[str] | None] | None = None,
    ) -> list[list[tuple[datetime | None, dict[str, ValueProto] | None]]]:
        """:meth:`online_read` of several views of the same entity: one ``HMGET`` per key for
        every view's fields and one for the marker, all in one pipeline (one round trip).

        A key's views come from one hash read at once, so its features and lifecycle are from
        the same run (the bulk writer writes them in one ``HSET``).

        Returns:
            per view (in order), per key: (event timestamp, feature → value) or ``(None, None)``.

        Raises:
            OnlineStoreUnreachableError: the server does not answer.
            FeatureStoreNotReadyError: the server holds no materialisation of a view (never
                materialised, or restarted without its data).
        """
        if not entity_keys or not tables:
            return [[] for _ in tables]
        plan = self._read_plan(config, tables, requested_features)
        version = config.entity_key_serialization_version
        project = config.project.encode()
        keys = [
            serialize_entity_key(k, entity_key_serialization_version=version) + project
            for k in entity_keys
        ]
        try:
            with self.client(config).pipeline(transaction=False) as pipe:
                pipe.hmget(marker_key(config), plan.views)  # type: ignore[arg-type]
                for key in keys:
                    pipe.hmget(key, plan.fields)  # type: ignore[arg-type]
                replies = pipe.execute()
        except redis.RedisError as err:
            raise self._unreachable(config, err) from None
        for name, stamp in zip(plan.views, replies[0], strict=True):
            if stamp is None:
                raise FeatureStoreNotReadyError(
                    f"Redis online store at {self.server(config)} holds no materialised view "
                    f"{name!r}: run `crm-intel features materialize`"
                )
        parse = ValueProto.FromString
        out: list[list[tuple[datetime | None, dict[str, ValueProto] | None]]] = [[] for _ in tables]
        for values in replies[1:]:
            for found, (names, first, ts_at) in zip(out, plan.slices, strict=True):
                stamp = values[ts_at]
                if stamp is None:
                    found.append((None, None))
                    continue
                features = {
                    n: parse(v)
                    for n, v in zip(names, values[first:ts_at], strict=True)
                    if v is not None
                }
                found.append((Timestamp.FromString(stamp).ToDatetime(tzinfo=UTC), features))
        return out

    def _read_plan(
        self,
        config: RepoConfig,
        tables: Sequence[FeatureView],
        requested: Sequence[list[str] | None] | None,
    ) -> _ReadPlan:
        """The fields to ask for, hashed once per (views, features) and cached."""
        wanted = list(requested or [None] * len(tables))
        cache_key = tuple(
            (view_name(config, v), None if w is None else tuple(w))
            for v, w in zip(tables, wanted, strict=True)
        )
        plan = self._plans.get(cache_key)
        if plan is None:
            fields: list[bytes] = []
            slices = []
            for view, names in zip(tables, wanted, strict=True):
                name = view_name(config, view)
                names = list(names) if names is not None else [f.name for f in view.features]
                first = len(fields)
                fields += [field_name(name, n) for n in names]
                slices.append((names, first, len(fields)))
                fields.append(timestamp_field(name))
            plan = _ReadPlan([view_name(config, v) for v in tables], fields, slices)
            self._plans[cache_key] = plan
        return plan

    def update(
        self,
        config: RepoConfig,
        tables_to_delete: Sequence[FeatureView],
        tables_to_keep: Sequence[FeatureView],
        entities_to_delete: Sequence[Entity],
        entities_to_keep: Sequence[Entity],
        partial: bool,
    ) -> None:
        """Check the server answers (``apply`` says so at once when it does not) and delete
        the deleted views' fields from every hash."""
        self.ping(config)
        client = self.client(config)
        try:
            for view in tables_to_delete:
                for join_key in view.join_keys:
                    self._drop_fields(
                        client, config, join_key, set(), self._view_fields(config, view)
                    )
                client.hdel(marker_key(config), view_name(config, view))  # type: ignore[arg-type]
        except redis.RedisError as err:
            raise self._unreachable(config, err) from None

    def teardown(
        self,
        config: RepoConfig,
        tables: Sequence[FeatureView],
        entities: Sequence[Entity],
    ) -> None:
        """Delete every hash of the views' entities in the project, and the marker."""
        client = self.client(config)
        try:
            for join_key in sorted({k for view in tables for k in view.join_keys}):
                for batch in _batches(self._scan(client, config, join_key), SCAN_COUNT):
                    client.delete(*batch)
            client.delete(marker_key(config))
        except redis.RedisError as err:
            raise self._unreachable(config, err) from None
        self.disconnect()


def _batches(keys: Iterable[bytes], size: int) -> Iterator[list[bytes]]:
    batch: list[bytes] = []
    for key in keys:
        batch.append(key)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
