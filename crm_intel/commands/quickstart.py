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
    """(what, the command's arguments, whether the quickstart stops when it fails).

    Without the data (import, features) nothing else can run; a model the history is not enough
    for (its sufficiency verdict says why) leaves the rest to do, and the API unserved."""
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
        ("lead model", ["train", "lead", *where], False),
        ("churn model", ["train", "churn", *where], False),
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
    failed: list[str] = []
    total = len(stages) + serve
    for number, (what, args, required) in enumerate(stages, start=1):
        console.print(
            f"[bold]── {number}/{total}: {what}[/]  crm-intel {escape(' '.join(args))}",
            highlight=False,
            soft_wrap=True,
        )
        # not standalone: a command's exit comes back as its code instead of ending this one
        try:
            code = command.main(args, prog_name="crm-intel", standalone_mode=False)
        except click.ClickException as err:
            err.show()
            code = err.exit_code
        if code in (None, 0):
            continue
        if required:
            raise fail(
                f"quickstart stopped at {what} (crm-intel {escape(' '.join(args))}); "
                "the problem is above"
            )
        failed.append(what)
    for what in failed:
        console.print(f"[yellow]{what} did not complete: the reason is above[/]", highlight=False)
    done = ", ".join(what for what, _, _ in stages if what not in failed)
    console.print(f"[green]done[/]: {done} (under {escape(str(target))})", highlight=False)
    models = {"lead model", "churn model"} & set(failed)
    if models:
        raise fail(
            f"not serving: the scoring API needs both models ({' and '.join(sorted(models))} "
            "did not train)",
            code=1,
        )
    if failed:
        raise typer.Exit(1)
    if serve:
        console.print(f"[bold]── {total}/{total}: scoring API[/]")
        from crm_intel.commands.serving import serve as serve_api

        serve_api(port=port, host=None, data_dir=data_dir)
