"""``crm-intel run nightly|retrain``: the scheduled runs (cron), one at a time, once per date."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from crm_intel.commands.common import (
    DataDirOption,
    JsonOption,
    console,
    emit_json,
    fail,
    settings_for,
)
from crm_intel.commands.importing import FormatOption, FromOption, MappingOption

app = typer.Typer(
    help="Scheduled runs: nightly import, features, scores and CRM write-back; retraining. One "
    "run at a time per data directory, once per date, each step in the run ledger.",
    no_args_is_help=True,
)

DateOption = Annotated[
    datetime | None,
    typer.Option(
        "--date",
        formats=["%Y-%m-%d"],
        help="The day the run stands for (default: today, UTC). A date whose run finished is "
        "not run again; after a failed run it is.",
        show_default=False,
    ),
]
LOCKED_EXIT = 75  # EX_TEMPFAIL: another run holds the lock, try again later
FAILED_EXIT = 1


def _on_step(index: int, total: int, step: str, outcome: Any) -> None:
    where = f"[{index}/{total}] {step}"
    if outcome is None:
        console.print(f"{where} …", highlight=False)
        return
    colour = {"done": "green", "skipped": "yellow", "failed": "bold red"}[outcome.status]
    # a failure's reason is the run's closing error line
    said = "" if outcome.status == "failed" else f": {escape(outcome.message)}"
    console.print(
        f"{where} [{colour}]{outcome.status}[/] in {outcome.seconds:.1f}s{said}",
        highlight=False,
        soft_wrap=True,
    )


def _run(kind: str, day: datetime | None, data_dir: Path | None, json_: bool, **kw: Any) -> None:
    from crm_intel.runs import RunLocked, execute

    settings = settings_for(data_dir)
    run_date: date = (day or datetime.now(UTC)).date()
    try:
        outcome = execute(settings, kind, run_date, on_step=_on_step, **kw)
    except RunLocked as err:
        raise fail(escape(str(err)), code=LOCKED_EXIT) from None
    if outcome.status == "already_done":
        console.print(escape(outcome.message), highlight=False, soft_wrap=True)
    elif outcome.status == "done":
        console.print(
            f"[green]{kind} run for {run_date} done[/]: {escape(outcome.message)}", highlight=False
        )
    if json_:
        emit_json(outcome.as_dict())
    if outcome.status == "failed":
        raise fail(
            f"{kind} run for {run_date} stopped: {escape(outcome.message)}; the previous outputs "
            "are left serving, and the next run for this date runs again",
            code=FAILED_EXIT,
        )


@app.command()
def nightly(
    from_: FromOption = None,
    format_: FormatOption = "contract",
    mapping: MappingOption = None,
    day: DateOption = None,
    data_dir: DataDirOption = None,
    json_: JsonOption = False,
) -> None:
    """Import, features, batch scores and the CRM's write-back files.

    Imports --from (when given; without it the raw tables are kept as they are), builds,
    applies and materialises the features, batch-scores every lead and account into the score
    log (with trend), and writes
    DATA_DIR/writeback/leads.csv and accounts.csv: one row per open lead and live account, the
    id and the CRM's field names; for a Salesforce or HubSpot export, keyed by that CRM's ids
    (Id, Record ID), ready for its update import."""
    _run(
        "nightly",
        day,
        data_dir,
        json_,
        source=from_,
        source_format=format_.lower(),
        mapping=mapping,
    )


@app.command()
def retrain(
    day: DateOption = None, data_dir: DataDirOption = None, json_: JsonOption = False
) -> None:
    """Back-test, train and gate both models.

    Back-tests lead conversion and churn risk at rolling cutoffs, trains both, and registers
    each through the promotion gate: a new version becomes champion only when it beats the
    current one."""
    _run("retrain", day, data_dir, json_)
