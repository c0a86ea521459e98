"""Options and output helpers shared by every CLI command."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console, ConsoleDimensions
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

# Width of the output when it is not a terminal (a file, a pipe, CI's log): wide enough that rich
# never folds or shortens a cell (`lead_conv…`), and no line is padded to it.
PIPED_WIDTH = 10_000


class _Console(Console):
    """rich's console, as wide as :data:`PIPED_WIDTH` when not writing to a terminal (rich's own
    default there is 80 columns). ``COLUMNS`` still sets the width when the user gives it."""

    @property
    def size(self) -> ConsoleDimensions:
        size = super().size
        if self.is_terminal or os.environ.get("COLUMNS", "").isdigit():
            return size
        return ConsoleDimensions(PIPED_WIDTH, size.height)

    @size.setter
    def size(self, new_size: tuple[int, int]) -> None:
        Console.size.fset(self, new_size)  # type: ignore[attr-defined]


# Human-readable output goes to stderr when --json is given, so stdout ends with the JSON line.
# Every command prints through this one console.
console: Console = _Console(stderr=True)


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
    """A rich progress bar on stderr; yields ``advance(step_description)``.

    When stderr is not a terminal (a log file, CI), a bar cannot redraw: each new step is one
    line instead (``description: step``), and the end one line with the time taken.
    """
    if not console.is_terminal:
        with _lines(description) as line:

            def advance_line(step: str | None = None, amount: float = 1) -> None:
                if step:
                    line(step)

            yield advance_line
        return
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


@contextmanager
def status(description: str) -> Iterator[Callable[[str], None]]:
    """A spinner on stderr while a stage runs; yields ``update(line)`` for what it is doing now.

    When stderr is not a terminal, a spinner prints nothing: the stage is one line as it starts
    (``description…``), each update a line, and the end one line with the time taken.
    """
    if console.is_terminal:
        with console.status(description) as spinner:
            yield lambda line: spinner.update(f"{description}: {line}")
        return
    with _lines(description) as line:
        yield line


@contextmanager
def _lines(description: str) -> Iterator[Callable[[str], None]]:
    """One plain line as a stage starts, one per new step, one with the time at its end."""
    console.print(f"{description}…", highlight=False, markup=False)
    started = time.perf_counter()
    last: list[str] = []

    def line(step: str) -> None:
        if last != [step]:  # a bar's advance repeats its step when the step ends
            last[:] = [step]
            console.print(f"{description}: {step}", highlight=False, markup=False)

    yield line
    console.print(
        f"{description}: done in {time.perf_counter() - started:.1f} s",
        highlight=False,
        markup=False,
    )
