"""Bring your own table on the shared public datasets: the full nested search against the bars.

For each table (``../shared/datasets``), through the same preparation and training as
``crm-intel train lead|churn --table``:

* ``before``: the untuned LightGBM configuration, stratified 5-fold (what the table path did
  before candidates were tuned);
* ``after``: nested cross-validation over the full candidate grid (outer stratified 5-fold for the
  figures, inner 3-fold to choose per outer fold), the logistic baseline of the same folds, the
  candidate each outer fold chose and the production candidate.

Tables and columns:

* Telco churn: every column (``TotalCharges`` blanks as missing), 19 features;
* X Education leads, all columns: 30 features (``Lead Number`` included);
* X Education leads at creation: without the five post-contact columns (Tags, Lead Quality,
  Lead Profile, Last Activity, Last Notable Activity) and without ``Lead Number``, a record
  sequence number that is no fair feature under random folds; 24 features.

Usage: ``python benchmarks/tables.py [--tables telco,xeducation_all,xeducation_creation]
[--grid full|small] [--time-limit SECONDS]`` (no limit by default, so the whole grid runs); writes
``benchmarks/results/tables.json`` and prints it.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _measure import write  # noqa: E402

# benchmarks/ has a features.py of its own: keep it from shadowing the features package
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]

from training.pipeline import SPECS  # noqa: E402
from training.table import prepare_table, read_any  # noqa: E402
from training.tables import train_cross_validated, train_nested_cv  # noqa: E402

DATASETS = HERE.parent.parent / "shared" / "datasets"
POST_CONTACT = ("Tags", "Lead Quality", "Lead Profile", "Last Activity", "Last Notable Activity")

TABLES: dict[str, dict[str, Any]] = {
    "telco": {
        "path": DATASETS / "telco_churn" / "WA_Fn-UseC_-Telco-Customer-Churn.csv",
        "id": "customerID",
        "label": "Churn",
        "drop": (),
        "kind": "churn_risk",
        "bar": 0.848,
    },
    "xeducation_all": {
        "path": DATASETS / "xeducation_leads" / "Leads.csv",
        "id": "Prospect ID",
        "label": "Converted",
        "drop": (),
        "kind": "lead_conversion",
        "bar": 0.987,
    },
    "xeducation_creation": {
        "path": DATASETS / "xeducation_leads" / "Leads.csv",
        "id": "Prospect ID",
        "label": "Converted",
        "drop": (*POST_CONTACT, "Lead Number"),
        "kind": "lead_conversion",
        "bar": 0.902,
    },
}


def run(name: str, grid: str, time_limit: float | None) -> dict[str, Any]:
    config = TABLES[name]
    table = prepare_table(
        read_any(config["path"]), config["id"], config["label"], drop=config["drop"]
    )
    spec = dataclasses.replace(
        SPECS[config["kind"]],
        name=f"table_{name}",
        kind=config["kind"],
        entity_key=config["id"],
        feature_service=f"table:{config['path'].name}",
    )
    started = time.perf_counter()
    before = train_cross_validated(table.frame, spec)
    before_seconds = time.perf_counter() - started
    started = time.perf_counter()
    after = train_nested_cv(
        table.frame,
        spec,
        grid,
        time_limit=time_limit,
        progress=lambda line: print(f"{name}: {line}", file=sys.stderr, flush=True),
    )
    seconds = time.perf_counter() - started
    model = after.metrics["model"]
    return {
        "rows": len(table.frame),
        "features": len(table.features),
        "columns_used": table.features,
        "dropped": {**table.dropped},
        "bar": config["bar"],
        "before_untuned_roc_auc": before.metrics["model"]["roc_auc"],
        "before_protocol": before.protocol,
        "before_seconds": round(before_seconds, 1),
        "roc_auc": model["roc_auc"],
        "roc_auc_std": model["roc_auc_std"],
        "meets_bar": model["roc_auc"] >= config["bar"],
        "logistic_roc_auc": after.metrics["logistic"]["roc_auc"],
        "protocol": after.protocol,
        "chosen_per_outer_fold": [f["candidate"] for f in after.fold_metrics],
        "outer_fold_roc_auc": [f["roc_auc"] for f in after.fold_metrics],
        "production_candidate": after.candidate["description"],
        "inner_cv_scores_on_every_row": after.selection["scores"],
        "candidates_tried": after.selection["candidates_tried"],
        "candidates_planned": after.selection["candidates_planned"],
        "notes": after.notes,
        "seconds": round(seconds, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tables", default=",".join(TABLES))
    parser.add_argument("--grid", default="full", choices=("full", "small"))
    parser.add_argument("--time-limit", type=float, default=None)
    args = parser.parse_args()
    results: dict[str, Any] = {}
    for name in (n for n in args.tables.split(",") if n):
        results[name] = run(name, args.grid, args.time_limit)
        # written after each table: the whole run takes long
        write(
            "tables",
            {
                "grid": args.grid,
                "time_limit_seconds": args.time_limit,
                "protocol": "nested cross-validation: outer stratified 5-fold (seed 0) for the "
                "figures, inner stratified 3-fold per outer fold to choose the candidate",
                "tables": results,
            },
        )


if __name__ == "__main__":
    main()
