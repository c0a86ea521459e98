"""``crm-intel import``: check a CRM export against the data contract and write the raw tables."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from crm_intel.commands.common import (
    DataDirOption,
    JsonOption,
    console,
    emit_json,
    fail,
    settings_for,
)


def import_(
    from_: Annotated[
        Path | None,
        typer.Option(
            "--from",
            help="Folder with one CSV or Parquet file per contract table "
            "(accounts.csv, leads.csv, ...; see docs/data-contract.md).",
            show_default=False,
            exists=True,
            file_okay=False,
            resolve_path=True,
        ),
    ] = None,
    maven: Annotated[
        Path | None,
        typer.Option(
            "--maven",
            help="Folder with a Maven-style CRM export (accounts.csv, sales_pipeline.csv), "
            "mapped onto the contract.",
            show_default=False,
            exists=True,
            file_okay=False,
            resolve_path=True,
        ),
    ] = None,
    data_dir: DataDirOption = None,
    json_: JsonOption = False,
) -> None:
    """Import a CRM export into DATA_DIR/raw, all or nothing: on any problem nothing is written."""
    from crm.contract import TABLES, ContractError
    from crm.importer import import_folder, import_maven

    if from_ is not None and maven is None:
        source, kind, run = from_, "folder", import_folder
    elif maven is not None and from_ is None:
        source, kind, run = maven, "maven", import_maven
    else:
        raise fail("give exactly one of --from FOLDER or --maven FOLDER")
    raw_dir = settings_for(data_dir).raw_dir
    try:
        counts = run(source, raw_dir)
    except ContractError as err:
        for problem in err.problems:
            console.print(escape(str(problem)), highlight=False, soft_wrap=True)
        if kind == "folder" and (source / "sales_pipeline.csv").is_file():
            console.print(
                "hint: this looks like a Maven-style export; try --maven", highlight=False
            )
        raise fail(
            f"{escape(str(source))} breaks the data contract ({len(err.problems)} problem(s)"
            f" listed); nothing was written to {escape(str(raw_dir))}"
        ) from None

    tables = {name: rows for name, rows in counts.items() if name in TABLES}
    report = {key: value for key, value in counts.items() if key not in tables}
    table = Table(title="rows imported")
    table.add_column("table")
    table.add_column("rows", justify="right")
    for name, rows in tables.items():
        table.add_row(name, f"{rows:,}")
    console.print(table)
    console.print(escape(f"imported {source} → {raw_dir}"), highlight=False, soft_wrap=True)
    if report:
        console.print(
            " · ".join(f"{key.replace('_', ' ')} {value:,}" for key, value in report.items()),
            highlight=False,
            soft_wrap=True,
        )
    if json_:
        emit_json(
            {
                "tables": tables,
                "report": report,
                "format": kind,
                "source": str(source),
                "raw_dir": str(raw_dir),
            }
        )
