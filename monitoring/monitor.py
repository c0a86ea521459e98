"""``crm-intel monitor``: has the data moved since training, and how did the served scores do?

Per model (lead conversion, churn risk), against its current champion:

* **feature drift**: each of the champion's features in the training window (the
  ``monitor_reference_days`` before the version's ``production_as_of``, the last day its labels
  could close, or before the latest period when training reached into it) against the latest
  period (the ``monitor_current_days`` up to the newest feature row), by
  :func:`monitoring.drift.feature_drift` (Evidently, PSI);
* **score drift**: the champion's probabilities on the same two windows;
* **realised performance** of what was actually served: the score log joined to outcomes whose
  window has closed (:mod:`monitoring.performance`), per week, model version and arm, and over
  all closed weeks, beside the version's expected ROC AUC (its held-out test figure).

An **alert** is raised when a threshold below is crossed; the command then exits non-zero.

=====================================  ==========================================  ==========
alert                                   when                                        default
=====================================  ==========================================  ==========
``feature_drift``                       a feature's PSI ≥ ``monitor_feature_psi``    0.2
``score_drift``                         the score's PSI ≥ ``monitor_score_psi``      0.2
``realised_auc``                        realised ROC AUC < expected − drop          0.05
``calibration``                         realised calibration error > threshold      0.05
=====================================  ==========================================  ==========

Realised figures need at least ``monitor_min_outcomes`` scored entities with an outcome, with
both outcomes present, per version and arm; fewer are reported, never alerted on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from crm.settings import Settings
from features.store import entity_info
from monitoring.drift import drift_alerts, feature_drift, score_drift
from monitoring.performance import first_each_week, logged_scores, realised, with_outcomes
from serving.score_log import open_log
from serving.scoring import MODEL_ENTITIES
from training.registry import Champion, NoChampion, load_champion

MODELS = ("lead_conversion", "churn_risk")


@dataclass(frozen=True)
class Thresholds:
    feature_psi: float = 0.2
    score_psi: float = 0.2
    auc_drop: float = 0.05
    calibration_error: float = 0.05
    min_outcomes: int = 200

    @classmethod
    def from_settings(cls, settings: Settings) -> Thresholds:
        return cls(
            settings.monitor_feature_psi,
            settings.monitor_score_psi,
            settings.monitor_auc_drop,
            settings.monitor_calibration_error,
            settings.monitor_min_outcomes,
        )


def windows(
    settings: Settings, entity: str, trained_until: pd.Timestamp | None
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, str]]:
    """The feature rows of the training window and of the latest period."""
    key, table, _, _ = entity_info(entity)
    rows = pd.read_parquet(settings.features_dir / f"{table}.parquet")
    stamps = pd.to_datetime(rows["event_timestamp"], utc=True)
    newest = stamps.max()
    current_start = newest - pd.Timedelta(days=settings.monitor_current_days)
    # a champion trained on data up to the latest period is compared with the time before it
    reference_end = current_start if trained_until is None else min(trained_until, current_start)
    reference_start = reference_end - pd.Timedelta(days=settings.monitor_reference_days)
    reference = rows[(stamps > reference_start) & (stamps <= reference_end)]
    current = rows[stamps > current_start]
    span = {
        "reference_start": reference_start.isoformat(),
        "reference_end": reference_end.isoformat(),
        "current_start": current_start.isoformat(),
        "current_end": newest.isoformat(),
    }
    return reference, current, span


def _trained_until(champion: Champion) -> pd.Timestamp | None:
    stamp = (champion.metadata.get("tags") or {}).get("production_as_of")
    return None if not stamp else pd.Timestamp(stamp, tz="UTC") + pd.Timedelta(days=1)


def _expected_auc(champion: Champion) -> float | None:
    value = (champion.metadata.get("tags") or {}).get("roc_auc")
    try:
        return None if value is None else float(value)
    except ValueError:
        return None


def monitor_model(
    settings: Settings, model: str, thresholds: Thresholds, champion: Champion | None = None
) -> dict[str, Any]:
    """Drift, score drift and realised performance of one model, with its alerts."""
    entity, _ = MODEL_ENTITIES[model]
    champion = champion or load_champion(model, settings.tracking_uri())
    _, _, _, categorical = entity_info(entity)
    features = list(champion.metadata.get("feature_names") or champion.model.feature_names_in_)
    reference, current, span = windows(settings, entity, _trained_until(champion))
    out: dict[str, Any] = {"champion_version": champion.version, "windows": span, "alerts": []}
    alerts: list[dict[str, Any]] = out["alerts"]
    if len(reference) and len(current):
        drift = feature_drift(
            reference,
            current,
            features,
            threshold=thresholds.feature_psi,
            categorical=[c for c in features if c in categorical],
        )
        out["feature_drift"] = _records(drift)
        alerts += [{**a, "model": model} for a in drift_alerts(drift)]
        scored = score_drift(
            champion.model.predict_proba(reference[features])[:, 1],
            champion.model.predict_proba(current[features])[:, 1],
            name="probability",
            threshold=thresholds.score_psi,
        )
        out["score_drift"] = _records(scored)[0]
        alerts += [{**a, "model": model} for a in drift_alerts(scored, kind="score_drift")]
    else:
        out["feature_drift"] = []
        out["note"] = "no feature rows in one of the windows: drift not measured"
    logged = logged_scores(open_log(settings.score_log_url()), model)
    expected = _expected_auc(champion)
    out["expected_roc_auc"] = expected
    if len(logged):
        served = first_each_week(with_outcomes(settings, entity, logged))
        weekly = realised(served)
        overall = realised(served, by=("model_version", "arm"))
        out["realised_by_week"] = _records(weekly)
        out["realised"] = _records(overall)
        out["scores_awaiting_outcome"] = int(served["label"].isna().sum())
        for row in overall.itertuples(index=False):
            enough = row.n >= thresholds.min_outcomes and 0 < row.positives < row.n
            if not enough:
                continue
            version_expected = expected if str(row.model_version) == champion.version else None
            if (
                version_expected is not None
                and row.roc_auc < version_expected - thresholds.auc_drop
            ):
                alerts.append(
                    {
                        "kind": "realised_auc",
                        "model": model,
                        "model_version": str(row.model_version),
                        "arm": row.arm,
                        "score": float(row.roc_auc),
                        "threshold": version_expected - thresholds.auc_drop,
                        "message": (
                            f"{model} v{row.model_version} ({row.arm}) ranked served "
                            f"{entity}s at ROC AUC {row.roc_auc:.3f}, below the expected "
                            f"{version_expected:.3f} − {thresholds.auc_drop:.2f}"
                        ),
                    }
                )
            if row.calibration_error > thresholds.calibration_error:
                alerts.append(
                    {
                        "kind": "calibration",
                        "model": model,
                        "model_version": str(row.model_version),
                        "arm": row.arm,
                        "score": float(row.calibration_error),
                        "threshold": thresholds.calibration_error,
                        "message": (
                            f"{model} v{row.model_version} ({row.arm}): served probabilities "
                            f"were off by {row.calibration_error:.3f} on average (mean "
                            f"{row.mean_predicted:.3f} predicted, {row.observed_rate:.3f} "
                            "observed)"
                        ),
                    }
                )
    else:
        out["realised_by_week"], out["realised"] = [], []
        out["scores_awaiting_outcome"] = 0
    return out


def monitor(
    settings: Settings, models: tuple[str, ...] = MODELS, thresholds: Thresholds | None = None
) -> dict[str, Any]:
    """:func:`monitor_model` for each model that has a champion; all alerts together."""
    thresholds = thresholds or Thresholds.from_settings(settings)
    report: dict[str, Any] = {
        "generated_at": datetime.now().astimezone().isoformat(timespec="seconds"),
        "thresholds": thresholds.__dict__,
        "models": {},
        "alerts": [],
    }
    for model in models:
        try:
            result = monitor_model(settings, model, thresholds)
        except NoChampion as err:
            report["models"][model] = {"skipped": str(err)}
            continue
        report["models"][model] = result
        report["alerts"] += result["alerts"]
    return report


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as JSON-ready dicts (NaN → None, numpy scalars → Python, dates → ISO)."""
    out = []
    for row in frame.to_dict("records"):
        clean = {}
        for k, v in row.items():
            if isinstance(v, np.generic):
                v = v.item()
            if isinstance(v, float) and math.isnan(v):
                v = None
            elif hasattr(v, "isoformat"):
                v = v.isoformat()
            clean[k] = v
        out.append(clean)
    return out
