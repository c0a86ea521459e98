"""``crm-intel quickstart``: from a CRM's export to a serving scoring API, in one command.

The same stages as ``make demo``, on the user's own export instead of the simulated CRM: import
(any ``--format``), features (build, apply, materialise), both models (each with the data
sufficiency verdict), attribution (credit and the marketers' page) and the service. Each stage
is the CLI's own command, run in this process, so its output, errors and exit codes are those
the user would see running them one by one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import click
import typer
from rich.markup import escape

from crm_intel.commands.common import DataDirOption, console, fail, settings_for
from crm_intel.commands.importing import FormatOption, MappingOption


def _stages(
    source: Path, export_format: str, mapping: Path | None, data_dir: Path
) -> list[tuple[str, list[str], bool]]:
    """(what, the command's arguments, whether the quickstart stops when it fails)."""
    where = ["--data-dir", str(data_dir)]
    attribution = data_dir / "attribution"
    mapped = ["--mapping", str(mapping)] if mapping is not None else []
    return [
        (
            "import",
            ["import", "--from", str(source), "--format", export_format, *mapped, *where],
            True,
        ),
        ("features", ["features", "build", *where], True),
        ("feature store", ["features", "apply", *where], True),
        ("online features", ["features", "materialize", *where], True),
        ("lead model", ["train", "lead", *where], True),
        ("churn model", ["train", "churn", *where], True),
        (
            "attribution",
            ["attribution", "run", "--out", str(attribution / "credit.parquet"), *where],
            False,
        ),
        (
            "attribution page",
            ["attribution", "report", "--out", str(attribution / "report.html"), *where],
            False,
        ),
    ]


def quickstart(
    from_: Annotated[
        Path,
        typer.Option(
            "--from",
            help="Folder holding your CRM's export (its shape: --format).",
            exists=True,
            file_okay=False,
            resolve_path=True,
        ),
    ],
    format_: FormatOption = "contract",
    mapping: MappingOption = None,
    port: Annotated[
        int | None, typer.Option(help="Port of the API (default 3000, or CRM_INTEL_SERVE_PORT).")
    ] = None,
    serve: Annotated[
        bool, typer.Option("--serve/--no-serve", help="End by serving the scoring API.")
    ] = True,
    data_dir: DataDirOption = None,
) -> None:
    """Import your CRM's export, build features, train both models, run attribution and serve
    the scoring API: every stage of the demo, on your data."""
    from crm_intel.cli import app  # the commands themselves; imported here, cli imports us

    target = settings_for(data_dir).data_dir
    stages = _stages(from_, format_.lower(), mapping, target)
    command = typer.main.get_command(app)
    skipped: list[str] = []
    total = len(stages) + serve
    for number, (what, args, required) in enumerate(stages, start=1):
        console.print(
            f"[bold]── {number}/{total}: {what}[/]  crm-intel {escape(' '.join(args))}",
            highlight=False,
            soft_wrap=True,
        )
        try:
            command.main(args, prog_name="crm-intel", standalone_mode=False)
        except click.exceptions.Exit as done:
            if done.exit_code == 0:
                continue
            if required:
                raise fail(
                    f"quickstart stopped at {what} (crm-intel {escape(' '.join(args))}); "
                    "the problem is above"
                ) from None
            skipped.append(what)
        except click.ClickException as err:
            err.show()
            raise fail(f"quickstart stopped at {what}") from None
    for what in skipped:
        console.print(f"[yellow]{what} did not complete (see above); the rest is ready[/]")
    console.print(
        f"[green]ready[/]: raw tables, features and models under {escape(str(target))}; "
        f"attribution page {escape(str(target / 'attribution' / 'report.html'))}"
    )
    if serve:
        console.print(f"[bold]── {len(stages) + 1}/{len(stages) + 1}: scoring API[/]")
        from crm_intel.commands.serving import serve as serve_api

        serve_api(port=port, host=None, data_dir=data_dir)
