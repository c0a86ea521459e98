"""The score log: every score the API or a batch run gives, appended and never rewritten.

One table, ``scores``, in a real database behind SQLAlchemy: SQLite in WAL mode under the data
directory by default (``<data_dir>/crm_intel.db``, :meth:`crm.settings.Settings.score_log_url`),
PostgreSQL (or any SQLAlchemy URL) with
``CRM_INTEL_DATABASE_URL``. Each row is one entity scored by one model version in one arm
(``champion``, ``challenger`` or ``shadow``) at one time, with its feature timestamp, probability,
score, grade or risk band and signed top reasons (JSON).

Writes never wait on the database: :class:`ScoreLogWriter` puts rows on a bounded queue that one
thread drains in batches, each batch one transaction (so a crash loses whole batches, never half
a row). When the queue is full the rows are dropped and counted (:attr:`ScoreLogWriter.dropped`):
a request is never failed or slowed by its log.

The only deletion is :func:`erase`, for a person's or company's right to erasure.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

log = logging.getLogger(__name__)

ARMS = ("champion", "challenger", "shadow")
ERASE_CHUNK = 500  # ids per DELETE
SERVED_ARMS = ("champion", "challenger")  # what a caller was answered with (shadow never is)

metadata = sa.MetaData()

scores = sa.Table(
    "scores",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    # when the score was given; a batch run as of a past date logs that date
    sa.Column("scored_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("logged_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("source", sa.String(16), nullable=False),  # api | batch
    sa.Column("request_id", sa.String(64), nullable=False),
    sa.Column("entity", sa.String(16), nullable=False),  # lead | account
    sa.Column("entity_id", sa.String(128), nullable=False),
    sa.Column("model", sa.String(64), nullable=False),
    sa.Column("model_version", sa.String(32), nullable=False),
    sa.Column("feature_service", sa.String(64), nullable=True),
    sa.Column("feature_timestamp", sa.DateTime(timezone=True), nullable=True),
    sa.Column("arm", sa.String(16), nullable=False),
    sa.Column("probability", sa.Float, nullable=False),
    sa.Column("score", sa.Integer, nullable=False),
    sa.Column("grade", sa.String(16), nullable=True),  # lead grade or account risk band
    sa.Column("reasons", sa.Text, nullable=False),  # JSON list of signed reasons
)
sa.Index("scores_by_entity", scores.c.entity, scores.c.entity_id, scores.c.scored_at)
sa.Index("scores_by_time", scores.c.scored_at)

COLUMNS = tuple(c.name for c in scores.columns if c.name != "id")


def engine_for(url: str) -> Engine:
    """An engine for ``url``; SQLite in WAL mode (readers never block the writer), waiting up to
    30 s on a lock held by another process rather than failing."""
    if url.startswith("sqlite"):
        path = sa.engine.make_url(url).database
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, connect_args={"timeout": 30})

        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            # WAL + NORMAL: a committed transaction survives the process being killed
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        return engine
    return sa.create_engine(url, pool_pre_ping=True)


_ENGINES: dict[str, Engine] = {}
_ENGINES_LOCK = threading.Lock()


def open_log(url: str) -> Engine:
    """The process's engine for ``url``, with the log's tables created if missing."""
    with _ENGINES_LOCK:
        engine = _ENGINES.get(url)
        if engine is None:
            engine = engine_for(url)
            metadata.create_all(engine)
            _ENGINES[url] = engine
        return engine


def dispose_all() -> None:
    """Close every pooled connection (tests, and before a process forks)."""
    with _ENGINES_LOCK:
        for engine in _ENGINES.values():
            engine.dispose()
        _ENGINES.clear()


@dataclass(frozen=True)
class LoggedScore:
    """One row of the log, as written."""

    scored_at: datetime
    source: str
    request_id: str
    entity: str
    entity_id: str
    model: str
    model_version: str
    feature_service: str | None
    feature_timestamp: datetime | None
    arm: str
    probability: float
    score: int
    grade: str | None
    reasons: str  # JSON

    def row(self, logged_at: datetime) -> dict[str, Any]:
        return {**self.__dict__, "logged_at": logged_at}


def reasons_json(reasons: Sequence[Mapping[str, Any]] | str | None) -> str:
    """Reasons as the log stores them: a JSON list of ``{feature, value, contribution,
    label}``."""
    if reasons is None:
        return "[]"
    if isinstance(reasons, str):
        return reasons
    return json.dumps(list(reasons), default=str, separators=(",", ":"))


def rows_from_results(
    results: Iterable[Mapping[str, Any]],
    *,
    entity: str,
    key: str,
    model: str,
    model_version: str,
    feature_service: str | None,
    arm: str,
    source: str,
    request_id: str,
    scored_at: datetime,
) -> list[LoggedScore]:
    """The log rows of scored results (API items or batch rows); unscored ones are skipped."""
    band = "grade" if entity == "lead" else "risk_band"
    when = as_utc(scored_at)
    assert when is not None
    out = []
    for r in results:
        if r.get("status") != "scored" or r.get("probability") is None:
            continue
        stamp = r.get("feature_timestamp")
        out.append(
            LoggedScore(
                scored_at=when,
                source=source,
                request_id=request_id,
                entity=entity,
                entity_id=str(r[key]),
                model=model,
                model_version=str(model_version),
                feature_service=feature_service,
                feature_timestamp=as_utc(stamp),
                arm=arm,
                probability=float(r["probability"]),
                score=int(r["score"]),
                grade=None if r.get(band) is None else str(r.get(band)),
                reasons=reasons_json(r.get("reasons")),
            )
        )
    return out


def as_utc(value: Any) -> datetime | None:
    """A datetime (or pandas timestamp) as aware UTC; naive ones are taken as UTC (how SQLite
    gives them back); None for anything else."""
    if value is None:
        return None
    if hasattr(value, "to_pydatetime"):
        if value != value:  # NaT
            return None
        value = value.to_pydatetime()
    if not isinstance(value, datetime):
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def append(engine: Engine, rows: Sequence[LoggedScore]) -> int:
    """Append ``rows`` in one transaction (all or none)."""
    if not rows:
        return 0
    now = datetime.now(UTC)
    with engine.begin() as conn:
        conn.execute(scores.insert(), [r.row(now) for r in rows])
    return len(rows)


class ScoreLogWriter:
    """Appends rows off the request path: a bounded queue drained by one thread.

    :meth:`put` never blocks; rows that find the queue full are dropped and counted in
    :attr:`dropped`. The thread gathers rows for up to ``batch_seconds`` (or ``batch_rows``) and
    writes them in one transaction, so a crash loses at most that long's rows, whole. A batch
    that fails to write is retried once, then counted in :attr:`failed` and logged (the service
    keeps answering).
    """

    def __init__(
        self,
        engine: Engine,
        max_queued: int = 100_000,
        batch_rows: int = 2_000,
        batch_seconds: float = 0.25,
    ):
        self.engine = engine
        self.max_queued = max_queued
        self.batch_rows = batch_rows
        self.batch_seconds = batch_seconds
        self._queue: queue.Queue[LoggedScore | None] = queue.Queue(maxsize=max_queued)
        self.written = 0
        self.dropped = 0
        self.failed = 0
        self.accepted = 0
        self._counts_lock = threading.Lock()
        self._thread = threading.Thread(target=self._drain, name="score-log-writer", daemon=True)
        self._thread.start()

    def put(self, rows: Iterable[LoggedScore]) -> None:
        """Queue ``rows``; never waits."""
        taken = lost = 0
        for row in rows:
            try:
                self._queue.put_nowait(row)
                taken += 1
            except queue.Full:
                lost += 1
        with self._counts_lock:
            self.accepted += taken
            self.dropped += lost

    @property
    def queued(self) -> int:
        return self._queue.qsize()

    def _drain(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            # Let a batch gather, asleep: one transaction for many requests' rows, and no
            # wake-up of this thread (a GIL hand-over from the scoring thread) per row queued.
            time.sleep(self.batch_seconds)
            batch, stop = [first], False
            while len(batch) < self.batch_rows:
                try:
                    row = self._queue.get_nowait()
                except queue.Empty:
                    break
                if row is None:
                    stop = True
                    break
                batch.append(row)
            self._write(batch)
            if stop:
                return

    def _write(self, batch: list[LoggedScore]) -> None:
        for attempt in (1, 2):
            try:
                append(self.engine, batch)
            except Exception:  # the database is down or locked: retried once, then counted
                if attempt == 1:
                    time.sleep(0.5)
                    continue
                log.exception("score log: %d rows could not be written", len(batch))
                with self._counts_lock:
                    self.failed += len(batch)
                return
            with self._counts_lock:
                self.written += len(batch)
            return

    def flush(self, timeout: float = 30.0) -> None:
        """Wait until every queued row is written (or ``timeout`` passes)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._counts_lock:
                done = self.written + self.failed >= self.accepted
            if done:
                return
            time.sleep(0.01)

    def close(self, timeout: float = 30.0) -> None:
        """Write what is queued, then stop the thread."""
        self._queue.put(None)
        self._thread.join(timeout)

    def counters(self) -> dict[str, int]:
        with self._counts_lock:
            return {
                "written": self.written,
                "dropped": self.dropped,
                "failed": self.failed,
                "queued": self.queued,
            }


