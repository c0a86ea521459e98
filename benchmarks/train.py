"""Time and peak memory to train the lead conversion model on 1 million lead snapshots.

Data: a simulated CRM (55k leads, 24 months) through the feature pipeline and the Feast feature
service ``lead_conversion_v1``, the latest 1,000,000 labelled snapshots, split by time (60/20/20).
Each step runs in a fresh interpreter (wall time and peak RSS of that process, data loading
included; the ``load_only`` step shows what loading alone costs):

* ``lightgbm``: LightGBM, the production settings, a fixed number of rounds;
* ``sklearn_hgb``: scikit-learn's HistGradientBoostingClassifier at equal settings (same rounds,
  learning rate, leaves, minimum leaf size, L2, bins, native categoricals, no early stopping);
* ``crm_intel_trainer``: the full ``CalibratedBoostingClassifier`` (early stopping on validation,
  calibration chosen on validation), as ``crm-intel train lead`` runs it.

Usage: ``python benchmarks/train.py [--rows 1000000] [--rounds 300]``; writes
``benchmarks/results/train.json`` and prints it.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _measure import measure, write  # noqa: E402

# benchmarks/ has a features.py of its own: keep it from shadowing the features package
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]

PREPARE = """
import numpy as np, pandas as pd
from training.data import time_split
from training.model import categorical_levels, encode_frame
from training.pipeline import SNAPSHOT_PARAMS, feature_columns
frame = pd.read_parquet({path!r})
split = time_split(frame)
features = feature_columns(frame, "lead_id")
levels = categorical_levels(frame[features])
X = encode_frame(frame[features], features, levels)
y = frame["label"].to_numpy()
Xtr, ytr = X[split.train], y[split.train]
Xva, yva = X[split.validation], y[split.validation]
Xte, yte = X[split.test], y[split.test]
P = {{**dict(num_leaves=31, min_child_samples=20, learning_rate=0.05, reg_lambda=0.0,
            colsample_bytree=1.0), **SNAPSHOT_PARAMS}}
THREADS = {threads}
from sklearn.metrics import roc_auc_score
"""

STEPS = {
    "load_only": """
RESULT = {"train_rows": int(split.train.sum()), "test_rows": int(split.test.sum()),
          "features": len(features)}
""",
    "lightgbm": """
import lightgbm as lgb
t0 = time.perf_counter()
booster = lgb.train(dict(objective="binary", learning_rate=P["learning_rate"],
                         num_leaves=P["num_leaves"], min_child_samples=P["min_child_samples"],
                         reg_lambda=P["reg_lambda"], max_bin=255, num_threads=THREADS,
                         feature_fraction=1.0, verbose=-1),
                    lgb.Dataset(Xtr, ytr, categorical_feature=list(levels)), {rounds})
fit = time.perf_counter() - t0
RESULT = {"fit_seconds": fit, "roc_auc": roc_auc_score(yte, booster.predict(Xte)),
          "rounds": {rounds}}
""",
    "sklearn_hgb": """
from sklearn.ensemble import HistGradientBoostingClassifier
t0 = time.perf_counter()
hgb = HistGradientBoostingClassifier(
    learning_rate=P["learning_rate"], max_iter={rounds}, max_leaf_nodes=P["num_leaves"],
    min_samples_leaf=P["min_child_samples"], l2_regularization=P["reg_lambda"], max_bins=255,
    categorical_features="from_dtype", early_stopping=False, random_state=0).fit(Xtr, ytr)
fit = time.perf_counter() - t0
RESULT = {"fit_seconds": fit, "roc_auc": roc_auc_score(yte, hgb.predict_proba(Xte)[:, 1]),
          "rounds": {rounds}}
""",
    "crm_intel_trainer": """
from training.model import CalibratedBoostingClassifier
raw = frame[features]
t0 = time.perf_counter()
model = CalibratedBoostingClassifier(**SNAPSHOT_PARAMS, n_jobs=THREADS).fit(
    raw[split.train], ytr, raw[split.validation], yva)
fit = time.perf_counter() - t0
p = model.predict_proba(raw[split.test])[:, 1]
from training.metrics import expected_calibration_error
RESULT = {"fit_seconds": fit, "roc_auc": roc_auc_score(yte, p),
          "ece": expected_calibration_error(yte, p), "rounds": model.best_iteration_,
          "calibration": model.calibrator_.method}
""",
}


def build_snapshots(path: Path, rows: int) -> dict:
    """Simulate, build features and write the latest ``rows`` lead snapshots to ``path``."""
    from crm.settings import Settings
    from features import store
    from features.training import training_set
    from simulator import SimulationConfig, simulate, write_simulation

    started = time.perf_counter()
    data_dir = path.parent / "crm"
    config = SimulationConfig(seed=101, accounts=4_000, leads=55_000, months=24)
    write_simulation(simulate(config), data_dir)
    settings = Settings(data_dir=data_dir)
    store.build(settings)
    store.apply(settings)
    frame = training_set(settings, "lead_conversion").tail(rows).reset_index(drop=True)
    frame.to_parquet(path)
    return {
        "rows": len(frame),
        "positives": int(frame["label"].sum()),
        "simulated_leads": config.leads,
        "months": config.months,
        "prepare_seconds": time.perf_counter() - started,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "lead_snapshots.parquet"
        data = build_snapshots(path, args.rows)
        prepare = PREPARE.format(path=str(path), threads=args.threads)
        results = {}
        for name, step in STEPS.items():
            code = prepare + step.replace("{rounds}", str(args.rounds))
            results[name] = measure("import time\n" + code)
    write(
        "train",
        {
            "data": data,
            "threads": args.threads,
            "rounds": args.rounds,
            "settings": "num_leaves=4, min_child_samples=1000, learning_rate=0.05, "
            "reg_lambda=10, max_bin=255",
            "results": results,
        },
    )


if __name__ == "__main__":
    main()
