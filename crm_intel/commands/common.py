"""Options and output helpers shared by every CLI command."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from crm.settings import Settings, get_settings

DataDirOption = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        envvar="CRM_INTEL_DATA_DIR",
        help="Data directory every stage reads and writes (default: data/ at the project root).",
        show_default=False,
    ),
]
JsonOption = Annotated[
    bool, typer.Option("--json", help="Print the figures as one JSON object on the last line.")
]

# Human-readable output goes to stderr when --json is given, so stdout ends with the JSON line.
console = Console(stderr=True)


def settings_for(data_dir: Path | None) -> Settings:
    """Settings with the data directory the user chose."""
    return get_settings(data_dir)


def emit_json(payload: dict[str, Any]) -> None:
    """Print exactly one JSON object as the last line of stdout."""
    sys.stdout.write(json.dumps(payload, default=str, sort_keys=True) + "\n")
    sys.stdout.flush()


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print a clear error and return the exit to raise."""
    console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


@contextmanager
def progress(description: str, total: float | None = None) -> Iterator[Any]:
    """A rich progress bar on stderr; yields ``advance(step_description)``."""
    bar = Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:.0f}/{task.total:.0f}"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )
    with bar:
        task = bar.add_task(description, total=total)

        def advance(step: str | None = None, amount: float = 1) -> None:
            bar.update(
                task, advance=amount, description=f"{description}: {step}" if step else description
            )

        yield advance
