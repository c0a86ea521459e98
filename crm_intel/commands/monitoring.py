"""``crm-intel monitor``: drift since training and how the served scores turned out."""

from __future__ import annotations

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
    settings_for,
)

ALERT_EXIT = 1


def monitor(
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Also write the monitoring page (self-contained HTML)."),
    ] = None,
    model: Annotated[
        list[str] | None,
        typer.Option(
            "--model",
            help="lead_conversion or churn_risk (repeatable; default both).",
            show_default=False,
        ),
    ] = None,
    data_dir: DataDirOption = None,
    json_: JsonOption = False,
) -> None:
    """Feature and score drift between each champion's training window and the latest period,
    and the realised ROC AUC and calibration of the scores that were served (from the score
    log). Exits 1 when an alert threshold is crossed (the README lists them)."""
    from features.store import FeatureStoreNotReadyError
    from monitoring.monitor import MODELS
    from monitoring.monitor import monitor as run
    from monitoring.page import render

    settings = settings_for(data_dir)
    models = tuple(model or MODELS)
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        raise fail(f"--model {unknown[0]}: use one of {', '.join(MODELS)}")
    try:
        with console.status("measuring drift and realised performance"):
            report = run(settings, models)
    except (FileNotFoundError, FeatureStoreNotReadyError) as err:
        raise fail(f"{err} (build features first: `crm-intel features build`)") from None
    if out is not None:
        render(report, out)
        console.print(f"monitoring page → {out}")
    for name, result in report["models"].items():
        if "skipped" in result:
            console.print(f"{name}: not monitored ({result['skipped']})")
            continue
        drifted = [r for r in result["feature_drift"] if r["drifted"]]
        table = Table(title=f"{name} v{result['champion_version']}", title_justify="left")
        for column in ("what", "figure"):
            table.add_column(column, overflow="fold")
        table.add_row("features compared", str(len(result["feature_drift"])))
        table.add_row(
            "features that moved (PSI ≥ threshold)",
            ", ".join(r["feature"] for r in drifted) or "none",
        )
        score = result.get("score_drift")
        if score:
            table.add_row(
                "score PSI", f"{score['score']:.3f}" if score["score"] is not None else "n/a"
            )
        for row in result["realised"]:
            auc = "n/a" if row["roc_auc"] is None else f"{row['roc_auc']:.3f}"
            table.add_row(
                f"realised v{row['model_version']} ({row['arm']})",
                f"ROC AUC {auc} on {row['n']:,} scored ({row['positives']:,} positive), "
                f"calibration error {row['calibration_error']:.3f}",
            )
        if result.get("expected_roc_auc") is not None:
            table.add_row("expected ROC AUC (held-out test)", f"{result['expected_roc_auc']:.3f}")
        table.add_row("scores awaiting their outcome", f"{result['scores_awaiting_outcome']:,}")
        console.print(table)
    for alert in report["alerts"]:
        console.print(f"[bold red]alert:[/] {alert['message']}", highlight=False, soft_wrap=True)
    if json_:
        emit_json(report)
    if report["alerts"]:
        raise typer.Exit(ALERT_EXIT)
