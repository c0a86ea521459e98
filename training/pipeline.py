"""Training stages: check the data, split it, fit the model and its baselines, evaluate.

Two protocols, both returning a :class:`TrainingResult` (no MLflow here; see ``training.tracking``):

* :func:`train_time_split` for snapshot data (the feature services' training sets, or a table with
  a timestamp): train on the earliest snapshots, stop early and calibrate on the next ones, test
  on the last ones. Never a random split across time.
* :func:`train_cross_validated` for a one-row-per-entity table without a timestamp: stratified
  5-fold cross-validation for the figures, then one model fitted on every row to register.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedKFold

from training.baselines import (
    CHURN_RULES,
    LEAD_RULES,
    Rule,
    RulePointsScore,
    applicable_rules,
    logistic_baseline,
)
from training.data import (
    LABEL,
    TIMESTAMP,
    DataCheck,
    Minimums,
    check_counts,
    fingerprint,
    split_counts,
    time_split,
)
from training.metrics import binary_metrics
from training.model import CalibratedBoostingClassifier, categorical_levels
from training.scoring import score_frame


@dataclass(frozen=True)
class ModelSpec:
    """What a model predicts and where its pieces come from."""

    name: str
    entity_key: str
    feature_service: str
    rules: tuple[Rule, ...]
    value_column: str | None = None  # monthly value for revenue at risk
    truth_table: str | None = None  # simulator truth file stem
    truth_column: str | None = None


SPECS: dict[str, ModelSpec] = {
    "lead_conversion": ModelSpec(
        "lead_conversion",
        "lead_id",
        "lead_conversion_v1",
        LEAD_RULES,
        truth_table="lead_conversion",
        truth_column="p_convert",
    ),
    "churn_risk": ModelSpec(
        "churn_risk",
        "account_id",
        "churn_risk_v1",
        CHURN_RULES,
        value_column="mrr",
        truth_table="churn",
        truth_column="p_churn",
    ),
}

# Snapshot training sets repeat each entity every week, so the effective sample is the number of
# entities, not rows: shallow trees with large leaves (measured on the simulator: 31-leaf trees
# memorise entities and lose 0.02-0.04 test ROC AUC). Exported tables are small (thousands of
# rows): slower learning, small trees, and the trees refitted on all rows after early stopping.
SNAPSHOT_PARAMS: dict[str, Any] = {
    "num_leaves": 4,
    "min_child_samples": 1000,
    "learning_rate": 0.05,
    "colsample_bytree": 0.5,
    "reg_lambda": 10.0,
}
TABLE_PARAMS: dict[str, Any] = {
    "learning_rate": 0.04,
    "num_leaves": 15,
    "min_child_samples": 20,
    "colsample_bytree": 0.5,
    "reg_lambda": 5.0,
    "refit_full": True,
}


@dataclass
class TrainingResult:
    """A fitted model, its baselines and how they all did on held-out rows."""

    model_name: str
    model: CalibratedBoostingClassifier
    numeric: list[str]
    categorical: list[str]
    metrics: dict[str, dict[str, float]]
    evaluation: pd.DataFrame
    holdout: pd.DataFrame
    protocol: str
    data_check: DataCheck
    window: dict[str, str]
    fingerprint: str
    params: dict[str, Any]
    feature_service: str
    entity_key: str
    fold_metrics: list[dict[str, float]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def features(self) -> list[str]:
        return list(self.model.feature_names_in_)

    def summary(self) -> dict[str, Any]:
        """Flat figures for ``--json`` and MLflow: the model's metrics unprefixed, the baselines'
        and the oracle's prefixed, lifts over the baselines as differences in ROC AUC."""
        out: dict[str, Any] = {
            "model": self.model_name,
            "protocol": self.protocol,
            "feature_service": self.feature_service,
            "calibration": self.model.calibrator_.method,
            "best_iteration": self.model.best_iteration_,
            "features": len(self.features),
            "fingerprint": self.fingerprint,
        }
        out.update(self.metrics["model"])
        for other in ("logistic", "rules", "oracle"):
            for k, v in self.metrics.get(other, {}).items():
                out[f"{other}_{k}"] = v
            if other in self.metrics and other != "oracle":
                out[f"roc_auc_lift_over_{other}"] = (
                    self.metrics["model"]["roc_auc"] - self.metrics[other]["roc_auc"]
                )
        for c in self.data_check.counts:
            out[f"{c.name}_rows"] = c.rows
            out[f"{c.name}_positives"] = c.positives
        out.update({f"window_{k}": v for k, v in self.window.items()})
        if self.notes:
            out["notes"] = list(self.notes)
        return out


def feature_columns(frame: pd.DataFrame, entity_key: str) -> list[str]:
    """Every column except the entity key, ``event_timestamp`` and ``label``."""
    return [c for c in frame.columns if c not in (entity_key, TIMESTAMP, LABEL)]


