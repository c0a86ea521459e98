"""What every training protocol shares: the model specs, :class:`TrainingResult` (no MLflow
here; see ``training.tracking``), feature columns, the baselines and the oracle.

The protocols live beside it: :mod:`training.snapshots` for the feature services' snapshot data
(the purged time protocol, never a random split across time) and :mod:`training.tables` for a
bring-your-own table (a time split when it has a timestamp, nested cross-validation when not).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

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
)
from training.model import categorical_levels


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
    positive_words: str = "positives"  # the outcome in a user's words, for messages
    # the native model a bring-your-own table stands in for (its rules and known directions);
    # empty for the native models themselves
    kind: str = ""


SPECS: dict[str, ModelSpec] = {
    "lead_conversion": ModelSpec(
        "lead_conversion",
        "lead_id",
        "lead_conversion_v1",
        LEAD_RULES,
        truth_table="lead_conversion",
        truth_column="p_convert",
        positive_words="conversions",
    ),
    "churn_risk": ModelSpec(
        "churn_risk",
        "account_id",
        "churn_risk_v1",
        CHURN_RULES,
        value_column="mrr",
        truth_table="churn",
        truth_column="p_churn",
        positive_words="churned accounts",
    ),
}

# Snapshot training sets repeat each entity every week, so the effective sample is the number of
# entities, not rows: shallow trees with large leaves (measured on the simulator: 31-leaf trees
# memorise entities and lose 0.02-0.04 test ROC AUC).
SNAPSHOT_PARAMS: dict[str, Any] = {
    "num_leaves": 4,
    "min_child_samples": 1000,
    "learning_rate": 0.05,
    "colsample_bytree": 0.5,
    "reg_lambda": 10.0,
}


@dataclass
class TrainingResult:
    """A fitted model, its baselines and how they all did on held-out rows."""

    model_name: str
    model: Any  # CalibratedBoostingClassifier, CalibratedLogisticClassifier or RulePointsScore
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
    # the purged protocol (training.snapshots): the model as of the test cutoff that the metrics
    # describe (``model`` is the production refit on every closed label), the candidate that
    # won and why, every candidate's selection figure, the data-sufficiency verdict
    evaluation_model: Any = None
    candidate: dict[str, Any] = field(default_factory=dict)
    selection: dict[str, Any] = field(default_factory=dict)
    verdict: dict[str, Any] = field(default_factory=dict)
    backtest: dict[str, Any] = field(default_factory=dict)
    # refits a registered champion's configuration (a candidate record) the way this model was
    # evaluated and returns its ROC AUC on the same rows (the promotion gate's comparison)
    reevaluate: Callable[[dict[str, Any]], float] | None = None
    # segment models (training.segments): the column, each segment's back-test figures and
    # verdict, and the test period's figures of the global, the combined and every segment model
    segments: dict[str, Any] = field(default_factory=dict)

    @property
    def features(self) -> list[str]:
        return list(self.model.feature_names_in_)

    @property
    def family(self) -> str:
        return str(getattr(self.model, "family", "lightgbm"))

    def summary(self) -> dict[str, Any]:
        """Flat figures for ``--json`` and MLflow: the model's metrics unprefixed, the baselines'
        and the oracle's prefixed, lifts over the baselines as differences in ROC AUC."""
        out: dict[str, Any] = {
            "model": self.model_name,
            "protocol": self.protocol,
            "feature_service": self.feature_service,
            "family": self.family,
            "features": len(self.features),
            "fingerprint": self.fingerprint,
        }
        calibrator = getattr(self.model, "calibrator_", None)
        out["calibration"] = getattr(calibrator, "method", "isotonic")
        if hasattr(self.model, "best_iteration_"):
            out["best_iteration"] = self.model.best_iteration_
        if self.candidate:
            out["candidate"] = self.candidate.get("description")
        if self.verdict:
            out["data_verdict"] = self.verdict.get("level")
            out["data_verdict_text"] = self.verdict.get("text")
        out.update(self.metrics.get("model", {}))
        if self.segments:
            out["segment_by"] = self.segments["segment_by"]
            out["segments_kept"] = ", ".join(self.segments["kept"]) or "none"
        for other in ("global", "logistic", "rules", "oracle"):
            for k, v in self.metrics.get(other, {}).items():
                out[f"{other}_{k}"] = v
            if other in self.metrics and other != "oracle" and "model" in self.metrics:
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


def feature_kinds(X: pd.DataFrame) -> tuple[list[str], list[str]]:
    categorical = list(categorical_levels(X))
    return [c for c in X.columns if c not in categorical], categorical


def fit_baselines(
    X: pd.DataFrame,
    y: np.ndarray,
    rules: tuple[Rule, ...],
    numeric: list[str],
    categorical: list[str],
    random_state: int,
) -> tuple[dict[str, Any], list[str]]:
    """The logistic regression and, where its features exist, the points score, fitted on
    ``X, y``; and a note when the points score is unavailable."""
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
