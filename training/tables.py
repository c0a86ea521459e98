"""Training on a bring-your-own table, one row per entity, returning a :class:`TrainingResult`.

* With a timestamp, :func:`train_fractional_split`: train on the earliest rows, stop early and
  calibrate on the next ones, test on the last ones.
* Without one, :func:`train_nested_cv`: the candidates of :mod:`training.selection` (LightGBM
  over a grid of tree sizes, monotone LightGBM where directions are known, logistic regression
  over a grid of penalties, the points score where its rules apply) tuned by nested
  cross-validation. Outer stratified folds give the reported figures; within each outer fold an
  inner cross-validation on its training rows alone chooses the candidate that is then fitted on
  those rows and scored on the held-out fold, so no reported figure is a tuning score. The
  production model is the candidate an inner cross-validation on every row chooses, fitted on
  every row.

A table model is registered under its own name (:func:`table_model_name`), never under a native
model's, so it can never become the service's champion. Every result carries ``reevaluate``: the
promotion gate refits the champion's configuration on exactly the challenger's outer folds (or
split) and compares like with like.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold

from training.baselines import Rule
from training.data import (
    LABEL,
    TIMESTAMP,
    DataCheck,
    Minimums,
    check_counts,
    fingerprint,
    split_counts,
    split_window,
    time_split,
)
from training.metrics import binary_metrics
from training.pipeline import (
    SNAPSHOT_PARAMS,
    SPECS,
    ModelSpec,
    TrainingResult,
    feature_columns,
    feature_kinds,
    fit_baselines,
)
from training.scoring import add_revenue_at_risk
from training.selection import (
    SIMPLICITY,
    TIE,
    Candidate,
    candidate_from_record,
    candidate_record,
)
from training.table_candidates import (
    TABLE_PARAMS,
    build,
    check_table_name,
    table_candidates,
    table_directions,
)

OUTER_FOLDS = 5
INNER_FOLDS = 3
# Measured on the shared datasets: the full grid takes 5-25 minutes per table on one busy core.
DEFAULT_TIME_LIMIT = 600.0
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")


def table_model_name(table: Path, name: str | None = None) -> str:
    """The registered name of a model trained on ``table``: ``name``, or ``table_<file stem>``.

    Raises:
        ValueError: the name is a native model's (``lead_conversion``, ``churn_risk``), whose
            champion the service scores with, or not a plain registry name.
    """
    if name is None:
        stem = re.sub(r"[^a-z0-9]+", "_", table.stem.lower()).strip("_") or "export"
        name = f"table_{stem}"[:100]
    if name in SPECS:
        raise ValueError(
            f"--name {name!r} is a native model the service scores with; a table model needs "
            "its own name"
        )
    if not NAME_PATTERN.fullmatch(name):
        raise ValueError(
            f"--name {name!r}: use letters, digits, '_', '.' and '-' (at most 100 characters)"
        )
    return name


Split = tuple[np.ndarray, np.ndarray]


def stratified_splits(y: np.ndarray, folds: int, seed: int) -> list[Split]:
    splitter = StratifiedKFold(folds, shuffle=True, random_state=seed)
    return list(splitter.split(np.zeros((len(y), 1)), y))


def fold_scores(
    candidate: Candidate,
    X: pd.DataFrame,
    y: np.ndarray,
    splits: list[Split],
    directions: dict[str, int],
    rules: tuple[Rule, ...],
    seed: int,
) -> list[float]:
    """ROC AUC of ``candidate`` on each held-out part, fitted on the rest."""
    scores = []
    for fit_idx, hold_idx in splits:
        model = build(candidate, directions, rules, seed).fit(X.iloc[fit_idx], y[fit_idx])
        p = model.predict_proba(X.iloc[hold_idx])[:, 1]
        scores.append(float(roc_auc_score(y[hold_idx], p)))
    return scores


def choose(scores: dict[str, float], candidates: list[Candidate]) -> Candidate:
    """The candidate with the best score (by description) among those that keep the known
    directions; within :data:`training.selection.TIE` of it, the simpler family; then the earlier
    in the grid. A lone candidate is chosen as it is."""
    if len(candidates) == 1:
        return candidates[0]
    eligible = [c for c in candidates if c.keeps_directions and c.describe() in scores]
    best = max(scores[c.describe()] for c in eligible)
    near = [c for c in eligible if scores[c.describe()] >= best - TIE]
    simplest = min(SIMPLICITY.index(c.name) for c in near)
    return max(
        (c for c in near if SIMPLICITY.index(c.name) == simplest),
        key=lambda c: (scores[c.describe()], -candidates.index(c)),
    )


@dataclass
class Search:
    """The inner cross-validations of a nested search: per candidate (by description), its mean
    inner ROC AUC within each outer fold's training rows and within every row, and what the time
    limit left out."""

    tried: list[Candidate]
    per_fold: list[dict[str, float]]
    all_rows: dict[str, float]
    skipped: list[Candidate]
    seconds: float


def search(
    X: pd.DataFrame,
    y: np.ndarray,
    outer: list[Split],
    candidates: list[Candidate],
    directions: dict[str, int],
    rules: tuple[Rule, ...],
    seed: int,
    inner_folds: int,
    time_limit: float | None,
    started: float,
    progress: Callable[[str], None] | None = None,
) -> Search:
    """Score every candidate by inner cross-validation within each outer fold's training rows and
    within every row, one candidate at a time, so that every fold has seen the same candidates
    when the time limit stops the search.

    The first candidate of each family always runs. A further one is added only when its
    expected time (the mean of its kind so far: trees or not) and the final fits still fit in
    ``time_limit`` seconds since ``started``. A lone candidate needs no search.
    """
    per_fold: list[dict[str, float]] = [{} for _ in outer]
    all_rows: dict[str, float] = {}
    if len(candidates) == 1:
        return Search(list(candidates), per_fold, all_rows, [], 0.0)
    inner = [stratified_splits(y[fit_idx], inner_folds, seed) for fit_idx, _ in outer]
    everything = stratified_splits(y, inner_folds, seed)
    took: dict[bool, list[float]] = {True: [], False: []}  # trees or not → seconds per candidate
    tried: list[Candidate] = []
    for n, cand in enumerate(candidates):
        trees = cand.name.startswith("lightgbm")
        first_of_family = all(c.name != cand.name for c in tried)
        if time_limit is not None and not first_of_family:
            expected = float(np.mean(took[trees] or took[not trees]))
            # the fits after the search: one per outer fold and the production fit, each on
            # about 1.5 times the rows of an inner fit
            final = 1.5 / inner_folds * max(took[True] or took[False])
            if time.monotonic() - started + expected + final > time_limit:
                skipped = [c for c in candidates[n:] if any(c.name == t.name for t in tried)]
                if len(skipped) == len(candidates) - n:
                    return Search(tried, per_fold, all_rows, skipped, time.monotonic() - started)
                continue  # a family not yet tried is still added
        if progress:
            progress(f"candidate {n + 1}/{len(candidates)}: {cand.describe()}")
        t0 = time.monotonic()
        for k, (fit_idx, _) in enumerate(outer):
            Xk, yk = X.iloc[fit_idx], y[fit_idx]
            per_fold[k][cand.describe()] = float(
                np.mean(fold_scores(cand, Xk, yk, inner[k], directions, rules, seed))
            )
        all_rows[cand.describe()] = float(
            np.mean(fold_scores(cand, X, y, everything, directions, rules, seed))
        )
        took[trees].append(time.monotonic() - t0)
        tried.append(cand)
    skipped = [c for c in candidates if c not in tried]
    return Search(tried, per_fold, all_rows, skipped, time.monotonic() - started)


def _mean_metrics(ms: list[dict[str, float]]) -> dict[str, float]:
    return {k: float(np.mean([m[k] for m in ms])) for k in ms[0]}


def fixed_cv_auc(
    candidate: Candidate,
    X: pd.DataFrame,
    y: np.ndarray,
    outer: list[Split],
    directions: dict[str, int],
    rules: tuple[Rule, ...],
    seed: int,
) -> float:
    """Mean ROC AUC of one configuration over the outer folds (the gate's champion figure)."""
    return float(np.mean(fold_scores(candidate, X, y, outer, directions, rules, seed)))


def train_nested_cv(
    frame: pd.DataFrame,
    spec: ModelSpec,
    grid: str | list[Candidate] = "full",
    minimums: Minimums | None = None,
    folds: int = OUTER_FOLDS,
    inner_folds: int = INNER_FOLDS,
    time_limit: float | None = DEFAULT_TIME_LIMIT,
    random_state: int = 0,
    progress: Callable[[str], None] | None = None,
) -> TrainingResult:
    """Nested cross-validation for a table without time (module docstring).

    The reported metrics are means over the outer folds of the candidate each fold's inner
    search chose (``roc_auc`` is the nested outer mean); the evaluation frame holds every row's
    out-of-fold prediction; ``fold_metrics`` says which candidate each fold chose.

    Args:
        frame: entity key, ``label`` and features (:func:`training.table.prepare_table`).
        spec: the model being trained; its ``kind`` (or name) gives the rules and directions.
        grid: ``full``, ``small`` (:func:`table_candidates`) or the candidates themselves. With
            one candidate there is nothing to choose: plain stratified k-fold.
        folds, inner_folds: outer and inner stratified folds.
        time_limit: seconds for the whole run; when it runs short, no further candidate is added
            (the notes say which were left out). ``None``: no limit.
        progress: called with a line as each candidate's search starts.

    Raises:
        NotEnoughData: an outer fold has too few positives or negatives.
    """
    started = time.monotonic()
    check_table_name(spec)
    frame = frame.reset_index(drop=True)
    y = frame[LABEL].to_numpy(dtype=int)
    features = feature_columns(frame, spec.entity_key)
    X = frame[features]
    numeric, categorical = feature_kinds(X)
    outer = stratified_splits(y, folds, random_state)
    check = _fold_check(frame, outer, minimums)
    directions = table_directions(spec, features)
    train_rows = int(len(frame) * (folds - 1) / folds)
    pool = (
        list(grid)
        if not isinstance(grid, str)
        else table_candidates(train_rows, spec.rules, features, directions, grid)
    )
    found = search(
        X,
        y,
        outer,
        pool,
        directions,
        spec.rules,
        random_state,
        inner_folds,
        time_limit,
        started,
        progress,
    )
    evaluation = frame[[spec.entity_key, LABEL]].copy()
    evaluation["fold"] = 0
    evaluation["candidate"] = ""
    per_model: dict[str, list[dict[str, float]]] = {}
    fold_metrics: list[dict[str, Any]] = []
    outer_record = []
    notes: list[str] = []
    for i, (fit_idx, hold_idx) in enumerate(outer):
        chosen = choose(found.per_fold[i], found.tried)
        model = build(chosen, directions, spec.rules, random_state).fit(X.iloc[fit_idx], y[fit_idx])
        baselines, notes = fit_baselines(
            X.iloc[fit_idx], y[fit_idx], spec.rules, numeric, categorical, random_state
        )
        evaluation.loc[hold_idx, "fold"] = i + 1
        evaluation.loc[hold_idx, "candidate"] = chosen.describe()
        preds = {"model": model.predict_proba(X.iloc[hold_idx])[:, 1]}
        preds.update({n: b.predict_proba(X.iloc[hold_idx])[:, 1] for n, b in baselines.items()})
        for name, p in preds.items():
            evaluation.loc[hold_idx, f"p_{name}"] = p
            m = binary_metrics(y[hold_idx], p)
            per_model.setdefault(name, []).append(m)
            if name == "model":
                fold_metrics.append({"fold": i + 1, "candidate": chosen.describe(), **m})
        outer_record.append(
            {
                "fold": i + 1,
                "chosen": chosen.describe(),
                "outer_roc_auc": per_model["model"][-1]["roc_auc"],
                "inner_roc_auc": _rounded(found.per_fold[i]),
            }
        )
    metrics = {name: _mean_metrics(ms) for name, ms in per_model.items()}
    metrics["model"]["roc_auc_std"] = float(np.std([m["roc_auc"] for m in per_model["model"]]))
    production = choose(found.all_rows, found.tried)
    final = build(production, directions, spec.rules, random_state).fit(X, y)
    nested = len(found.tried) > 1
    notes += _search_notes(found, pool, directions, time_limit)
    selection = {
        "reason": (
            f"{production.describe()} has the best mean ROC AUC "
            f"{found.all_rows[production.describe()]:.4f} in a {inner_folds}-fold "
            "cross-validation on every row (ties within 0.001 go to the simpler family)"
            if nested
            else f"{production.describe()} is the only candidate tried"
        ),
        "scores": dict(sorted(_rounded(found.all_rows).items(), key=lambda kv: -kv[1])),
        "outer_folds": outer_record,
        "candidates_tried": len(found.tried),
        "candidates_planned": len(pool),
        "time_limit_seconds": time_limit,
        "search_seconds": round(found.seconds, 1),
    }
    protocol = f"nested_cv_{folds}x{inner_folds}" if nested else f"stratified_{folds}_fold_cv"

    def reevaluate(record: dict[str, Any]) -> float:
        return fixed_cv_auc(
            candidate_from_record(record), X, y, outer, directions, spec.rules, random_state
        )

    return TrainingResult(
        spec.name,
        final,
        numeric,
        categorical,
        metrics,
        evaluation,
        frame,
        protocol,
        check,
        {"rows": str(len(frame))},
        fingerprint(frame),
        dict(production.params),
        spec.feature_service,
        spec.entity_key,
        fold_metrics,
        notes,
        candidate=candidate_record(production),
        selection=selection,
        reevaluate=reevaluate,
    )


def _rounded(scores: dict[str, float]) -> dict[str, float]:
    return {name: round(v, 6) for name, v in scores.items()}


def _fold_check(frame: pd.DataFrame, outer: list[Split], minimums: Minimums | None) -> DataCheck:
    counts = []
    for i, (fit_idx, hold_idx) in enumerate(outer):
        counts.append(split_counts(f"train_fold{i + 1}", frame[LABEL].iloc[fit_idx]))
        counts.append(split_counts(f"test_fold{i + 1}", frame[LABEL].iloc[hold_idx]))
    check = check_counts(counts, minimums or Minimums())
    check.raise_if_failed()
    return check


def _search_notes(
    found: Search, pool: list[Candidate], directions: dict[str, int], time_limit: float | None
) -> list[str]:
    notes = []
    if found.skipped:
        notes.append(
            f"time limit {time_limit or 0:.0f} s: the search stopped after {len(found.tried)} of "
            f"{len(pool)} candidates ({found.seconds:.0f} s); not tried: "
            + ", ".join(c.describe() for c in found.skipped)
        )
    if not directions:
        notes.append(
            "no feature of this table has a known direction: monotone LightGBM is the same as "
            "plain LightGBM and is not fitted separately"
        )
    return notes


def train_cross_validated(
    frame: pd.DataFrame,
    spec: ModelSpec,
    params: dict[str, Any] | None = None,
    minimums: Minimums | None = None,
    folds: int = OUTER_FOLDS,
    random_state: int = 0,
) -> TrainingResult:
    """Stratified k-fold figures of one LightGBM configuration (:data:`TABLE_PARAMS` under
    ``params``; untuned), then that configuration fitted on every row."""
    only = Candidate("lightgbm", {**TABLE_PARAMS, **(params or {})}, True)
    return train_nested_cv(
        frame, spec, [only], minimums, folds, time_limit=None, random_state=random_state
    )


def train_fractional_split(
    frame: pd.DataFrame,
    spec: ModelSpec,
    params: dict[str, Any] | None = None,
    minimums: Minimums | None = None,
    validation_fraction: float = 0.2,
    test_fraction: float = 0.2,
    gap_days: int = 0,
    random_state: int = 0,
) -> TrainingResult:
    """A table with a timestamp: train on the earliest rows, stop early and calibrate on the
    next ones, test on the last ones (fractions of the distinct dates; ``gap_days`` between).

    Args:
        frame: Entity key, ``event_timestamp``, ``label`` and features; not modified.
        spec: The model being trained.
        params: Estimator parameters over :data:`SNAPSHOT_PARAMS`.
        minimums: Least counts per split (default :class:`Minimums`).
        validation_fraction: Share of snapshot dates for validation.
        test_fraction: Share of snapshot dates for test (the latest).
        gap_days: Snapshots this close before the next part are left out of the earlier one.
        random_state: Seed for every estimator.

    Raises:
        NotEnoughData: a split has too few positives or negatives.
    """
    check_table_name(spec)
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
    numeric, categorical = feature_kinds(X)
    directions = table_directions(spec, features)
    tree_params = {**SNAPSHOT_PARAMS, **(params or {})}
    candidate = Candidate("lightgbm", tree_params, not directions)
    est_params = {**tree_params, "random_state": random_state}

    def fit_and_test(cand: Candidate) -> tuple[Any, np.ndarray]:
        model = build(cand, directions, spec.rules, random_state)
        model.fit(X[split.train], y[split.train], X[split.validation], y[split.validation])
        return model, model.predict_proba(X[split.test])[:, 1]

    model, p_model = fit_and_test(candidate)
    baselines, notes = fit_baselines(
        X[split.train], y[split.train], spec.rules, numeric, categorical, random_state
    )
    test = frame[split.test]
    X_test, y_test = X[split.test], y[split.test]
    evaluation = test[[spec.entity_key, TIMESTAMP, LABEL]].copy()
    evaluation["p_model"] = p_model
    for name, est in baselines.items():
        evaluation[f"p_{name}"] = est.predict_proba(X_test)[:, 1]
    metrics = {
        name: binary_metrics(y_test, evaluation[f"p_{name}"]) for name in ("model", *baselines)
    }
    add_revenue_at_risk(evaluation, test, spec.value_column)
    window = split_window(counts)

    def reevaluate(record: dict[str, Any]) -> float:
        _, p = fit_and_test(candidate_from_record(record))
        return float(roc_auc_score(y_test, p))

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
        candidate=candidate_record(candidate),
        reevaluate=reevaluate,
    )


def train_table(
    frame: pd.DataFrame,
    spec: ModelSpec,
    has_timestamp: bool,
    minimums: Minimums | None = None,
    random_state: int = 0,
    grid: str | list[Candidate] = "full",
    time_limit: float | None = DEFAULT_TIME_LIMIT,
    progress: Callable[[str], None] | None = None,
) -> TrainingResult:
    """A prepared one-row-per-entity table: time split when it has a timestamp, else nested
    cross-validation over ``grid`` within ``time_limit`` seconds."""
    if has_timestamp:
        return train_fractional_split(
            frame, spec, {**TABLE_PARAMS, "refit_full": False}, minimums, random_state=random_state
        )
    return train_nested_cv(
        frame,
        spec,
        grid,
        minimums,
        time_limit=time_limit,
        random_state=random_state,
        progress=progress,
    )