def _kinds(X: pd.DataFrame) -> tuple[list[str], list[str]]:
    categorical = list(categorical_levels(X))
    return [c for c in X.columns if c not in categorical], categorical


def _baselines(
    X: pd.DataFrame,
    y: np.ndarray,
    rules: tuple[Rule, ...],
    numeric: list[str],
    categorical: list[str],
    random_state: int,
) -> tuple[dict[str, Any], list[str]]:
    fitted: dict[str, Any] = {
        "logistic": logistic_baseline(numeric, categorical, random_state).fit(X, y)
    }
    notes = []
    if applicable_rules(rules, list(X.columns)):
        fitted["rules"] = RulePointsScore(rules).fit(X, y)
    else:
        notes.append("rule-based baseline unavailable: none of its features are in this data")
    return fitted, notes


def oracle_probabilities(
    rows: pd.DataFrame, truth: pd.DataFrame, entity_key: str, column: str
) -> np.ndarray:
    """The simulator's true probability for each row (entity and snapshot), NaN where absent."""
    keys = rows[[entity_key, TIMESTAMP]].copy()
    keys[entity_key] = keys[entity_key].astype(str)
    keys[TIMESTAMP] = pd.to_datetime(keys[TIMESTAMP], utc=True)
    t = truth[[entity_key, "snapshot_at", column]].rename(columns={"snapshot_at": TIMESTAMP})
    t = t.assign(
        **{entity_key: t[entity_key].astype(str), TIMESTAMP: pd.to_datetime(t[TIMESTAMP], utc=True)}
    )
    t = t.drop_duplicates([entity_key, TIMESTAMP])
    joined = keys.merge(t, on=[entity_key, TIMESTAMP], how="left", validate="many_to_one")
    return joined[column].to_numpy(dtype=float)


def train_time_split(
    frame: pd.DataFrame,
    spec: ModelSpec,
    params: dict[str, Any] | None = None,
    minimums: Minimums | None = None,
    truth: pd.DataFrame | None = None,
    validation_fraction: float = 0.2,
    test_fraction: float = 0.2,
    gap_days: int = 0,
    random_state: int = 0,
) -> TrainingResult:
    """Train on early snapshots, stop early and calibrate on later ones, test on the last ones.

    Args:
        frame: Entity key, ``event_timestamp``, ``label`` and features; not modified.
        spec: The model being trained.
        params: Estimator parameters over :data:`SNAPSHOT_PARAMS`.
        minimums: Least counts per split (default :class:`Minimums`).
        truth: Simulator truth (entity key, ``snapshot_at``, ``spec.truth_column``) for the oracle.
        validation_fraction: Share of snapshot dates for validation.
        test_fraction: Share of snapshot dates for test (the latest).
        gap_days: Snapshots this close before the next part are left out of the earlier one.
        random_state: Seed for every estimator.

    Raises:
        NotEnoughData: a split has too few positives or negatives.
    """
    frame = frame.sort_values([TIMESTAMP, spec.entity_key], kind="stable").reset_index(drop=True)
    split = time_split(frame, TIMESTAMP, validation_fraction, test_fraction, gap_days)
    y = frame[LABEL].to_numpy(dtype=int)
    ts = pd.to_datetime(frame[TIMESTAMP], utc=True)
    counts = [
        split_counts(name, frame.loc[mask, LABEL], ts[mask])
        for name, mask in (
            ("train", split.train),
            ("validation", split.validation),
            ("test", split.test),
        )
    ]
    check = check_counts(counts, minimums or Minimums())
    check.raise_if_failed()
    features = feature_columns(frame, spec.entity_key)
    X = frame[features]
    numeric, categorical = _kinds(X)
    est_params = {**SNAPSHOT_PARAMS, **(params or {}), "random_state": random_state}
    model = CalibratedBoostingClassifier(**est_params).fit(
        X[split.train], y[split.train], X[split.validation], y[split.validation]
    )
    baselines, notes = _baselines(
        X[split.train], y[split.train], spec.rules, numeric, categorical, random_state
    )
    test = frame[split.test]
    X_test, y_test = X[split.test], y[split.test]
    evaluation = test[[spec.entity_key, TIMESTAMP, LABEL]].copy()
    evaluation["p_model"] = model.predict_proba(X_test)[:, 1]
    for name, est in baselines.items():
        evaluation[f"p_{name}"] = est.predict_proba(X_test)[:, 1]
    metrics = {
        name: binary_metrics(y_test, evaluation[f"p_{name}"]) for name in ("model", *baselines)
    }
    if truth is not None and spec.truth_column:
        evaluation["p_oracle"] = oracle_probabilities(
            test, truth, spec.entity_key, spec.truth_column
        )
        known = evaluation["p_oracle"].notna().to_numpy()
        if known.all():
            metrics["oracle"] = binary_metrics(y_test, evaluation["p_oracle"])
        elif known.any():
            metrics["oracle"] = binary_metrics(y_test[known], evaluation.loc[known, "p_oracle"])
            metrics["model_on_oracle_rows"] = binary_metrics(
                y_test[known], evaluation.loc[known, "p_model"]
            )
            notes.append(f"truth found for {int(known.sum())} of {len(known)} test rows")
        else:
            notes.append("no truth rows matched the test rows; oracle not reported")
    if spec.value_column and spec.value_column in test.columns:
        scored = score_frame(evaluation["p_model"], test[spec.value_column], evaluation.index)
        evaluation["revenue_at_risk"] = scored["revenue_at_risk"]
    window = {
        "train_start": counts[0].start,
        "train_end": counts[0].end,
        "validation_start": counts[1].start,
        "validation_end": counts[1].end,
        "test_start": counts[2].start,
        "test_end": counts[2].end,
    }
    return TrainingResult(
        spec.name,
        model,
        numeric,
        categorical,
        metrics,
        evaluation,
        test,
        "time_split",
        check,
        {k: str(v) for k, v in window.items()},
        fingerprint(frame),
        est_params,
        spec.feature_service,
        spec.entity_key,
        notes=notes,
    )


