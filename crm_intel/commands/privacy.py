"""``crm-intel erase`` (the right to erasure) and ``crm-intel audit`` (who did what, when)."""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from typing import Annotated, Any

import typer
from rich.table import Table

from crm.settings import Settings
from crm_intel.commands.common import (
    DataDirOption,
    JsonOption,
    console,
    emit_json,
    fail,
    settings_for,
)


def record_cli_event(
    settings: Settings, action: str, subject: str, detail: Mapping[str, Any]
) -> None:
    """Record an audit event by the CLI's user (``CRM_INTEL_ACTOR``, else the OS login).

    Raises:
        typer.Exit: the audit log could not be written (the action itself has happened).
    """
    from sqlalchemy.exc import SQLAlchemyError

    from serving import audit
    from serving.score_log import open_log

    try:
        audit.record(
            open_log(settings.score_log_url()), audit.current_actor(), action, subject, detail
        )
    except SQLAlchemyError as err:
        raise fail(f"{action} done, but its audit event could not be recorded: {err}", 1) from None


def _on_terminal() -> bool:
    return sys.stdin.isatty()


def _removed(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{n:,} {place}" for place, n in counts.items() if n) or "nothing"


def erase(
    lead: Annotated[
        str | None, typer.Option("--lead", help="The id of a lead to erase.", show_default=False)
    ] = None,
    account: Annotated[
        str | None,
        typer.Option(
            "--account",
            help="The id of an account to erase, with all its leads.",
            show_default=False,
        ),
    ] = None,
    yes: Annotated[
        bool, typer.Option("--yes", help="Do not ask to confirm (required without a terminal).")
    ] = False,
    data_dir: DataDirOption = None,
    json_: JsonOption = False,
) -> None:
    """Erase a lead, or an account with all its leads, from every raw and feature table, the
    online store and the score log (the right to erasure); recorded in the audit log without
    the id."""
    from crm_intel.erasure import UnknownIdError, preview
    from crm_intel.erasure import erase as erase_entity
    from features.redis_store import OnlineStoreUnreachableError

    if (lead is None) == (account is None):
        raise fail("give exactly one of --lead ID or --account ID")
    entity, entity_id = ("lead", lead) if lead is not None else ("account", account)
    assert entity_id is not None
    settings = settings_for(data_dir)
    try:
        found = preview(settings, entity, entity_id)
    except (UnknownIdError, ValueError, OnlineStoreUnreachableError) as err:
        raise fail(str(err)) from None
    if not yes:
        if not _on_terminal():
            raise fail("erasure cannot be undone: add --yes to erase without a terminal")
        console.print(f"{entity} {entity_id} is held in: {_removed(found)}", highlight=False)
        if not typer.confirm(f"Erase {entity} {entity_id} for good?", default=False, err=True):
            raise fail("nothing erased", 1)
    try:
        counts = erase_entity(
            settings,
            entity,
            entity_id,
            progress=lambda p: console.print(f"[dim]erasing from {p}[/]"),
        )
    except UnknownIdError as err:  # erased by someone else since the preview
        raise fail(str(err)) from None
    except OnlineStoreUnreachableError as err:  # what was erased stays erased: run it again
        raise fail(f"{err}: run the erasure again once it answers") from None
    console.print(f"erased the {entity}: {_removed(counts)} (recorded in the audit log)")
    if json_:
        emit_json({"entity": entity, "removed": counts, "total": sum(counts.values())})


def audit(
    limit: Annotated[
        int | None, typer.Option("--limit", min=1, help="Show only the N newest events.")
    ] = None,
    data_dir: DataDirOption = None,
    json_: JsonOption = False,
) -> None:
    """The audit log, newest first: promotions, rollbacks and erasures, who and when."""
    from serving.audit import events
    from serving.score_log import open_log

    settings = settings_for(data_dir)
    rows = events(open_log(settings.score_log_url()), limit)
    if json_:
        emit_json({"events": rows})
        return
    if not rows:
        console.print("the audit log is empty")
        return
    table = Table(title="Audit log")
    for column in ("at (UTC)", "actor", "action", "subject", "detail"):
        table.add_column(column, overflow="fold")
    for row in rows:
        detail = row["detail"]
        shown = "\n".join(f"{k}: {v}" for k, v in detail.items() if v != 0)
        table.add_row(
            f"{row['at']:%Y-%m-%d %H:%M:%S}",
            row["actor"],
            row["action"],
            row["subject"],
            shown or json.dumps(detail),
        )
    console.print(table)
