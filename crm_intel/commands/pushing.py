"""``crm-intel push salesforce``: a write-back CSV into Salesforce with Bulk API 2.0 jobs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from crm_intel.commands.common import JsonOption, console, emit_json, fail, settings_for

SHOWN_FAILED_ROWS = 20
SOME_FAILED_EXIT = 1
COLUMNS = ("job", "state", "rows", "processed", "saved", "created", "failed", "unprocessed")

app = typer.Typer(help="Push a write-back file into the CRM.", no_args_is_help=True)


@app.command()
def salesforce(
    file: Annotated[
        Path,
        typer.Option(
            "--file",
            help="The CSV to push, e.g. data/writeback/leads.csv (UTF-8, a header of API names).",
            show_default=False,
        ),
    ],
    object_name: Annotated[
        str,
        typer.Option(
            "--object", help="The Salesforce object: Lead, Account, …", show_default=False
        ),
    ],
    external_id: Annotated[
        str,
        typer.Option(
            "--external-id",
            help="The key column: the external id field of an upsert (an update matches Id).",
        ),
    ] = "Id",
    operation: Annotated[str, typer.Option("--operation", help="upsert or update.")] = "upsert",
    instance_url: Annotated[
        str | None,
        typer.Option(
            "--instance-url",
            help="The org, https://<domain>.my.salesforce.com "
            "(default: CRM_INTEL_SALESFORCE_INSTANCE_URL).",
            show_default=False,
        ),
    ] = None,
    empty_as_null: Annotated[
        bool,
        typer.Option(
            "--empty-as-null/--keep-empty",
            help="Empty cells (but the key's) empty the field, as the write-back means for the "
            "emptied scores of stale leads and accounts (sent as #N/A). --keep-empty uploads the "
            "file byte for byte: Salesforce then leaves a field with an empty cell as it was.",
        ),
    ] = True,
    timeout: Annotated[
        float,
        typer.Option("--timeout", min=1, help="Seconds to wait for each job to end."),
    ] = 600.0,
    json_: JsonOption = False,
) -> None:
    """Upsert (or update) every row of FILE into a Salesforce object with Bulk API 2.0 ingest
    jobs, then report each job and every failed row. The access token comes from
    CRM_INTEL_SALESFORCE_ACCESS_TOKEN (or .env) only. Exits 0 when every row was saved, 1 when
    some failed, 2 on an error."""
    from crm.exports.salesforce_bulk import OPERATIONS, SalesforcePushError, push_csv

    settings = settings_for(None)
    if operation not in OPERATIONS:
        raise fail(f"--operation {operation}: use one of {', '.join(OPERATIONS)}")
    url = instance_url or settings.salesforce_instance_url
    if not url:
        raise fail(
            "no Salesforce org: give --instance-url or set CRM_INTEL_SALESFORCE_INSTANCE_URL"
        )
    token = settings.salesforce_access_token
    if token is None or not token.get_secret_value():
        raise fail("no access token: set CRM_INTEL_SALESFORCE_ACCESS_TOKEN (env or .env)")
    console.print(
        f"pushing {file} into {object_name} at {url} ({operation} on {external_id})",
        highlight=False,
        markup=False,
    )
    try:
        report = push_csv(
            file,
            object_name,
            url,
            token.get_secret_value(),
            external_id=external_id,
            operation=operation,
            api_version=settings.salesforce_api_version,
            poll_seconds=settings.salesforce_poll_seconds,
            timeout_seconds=timeout,
            rows_per_job=settings.salesforce_rows_per_job,
            empty_as_null=empty_as_null,
            on_progress=lambda line: console.print(
                line, style="dim", highlight=False, markup=False
            ),
        )
    except SalesforcePushError as err:
        if err.completed:
            done = ", ".join(job.job_id for job in err.completed)
            console.print(f"jobs that ended before it (their rows are saved): {done}")
        hint = (
            " (get a new access token into CRM_INTEL_SALESFORCE_ACCESS_TOKEN)"
            if err.status == 401
            else ""
        )
        raise fail(f"{err}{hint}") from None

    if not report.jobs:
        console.print(f"{file} has no rows: nothing pushed", highlight=False, markup=False)
    else:
        table = Table(title=f"{object_name} {operation} from {file.name}", title_justify="left")
        for column in COLUMNS:
            table.add_column(column, justify="left" if column in ("job", "state") else "right")
        for job in report.jobs:
            counts = (job.rows, job.processed, job.successful, job.created, job.failed)
            table.add_row(job.job_id, job.state, *(f"{n:,}" for n in (*counts, job.unprocessed)))
        console.print(table)
    failed_rows = report.failed_rows
    if failed_rows:
        console.print(f"[bold]{len(failed_rows):,} failed rows[/] ({external_id}: error):")
        for row in failed_rows[:SHOWN_FAILED_ROWS]:
            console.print(
                f"  {row.key or '(empty)'}: {row.error}",
                highlight=False,
                markup=False,
                soft_wrap=True,
            )
        if len(failed_rows) > SHOWN_FAILED_ROWS:
            more = len(failed_rows) - SHOWN_FAILED_ROWS
            console.print(f"  … and {more:,} more (all of them with --json)")
    if report.unprocessed:
        console.print(f"{report.unprocessed:,} rows were not processed: push them again")
    if json_:
        emit_json(report.as_dict())
    if not report.all_succeeded:
        raise typer.Exit(SOME_FAILED_EXIT)
    console.print(f"all {report.rows:,} rows saved in Salesforce")
