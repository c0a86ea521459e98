"""Training on weekly snapshots with the deploy-faithful protocol (:mod:`training.protocol`).

:func:`train_time_split`:

1. says whether the data is enough (:mod:`training.sufficiency`), and falls back to the points
   score when it cannot test a model out of time;
2. as of the test cutoff (one test period before the last labelled snapshot), fits every
   candidate on purged training rows, early-stops and calibrates on the validation rows, and
   selects the champion candidate (:mod:`training.selection`); the winner and each baseline are
   then widened to every row closed at the cutoff;
3. tests them all, and the simulator's oracle when given, on the period after the cutoff;
4. fits the production model the same way as of the last date the data knows (every closed
   label), which is what is registered and served.

No fitted piece (rounds, calibration, selection) sees an outcome of the test period.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pandas as pd

from training.baselines import RulePointsScore
from training.data import (
    LABEL,
    TIMESTAMP,
    Minimums,
    check_counts,
    fingerprint,
    split_counts,
    split_window,
)
from training.metrics import binary_metrics
from training.pipeline import (
    ModelSpec,
    TrainingResult,
    feature_columns,
    feature_kinds,
    oracle_probabilities,
)
from training.protocol import (
    Protocol,
    as_of_parts,
    cutoffs,
    data_as_of,
    scored_period_rows,
)
from training.scoring import add_revenue_at_risk
from training.selection import (
    Candidate,
    Selection,
    candidate_from_record,
    candidate_record,
    refit_on_closed,
    select,
)
from training.sufficiency import assess

# Baselines reported beside the champion, by the name their metrics carry.
BASELINE_FAMILIES = {"logistic": "logistic", "rules": "points"}


def _prepare(frame: pd.DataFrame, spec: ModelSpec) -> tuple[pd.DataFrame, pd.Series, np.ndarray]:
    frame = frame.sort_values([TIMESTAMP, spec.entity_key], kind="stable").reset_index(drop=True)
    return frame, pd.to_datetime(frame[TIMESTAMP], utc=True), frame[LABEL].to_numpy(dtype=int)


def _oracle(
    metrics: dict[str, dict[str, float]],
    evaluation: pd.DataFrame,
    test: pd.DataFrame,
    y_test: np.ndarray,
    truth: pd.DataFrame | None,
    spec: ModelSpec,
    notes: list[str],
) -> None:
    if truth is None or not spec.truth_column:
        return
    evaluation["p_oracle"] = oracle_probabilities(test, truth, spec.entity_key, spec.truth_column)
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


def fit_production(
    X: pd.DataFrame,
    y: np.ndarray,
    ts: pd.Series,
    spec: ModelSpec,
    protocol: Protocol,
    candidate: Candidate,
    random_state: int = 0,
) -> Any:
    """``candidate`` fitted as of the last date the data knows, widened to every closed label."""
    as_of = data_as_of(ts, protocol)
    chosen = select(X, y, ts, as_of, spec.name, spec.rules, protocol, random_state, [candidate])
    return refit_on_closed(chosen.winner, X, y, ts, protocol)


def selection_record(selection: Selection) -> dict[str, Any]:
    return {
        "reason": selection.reason,
        "dates": selection.dates,
        "scores": dict(sorted(selection.scores.items(), key=lambda kv: -kv[1])),
    }


def evaluate_as_of(
    frame: pd.DataFrame,
    spec: ModelSpec,
    cutoff: pd.Timestamp,
    protocol: Protocol,
    truth: pd.DataFrame | None = None,
    random_state: int = 0,
    only: list[Candidate] | None = None,
    fixed: Candidate | None = None,
) -> dict[str, Any]:
    """Select as of ``cutoff``, widen the winner and the baselines, and score the period after.

    ``only`` restricts the candidates; ``fixed`` names the winner (a given champion's
    configuration, back-tested beside the baselines).

    Returns:
        ``selection``, ``models`` (name → fitted model: ``model``, ``logistic``, ``rules``),
        ``metrics`` (same names plus ``oracle``), ``evaluation`` (test rows with ``p_*``),
        ``test`` (the test rows) and ``notes``.
    """
    frame, ts, y = _prepare(frame, spec)
    X = frame[feature_columns(frame, spec.entity_key)]
    selection = select(X, y, ts, cutoff, spec.name, spec.rules, protocol, random_state, only, fixed)
    models: dict[str, Any] = {
        "model": refit_on_closed(copy.deepcopy(selection.winner), X, y, ts, protocol)
    }
    for name, family in BASELINE_FAMILIES.items():
        fitted = selection.fitted.get(family)
        if fitted is not None:
            models[name] = refit_on_closed(copy.deepcopy(fitted), X, y, ts, protocol)
    test_mask = scored_period_rows(ts, cutoff, protocol)
    test = frame[test_mask]
    y_test = y[test_mask]
    evaluation = test[[spec.entity_key, TIMESTAMP, LABEL]].copy()
    for name, model in models.items():
        evaluation[f"p_{name}"] = model.predict_proba(X[test_mask])[:, 1]
    metrics = {name: binary_metrics(y_test, evaluation[f"p_{name}"]) for name in models}
    notes: list[str] = []
    _oracle(metrics, evaluation, test, y_test, truth, spec, notes)
    return {
        "selection": selection,
        "models": models,
        "metrics": metrics,
        "evaluation": evaluation,
        "test": test,
        "notes": notes,
    }


def _fallback(
    frame: pd.DataFrame,
    spec: ModelSpec,
    protocol: Protocol,
    verdict: dict[str, Any],
    minimums: Minimums,
) -> TrainingResult:
    """The points score mapped on the latest closed labels: served when no model can be tested."""
    frame, ts, y = _prepare(frame, spec)
    features = feature_columns(frame, spec.entity_key)
    X = frame[features]
    numeric, categorical = feature_kinds(X)
    as_of = data_as_of(ts, protocol)
    parts = as_of_parts(ts, as_of, protocol)
    latest = parts.validation if y[parts.validation].any() else np.ones(len(y), dtype=bool)
    model = RulePointsScore(spec.rules).fit(X, y, X[latest], y[latest])
    counts = [
        split_counts("train", frame[LABEL], ts),
        split_counts("validation", frame.loc[latest, LABEL], ts[latest]),
    ]
    evaluation = frame[[spec.entity_key, TIMESTAMP, LABEL]].iloc[:0].copy()
    newest = (ts == ts.max()).to_numpy()  # no test rows: the latest snapshot stands for them
    return TrainingResult(
        spec.name,
        model,
        numeric,
        categorical,
        {},
        evaluation,
        frame[newest],
        protocol.name,
        check_counts(counts, Minimums(0, 0, 0, 0, 0)),
        {"as_of": str(as_of.date())},
        fingerprint(frame),
        {},
        spec.feature_service,
        spec.entity_key,
        notes=["not tested out of time: " + str(verdict["text"])],
        evaluation_model=model,
        candidate=candidate_record(Candidate("points", {}, True)),
        selection={"reason": "fallback: " + str(verdict["text"])},
        verdict=verdict,
    )


def train_time_split(
    frame: pd.DataFrame,
    spec: ModelSpec,
    protocol: Protocol | None = None,
    minimums: Minimums | None = None,
    truth: pd.DataFrame | None = None,
    random_state: int = 0,
) -> TrainingResult:
    """Select, test and fit the production model on snapshot data (module docstring).

    Args:
        frame: entity key, ``event_timestamp``, ``label`` (closed labels only) and features.
        spec: the model being trained.
        protocol: the purged protocol (default: a 90-day label window).
        minimums: least counts before a model is selected and tested (default Einstein's).
        truth: simulator truth (entity key, ``snapshot_at``, ``spec.truth_column``) for the oracle.

    Raises:
        NotEnoughData: the verdict is ``insufficient`` (too little history, or one class only).
    """
    from training.data import NotEnoughData

    protocol = protocol or Protocol()
    minimums = minimums or Minimums()
    frame, ts, y = _prepare(frame, spec)
    verdict = assess(ts, y, protocol, minimums, spec.positive_words).as_dict()
    if verdict["level"] == "insufficient":
        raise NotEnoughData(str(verdict["text"]))
    if verdict["level"] == "no_test" or not cutoffs(ts, protocol, 1):
        return _fallback(frame, spec, protocol, verdict, minimums)
    cutoff = cutoffs(ts, protocol, 1)[-1]
    out = evaluate_as_of(frame, spec, cutoff, protocol, truth, random_state)
    selection: Selection = out["selection"]
    parts = selection.winner.parts
    counts = [
        split_counts(name, frame.loc[mask, LABEL], ts[mask])
        for name, mask in (
            ("train", parts.train),
            ("validation", parts.validation),
            ("test", scored_period_rows(ts, cutoff, protocol)),
        )
    ]
    check = check_counts(counts, minimums)
    X = frame[feature_columns(frame, spec.entity_key)]
    numeric, categorical = feature_kinds(X)
    production = fit_production(X, y, ts, spec, protocol, selection.winner.candidate, random_state)
    evaluation: pd.DataFrame = out["evaluation"]
    test: pd.DataFrame = out["test"]
    add_revenue_at_risk(evaluation, test, spec.value_column)
    window = {
        **split_window(counts),
        "cutoff": str(cutoff.date()),
        "production_as_of": str(data_as_of(ts, protocol).date()),
    }
    return TrainingResult(
        spec.name,
        production,
        numeric,
        categorical,
        out["metrics"],
        evaluation,
        test,
        protocol.name,
        check,
        {k: str(v) for k, v in window.items()},
        fingerprint(frame),
        dict(selection.winner.candidate.params),
        spec.feature_service,
        spec.entity_key,
        notes=[*out["notes"], *check.problems],
        evaluation_model=out["models"]["model"],
        candidate=candidate_record(selection.winner.candidate),
        selection=selection_record(selection),
        verdict=verdict,
        reevaluate=lambda record: evaluate_as_of(
            frame, spec, cutoff, protocol, None, random_state, [candidate_from_record(record)]
        )["metrics"]["model"]["roc_auc"],
    )
