"""The right to erasure: remove one lead, or one account with its leads, from everything crm-intel
keeps under a data directory, and record that it was done.

What a lead is erased from:

- **raw tables** (``<data_dir>/raw/*.parquet``): every row that names it (``leads``, its touches in
  ``interactions``); a table whose rows belong to someone else keeps them and loses the link
  (:data:`UNLINKED`: an opportunity is the company's deal, so its ``lead_id`` is cleared, which
  the contract allows);
- **feature tables** (``<data_dir>/features/*.parquet``): its snapshots, labels and lifecycle row;
- **simulator truth** (``<data_dir>/truth/*.parquet``, demo data only): its true probabilities;
- **duplicate leads** (``<data_dir>/dedupe/*.parquet``, ``crm-intel dedupe leads``): its row,
  and the rows of its duplicates that name it as their surviving record;
- **the online store**: its rows in every view keyed by ``lead_id``, deleted in place from the
  current generation in one transaction, with the store's locking (see :func:`_delete_online`),
  or, with the Redis online store, from its hashes in one ``MULTI``/``EXEC`` transaction;
- **the score log**: every logged score.

An account is erased with every lead of the account and everything that names either: its
interactions, opportunities, subscriptions, usage and tickets. Any Parquet file in those folders
with a ``lead_id`` or ``account_id`` column is covered, not only the contract's tables.

Aggregates that counted the entity (another account's touch counts, a content item's reach) are
not personal data and stay as they are until the next ``crm-intel features build``. Models
already trained keep what they learned; the next training run no longer sees the entity.

Each Parquet file is rewritten atomically (a temporary file renamed over it, row group by row
group, so memory stays bounded) and only when it holds the entity. Deleted SQLite rows are
overwritten (``secure_delete``) and the score log's write-ahead log is truncated, so the ids do
not linger in free pages. Rows that name an entity go before the entity itself (``leads`` and
``accounts`` are rewritten last), so the raw tables keep their foreign keys at every step and
an interrupted run, run again, finds the entity and finishes the job. A ``features
build`` or ``materialize`` running at the same time may have read the data before the erasure:
run the erasure again after it (an erasure of an id found nowhere changes nothing and says so).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from crm.io import atomic_file
from crm.settings import Settings

if TYPE_CHECKING:
    from feast import FeatureStore

LEAD_KEY = "lead_id"
ACCOUNT_KEY = "account_id"
ENTITIES: dict[str, str] = {"lead": LEAD_KEY, "account": ACCOUNT_KEY}
# raw table → column cleared (instead of the row deleted) when only that column names the
# entity: the row belongs to someone else (an opportunity is the account's deal)
UNLINKED: dict[str, str] = {"opportunities": LEAD_KEY}
# folders of a data directory that may hold Parquet files naming an entity, in the order they
# are rewritten (raw last, so that an interrupted erasure can be run again)
FOLDERS: tuple[str, ...] = ("features", "truth", "dedupe", "raw")
# other columns that name an entity: a row naming the erased one there goes too (a duplicate
# lead's row naming the erased lead as its survivor; the next `dedupe leads` finds it anew)
ALSO_NAMING: dict[str, str] = {"survivor_lead_id": LEAD_KEY}
LAST_RAW: tuple[str, ...] = ("leads", "accounts")  # rewritten after every other table
ONLINE_BUSY_TIMEOUT_S = 120.0  # a materialisation holds the store's write lock while it builds
SQL_CHUNK = 500  # ids per statement, far under SQLite's variable limit


class UnknownIdError(LookupError):
    """The id is found nowhere under the data directory: nothing was erased."""


@dataclass(frozen=True)
class Targets:
    """The ids one erasure removes: the entity asked for and, for an account, its leads."""

    entity: str
    entity_id: str
    leads: tuple[str, ...]
    accounts: tuple[str, ...]

    def ids(self, key: str) -> tuple[str, ...]:
        return self.leads if key == LEAD_KEY else self.accounts


@dataclass
class _ParquetEdit:
    place: str  # e.g. raw/leads
    path: Path
    unlink: str | None
    deleted: int
    cleared: int


@dataclass
class _OnlineTable:
    place: str  # online/<view>
    table: str
    keys: list[bytes]
    entities: int


@dataclass
class _Plan:
    parquet: list[_ParquetEdit] = field(default_factory=list)
    online_store: str | None = None  # the SQLite file or the Redis server; None: no store
    online: list[_OnlineTable] = field(default_factory=list)
    log_url: str | None = None
    log_rows: dict[str, int] = field(default_factory=dict)  # entity → rows

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for edit in self.parquet:
            out[edit.place] = edit.deleted
            if edit.unlink is not None:
                out[f"{edit.place}.{edit.unlink}"] = edit.cleared
        for table in self.online:
            out[table.place] = table.entities
        for entity, n in self.log_rows.items():
            out[f"score_log/{entity}"] = n
        return out


# ------------------------------------------------------------------------------------ targets


def _matches(column: pa.ChunkedArray | pa.Array, ids: Sequence[str]) -> pa.Array:
    """True where ``column`` holds one of ``ids`` (false for nulls)."""
    values = column
    if not (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)):
        values = pc.cast(values, pa.string())
    hit = pc.is_in(values, value_set=pa.array(list(ids), type=values.type))
    return pc.fill_null(hit, False)


def find_targets(settings: Settings, entity: str, entity_id: str) -> Targets:
    """The ids an erasure of ``entity`` ``entity_id`` removes; an account's leads are those
    whose ``account_id`` is the account in ``raw/leads``.

    Raises:
        ValueError: an entity other than ``lead`` or ``account``, or an empty id.
    """
    if entity not in ENTITIES:
        raise ValueError(f"unknown entity {entity!r}: expected lead or account")
    entity_id = str(entity_id).strip()
    if not entity_id:
        raise ValueError(f"give the id of the {entity} to erase")
    if entity == "lead":
        return Targets(entity, entity_id, (entity_id,), ())
    leads: tuple[str, ...] = ()
    path = settings.raw_dir / "leads.parquet"
    if path.exists():
        table = pq.read_table(path, columns=[LEAD_KEY, ACCOUNT_KEY])
        mine = table.filter(_matches(table[ACCOUNT_KEY], [entity_id]))
        leads = tuple(sorted({str(i) for i in mine[LEAD_KEY].to_pylist() if i is not None}))
    return Targets(entity, entity_id, leads, (entity_id,))


# -------------------------------------------------------------------------------- Parquet files


def _masks(table: pa.Table, who: Targets, unlink: str | None) -> tuple[pa.Array, pa.Array]:
    """(rows to delete, rows to keep with ``unlink`` cleared) of a table or row group."""
    false = pa.repeat(pa.scalar(False), table.num_rows)
    hits = {
        key: _matches(table[key], who.ids(key))
        if key in table.column_names and who.ids(key)
        else false
        for key in ENTITIES.values()
    }
    for column, key in ALSO_NAMING.items():
        if column in table.column_names and who.ids(key):
            hits[key] = pc.or_(hits[key], _matches(table[column], who.ids(key)))
    if unlink is None:
        return pc.or_(hits[LEAD_KEY], hits[ACCOUNT_KEY]), false
    owner = ACCOUNT_KEY if unlink == LEAD_KEY else LEAD_KEY
    delete = hits[owner]
    return delete, pc.and_(hits[unlink], pc.invert(delete))


def _parquet_files(settings: Settings) -> Iterator[tuple[str, Path, str | None]]:
    """(place, path, column to clear instead of deleting) of every Parquet file that may name
    an entity, in the order they are rewritten."""
    for folder in FOLDERS:
        directory = settings.data_dir / folder
        if not directory.is_dir():
            continue
        paths = sorted(directory.glob("*.parquet"))
        if folder == "raw":
            last = {directory / f"{name}.parquet": n for n, name in enumerate(LAST_RAW)}
            paths.sort(key=lambda p: last.get(p, -1))
        for path in paths:
            unlink = UNLINKED.get(path.stem) if folder == "raw" else None
            yield f"{folder}/{path.stem}", path, unlink


def _plan_parquet(settings: Settings, who: Targets) -> list[_ParquetEdit]:
    edits = []
    for place, path, unlink in _parquet_files(settings):
        names = pq.read_schema(path).names
        keys = [k for k in ENTITIES.values() if k in names]
        if not keys:
            continue
        table = pq.read_table(path, columns=[*keys, *(c for c in ALSO_NAMING if c in names)])
        delete, clear = _masks(table, who, unlink if unlink in keys else None)
        edits.append(
            _ParquetEdit(
                place,
                path,
                unlink if unlink in keys else None,
                int(pc.sum(delete).as_py() or 0),
                int(pc.sum(clear).as_py() or 0),
            )
        )
    return edits


def _rewrite(edit: _ParquetEdit, who: Targets) -> None:
    """Rewrite one file without the entity's rows, row group by row group, atomically."""
    # the writer closes before atomic_file renames its file over the source
    with (
        pq.ParquetFile(edit.path) as source,
        atomic_file(edit.path) as tmp,
        pq.ParquetWriter(
            tmp, source.schema_arrow, compression="zstd", write_statistics=True, store_schema=True
        ) as writer,
    ):
        for group in range(source.num_row_groups):
            table = source.read_row_group(group)
            delete, clear = _masks(table, who, edit.unlink)
            if edit.unlink is not None and pc.any(clear).as_py():
                column = table[edit.unlink]
                cleared = pc.if_else(clear, pa.scalar(None, type=column.type), column)
                table = table.set_column(
                    table.schema.get_field_index(edit.unlink), edit.unlink, cleared
                )
            table = table.filter(pc.invert(delete))
            if table.num_rows:
                writer.write_table(table)


