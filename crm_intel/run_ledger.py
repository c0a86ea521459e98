"""The run ledger: each scheduled run's attempts and steps, in the score log's database.

Table ``runs`` on its own metadata: one row per step of an attempt (``started``, then ``done``,
``failed`` or ``skipped``) and one for the attempt itself (step :data:`WHOLE_RUN`). A row left
``started`` by a killed process is marked ``failed`` by :func:`close_abandoned`.
"""

from __future__ import annotations

import os
import socket
from datetime import UTC, date, datetime

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from crm.settings import Settings
from serving.score_log import as_utc

WHOLE_RUN = "run"  # the ledger's step name of a whole attempt

ledger_metadata = sa.MetaData()

runs = sa.Table(
    "runs",
    ledger_metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("run_id", sa.String(64), nullable=False),  # one attempt; the score log's request id
    sa.Column("kind", sa.String(16), nullable=False),  # nightly | retrain
    sa.Column("run_date", sa.Date, nullable=False),  # the night (day) the run stands for
    sa.Column("step", sa.String(32), nullable=False),  # a step's name, or "run" for the attempt
    sa.Column("status", sa.String(16), nullable=False),  # started | done | failed | skipped
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("message", sa.Text, nullable=True),
    sa.Column("host", sa.String(255), nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
)
sa.Index("runs_by_date", runs.c.kind, runs.c.run_date, runs.c.step, runs.c.status)


def open_ledger(settings: Settings) -> Engine:
    """The score log's engine, with the ledger's table created if missing."""
    from serving.score_log import open_log

    engine = open_log(settings.score_log_url())
    ledger_metadata.create_all(engine)
    return engine


def now_utc() -> datetime:
    return datetime.now(UTC)


def finished_at(engine: Engine, kind: str, run_date: date) -> datetime | None:
    """When an attempt of ``kind`` for ``run_date`` finished, or None when none has."""
    query = sa.select(sa.func.max(runs.c.finished_at)).where(
        runs.c.kind == kind,
        runs.c.run_date == run_date,
        runs.c.step == WHOLE_RUN,
        runs.c.status == "done",
    )
    with engine.connect() as conn:
        return as_utc(conn.execute(query).scalar())


def ledger(engine: Engine, kind: str | None = None, run_date: date | None = None) -> pd.DataFrame:
    """The ledger's rows (of ``kind`` and ``run_date`` when given), oldest first."""
    query = sa.select(runs).order_by(runs.c.id)
    if kind is not None:
        query = query.where(runs.c.kind == kind)
    if run_date is not None:
        query = query.where(runs.c.run_date == run_date)
    with engine.connect() as conn:
        return pd.DataFrame(conn.execute(query).mappings().all(), columns=list(runs.c.keys()))


def start_step(
    engine: Engine, run_id: str, kind: str, run_date: date, step: str, status: str = "started"
) -> int:
    """Append a step's row (``started``, or ``skipped`` already finished); returns its id."""
    now = now_utc()
    row = {
        "run_id": run_id,
        "kind": kind,
        "run_date": run_date,
        "step": step,
        "status": status,
        "started_at": now,
        "finished_at": None if status == "started" else now,
        "host": socket.gethostname(),
        "pid": os.getpid(),
    }
    with engine.begin() as conn:
        key = conn.execute(runs.insert().values(**row)).inserted_primary_key
    return int(key[0]) if key else 0


def finish_step(engine: Engine, row_id: int, status: str, message: str) -> None:
    """Close a step's row with its outcome."""
    with engine.begin() as conn:
        conn.execute(
            runs.update()
            .where(runs.c.id == row_id)
            .values(status=status, finished_at=now_utc(), message=message)
        )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def close_abandoned(engine: Engine) -> int:
    """Mark ``failed`` the rows this host's killed runs left ``started`` (their process is gone).
    Call with the run lock held. Returns the rows marked."""
    host = socket.gethostname()
    query = sa.select(runs.c.id, runs.c.pid).where(runs.c.status == "started", runs.c.host == host)
    with engine.begin() as conn:
        gone = [(r.id, r.pid) for r in conn.execute(query) if not _alive(r.pid)]
        for row_id, pid in gone:
            conn.execute(
                runs.update()
                .where(runs.c.id == row_id)
                .values(
                    status="failed",
                    message=f"interrupted: process {pid} on {host} ended before the step did",
                )
            )
    return len(gone)


def holder(engine: Engine) -> str:
    """Who is running now, from the ledger: the latest attempt still ``started``."""
    query = sa.select(runs).where(runs.c.status == "started").order_by(runs.c.id.desc())
    host = socket.gethostname()
    with engine.connect() as conn:
        # rows a killed process left behind are not who holds the lock
        rows = [
            r for r in conn.execute(query).mappings().all() if r["host"] != host or _alive(r["pid"])
        ]
    attempt = next((r for r in rows if r["step"] == WHOLE_RUN), None)
    if attempt is None:
        return "a run that has not reached the ledger yet"
    step = next(
        (r for r in rows if r["run_id"] == attempt["run_id"] and r["step"] != WHOLE_RUN), None
    )
    said = (
        f"the {attempt['kind']} run for {attempt['run_date']} (process {attempt['pid']} on "
        f"{attempt['host']}, started {as_utc(attempt['started_at']):%Y-%m-%d %H:%M:%S} UTC"
    )
    return said + (f", now at step {step['step']})" if step is not None else ")")
