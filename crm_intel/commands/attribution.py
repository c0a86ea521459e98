"""``crm-intel attribution …``: credit per channel and content item, and the marketer's report."""

from __future__ import annotations

import time
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
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

app = typer.Typer(
    help="Content and channel attribution: credit per channel and content item under several "
    "models, checked against simulator truth, and an HTML report for marketers.",
    no_args_is_help=True,
)

PathsOption = Annotated[
    Path | None,
    typer.Option(
        "--paths",
        help="Aggregated path file (path;total_conversions;"
        "total_conversion_value;total_null). Default: journeys from the data "
        "directory's raw interactions, leads and opportunities.",
    ),
]
ModelsOption = Annotated[
    str | None,
    typer.Option(
        "--models",
        help="Comma-separated models (default: all): first_touch, "
        "last_touch, linear, time_decay, position_based, markov_1, markov_2, markov_3, "
        "shapley, data_driven, data_driven_shapley.",
    ),
]
LookbackOption = Annotated[
    float,
    typer.Option(
        "--lookback-days",
        help="Touches count up to this many days before a conversion (or a lead's last touch).",
    ),
]
HalfLifeOption = Annotated[
    float, typer.Option("--half-life-days", help="Half-life of the time-decay model.")
]
BootstrapOption = Annotated[
    int | None,
    typer.Option(
        "--bootstrap",
        min=0,
        help="Bootstrap replicates behind each channel share's 90 % interval (0: no intervals). "
        "Default: the attribution_bootstrap setting (20).",
        show_default=False,
    ),
]
SeedOption = Annotated[int, typer.Option("--seed", help="Seed of the sampled and learned models.")]
StartOption = Annotated[
    datetime | None,
    typer.Option(
        "--start",
        formats=["%Y-%m-%d"],
        help="First day of the period to credit (with --end): the journeys that convert, or "
        "for the others end, from --start to --end. Default: all the data.",
        show_default=False,
    ),
]
EndOption = Annotated[
    datetime | None,
    typer.Option("--end", formats=["%Y-%m-%d"], help="Last day of the period.", show_default=False),
]


def _errors() -> tuple[type[BaseException], ...]:
    from training.attribution import AttributionError

    return (AttributionError, FileNotFoundError)


def _prepare(
    data_dir: Path | None,
    paths: Path | None,
    models: str | None,
    lookback_days: float,
    half_life_days: float,
    seed: int,
    period: tuple[date, date] | None = None,
    bootstrap: int | None = None,
) -> tuple[Any, list[Any], dict | None, Any, Any]:
    """Journeys (those ending in ``period`` when given), model results, truth (when the data
    dir has it), settings and the bootstrap intervals (``bootstrap`` replicates; None: the
    settings' ``attribution_bootstrap``)."""
    from training.attribution import (
        ModelOptions,
        load_journeys,
        parse_models,
        read_truth,
        run_model,
    )
    from training.attribution.models import model_intervals
    from training.attribution.periods import ending_within

    settings = settings_for(data_dir)
    names = parse_models(models)
    options = ModelOptions(half_life_days=half_life_days, seed=seed)
    replicates = settings.attribution_bootstrap if bootstrap is None else bootstrap
    with progress("attribution", total=len(names) + 1 + replicates) as advance:
        advance("journeys", 0)
        journeys = load_journeys(
            raw_dir=None if paths else settings.raw_dir, paths=paths, lookback_days=lookback_days
        )
        if period is not None:
            journeys = ending_within(journeys, *period)
        advance("journeys")
        results = []
        for name in names:
            advance(name, 0)
            results.append(run_model(journeys, name, options))
            advance(name)
        if replicates:
            advance(f"bootstrap intervals ({replicates} replicates)", 0)
        intervals = model_intervals(
            journeys, names, options, replicates, on_replicate=lambda _: advance("bootstrap")
        )
    truth = None if paths else read_truth(settings.truth_dir)
    return journeys, results, truth, settings, intervals


