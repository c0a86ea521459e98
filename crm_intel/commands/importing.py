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

FormatOption = Annotated[
    str,
    typer.Option(
        "--format",
        help="Shape of the export: contract (one file per contract table), salesforce (Data "
        "Export / Data Loader CSVs: Account.csv, Lead.csv, ...), hubspot (HubSpot's CSV "
        "exports) or maven (accounts.csv, sales_pipeline.csv). See docs/data-contract.md.",
        case_sensitive=False,
    ),
]
FromOption = Annotated[
    Path | None,
    typer.Option(
        "--from",
        help="Folder holding the CRM's export (its shape: --format).",
        show_default=False,
        exists=True,
        file_okay=False,
        resolve_path=True,
    ),
]
MappingOption = Annotated[
    Path | None,
    typer.Option(
        "--mapping",
        help="YAML merged over the format's mapping (crm/exports/<format>.yaml): your org's "
        "picklist values and custom field names. salesforce and hubspot only.",
        show_default=False,
        exists=True,
        dir_okay=False,
        resolve_path=True,
    ),
]


def import_(
    from_: FromOption = None,
    format_: FormatOption = "contract",
    mapping: MappingOption = None,
    maven: Annotated[
        Path | None,
        typer.Option(
            "--maven",
            help="Same as --from FOLDER --format maven.",
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
    from crm.exports import FORMATS
    from crm.importer import import_export

    kind = format_.lower()
    if kind not in FORMATS:
        raise fail(f"--format {format_}: use one of {', '.join(FORMATS)}")
    if maven is not None and from_ is None:
        source, kind = maven, "maven"
    elif from_ is not None and maven is None:
        source = from_
    else:
        raise fail("give exactly one of --from FOLDER or --maven FOLDER")
    if mapping is not None and kind not in ("salesforce", "hubspot"):
        raise fail(f"--mapping applies to --format salesforce or hubspot, not {kind}")
    settings = settings_for(data_dir)
    raw_dir = settings.raw_dir
    try:
        counts = import_export(source, raw_dir, kind, mapping, lead_identity=settings.lead_identity)
    except ContractError as err:
        for problem in err.problems:
            console.print(escape(str(problem)), highlight=False, soft_wrap=True)
        hint = _hint(source, kind)
        if hint:
            console.print(f"hint: {escape(hint)}", highlight=False, soft_wrap=True)
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


def _hint(source: Path, kind: str) -> str | None:
    """What the user most likely meant, when the folder looks like another shape of export."""
    if kind != "contract":
        return None
    if (source / "raw" / "leads.parquet").is_file() or (source / "raw" / "leads.csv").is_file():
        return (
            f"{source} holds a data directory (simulate --out writes raw/ and truth/): "
            f"import --from {source / 'raw'}"
        )
    for other, marker in (
        ("maven", "sales_pipeline.csv"),
        ("salesforce", "Lead.csv"),
        ("hubspot", "contacts.csv"),
    ):
        if (source / marker).is_file():
            return f"this looks like a {other} export: add --format {other}"
    return None
