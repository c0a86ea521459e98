"""``crm-intel simulate``: write the demo CRM with its planted ground truth."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from crm_intel.commands.common import (
    DataDirOption,
    JsonOption,
    console,
    emit_json,
    fail,
    progress,
    settings_for,
)

STEPS = 12


def simulate(
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same bytes.")] = 7,
    accounts: Annotated[int, typer.Option(help="Number of accounts (companies).")] = 2_000,
    leads: Annotated[int, typer.Option(help="Number of leads (people).")] = 20_000,
    months: Annotated[int, typer.Option(help="Months of history.")] = 18,
    out: Annotated[
        Path | None,
        typer.Option(help="Data directory to write into (default: the data directory)."),
    ] = None,
    data_dir: DataDirOption = None,
    json_: JsonOption = False,
) -> None:
    """Simulate a B2B SaaS CRM with planted ground truth into DATA_DIR/raw and DATA_DIR/truth."""
    from simulator import SimulationConfig, write_simulation
    from simulator import simulate as run

    target = out if out is not None else settings_for(data_dir).data_dir
    try:
        config = SimulationConfig(seed=seed, accounts=accounts, leads=leads, months=months)
    except ValueError as err:
        raise fail(str(err)) from None
    started = time.perf_counter()
    with progress("simulate", total=STEPS) as advance:
        result = run(config, progress=advance)
        advance("writing")
        paths = write_simulation(result, target)
    seconds = time.perf_counter() - started
    summary = result.summary
    table = Table(title=f"Demo CRM (seed {seed}) → {target}")
    table.add_column("table")
    table.add_column("rows", justify="right")
    for name, rows in summary["rows"].items():
        table.add_row(name, f"{rows:,}")
    console.print(table)
    console.print(
        f"lead conversion {summary['lead_conversion_rate']:.1%} · annual logo churn "
        f"{summary['annual_logo_churn']:.1%} · touches per lead "
        f"{summary['touches_per_lead']['mean']:.1f} · {seconds:.1f}s"
    )
    if json_:
        emit_json(
            {
                **summary,
                "seconds": round(seconds, 3),
                "raw_dir": str(paths["raw"]),
                "truth_dir": str(paths["truth"]),
            }
        )