SHORT_NAMES = {
    "first_touch": "first",
    "last_touch": "last",
    "linear": "linear",
    "time_decay": "decay",
    "position_based": "u-shape",
    "markov_1": "mk1",
    "markov_2": "mk2",
    "markov_3": "mk3",
    "shapley": "shapley",
    "data_driven": "data",
    "data_driven_shapley": "data-shap",
}


def _print_channels(results: list[Any], summary: dict[str, Any]) -> None:
    table = Table(
        title=f"% of conversions by channel ({summary['conversions']:,.0f} "
        f"conversions, {summary['weighted_journeys']:,.0f} journeys)",
        box=box.SIMPLE,
        pad_edge=False,
    )
    table.add_column("channel", no_wrap=True)
    for result in results:
        table.add_column(SHORT_NAMES.get(result.model, result.model), justify="right", no_wrap=True)
    channels = results[0].channels["channel"].astype(str).tolist()
    shares = {
        r.model: dict(zip(r.channels["channel"].astype(str), r.channels["share"], strict=True))
        for r in results
    }
    for channel in channels:
        table.add_row(channel, *(f"{100 * shares[r.model].get(channel, 0.0):.1f}" for r in results))
    if "tvd" in summary:
        table.add_row(
            "TVD vs truth", *(f"{summary['tvd'][r.model]:.3f}" for r in results), style="bold"
        )
    console.print(table)
    advice = summary.get("recommended")
    if advice:
        console.print(f"[bold]Which model to trust:[/bold] {advice['reason']}")
    dropped = summary["dropped"]
    if dropped.get("conversions_without_touch"):
        console.print(
            f"{dropped['conversions_without_touch']:,} conversion(s) had no touch in "
            "the lookback window and are not credited."
        )


def write_run_metadata(
    journeys: Any, summary: dict, out: Path, period: tuple[date, date] | None = None
) -> dict[str, str] | None:
    """Write ``run.json`` beside the credit table: the period it covers (``period`` when the
    run was asked for one, else its first to its last conversion day), so the scoring service
    answers "credit for a period" with the run of exactly that period. Path files carry no
    times, so they get no period."""
    import json

    import pandas as pd

    from crm.io import atomic_file

    converted = getattr(journeys, "converted_at", None)
    if converted is None:
        return None
    times = pd.to_datetime(pd.Series(converted)).dropna()
    if period is not None:
        covered = {"period_start": period[0].isoformat(), "period_end": period[1].isoformat()}
    elif times.empty:
        return None
    else:
        covered = {
            "period_start": times.min().date().isoformat(),
            "period_end": times.max().date().isoformat(),
        }
    with atomic_file(Path(out).parent / "run.json") as tmp:
        tmp.write_text(
            json.dumps(
                {**covered, "credit": Path(out).name, "models": summary.get("models", [])}, indent=2
            )
        )
    return covered


def _track(
    settings: Any,
    journeys: Any,
    results: list[Any],
    table: Any,
    summary: dict[str, Any],
    period: dict[str, str] | None,
    seed: int,
) -> dict[str, Any]:
    """Log the run to MLflow and, when the data-driven model ran, register its conversion model
    behind the held-out gate (:mod:`training.attribution.tracking`)."""
    from training.attribution.models import LEARNED_MODELS, conversion_model
    from training.attribution.tracking import log_attribution_run, register_conversion_model

    uri = settings.tracking_uri()
    name = "attribution " + (
        f"{period['period_start']} to {period['period_end']}" if period else "paths"
    )
    run_id = log_attribution_run(uri, journeys, results, table, summary, period, run_name=name)
    tracked: dict[str, Any] = {"mlflow_run_id": run_id}
    if any(r.model in LEARNED_MODELS for r in results):
        registered = register_conversion_model(
            uri, conversion_model(journeys, seed), journeys, run_id
        )
        tracked["registered"] = registered.as_dict()
    return tracked


def _period(start: datetime | None, end: datetime | None) -> tuple[date, date] | None:
    """``--start`` and ``--end`` as a period (both or neither)."""
    if start is None and end is None:
        return None
    if start is None or end is None:
        raise fail("give both --start and --end, or neither")
    if end < start:
        raise fail(f"--end {end:%Y-%m-%d} is before --start {start:%Y-%m-%d}")
    return start.date(), end.date()