# ------------------------------------------------------------------------------- online store


def _online_plan(settings: Settings, who: Targets) -> tuple[str | None, list[_OnlineTable]]:
    """The online store (its file, or its Redis server) and, per view keyed by lead or account,
    the entity's serialised keys and how many of them it holds (read-only; nothing is created
    when there is no store)."""
    from feast.infra.key_encoding_utils import serialize_entity_key
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
    from feast.protos.feast.types.Value_pb2 import Value as ValueProto

    from features.online_layout import quote
    from features.online_store import CrmSqliteOnlineStore
    from features.store import feature_store

    if not (settings.feast_dir / "registry.db").exists():
        return None, []
    store = feature_store(settings)
    if settings.online_store == "redis":
        return _redis_online_plan(store, who)
    config = store.config
    online = CrmSqliteOnlineStore()
    path = online.db_path(config)
    if not path.exists():
        return None, []
    version = config.entity_key_serialization_version
    planned = []
    conn = sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True)
    try:
        tables = {
            row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        }
        for view in sorted(store.list_feature_views(), key=lambda v: v.name):
            join_keys = [c.name for c in view.entity_columns]
            if len(join_keys) != 1 or join_keys[0] not in ENTITIES.values():
                continue
            ids = who.ids(join_keys[0])
            name = online.table_name(config, view)
            if not ids or name not in tables:
                continue
            # the keys exactly as the store writes and reads them (Feast's serialiser)
            keys = [
                serialize_entity_key(
                    EntityKeyProto(
                        join_keys=[join_keys[0]], entity_values=[ValueProto(string_val=i)]
                    ),
                    entity_key_serialization_version=version,
                )
                for i in ids
            ]
            found = 0
            for chunk in _chunks(keys):
                marks = ",".join("?" * len(chunk))
                found += conn.execute(
                    f"SELECT COUNT(DISTINCT entity_key) FROM {quote(name)} "
                    f"WHERE entity_key IN ({marks})",
                    chunk,
                ).fetchone()[0]
            planned.append(_OnlineTable(f"online/{view.name}", name, keys, int(found)))
    finally:
        conn.close()
    return str(path), planned


