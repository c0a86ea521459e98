"""``crm-intel backtest lead|churn``: train as of rolling cutoffs and score what came after."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

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

app = typer.Typer(
    help="Back-test a model: train as of rolling cutoffs, score the weeks after each, compare "
    "with what then happened (model, baselines and, on simulated data, the oracle).",
    no_args_is_help=True,
)
CutoffsOption = Annotated[int, typer.Option("--cutoffs", min=1, help="How many cutoffs.")]
SeedOption = Annotated[int, typer.Option("--seed", help="Random seed of every estimator.")]
NAMES = {
    "model": "champion",
    "logistic": "logistic regression",
    "rules": "points score",
    "oracle": "oracle (true probability)",
}


def run_backtest(
    model_name: str, data_dir: Path | None, count: int, seed: int, json_: bool
) -> None:
    from crm_intel.commands.training import protocol_for
    from features.training import training_set
    from simulator.truth import read_probability_truth
    from training.backtest import backtest
    from training.pipeline import SPECS
    from training.tracking import log_backtest

    settings = settings_for(data_dir)
    spec = SPECS[model_name]
    try:
        frame = training_set(settings, model_name)
    except Exception as err:  # noqa: BLE001 - the store says why it is not ready
        raise fail(f"no training set for {model_name}: {err}") from None
    truth = read_probability_truth(settings.truth_dir, spec.truth_table)
    protocol = protocol_for(settings, model_name)
    with progress(f"back-testing {model_name}", total=count) as advance:
        try:
            result = backtest(frame, spec, protocol, count, truth, seed, progress=advance)
        except ValueError as err:
            raise fail(str(err)) from None
    run_id = log_backtest(result, settings.tracking_uri())
    _print(result)
    if json_:
        emit_json(
            {
                "model": model_name,
                "protocol": result.protocol,
                "run_id": run_id,
                "summary": result.summary,
                "cutoffs": _records(result.rows),
            }
        )


def _records(rows: Any) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items()} for r in rows.to_dict("records")]


def _print(result: Any) -> None:
    table = Table(title=f"{result.model_name} back-test · {result.protocol}")
    for column in ("cutoff", "champion", *NAMES.values()):
        table.add_column(column, justify="right" if column in NAMES.values() else "left")
    wide = result.rows.pivot(index="cutoff", columns="model", values="roc_auc")
    champions = result.rows.drop_duplicates("cutoff").set_index("cutoff")["champion"]
    for cutoff in wide.index:
        table.add_row(
            cutoff,
            champions[cutoff],
            *(f"{wide.loc[cutoff, m]:.4f}" if m in wide.columns else "—" for m in NAMES),
        )
    console.print(table)
    s = result.summary
    if "lift_over_best_baseline" in s:
        console.print(
            f"champion − {NAMES[s['best_baseline']]}: {s['lift_over_best_baseline']:+.4f} ROC AUC "
            f"(90 % interval {s['lift_interval_low']:+.4f} to {s['lift_interval_high']:+.4f}, "
            f"over {s['cutoffs']} cutoffs)"
        )
    if "gap_to_oracle" in s:
        console.print(f"gap to the oracle: {s['gap_to_oracle']:.4f} ROC AUC")


@app.command("lead")
def backtest_lead(
    cutoffs: CutoffsOption = 4,
    seed: SeedOption = 0,
    data_dir: DataDirOption = None,
    json_: JsonOption = False,
) -> None:
    """Back-test lead conversion at rolling cutoffs."""
    run_backtest("lead_conversion", data_dir, cutoffs, seed, json_)


@app.command("churn")
def backtest_churn(
    cutoffs: CutoffsOption = 4,
    seed: SeedOption = 0,
    data_dir: DataDirOption = None,
    json_: JsonOption = False,
) -> None:
    """Back-test churn risk at rolling cutoffs."""
    run_backtest("churn_risk", data_dir, cutoffs, seed, json_)