def run(
    out: Annotated[Path, typer.Option("--out", help="Credit table to write (.csv or .parquet).")],
    paths: PathsOption = None,
    models: ModelsOption = None,
    lookback_days: LookbackOption = 90.0,
    half_life_days: HalfLifeOption = 7.0,
    seed: SeedOption = 0,
    start: StartOption = None,
    end: EndOption = None,
    bootstrap: BootstrapOption = None,
    data_dir: DataDirOption = None,
    json_: JsonOption = False,
) -> None:
    """Credit conversions and revenue to channels and content items under each model.

    Writes one row per (model, channel) and per (model, content item): model, level, channel or
    content_id, conversions, value, share, value_share, std_error, and on channel rows the
    bootstrap interval of the share (share_low, share_high, includes_zero); and run.json beside
    it with the period credited, which the API serves (POST /attribution with that period).
    """
    from training.attribution import credit_table, run_summary, write_credit_table

    started = time.perf_counter()
    period = _period(start, end)
    try:
        journeys, results, truth, settings, intervals = _prepare(
            data_dir, paths, models, lookback_days, half_life_days, seed, period, bootstrap
        )
    except _errors() as err:
        raise fail(str(err)) from None
    table = credit_table(results, intervals)
    write_credit_table(table, out)
    summary = run_summary(journeys, results, truth, intervals)
    covered = write_run_metadata(journeys, summary, out, period)
    tracked = _track(settings, journeys, results, table, summary, covered, seed)
    summary.update(
        out=str(out),
        rows=len(table),
        seconds=round(time.perf_counter() - started, 2),
        period=covered,
        **tracked,
    )
    _print_channels(results, summary)
    console.print(f"wrote {len(table):,} rows → {out}")
    console.print(f"MLflow run {tracked['mlflow_run_id']} (experiment attribution)")
    registered = tracked.get("registered")
    if registered:
        console.print(
            f"content_attribution v{registered['version']}: held-out log-loss "
            f"{registered['held_out_log_loss']:.5f}, {registered['decision']}; champion "
            f"v{registered['champion']}"
        )
    if json_:
        emit_json(summary)


def report(
    out: Annotated[Path, typer.Option("--out", help="HTML page to write.")] = Path(
        "attribution_report.html"
    ),
    paths: PathsOption = None,
    models: ModelsOption = None,
    lookback_days: LookbackOption = 90.0,
    half_life_days: HalfLifeOption = 7.0,
    seed: SeedOption = 0,
    bootstrap: BootstrapOption = None,
    data_dir: DataDirOption = None,
    json_: JsonOption = False,
) -> None:
    """Write a self-contained HTML page for marketers: interactive charts (no server needed),
    a model and a period selector (the whole run, then each calendar quarter), spend and return
    per channel, campaign and content type, in the settings' currency."""
    from reports.attribution import build_report, write_report
    from training.attribution import ModelOptions, load_marketing, parse_models, run_summary
    from training.attribution.models import LEARNED_MODELS, conversion_model
    from training.attribution.periods import calendar_quarters, credit_by_period

    started = time.perf_counter()
    try:
        journeys, results, truth, settings, intervals = _prepare(
            data_dir, paths, models, lookback_days, half_life_days, seed, bootstrap=bootstrap
        )
        marketing = None if paths else load_marketing(settings.raw_dir)
        quarters = calendar_quarters(journeys) if journeys.has_time else []
        with progress("attribution by quarter", total=len(quarters) + 1) as advance:
            names = parse_models(models)
            learned = set(LEARNED_MODELS) & set(names)
            periods = credit_by_period(
                journeys,
                names,
                ModelOptions(
                    half_life_days=half_life_days,
                    seed=seed,
                    # each quarter is credited by the whole run's conversion model (fitted once)
                    conversion_model=conversion_model(journeys, seed) if learned else None,
                ),
                quarters,
                on_period=lambda period: advance(period.label),
            )
            advance("page", 0)
            page = build_report(
                journeys,
                results,
                periods=periods,
                marketing=marketing,
                truth=truth,
                intervals=intervals,
                currency=settings.currency,
                lookback_days=lookback_days,
                half_life_days=half_life_days,
            )
            advance("page")
    except _errors() as err:
        raise fail(str(err)) from None
    write_report(page, out)
    summary = run_summary(journeys, results, truth, intervals)
    summary.update(
        out=str(out),
        bytes=len(page.encode("utf-8")),
        charts=page.count('<figure class="chart"'),
        periods=[p.period.label for p in periods],
        seconds=round(time.perf_counter() - started, 2),
    )
    console.print(
        f"wrote report ({summary['charts']} charts, {summary['bytes'] / 1e6:.1f} MB) → {out}"
    )
    if json_:
        emit_json(summary)


