"""A champion's numbers for feature rows: encoding, contributions, raw margin, probability, score.

Every family (LightGBM trees, the logistic model, the points score) gives per-feature
contributions and a base value that sum to its **raw margin**: log-odds before calibration for
trees and the logistic model, points for the points score. The probability is the champion's
calibrator applied to that margin (trees, logistic) or to the points, so the margin is not the
probability's log-odds. Trees take a fast path: the booster's input matrix is built without
pandas and one ``pred_contrib=True`` call gives exact TreeSHAP contributions.

Score = calibrated probability in percent, clipped to 1–99; leads are graded A–D
(:mod:`training.scoring`), churn scores banded ``high`` / ``medium`` / ``low``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import expit

from training.model import MISSING, CalibratedBoostingClassifier
from training.scoring import grade_from_score, score_from_probability
from training.segmented import SegmentedClassifier

# Churn risk bands on the 1–99 score (the calibrated probability in percent).
RISK_BANDS: tuple[tuple[str, int], ...] = (("high", 50), ("medium", 25), ("low", 1))
LOG_ODDS = "log-odds before calibration"
POINTS = "points"


def risk_band_from_score(score: np.ndarray) -> np.ndarray:
    """Churn score → risk band: ``high`` ≥ 50, ``medium`` 25–49, ``low`` < 25."""
    score = np.asarray(score)
    out = np.full(score.shape, RISK_BANDS[-1][0], dtype=object)
    for band, cut in reversed(RISK_BANDS[:-1]):
        out[score >= cut] = band
    return out


def margin_unit(model: Any) -> str:
    """The unit of a family's margin and contributions: log-odds, or points for a points score."""
    return POINTS if getattr(model, "family", None) == "points" else LOG_ODDS


def encode(model: CalibratedBoostingClassifier, features: pd.DataFrame) -> np.ndarray:
    """The booster's input as a float matrix: what :func:`training.model.encode_frame` and
    LightGBM's pandas path produce (categoricals as codes of the model's fixed levels, a missing
    value as the ``(missing)`` level, an unseen one as NaN), without building a DataFrame.

    Exactly equal to the pandas path (checked in the tests) and ~10× faster for a single row,
    which is most of a request's time.
    """
    names = list(model.feature_names_in_)
    levels = model.categories_
    out = np.full((len(features), len(names)), np.nan, dtype=np.float64)
    numeric = [(j, c) for j, c in enumerate(names) if c not in levels and c in features.columns]
    if numeric:
        block = features[[c for _, c in numeric]]
        if all(dtype.kind == "f" for dtype in block.dtypes):
            values = block.to_numpy(dtype=np.float64)
        else:
            values = np.column_stack(
                [
                    pd.to_numeric(block[c], errors="coerce").to_numpy(dtype=np.float64)
                    for _, c in numeric
                ]
            )
        out[:, [j for j, _ in numeric]] = values
    for j, col in enumerate(names):
        if col not in levels:
            continue
        codes = {level: float(i) for i, level in enumerate(levels[col])}
        missing = codes.get(MISSING, np.nan)
        if col not in features.columns:
            out[:, j] = missing
            continue
        out[:, j] = [
            missing
            if v is None or v is pd.NA or (isinstance(v, float) and v != v)
            else codes.get(str(v), np.nan)
            for v in features[col].tolist()
        ]
    return _filled(model, out)


def _filled(model: CalibratedBoostingClassifier, out: np.ndarray) -> np.ndarray:
    """Missing values of the model's filled (constrained recency) features replaced, as
    :func:`training.model.encode_frame` does."""
    fill = model.fill
    if fill:
        names = list(model.feature_names_in_)
        for col, value in fill.items():
            j = names.index(col)
            column = out[:, j]
            column[np.isnan(column)] = value
    return out


def _is_missing(value: Any) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and value != value)


def encode_records(
    model: CalibratedBoostingClassifier, records: Sequence[Mapping[str, Any]]
) -> np.ndarray:
    """:func:`encode` for feature dicts (the online store's rows), without pandas.

    Gives the same matrix as :func:`encode` on a DataFrame of the same values, so the API (one
    lead, dicts) and the batch (a frame) score identically.
    """
    names = list(model.feature_names_in_)
    levels = model.categories_
    out = np.empty((len(records), len(names)), dtype=np.float64)
    for j, col in enumerate(names):
        if col in levels:
            codes = {level: float(i) for i, level in enumerate(levels[col])}
            missing = codes.get(MISSING, np.nan)
            for i, record in enumerate(records):
                v = record.get(col)
                out[i, j] = missing if _is_missing(v) else codes.get(str(v), np.nan)
        else:
            for i, record in enumerate(records):
                v = record.get(col)
                if isinstance(v, str):
                    out[i, j] = _number(v)
                elif v is None or _is_missing(v):
                    out[i, j] = np.nan
                else:
                    out[i, j] = float(v)
    return _filled(model, out)


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return np.nan