def _redis_online_plan(store: FeatureStore, who: Targets) -> tuple[str | None, list[_OnlineTable]]:
    """:func:`_online_plan` on the Redis online store: per view keyed by lead or account, the
    entity's hash keys and how many of them hold a row of the view."""
    from features.redis_store import CrmRedisOnlineStore

    config = store.config
    online = CrmRedisOnlineStore(timeout_ms=int(ONLINE_BUSY_TIMEOUT_S * 1000))
    planned = []
    for view in sorted(store.list_feature_views(), key=lambda v: v.name):
        join_keys = [c.name for c in view.entity_columns]
        if len(join_keys) != 1 or join_keys[0] not in ENTITIES.values():
            continue
        ids = who.ids(join_keys[0])
        if not ids:
            continue
        keys = online.redis_keys(config, join_keys[0], ids)
        found = online.count_holding(config, view, keys)
        planned.append(_OnlineTable(f"online/{view.name}", view.name, keys, found))
    return online.server(config), planned


def _chunks(values: Sequence[bytes]) -> Iterator[list[bytes]]:
    for start in range(0, len(values), SQL_CHUNK):
        yield list(values[start : start + SQL_CHUNK])


def _delete_online(settings: Settings, tables: Sequence[_OnlineTable]) -> None:
    """Delete the entity's rows (one per feature) from every planned view's table of the
    current generation, in place and in one transaction, through the store."""
    from features.online_store import CrmSqliteOnlineStore
    from features.redis_store import CrmRedisOnlineStore
    from features.store import feature_store

    feast = feature_store(settings)
    config = feast.config
    if settings.online_store == "redis":
        online = CrmRedisOnlineStore(timeout_ms=int(ONLINE_BUSY_TIMEOUT_S * 1000))
        online.delete_rows(config, [(feast.get_feature_view(t.table), t.keys) for t in tables])
        return
    store = CrmSqliteOnlineStore(busy_timeout_ms=int(ONLINE_BUSY_TIMEOUT_S * 1000))
    store.delete_entities(config, {t.table: t.keys for t in tables})


