"""``crm-intel simulate``: write the demo CRM with its planted ground truth."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

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

if TYPE_CHECKING:
    from simulator import SimulationConfig

STEPS = 13
DRIFT_HELP = (
    "Plant a change from a month on, for monitoring to detect; repeat for several. "
    "A channel's touch volume: 'channel=CHANNEL,volume=FACTOR,from_month=M' (e.g. "
    "'channel=paid_search,volume=3,from_month=9' triples paid-search touches from 9 months after "
    "the start; 0 stops the channel). A segment's conversion: "
    "'segment=DIMENSION:VALUE,conversion=FACTOR,from_month=M', DIMENSION industry or "
    "employee_band (e.g. 'segment=industry:software,conversion=0.5,from_month=9' halves the "
    "conversion hazard of software leads created from month 9). What changed, and by how much, "
    "goes to DATA_DIR/truth/drift.json. Without --drift the same seed gives the same bytes."
)


def simulate(
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same bytes.")] = 7,
    accounts: Annotated[int, typer.Option(help="Number of accounts (companies).")] = 2_000,
    leads: Annotated[int, typer.Option(help="Number of leads (people).")] = 20_000,
    months: Annotated[int, typer.Option(help="Months of history.")] = 18,
    drift: Annotated[
        list[str] | None, typer.Option(help=DRIFT_HELP, metavar="SPEC", show_default=False)
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(help="Data directory to write into (default: the data directory)."),
    ] = None,
    format_: Annotated[
        str,
        typer.Option(
            "--format",
            help="Also write the CRM as this CRM's export would hold it, into OUT/<format>/ "
            "(salesforce: Account.csv, Lead.csv, ... as the Data Export Service writes them; "
            "hubspot: HubSpot's CSV exports), for `import --from OUT/<format> --format <format>`."
            " contract: only the contract's tables (raw/).",
            case_sensitive=False,
        ),
    ] = "contract",
    lifetime_truth: Annotated[
        bool,
        typer.Option(
            "--lifetime-truth",
            help="Also write each live subscription's true expected remaining lifetime "
            "(truth/lifetime.parquet), which `value accounts` is checked against.",
        ),
    ] = False,
    duplicate_leads: Annotated[
        float,
        typer.Option(
            "--duplicate-leads",
            min=0.0,
            max=0.5,
            metavar="RATE",
            help="Give every lead an identity (names, e-mail, phone, company) and plant another "
            "record of RATE of them (typos, swapped names, a personal e-mail, another source, "
            "part of their touches), with the truth of which records are one person "
            "(truth/duplicate_leads.parquet), for `dedupe leads`. 0: none, and the same seed "
            "gives the same bytes.",
        ),
    ] = 0.0,
    data_dir: DataDirOption = None,
    json_: JsonOption = False,
) -> None:
    """Simulate a B2B SaaS CRM with planted ground truth into DATA_DIR/raw and DATA_DIR/truth."""
    from simulator import SimulationConfig, write_simulation
    from simulator import simulate as run

    target = out if out is not None else settings_for(data_dir).data_dir
    export_format = format_.lower()
    if export_format not in ("contract", "salesforce", "hubspot"):
        raise fail(f"--format {format_}: use contract, salesforce or hubspot")
    try:
        config = SimulationConfig(
            seed=seed,
            accounts=accounts,
            leads=leads,
            months=months,
            duplicate_leads=duplicate_leads,
        )
    except ValueError as err:
        raise fail(str(err)) from None
    if drift:
        config = _with_drift(config, drift)
    started = time.perf_counter()
    with progress("simulate", total=STEPS) as advance:
        result = run(config, progress=advance)
        advance("writing")
        paths = write_simulation(result, target, lifetime=lifetime_truth)
        if export_format != "contract":
            advance(f"writing the {export_format} export")
            paths["export"] = _write_export(result.tables, export_format, Path(target))
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
    if "export" in paths:
        console.print(f"{export_format} export → {paths['export']}", highlight=False)
    for planted in (result.drift or {}).get("drifts", []):
        console.print(f"drift {planted['spec']} from {planted['start'][:10]}: {_effect(planted)}")
    if json_:
        emit_json(
            {
                **summary,
                "seconds": round(seconds, 3),
                "raw_dir": str(paths["raw"]),
                "truth_dir": str(paths["truth"]),
                **({"export_dir": str(paths["export"])} if "export" in paths else {}),
                **({"drift_file": str(paths["truth"] / "drift.json")} if result.drift else {}),
            }
        )


def _write_export(tables: Any, export_format: str, target: Path) -> Path:
    """The simulated CRM as ``export_format``'s export, in ``<target>/<export_format>/``."""
    folder = target / export_format
    if export_format == "salesforce":
        from crm.exports.salesforce_writer import write_salesforce

        write_salesforce(tables, folder)
    else:
        from crm.exports.hubspot_writer import write_hubspot

        write_hubspot(tables, folder)
    return folder


def _effect(planted: dict[str, Any]) -> str:
    """One line of a planted drift's measured effect, from its ``drift.json`` entry."""
    effect = planted["effect"]
    if planted["kind"] == "channel_volume":
        return (
            f"{planted['channel']} touches per month {effect['touches_per_month_before']:,.0f} "
            f"before, {effect['touches_per_month_after']:,.0f} after"
        )
    rates = [
        effect[key]
        for key in (
            "conversion_rate_before",
            "conversion_rate_after",
            "conversion_rate_after_without_drift",
        )
    ]
    before, after, without = ("n/a" if r is None else f"{r:.1%}" for r in rates)
    return f"segment conversion {before} before, {after} after ({without} without the drift)"


def _with_drift(config: SimulationConfig, specs: list[str]) -> SimulationConfig:
    """``config`` with the ``--drift`` specs; anything wrong is a BadParameter of ``--drift``."""
    from simulator import parse_drift

    drifts = []
    for spec in specs:
        try:
            drifts.append(parse_drift(spec))
        except ValueError as err:
            raise typer.BadParameter(f"{spec!r}: {err}", param_hint="'--drift'") from None
    try:
        return replace(config, drift=tuple(drifts))
    except ValueError as err:
        raise typer.BadParameter(str(err), param_hint="'--drift'") from None
