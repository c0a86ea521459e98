"""``crm-intel models compare``: each arm of a shadow or canary release, side by side."""

from __future__ import annotations

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

NAMES = {"lead": "lead_conversion", "churn": "churn_risk"}


def compare(
    model: Annotated[str, typer.Argument(help="lead or churn (or the model's name).")],
    data_dir: DataDirOption = None,
    json_: JsonOption = False,
) -> None:
    """Realised ROC AUC (95 % bootstrap interval) and calibration of the champion and the
    challenger arms from the score log, their difference, and whether to promote, reject or
    keep collecting."""
    from monitoring.compare import compare as run

    name = NAMES.get(model, model)
    if name not in NAMES.values():
        raise fail(f"unknown model {model!r}: use lead or churn")
    settings = settings_for(data_dir)
    try:
        result = run(settings, name)
    except FileNotFoundError as err:
        raise fail(f"{err} (build features first: `crm-intel features build`)") from None
    table = Table(title=f"{name}: {result.get('mode', 'no scores logged')}", title_justify="left")
    for column in (
        "arm",
        "versions",
        "scored",
        "positive",
        "ROC AUC (95 % interval)",
        "calibration error",
    ):
        table.add_column(column, overflow="fold")
    for row in result["arms"]:
        interval = row.get("roc_auc_interval")
        auc = (
            "n/a"
            if interval is None
            else f"{interval['value']:.3f} ({interval['low']:.3f}–{interval['high']:.3f})"
        )
        error = row.get("calibration_error")
        table.add_row(
            row["arm"],
            ", ".join(row["versions"]),
            f"{row['n']:,}",
            f"{row['positives']:,}",
            auc,
            "n/a" if error is None else f"{error:.3f}",
        )
    console.print(table)
    difference = result["difference"]
    if difference is not None:
        console.print(
            f"challenger − champion ROC AUC: {difference['value']:+.3f} "
            f"({difference['low']:+.3f} to {difference['high']:+.3f})"
        )
    action = result["recommendation"]
    console.print(f"[bold]{action['action']}[/]: {action['why']}", highlight=False, soft_wrap=True)
    if json_:
        emit_json(result)
