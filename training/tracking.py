"""Log a training result to MLflow, register it as ``challenger``, and run the promotion gate.

The gate scores the current champion on the challenger's held-out rows (the same test period, or
the same cross-validation folds when the data fingerprint matches) and promotes the challenger
only when its ROC AUC beats the champion's by ``margin``. The decision and both scores are logged
to the run and tagged on the new model version.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

import mlflow
import mlflow.sklearn
import numpy as np
import pandas as pd
from mlflow.models import infer_signature
from sklearn.metrics import roc_auc_score

from training.data import LABEL
from training.pipeline import TrainingResult
from training.plots import write_plots
from training.registry import (
    CHALLENGER,
    SKOPS_TRUSTED_TYPES,
    champion_version,
    experiment_id,
    load_version,
    promote,
    tracking_to,
)


def pip_requirements() -> list[str]:
    """Pinned requirements of a logged model (given, so MLflow need not spawn a process to
    infer them)."""
    from importlib.metadata import PackageNotFoundError, version

    pins = []
    for package in ("mlflow", "lightgbm", "scikit-learn", "skops", "pandas", "numpy", "scipy"):
        try:
            pins.append(f"{package}=={version(package)}")
        except PackageNotFoundError:
            pins.append(package)
    return pins


def version_tags(result: TrainingResult) -> dict[str, str]:
    """What a registered version says about how it was built (beside its metrics)."""
    tags = {"family": result.family}
    if result.candidate:
        tags["candidate"] = json.dumps(result.candidate, sort_keys=True)
    if result.window.get("production_as_of"):
        tags["production_as_of"] = result.window["production_as_of"]
    if result.window.get("cutoff"):
        tags["test_cutoff"] = result.window["cutoff"]
    if result.verdict:
        tags["data_verdict"] = str(result.verdict.get("level"))
    if result.segments:
        tags["segment_by"] = str(result.segments["segment_by"])
        tags["segments_kept"] = ", ".join(result.segments["kept"]) or "none"
    for key, value in (result.backtest or {}).get("summary", {}).items():
        tags[f"backtest_{key}"] = f"{value:.6f}" if isinstance(value, float) else str(value)
    return tags


def _example(result: TrainingResult, rows: int = 5) -> pd.DataFrame:
    """A few held-out rows in the model's input schema (categoricals as plain strings)."""
    frame = result.holdout[result.features].head(rows).copy()
    for col in result.categorical:
        frame[col] = frame[col].astype("string").astype(object)
    for col in result.numeric:
        frame[col] = pd.to_numeric(frame[col], errors="coerce").astype("float64")
    return frame


def champion_candidate(current: Any, model: Any) -> dict[str, Any]:
    """How the champion was built: its ``candidate`` tag, or for versions registered before
    model selection existed, the trees with their own settings."""
    if current.tags.get("candidate"):
        return dict(json.loads(current.tags["candidate"]))
    params = {
        k: v
        for k, v in model.get_params().items()
        if k
        in (
            "learning_rate",
            "num_leaves",
            "min_child_samples",
            "reg_lambda",
            "colsample_bytree",
            "refit_full",
        )
    }
    return {"name": "lightgbm", "params": params, "keeps_directions": False}


