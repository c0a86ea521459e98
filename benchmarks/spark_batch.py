"""Time the nightly batch of a deployment in process and on Spark (one run each, same champion).

    PYTHONPATH=. python benchmarks/spark_batch.py DATA_DIR TRACKING_URI

Prints JSON: Spark's start, and per model the in-process time, Spark's first run (its Python
workers start and import the package) and a second run.
"""

from __future__ import annotations

import json
import sys
import time

from crm.settings import Settings
from features.spark_session import spark_session
from serving.batch import score_batch
from serving.spark_batch import score_batch_spark
from training.registry import load_champion


def main(data_dir: str, tracking_uri: str) -> dict[str, float]:
    """Seconds (and rows) per step, rounded to 10 ms."""
    settings = Settings(data_dir=data_dir, mlflow_tracking_uri=tracking_uri)
    out: dict[str, float] = {}
    started = time.perf_counter()
    spark_session(settings)
    out["spark_start_s"] = time.perf_counter() - started
    for model in ("lead_conversion", "churn_risk"):
        champion = load_champion(model, settings.tracking_uri())
        started = time.perf_counter()
        frame, _ = score_batch(settings, model, champion=champion)
        out[f"{model}_in_process_s"] = time.perf_counter() - started
        for run in ("first", "second"):
            started = time.perf_counter()
            score_batch_spark(settings, model, champion=champion)
            out[f"{model}_spark_{run}_s"] = time.perf_counter() - started
        out[f"{model}_rows"] = len(frame)
    return {name: round(value, 2) for name, value in out.items()}


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], sys.argv[2]), indent=1))