def is_tree_model(model: Any) -> bool:
    """Trees score through the fast matrix path; other families through their own methods."""
    return isinstance(model, CalibratedBoostingClassifier)


def _parts(contrib: np.ndarray, raw: np.ndarray, probability: np.ndarray) -> dict[str, np.ndarray]:
    points = score_from_probability(probability)
    return {
        "contributions": contrib[:, :-1],
        "base_value": contrib[:, -1],
        "raw_margin": raw,
        "probability": probability,
        "score": points,
        "grade": grade_from_score(points),
        "risk_band": risk_band_from_score(points),
    }


def _routed(parts: list[tuple[np.ndarray, dict[str, np.ndarray]]], n: int) -> dict[str, np.ndarray]:
    """The parts of a segmented model's row groups put back in row order."""
    out: dict[str, np.ndarray] = {}
    for rows, part in parts:
        for name, values in part.items():
            if name not in out:
                out[name] = np.empty((n, *values.shape[1:]), dtype=values.dtype)
            out[name][rows] = values
    return out


def explain_frame(model: Any, features: pd.DataFrame) -> dict[str, np.ndarray]:
    """:func:`explain_matrix` for any family: trees through the encoded matrix, the logistic
    model and the points score through their ``contributions`` and ``predict_proba``; a
    segmented model explains each row with the model that scores it."""
    if isinstance(model, SegmentedClassifier):
        groups = model.route(model.segment_values(features))
        parts = [(rows, explain_frame(part, features.iloc[rows])) for part, rows in groups]
        return _routed(parts, len(features))
    if is_tree_model(model):
        return explain_matrix(model, encode(model, features))
    contrib = model.contributions(features).to_numpy(dtype=float)
    probability = np.asarray(model.predict_proba(features)[:, 1], dtype=float)
    return _parts(contrib, contrib.sum(axis=1), probability)


def explain_records(model: Any, records: Sequence[Mapping[str, Any]]) -> dict[str, np.ndarray]:
    """:func:`explain_frame` for feature dicts; trees skip pandas (the API's hot path)."""
    if isinstance(model, SegmentedClassifier):
        groups = model.route([record.get(model.segment_by) for record in records])
        parts = [(rows, explain_records(part, [records[i] for i in rows])) for part, rows in groups]
        return _routed(parts, len(records))
    if is_tree_model(model):
        return explain_matrix(model, encode_records(model, records))
    return explain_frame(model, records_frame(list(model.feature_names_in_), records))


def records_frame(names: Sequence[str], records: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """The ``names`` of feature dicts as a frame the models read: a column holding any text as
    strings, any other as float64 (NaN where missing)."""
    frame = pd.DataFrame([{n: record.get(n) for n in names} for record in records], columns=names)
    for name in names:
        if frame[name].map(lambda v: isinstance(v, str)).any():
            frame[name] = frame[name].astype("string")
        else:
            frame[name] = pd.to_numeric(frame[name], errors="coerce").astype("float64")
    return frame


def explain_matrix(model: CalibratedBoostingClassifier, X: np.ndarray) -> dict[str, np.ndarray]:
    """Contributions (``(n, features)``), base value, raw margin (log-odds before calibration),
    calibrated probability, score, grade and risk band of an encoded matrix."""
    contrib = np.asarray(
        model.booster_.predict(
            X, num_iteration=model.best_iteration_, pred_contrib=True, num_threads=1
        )
    )
    raw = contrib.sum(axis=1)
    probability = np.asarray(model.calibrator_(expit(raw)), dtype=float)
    return _parts(contrib, raw, probability)


def contributions(model: CalibratedBoostingClassifier, features: pd.DataFrame) -> np.ndarray:
    """Exact TreeSHAP contributions in raw log-odds, ``(n, features + 1)``; the last is the base.

    One thread: a single request's rows are too few to share, and OpenMP threads fighting over a
    busy machine's cores cost several milliseconds a call.
    """
    return np.asarray(
        model.booster_.predict(
            encode(model, features),
            num_iteration=model.best_iteration_,
            pred_contrib=True,
            num_threads=1,
        )
    )
