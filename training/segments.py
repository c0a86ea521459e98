"""Segment models in a training result: fitted where the back-test keeps them, tested beside
the global model, and packaged as one served model.

:func:`add_segment_models` runs :func:`training.segment_backtest.decide_segments` as of the test
cutoff of :func:`training.snapshots.train_time_split`, fits each eligible segment's model as of
that cutoff by the purged protocol on its own rows, and scores the test period three ways: the
global model alone, with the kept segment models (what is registered) and with every eligible
segment model (what keeping them all would have done). The kept ones are then fitted as of the
last date the data knows and put beside the production global model in a
:class:`training.segmented.SegmentedClassifier`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import log_loss, roc_auc_score

from training.data import LABEL, Minimums
from training.metrics import binary_metrics
from training.pipeline import ModelSpec, TrainingResult, feature_columns
from training.protocol import Protocol, as_of_parts, data_as_of, scored_period_rows
from training.segment_backtest import (
    Progress,
    decide_segments,
    scaled,
    segment_keys,
    sorted_snapshots,
    utc,
)
from training.segmented import SegmentedClassifier
from training.selection import Candidate, candidate_from_record, refit_on_closed, select


def segment_models_as_of(
    frame: pd.DataFrame,
    spec: ModelSpec,
    protocol: Protocol,
    as_of: pd.Timestamp,
    candidate: Candidate,
    segment_by: str,
    segments: list[str],
    random_state: int = 0,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Each segment's model trained as of ``as_of`` by the purged protocol on its own rows
    (``candidate`` with leaves scaled to them; early stopping and calibration on the segment's
    purged validation part), widened to every row closed at ``as_of``, as the global winner is."""
    frame, ts, y = sorted_snapshots(frame, spec)
    X = frame[feature_columns(frame, spec.entity_key)]
    keys = segment_keys(X, segment_by)
    out: dict[str, Any] = {}
    for segment in segments:
        if progress is not None:
            progress(f"{segment_by}={segment} as of {pd.Timestamp(as_of).date()}")
        mine = keys == segment
        Xs, ys, ts_s = X[mine], y[mine], ts[mine].reset_index(drop=True)
        Xs = Xs.reset_index(drop=True)
        train_rows = int(as_of_parts(ts_s, as_of, protocol).train.sum())
        chosen = select(
            Xs,
            ys,
            ts_s,
            as_of,
            spec.name,
            spec.rules,
            protocol,
            random_state,
            [scaled(candidate, train_rows)],
        )
        out[segment] = refit_on_closed(chosen.winner, Xs, ys, ts_s, protocol)
    return out


def _auc_and_loss(y: np.ndarray, p: np.ndarray) -> tuple[float | None, float | None]:
    if len(y) == 0 or y.min() == y.max():
        return None, None
    return float(roc_auc_score(y, p)), float(log_loss(y, p, labels=[0, 1]))


def test_period_table(
    keys: np.ndarray, y: np.ndarray, p_global: np.ndarray, p_segment: dict[str, np.ndarray]
) -> list[dict[str, Any]]:
    """Per segment of the test rows: rows, positives, and ROC AUC and log loss of the global
    model and (where one was fitted) the segment's own model."""
    out = []
    for segment in sorted({k for k in keys if k is not None}):
        mine = keys == segment
        auc, loss = _auc_and_loss(y[mine], p_global[mine])
        row: dict[str, Any] = {
            "segment": segment,
            "test_rows": int(mine.sum()),
            "test_positives": int(y[mine].sum()),
            "test_global_roc_auc": auc,
            "test_global_log_loss": loss,
            "test_segment_roc_auc": None,
            "test_segment_log_loss": None,
        }
        if segment in p_segment:
            auc, loss = _auc_and_loss(y[mine], p_segment[segment][mine])
            row.update(test_segment_roc_auc=auc, test_segment_log_loss=loss)
        out.append(row)
    return out