def influence(
    out: Annotated[Path, typer.Option("--out", help="CSV file to write.")],
    lookback_days: LookbackOption = 90.0,
    journey: Annotated[
        str | None,
        typer.Option(
            "--journey",
            help="An opportunity's journey: 'account' (its account's leads and contacts) or "
            "'lead' (the lead it names). Default: the attribution_opportunity_journey setting.",
            show_default=False,
        ),
    ] = None,
    seed: SeedOption = 0,
    data_dir: DataDirOption = None,
    json_: JsonOption = False,
) -> None:
    """Campaign influence per won opportunity, credited by the registered attribution model
    (the champion of content_attribution), as the source CRM imports it: Salesforce
    CampaignInfluence records, a HubSpot CSV, or the contract's ids for other data. Each
    opportunity's influence sums to 100 % over the campaigns that touched it."""
    from crm.exports.common import read_source
    from crm.io import atomic_file, read_table
    from training.attribution import AttributionError
    from training.attribution.influence import (
        campaign_influence,
        influence_records,
        opportunity_journeys,
    )
    from training.attribution.tracking import MODEL_NAME, load_conversion_model
    from training.registry import NoChampion, champion_version

    started = time.perf_counter()
    settings = settings_for(data_dir)
    rule = journey or settings.attribution_opportunity_journey
    uri = settings.tracking_uri()
    try:
        current = champion_version(uri, MODEL_NAME)
        if current is None:
            raise NoChampion(f"no champion for {MODEL_NAME!r}; run `crm-intel attribution run`")
        version = str(current.version)
        model = load_conversion_model(uri, version)
        raw = settings.raw_dir
        opportunities = read_table(raw, "opportunities")
        journeys, keyed = opportunity_journeys(
            read_table(
                raw,
                "interactions",
                ["occurred_at", "lead_id", "account_id", "channel", "content_id", "campaign_id"],
            ),
            read_table(raw, "leads", ["lead_id", "account_id"]),
            opportunities,
            lookback_days,
            rule,
        )
        influence_table = campaign_influence(journeys, keyed, model, seed)
    except NoChampion as err:
        raise fail(f"{err}") from None
    except (AttributionError, FileNotFoundError, ValueError) as err:
        raise fail(str(err)) from None
    source = read_source(raw).get("format", "contract")
    crm = source if source in ("salesforce", "hubspot") else "contract"
    ids = None
    if "source_id" in opportunities:
        keyed_ids = opportunities.set_index(opportunities["opportunity_id"].astype(str))
        ids = keyed_ids["source_id"].dropna()
    records = influence_records(influence_table, crm, f"crm-intel data-driven v{version}", ids)
    with atomic_file(out) as tmp:
        records.to_csv(tmp, index=False)
    summary = {
        "out": str(out),
        "format": crm,
        "rows": len(records),
        "opportunities": int(influence_table["opportunity_id"].nunique()),
        "won_opportunities_with_a_touch": int(journeys.n_journeys),
        "campaigns": int(influence_table["campaign_id"].nunique()),
        "journey": rule,
        "model": MODEL_NAME,
        "version": version,
        "seconds": round(time.perf_counter() - started, 2),
    }
    console.print(
        f"wrote {summary['rows']:,} influence rows ({summary['opportunities']:,} opportunities, "
        f"{summary['campaigns']:,} campaigns; {MODEL_NAME} v{version}; {crm} shape) → {out}"
    )
    if json_:
        emit_json(summary)


app.command("run")(run)
app.command("report")(report)
app.command("influence")(influence)
