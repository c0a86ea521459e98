"""``crm-intel scores history``: what the score log holds for one lead or account."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from crm_intel.commands.common import (
    DataDirOption,
    JsonOption,
    console,
    emit_json,
    fail,
    settings_for,
)

app = typer.Typer(
    help="The score log: every score the API and batch runs gave.", no_args_is_help=True
)


@app.command()
def history(
    lead: Annotated[
        str | None, typer.Option("--lead", help="A lead id.", show_default=False)
    ] = None,
    account: Annotated[
        str | None, typer.Option("--account", help="An account id.", show_default=False)
    ] = None,
    data_dir: DataDirOption = None,
    json_: JsonOption = False,
) -> None:
    """Every logged score of one lead or account, oldest first, with its model and arm."""
    from serving.score_log import history as logged
    from serving.score_log import open_log

    if (lead is None) == (account is None):
        raise fail("give exactly one of --lead ID or --account ID")
    entity, entity_id = ("lead", lead) if lead is not None else ("account", account)
    assert entity_id is not None
    settings = settings_for(data_dir)
    rows = logged(open_log(settings.score_log_url()), entity, entity_id)
    if json_:
        emit_json({"entity": entity, "id": entity_id, "scores": rows})
        return
    if not rows:
        console.print(f"no logged scores for {entity} {entity_id}")
        return
    table = Table(title=f"Scores of {entity} {entity_id}")
    for column in (
        "scored at",
        "source",
        "model",
        "version",
        "arm",
        "score",
        "grade",
        "top reason",
    ):
        table.add_column(column, overflow="fold")
    for row in rows:
        top = row["reasons"][0]["label"] if row["reasons"] else ""
        table.add_row(
            f"{row['scored_at']:%Y-%m-%d %H:%M}",
            row["source"],
            row["model"],
            row["model_version"],
            row["arm"],
            str(row["score"]),
            row["grade"] or "",
            top,
        )
    console.print(table)