def train_cross_validated(
    frame: pd.DataFrame,
    spec: ModelSpec,
    params: dict[str, Any] | None = None,
    minimums: Minimums | None = None,
    folds: int = 5,
    random_state: int = 0,
) -> TrainingResult:
    """Stratified k-fold figures for a table without time, then a final model on every row.

    The reported metrics are means over folds (so ``roc_auc`` is the cross-validated mean); the
    evaluation frame holds every row's out-of-fold predictions.

    Raises:
        NotEnoughData: a fold has too few positives or negatives.
    """
    frame = frame.reset_index(drop=True)
    y = frame[LABEL].to_numpy(dtype=int)
    features = feature_columns(frame, spec.entity_key)
    X = frame[features]
    numeric, categorical = _kinds(X)
    splitter = StratifiedKFold(folds, shuffle=True, random_state=random_state)
    splits = list(splitter.split(X, y))
    counts = []
    for i, (fit_idx, hold_idx) in enumerate(splits):
        counts.append(split_counts(f"train_fold{i + 1}", frame[LABEL].iloc[fit_idx]))
        counts.append(split_counts(f"test_fold{i + 1}", frame[LABEL].iloc[hold_idx]))
    check = check_counts(counts, minimums or Minimums())
    check.raise_if_failed()
    est_params = {**TABLE_PARAMS, **(params or {}), "random_state": random_state}
    evaluation = frame[[spec.entity_key, LABEL]].copy()
    evaluation["fold"] = 0
    fold_metrics: list[dict[str, float]] = []
    notes: list[str] = []
    per_model: dict[str, list[dict[str, float]]] = {}
    for i, (fit_idx, hold_idx) in enumerate(splits):
        model = CalibratedBoostingClassifier(**est_params).fit(X.iloc[fit_idx], y[fit_idx])
        baselines, notes = _baselines(
            X.iloc[fit_idx], y[fit_idx], spec.rules, numeric, categorical, random_state
        )
        evaluation.loc[hold_idx, "fold"] = i + 1
        preds = {"model": model.predict_proba(X.iloc[hold_idx])[:, 1]}
        preds.update({n: b.predict_proba(X.iloc[hold_idx])[:, 1] for n, b in baselines.items()})
        for name, p in preds.items():
            evaluation.loc[hold_idx, f"p_{name}"] = p
            m = binary_metrics(y[hold_idx], p)
            per_model.setdefault(name, []).append(m)
            if name == "model":
                fold_metrics.append({"fold": i + 1, **m})
    metrics = {
        name: {k: float(np.mean([m[k] for m in ms])) for k in ms[0]}
        for name, ms in per_model.items()
    }
    metrics["model"]["roc_auc_std"] = float(np.std([m["roc_auc"] for m in per_model["model"]]))
    final = CalibratedBoostingClassifier(**est_params).fit(X, y)
    return TrainingResult(
        spec.name,
        final,
        numeric,
        categorical,
        metrics,
        evaluation,
        frame,
        f"stratified_{folds}_fold_cv",
        check,
        {"rows": str(len(frame))},
        fingerprint(frame),
        est_params,
        spec.feature_service,
        spec.entity_key,
        fold_metrics,
        notes,
    )


def train_table(
    frame: pd.DataFrame,
    spec: ModelSpec,
    has_timestamp: bool,
    params: dict[str, Any] | None = None,
    minimums: Minimums | None = None,
    random_state: int = 0,
) -> TrainingResult:
    """A prepared one-row-per-entity table: time split when it has a timestamp, else k-fold."""
    if has_timestamp:
        return train_time_split(
            frame,
            spec,
            {**TABLE_PARAMS, "refit_full": False, **(params or {})},
            minimums,
            random_state=random_state,
        )
    return train_cross_validated(frame, spec, params, minimums, random_state=random_state)