def history(
    engine: Engine, entity: str, entity_id: str, arms: Sequence[str] | None = None
) -> list[dict[str, Any]]:
    """Every logged score of one entity, oldest first."""
    query = (
        sa.select(scores)
        .where(scores.c.entity == entity, scores.c.entity_id == str(entity_id))
        .order_by(scores.c.scored_at, scores.c.id)
    )
    if arms:
        query = query.where(scores.c.arm.in_(list(arms)))
    with engine.connect() as conn:
        rows = [dict(r) for r in conn.execute(query).mappings()]
    for row in rows:
        for column in ("scored_at", "logged_at", "feature_timestamp"):
            row[column] = as_utc(row[column])
        row["reasons"] = json.loads(row["reasons"])
    return rows


_FIRST_SERVED = (
    sa.select(scores.c.scored_at, scores.c.score)
    .where(
        scores.c.entity == sa.bindparam("entity"),
        scores.c.entity_id == sa.bindparam("entity_id"),
        scores.c.scored_at >= sa.bindparam("since"),
        scores.c.scored_at < sa.bindparam("until"),
        scores.c.arm.in_(SERVED_ARMS),
    )
    .order_by(scores.c.scored_at, scores.c.id)
    .limit(1)
)


def first_scores_since(
    engine: Engine, entity: str, entity_ids: Sequence[str], since: datetime, until: datetime
) -> dict[str, tuple[datetime, int]]:
    """Per id, its oldest score served (champion or challenger arm) in ``[since, until)``.

    One index seek per id on ``(entity, entity_id, scored_at)`` (about 0.1 ms on SQLite),
    however long the log is; the statement is compiled once.
    """
    out: dict[str, tuple[datetime, int]] = {}
    if not entity_ids:
        return out
    with engine.connect() as conn:
        for entity_id in entity_ids:
            params = {"entity": entity, "entity_id": str(entity_id), "since": since, "until": until}
            row = conn.execute(_FIRST_SERVED, params).first()
            if row is not None:
                at = as_utc(row[0])
                assert at is not None
                out[str(entity_id)] = (at, int(row[1]))
    return out


def erase(engine: Engine, ids_by_entity: Mapping[str, Sequence[str]]) -> int:
    """Delete every logged score of the given entities (the right to erasure), in one
    transaction; returns the rows deleted.

    On SQLite the freed pages are overwritten (``secure_delete``) and the write-ahead log is
    truncated afterwards, since its old frames would still hold the deleted rows.
    """
    sqlite = engine.dialect.name == "sqlite"
    deleted = 0
    with engine.connect() as conn:
        if sqlite:
            conn.exec_driver_sql("PRAGMA secure_delete = ON")
            conn.commit()
        try:
            with conn.begin():
                for entity, ids in ids_by_entity.items():
                    ids = [str(i) for i in ids]
                    for start in range(0, len(ids), ERASE_CHUNK):
                        result = conn.execute(
                            scores.delete().where(
                                scores.c.entity == entity,
                                scores.c.entity_id.in_(ids[start : start + ERASE_CHUNK]),
                            )
                        )
                        deleted += int(result.rowcount or 0)
            if sqlite:
                conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
                conn.commit()
        finally:
            if sqlite:
                conn.exec_driver_sql("PRAGMA secure_delete = OFF")
                conn.commit()
    return deleted