def gate(
    result: TrainingResult, tracking_uri: str, challenger: str, margin: float
) -> dict[str, Any]:
    """Decide whether the ``challenger`` version replaces the champion; promote it if so.

    Both are compared on rows neither was fitted on. A champion trained before the challenger's
    test period (its ``production_as_of`` at or before the cutoff) is scored on that period as it
    is; otherwise the champion's configuration is refitted the way the challenger was (as of the
    same cutoff, or on the same cross-validation folds) and scored on the same rows.
    """
    name = result.model_name
    current = champion_version(tracking_uri, name)
    if "model" not in result.metrics:  # the fallback: nothing could be tested out of time
        if current is None:
            promote(tracking_uri, name, challenger, "first version of this model (fallback)")
            return {"challenger_version": challenger, "promoted": True, "reason": "no champion yet"}
        return {
            "challenger_version": challenger,
            "champion_version": str(current.version),
            "promoted": False,
            "reason": "the challenger could not be tested out of time; kept champion",
        }
    challenger_auc = float(result.metrics["model"]["roc_auc"])
    decision: dict[str, Any] = {
        "challenger_version": challenger,
        "challenger_roc_auc": challenger_auc,
        "margin": margin,
        "champion_version": None,
        "champion_roc_auc": None,
    }
    if current is None:
        promote(tracking_uri, name, challenger, "first version of this model")
        return {**decision, "promoted": True, "reason": "no champion yet"}
    decision["champion_version"] = str(current.version)
    champion = load_version(tracking_uri, name, current.version)
    needed = list(champion.metadata["feature_names"])
    missing = [c for c in needed if c not in result.holdout.columns]
    if missing:
        return {
            **decision,
            "promoted": False,
            "reason": f"champion v{current.version} needs features absent from this "
            f"data ({', '.join(missing[:5])}); not comparable, kept champion",
        }
    cutoff = result.window.get("cutoff")
    trained_before = current.tags.get("production_as_of")
    if cutoff and trained_before and trained_before <= cutoff:
        p = champion.model.predict_proba(result.holdout[needed])[:, 1]
        champion_auc = float(roc_auc_score(result.holdout[LABEL].to_numpy(dtype=int), p))
        how = f"champion (trained as of {trained_before}) scored on the period after {cutoff}"
    elif result.reevaluate is not None:
        record = champion_candidate(current, champion.model)
        champion_auc = float(result.reevaluate(record))
        how = (
            "champion's configuration refitted as the challenger was "
            f"({record.get('description') or record['name']}) and scored on the same rows"
        )
    else:
        return {
            **decision,
            "promoted": False,
            "reason": "no rows both models are unfitted on; kept champion",
        }
    decision["champion_roc_auc"] = champion_auc
    promoted = challenger_auc >= champion_auc + margin
    reason = (
        f"{how}: challenger {challenger_auc:.4f} vs champion {champion_auc:.4f} "
        f"+ margin {margin:.4f}"
    )
    if promoted:
        promote(tracking_uri, name, challenger, reason)
    return {**decision, "promoted": promoted, "reason": reason}


def log_training_run(
    result: TrainingResult,
    tracking_uri: str,
    margin: float,
    register: bool = True,
    run_name: str | None = None,
) -> dict[str, Any]:
    """Log params, metrics, plots and the model; register it and apply the promotion gate.

    Returns:
        ``run_id``, ``model_version`` and the gate's ``decision`` (``None`` without registering).
    """
    exp = experiment_id(tracking_uri, result.model_name)
    summary = result.summary()
    with (
        tracking_to(tracking_uri) as client,
        mlflow.start_run(experiment_id=exp, run_name=run_name) as run,
    ):
        mlflow.log_params({f"model.{k}": v for k, v in result.params.items()})
        mlflow.log_params(
            {
                "feature_service": result.feature_service,
                "protocol": result.protocol,
                "data_fingerprint": result.fingerprint,
                "n_features": len(result.features),
                "entity_key": result.entity_key,
                "calibration": summary["calibration"],
                "family": result.family,
                "promotion_margin": margin,
                **{f"data.{k}": v for k, v in result.window.items()},
                **{
                    f"data.{c.name}_{what}": getattr(c, what)
                    for c in result.data_check.counts
                    for what in ("rows", "positives", "negatives")
                },
            }
        )
        mlflow.set_tags({"model": result.model_name, "feature_service": result.feature_service})
        mlflow.log_metrics(
            {
                k: float(v)
                for k, v in summary.items()
                if isinstance(v, int | float) and not isinstance(v, bool) and np.isfinite(v)
            }
        )
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp)
            if len(result.evaluation):
                write_plots(
                    result.evaluation,
                    result.evaluation_model or result.model,
                    result.holdout[result.features],
                    out / "plots",
                )
                mlflow.log_artifacts(str(out / "plots"), "plots")
            (out / "metrics.json").write_text(
                json.dumps(
                    {
                        "summary": summary,
                        "by_model": result.metrics,
                        "folds": result.fold_metrics,
                        "data_check": [asdict(c) for c in result.data_check.counts],
                        "features": {"numeric": result.numeric, "categorical": result.categorical},
                        "candidate": result.candidate,
                        "selection": result.selection,
                        "data_verdict": result.verdict,
                        "backtest": result.backtest,
                        "segments": result.segments,
                    },
                    indent=2,
                    default=str,
                )
            )
            mlflow.log_artifact(str(out / "metrics.json"))
        if result.segments:
            log_segments(result.segments)
        example = _example(result)
        info = mlflow.sklearn.log_model(
            result.model,
            name="model",
            signature=infer_signature(example, result.model.predict_proba(example)),
            input_example=example,
            pyfunc_predict_fn="predict_proba",
            serialization_format="skops",
            skops_trusted_types=SKOPS_TRUSTED_TYPES,
            pip_requirements=pip_requirements(),
            registered_model_name=result.model_name if register else None,
            metadata={
                "feature_service": result.feature_service,
                "data_fingerprint": result.fingerprint,
                "calibration": summary["calibration"],
                "family": result.family,
            },
        )
        record: dict[str, Any] = {
            "run_id": run.info.run_id,
            "model_version": None,
            "decision": None,
        }
        if not register:
            return record
        version = str(info.registered_model_version)
        for key in ("roc_auc", "ece", "pr_auc", "brier"):
            if key in summary:
                client.set_model_version_tag(result.model_name, version, key, f"{summary[key]:.6f}")
        client.set_model_version_tag(result.model_name, version, "fingerprint", result.fingerprint)
        client.set_model_version_tag(result.model_name, version, "protocol", result.protocol)
        client.set_model_version_tag(
            result.model_name, version, "feature_service", result.feature_service
        )
        for key, value in version_tags(result).items():
            client.set_model_version_tag(result.model_name, version, key, value)
        client.set_registered_model_alias(result.model_name, CHALLENGER, version)
        decision = gate(result, tracking_uri, version, margin)
        mlflow.log_metric("gate_promoted", float(decision["promoted"]))
        if decision.get("challenger_roc_auc") is not None:
            mlflow.log_metric("gate_challenger_roc_auc", decision["challenger_roc_auc"])
        if decision.get("champion_roc_auc") is not None:
            mlflow.log_metric("gate_champion_roc_auc", decision["champion_roc_auc"])
        mlflow.set_tags(
            {
                "gate_reason": decision["reason"],
                "gate_champion_version": str(decision.get("champion_version")),
                "model_version": version,
            }
        )
        mlflow.log_dict(decision, "promotion_decision.json")
        client.set_model_version_tag(
            result.model_name,
            version,
            "gate",
            "promoted" if decision["promoted"] else "not promoted",
        )
        client.set_model_version_tag(result.model_name, version, "gate_reason", decision["reason"])
        record.update(model_version=version, decision=decision)
    return record