def add_segment_models(
    result: TrainingResult,
    frame: pd.DataFrame,
    spec: ModelSpec,
    protocol: Protocol,
    segment_by: str,
    minimums: Minimums | None = None,
    random_state: int = 0,
    progress: Progress | None = None,
) -> TrainingResult:
    """``result`` (from :func:`training.snapshots.train_time_split`) with segment models where
    the back-test keeps them: the registered model becomes a :class:`SegmentedClassifier` of the
    production global model and the kept segments' production models, and its test figures
    those of the combined model; with none kept, the model is unchanged. Either way
    ``segments`` holds the decision table, the per-fold figures and the test comparison.

    Raises:
        ValueError: ``segment_by`` is not a categorical feature.
    """
    if not result.metrics or "cutoff" not in result.window:
        return dataclasses.replace(
            result,
            notes=[*result.notes, "no segment models: no model could be tested out of time"],
        )
    cutoff = utc(result.window["cutoff"])
    candidate = candidate_from_record(result.candidate)
    decided = decide_segments(
        frame, spec, protocol, cutoff, candidate, segment_by, minimums, random_state, progress
    )
    frame, ts, y = sorted_snapshots(frame, spec)
    X = frame[feature_columns(frame, spec.entity_key)]
    as_of_cutoff = segment_models_as_of(
        frame,
        spec,
        protocol,
        cutoff,
        candidate,
        segment_by,
        decided.eligible,
        random_state,
        progress,
    )
    test = scored_period_rows(ts, cutoff, protocol)
    X_test, y_test = X[test], y[test]
    keys = segment_keys(X_test, segment_by)
    global_eval = result.evaluation_model
    p_global = global_eval.predict_proba(X_test)[:, 1]
    p_segment = {s: m.predict_proba(X_test)[:, 1] for s, m in as_of_cutoff.items()}

    def combined(segments: list[str]) -> SegmentedClassifier:
        chosen = {s: as_of_cutoff[s] for s in segments}
        return SegmentedClassifier(segment_by, global_eval, chosen).fit()

    evaluation_model = combined(decided.kept)
    p_kept = evaluation_model.predict_proba(X_test)[:, 1]
    p_all = combined(decided.eligible).predict_proba(X_test)[:, 1]
    test_metrics = {
        "global": binary_metrics(y_test, p_global),
        "segmented": binary_metrics(y_test, p_kept),
        "every_eligible_segment": binary_metrics(y_test, p_all),
    }
    segments = {
        "segment_by": segment_by,
        "protocol": decided.protocol,
        "cutoff": decided.cutoff,
        "kept": decided.kept,
        "decisions": [d.as_dict() for d in decided.decisions],
        "folds": decided.folds,
        "test": test_period_table(keys, y_test, p_global, p_segment),
        "test_metrics": test_metrics,
    }
    if not decided.kept:
        return dataclasses.replace(result, segments=segments)
    production_as_of = data_as_of(ts, protocol)
    production = segment_models_as_of(
        frame,
        spec,
        protocol,
        production_as_of,
        candidate,
        segment_by,
        decided.kept,
        random_state,
        progress,
    )
    model = SegmentedClassifier(segment_by, result.model, production).fit()
    metrics = {
        **result.metrics,
        "model": test_metrics["segmented"],
        "global": test_metrics["global"],
    }
    evaluation = result.evaluation.copy()
    evaluation["p_global"] = evaluation["p_model"]
    evaluation["p_model"] = p_kept
    if "model_on_oracle_rows" in metrics and "p_oracle" in evaluation:
        known = evaluation["p_oracle"].notna().to_numpy()
        metrics["model_on_oracle_rows"] = binary_metrics(y_test[known], p_kept[known])
    record = {**result.candidate, "segment_by": segment_by, "segments": decided.kept}
    return dataclasses.replace(
        result,
        model=model,
        evaluation_model=evaluation_model,
        metrics=metrics,
        evaluation=evaluation,
        candidate=record,
        segments=segments,
        reevaluate=_segmented_reevaluate(
            result.reevaluate, frame, spec, protocol, cutoff, random_state
        ),
        notes=[*result.notes, f"segment models kept for {segment_by}: {', '.join(decided.kept)}"],
    )


def _segmented_reevaluate(
    plain: Callable[[dict[str, Any]], float] | None,
    frame: pd.DataFrame,
    spec: ModelSpec,
    protocol: Protocol,
    cutoff: pd.Timestamp,
    random_state: int,
) -> Callable[[dict[str, Any]], float] | None:
    """The promotion gate's refit of a champion's configuration as of ``cutoff``, scored on the
    test period: with the champion's own segment models when its record names some."""
    if plain is None:
        return None

    def reevaluate(champion: dict[str, Any]) -> float:
        if not champion.get("segments"):
            return plain(champion)
        from training.snapshots import evaluate_as_of

        segment_by = str(champion["segment_by"])
        base = candidate_from_record(champion)
        out = evaluate_as_of(frame, spec, cutoff, protocol, None, random_state, [base])
        parts = segment_models_as_of(
            frame,
            spec,
            protocol,
            cutoff,
            base,
            segment_by,
            list(champion["segments"]),
            random_state,
        )
        refit = SegmentedClassifier(segment_by, out["models"]["model"], parts).fit()
        test: pd.DataFrame = out["test"]
        p = refit.predict_proba(test[feature_columns(test, spec.entity_key)])[:, 1]
        return float(roc_auc_score(test[LABEL].to_numpy(dtype=int), p))

    return reevaluate
