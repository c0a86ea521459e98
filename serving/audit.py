"""The audit log: who promoted, rolled back or erased what, and when. Append-only.

One table, ``audit_events``, in the score log's database (:mod:`serving.score_log`: SQLite under
the data directory by default, PostgreSQL with ``CRM_INTEL_DATABASE_URL``). Each row is one
action: when (UTC), who (the CLI user, ``CRM_INTEL_ACTOR`` or the OS login, or an API key id),
what (``promote``, ``rollback``, ``erase``), on what (``lead_conversion v3``; for an erasure only
the entity kind, ``lead`` or ``account``, never the id erased) and a JSON detail (for an erasure
only the counts of rows removed per place: no ids, no personal data).

Rows are only ever added: this module has no update or delete, and on SQLite and PostgreSQL the
table refuses ``UPDATE`` and ``DELETE`` (``TRUNCATE`` too on PostgreSQL) by trigger.
"""

from __future__ import annotations

import getpass
import json
import os
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from serving.score_log import metadata

ACTIONS: tuple[str, ...] = ("promote", "rollback", "erase")
ACTOR_VARIABLE = "CRM_INTEL_ACTOR"

audit_events = sa.Table(
    "audit_events",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("actor", sa.String(128), nullable=False),
    sa.Column("action", sa.String(16), nullable=False),
    sa.Column("subject", sa.String(128), nullable=False),
    sa.Column("detail", sa.Text, nullable=False),  # JSON object
)
sa.Index("audit_events_by_time", audit_events.c.at)

_REFUSE = "audit_events is append-only"
for _statement in ("UPDATE", "DELETE"):
    sa.event.listen(
        audit_events,
        "after_create",
        sa.DDL(
            f"CREATE TRIGGER audit_events_no_{_statement.lower()} BEFORE {_statement} ON "
            f"audit_events BEGIN SELECT RAISE(ABORT, '{_REFUSE}'); END"
        ).execute_if(dialect="sqlite"),
    )
sa.event.listen(
    audit_events,
    "after_create",
    sa.DDL(
        "CREATE OR REPLACE FUNCTION audit_events_append_only() RETURNS trigger "
        f"LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION '{_REFUSE}'; END $$"
    ).execute_if(dialect="postgresql"),
)
sa.event.listen(
    audit_events,
    "after_create",
    sa.DDL(
        "CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON "
        "audit_events FOR EACH STATEMENT EXECUTE FUNCTION audit_events_append_only()"
    ).execute_if(dialect="postgresql"),
)


def current_actor() -> str:
    """Who is acting at the command line: ``CRM_INTEL_ACTOR`` when set, else the OS login."""
    named = os.environ.get(ACTOR_VARIABLE, "").strip()
    if named:
        return named
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name (a container user with no passwd entry)
        return f"uid-{os.getuid()}" if hasattr(os, "getuid") else "unknown"


def _create(engine: Engine) -> None:
    # The table shares the score log's metadata; open_log creates it only when this module
    # was imported first, so create it (and its triggers) here when missing.
    metadata.create_all(engine, tables=[audit_events])


def record(engine: Engine, actor: str, action: str, subject: str, detail: Mapping[str, Any]) -> int:
    """Append one event; returns its id.

    Args:
        actor: who acted (a login name or an API key id, never a key).
        action: one of :data:`ACTIONS`.
        subject: what the action was on, e.g. ``lead_conversion v3``; for an erasure the entity
            kind only, never the id erased.
        detail: JSON-serialisable facts about the action (an erasure's counts per place).

    Raises:
        ValueError: an unknown action, or an empty actor or subject.
    """
    if action not in ACTIONS:
        raise ValueError(f"unknown audit action {action!r}: expected one of {', '.join(ACTIONS)}")
    if not actor.strip() or not subject.strip():
        raise ValueError("an audit event needs an actor and a subject")
    _create(engine)
    row = {
        "at": datetime.now(UTC),
        "actor": actor.strip(),
        "action": action,
        "subject": subject.strip(),
        "detail": json.dumps(dict(detail), default=str, sort_keys=True, separators=(",", ":")),
    }
    with engine.begin() as conn:
        result = conn.execute(audit_events.insert().values(**row))
    key = result.inserted_primary_key
    assert key is not None
    return int(key[0])


def events(engine: Engine, limit: int | None = None) -> list[dict[str, Any]]:
    """Recorded events, newest first: ``id``, ``at`` (UTC), ``actor``, ``action``, ``subject``
    and ``detail`` (a dict); at most ``limit`` of them when given."""
    _create(engine)
    query = sa.select(audit_events).order_by(audit_events.c.at.desc(), audit_events.c.id.desc())
    if limit is not None:
        query = query.limit(max(int(limit), 0))
    with engine.connect() as conn:
        rows = [dict(r) for r in conn.execute(query).mappings()]
    for row in rows:
        at = row["at"]
        row["at"] = at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
        row["detail"] = json.loads(row["detail"])
    return rows