def log_segments(segments: dict[str, Any]) -> None:
    """The segment models' keep/drop table (back-test figures and verdict per segment) and the
    test period's figures per segment, as MLflow tables beside the run's params."""
    mlflow.log_params(
        {
            "segment_by": segments["segment_by"],
            "segments_kept": ", ".join(segments["kept"]) or "none",
            "segments_protocol": segments["protocol"],
        }
    )
    mlflow.log_table(pd.DataFrame(segments["decisions"]), "segments/decisions.json")
    mlflow.log_table(pd.DataFrame(segments["test"]), "segments/test_period.json")
    for name, figures in segments["test_metrics"].items():
        mlflow.log_metrics(
            {f"segments_test_{name}_{k}": float(figures[k]) for k in ("roc_auc", "log_loss")}
        )


def log_backtest(result: Any, tracking_uri: str, run_name: str = "backtest") -> str:
    """Log a :class:`training.backtest.BacktestResult` as an MLflow run in the model's experiment:
    the summary as metrics, per-cutoff figures as a CSV and the chart. Returns the run id."""
    from training.backtest import backtest_chart

    exp = experiment_id(tracking_uri, result.model_name)
    with (
        tracking_to(tracking_uri),
        mlflow.start_run(experiment_id=exp, run_name=run_name) as run,
    ):
        mlflow.set_tags({"model": result.model_name, "kind": "backtest"})
        mlflow.log_param("protocol", result.protocol)
        mlflow.log_metrics(
            {
                f"backtest_{k}": float(v)
                for k, v in result.summary.items()
                if isinstance(v, int | float) and np.isfinite(v)
            }
        )
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp)
            result.rows.to_csv(out / "backtest.csv", index=False)
            mlflow.log_artifact(str(out / "backtest.csv"))
            backtest_chart(result, out / "backtest_roc_auc.png")
            mlflow.log_artifact(str(out / "backtest_roc_auc.png"))
        return str(run.info.run_id)