# ---------------------------------------------------------------------------------- score log


def _log_engine(settings: Settings, create: bool) -> Engine | None:
    """The score log's engine; None for a SQLite log that does not exist (unless ``create``)."""
    from serving.score_log import open_log

    url = settings.score_log_url()
    if url.startswith("sqlite"):
        database = sa.engine.make_url(url).database
        if not create and (not database or not Path(database).exists()):
            return None
    return open_log(url)


def _log_counts(engine: Engine, who: Targets) -> dict[str, int]:
    from serving.score_log import scores

    counts = {}
    with engine.connect() as conn:
        for entity, key in ENTITIES.items():
            ids = who.ids(key)
            n = 0
            for start in range(0, len(ids), SQL_CHUNK):
                query = sa.select(sa.func.count()).where(
                    scores.c.entity == entity,
                    scores.c.entity_id.in_(list(ids[start : start + SQL_CHUNK])),
                )
                n += int(conn.execute(query).scalar_one())
            counts[entity] = n
    return counts


def _erase_log(engine: Engine, who: Targets) -> None:
    """Delete the targets' scores (:func:`serving.score_log.erase`)."""
    from serving.score_log import erase

    erase(engine, {entity: who.ids(key) for entity, key in ENTITIES.items()})


# -------------------------------------------------------------------------------------- erase


def preview(settings: Settings, entity: str, entity_id: str) -> dict[str, int]:
    """What :func:`erase` would remove, per place (as it returns them), changing nothing.

    Raises:
        ValueError: an unknown entity or an empty id.
        UnknownIdError: the id is found nowhere.
    """
    chosen = find_targets(settings, entity, entity_id)
    return _found(settings, chosen, _plan(settings, chosen)).counts()


def _plan(settings: Settings, who: Targets) -> _Plan:
    plan = _Plan(parquet=_plan_parquet(settings, who))
    plan.online_store, plan.online = _online_plan(settings, who)
    engine = _log_engine(settings, create=False)
    if engine is not None:
        plan.log_url = settings.score_log_url()
        plan.log_rows = _log_counts(engine, who)
    return plan


def _found(settings: Settings, who: Targets, plan: _Plan) -> _Plan:
    if not any(plan.counts().values()):
        raise UnknownIdError(
            f"{who.entity} {who.entity_id!r} is found nowhere in {settings.data_dir} (raw "
            "tables, feature tables, online store) nor in the score log: nothing to erase"
        )
    return plan


def erase(
    settings: Settings,
    entity: str,
    entity_id: str,
    actor: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, int]:
    """Erase a lead, or an account with its leads, from the data directory and the score log,
    and record an ``erase`` audit event (counts only, never the id).

    Args:
        entity: ``lead`` or ``account``.
        actor: who asked (default :func:`serving.audit.current_actor`).
        progress: called with each place before it is changed.

    Returns:
        rows removed per place, e.g. ``raw/leads``, ``features/lead_features``,
        ``online/lead_features`` (entities; one SQLite row per feature), ``score_log/lead``;
        ``raw/opportunities.lead_id`` counts rows kept with the link cleared. Every place
        checked is listed, zeros included.

    Raises:
        ValueError: an unknown entity or an empty id.
        UnknownIdError: the id is found nowhere; nothing was changed.
    """
    from serving import audit

    chosen = find_targets(settings, entity, entity_id)
    plan = _found(settings, chosen, _plan(settings, chosen))
    counts = plan.counts()
    say = progress or (lambda _: None)
    raw = [e for e in plan.parquet if e.place.startswith("raw/")]
    for edit in [e for e in plan.parquet if not e.place.startswith("raw/")]:
        if edit.deleted or edit.cleared:
            say(edit.place)
            _rewrite(edit, chosen)
    if plan.online_store is not None and any(t.entities for t in plan.online):
        say("online store")
        _delete_online(settings, [t for t in plan.online if t.entities])
    if plan.log_url is not None and any(plan.log_rows.values()):
        say("score log")
        engine = _log_engine(settings, create=False)
        assert engine is not None
        _erase_log(engine, chosen)
    for edit in raw:  # leads and accounts last: an interrupted erasure can be run again
        if edit.deleted or edit.cleared:
            say(edit.place)
            _rewrite(edit, chosen)
    engine = _log_engine(settings, create=True)
    assert engine is not None
    audit.record(engine, actor or audit.current_actor(), "erase", entity, counts)
    return counts
