"""Scoring without BentoML: feature vectors + a champion → probability, score, grade, reasons.

The same functions run behind HTTP (``serving.service``), in the nightly batch
(``crm-intel score leads|accounts``) and in tests, so a lead gets the same numbers everywhere.

One LightGBM call per batch: ``pred_contrib=True`` gives exact TreeSHAP contributions in the raw
(uncalibrated, class-weighted) log-odds, one per feature plus the base value (``bias``); their sum
is the raw log-odds, whose logistic is the raw probability that the champion's calibrator maps to
the probability shown. Reasons are the features with the largest absolute contributions, each
with a plain-words label (:func:`serving.reasons.label`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import expit

from serving.reasons import label
from training.model import MISSING, CalibratedBoostingClassifier
from training.scoring import grade_from_score, score_from_probability

# Model name → (entity in the online store, its join key).
MODEL_ENTITIES: dict[str, tuple[str, str]] = {
    "lead_conversion": ("lead", "lead_id"),
    "churn_risk": ("account", "account_id"),
}
MODEL_OF_ENTITY: dict[str, str] = {entity: model for model, (entity, _) in MODEL_ENTITIES.items()}
VALUE_FEATURE = "mrr"  # monthly value behind churn's revenue at risk (probability × 12 × MRR)


@dataclass(frozen=True)
class Reason:
    """One feature's part in a score."""

    feature: str
    value: float | str | None
    contribution: float  # raw log-odds; > 0 raises the score
    label: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "feature": self.feature,
            "value": self.value,
            "contribution": self.contribution,
            "label": self.label,
        }


@dataclass(frozen=True)
class Scored:
    """Scores of a batch of rows, aligned with the input frame's rows.

    Attributes:
        frame: ``probability`` (calibrated), ``score`` (1–99), ``grade`` (A–D),
            ``raw_log_odds`` (the booster's margin), ``base_value`` (the TreeSHAP expected
            value) and, for churn, ``revenue_at_risk``.
        contributions: one column per model feature (raw log-odds), without ``bias``.
        reasons: per row, its top reasons by absolute contribution.
    """

    frame: pd.DataFrame
    contributions: pd.DataFrame
    reasons: list[list[Reason]]


def _plain(value: Any) -> float | str | None:
    if value is None or value is pd.NA:
        return None
    if isinstance(value, str):
        return value
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    return None if np.isnan(number) else number


def reason_order(contributions: np.ndarray, top: int) -> np.ndarray:
    """Per row, the column indices of the ``top`` largest absolute contributions, largest first
    (ties keep feature order)."""
    top = max(0, min(top, contributions.shape[1]))
    return np.argsort(-np.abs(contributions), axis=1, kind="stable")[:, :top]


def top_reasons(
    contributions: pd.DataFrame, features: pd.DataFrame, top: int
) -> list[list[Reason]]:
    """The ``top`` features by absolute contribution per row, largest first (ties by name)."""
    names = list(contributions.columns)
    values = contributions.to_numpy(dtype=float)
    columns = {name: features.columns.get_loc(name) for name in names if name in features.columns}
    out: list[list[Reason]] = []
    for i, row_order in enumerate(reason_order(values, top)):
        reasons = []
        for j in row_order:
            feature = names[j]
            value = _plain(features.iat[i, columns[feature]]) if feature in columns else None
            reasons.append(Reason(feature, value, float(values[i, j]), label(feature, value)))
        out.append(reasons)
    return out


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
    return out


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return np.nan


def explain_matrix(model: CalibratedBoostingClassifier, X: np.ndarray) -> dict[str, np.ndarray]:
    """Contributions (``(n, features)``), base value, raw log-odds, calibrated probability, score
    and grade of an encoded matrix."""
    contrib = np.asarray(
        model.booster_.predict(
            X, num_iteration=model.best_iteration_, pred_contrib=True, num_threads=1
        )
    )
    raw = contrib.sum(axis=1)
    probability = np.asarray(model.calibrator_(expit(raw)), dtype=float)
    points = score_from_probability(probability)
    return {
        "contributions": contrib[:, :-1],
        "base_value": contrib[:, -1],
        "raw_log_odds": raw,
        "probability": probability,
        "score": points,
        "grade": grade_from_score(points),
    }


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


def score(
    model: CalibratedBoostingClassifier,
    features: pd.DataFrame,
    top: int = 3,
    value: Sequence[float] | np.ndarray | None = None,
) -> Scored:
    """Score feature vectors with a champion's model and explain each score.

    Args:
        model: a fitted ``CalibratedBoostingClassifier`` (booster, levels, calibrator).
        features: one row per entity holding (at least) the model's features; numeric ones as
            numbers (NaN when missing), categorical ones as strings. Not modified.
        top: reasons per row.
        value: per row, the monthly value (MRR) for revenue at risk; None to leave it out.

    Returns:
        :class:`Scored`, rows in the order of ``features``.
    """
    parts = explain_matrix(model, encode(model, features))
    frame = pd.DataFrame(
        {
            name: parts[name]
            for name in ("probability", "score", "grade", "raw_log_odds", "base_value")
        },
        index=features.index,
    )
    if value is not None:
        mrr = np.nan_to_num(np.asarray(value, dtype=float))
        frame["revenue_at_risk"] = frame["probability"].to_numpy() * 12.0 * mrr
    per_feature = pd.DataFrame(
        parts["contributions"], index=features.index, columns=list(model.feature_names_in_)
    )
    return Scored(frame, per_feature, top_reasons(per_feature, features, top))


def reasons_text(reasons: Sequence[Reason]) -> str:
    """Reasons as one line for a CRM text field: labels joined by "; "."""
    return "; ".join(r.label for r in reasons)


def crm_fields(
    entity: str, row: Mapping[str, Any], reasons: Sequence[Reason], names: Mapping[str, str]
) -> dict[str, Any]:
    """The CRM's field names (from settings) → values, for one scored entity."""
    out: dict[str, Any] = {
        names[f"{entity}_score"]: int(row["score"]),
        names[f"{entity}_grade"]: str(row["grade"]),
        names[f"{entity}_reasons"]: reasons_text(reasons),
    }
    if entity == "account":
        out[names["account_revenue_at_risk"]] = round(float(row["revenue_at_risk"]), 2)
    return out


def iter_chunks(ids: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    """``ids`` in consecutive chunks of at most ``size``."""
    for start in range(0, len(ids), size):
        yield ids[start : start + size]


def batch_frame(
    entity: str,
    online: pd.DataFrame,
    scored: Scored,
    model_name: str,
    model_version: str,
    names: Mapping[str, str],
) -> pd.DataFrame:
    """What the nightly batch writes: one row per entity with the API's fields and CRM columns.

    ``reasons`` is JSON (a list of ``{feature, value, contribution, label}``) so that Parquet and
    CSV hold the same text.
    """
    _, key = MODEL_ENTITIES[MODEL_OF_ENTITY[entity]]
    frame = scored.frame
    out = pd.DataFrame({key: online[key].astype(str).to_numpy(dtype=object)}, index=frame.index)
    out["probability"] = frame["probability"]
    out["score"] = frame["score"].astype(int)
    out["grade"] = frame["grade"].astype(str)
    if "revenue_at_risk" in frame:
        out["revenue_at_risk"] = frame["revenue_at_risk"]
    out["raw_log_odds"] = frame["raw_log_odds"]
    out["base_value"] = frame["base_value"]
    out["reasons"] = [json.dumps([r.as_dict() for r in rs]) for rs in scored.reasons]
    out["model"] = model_name
    out["model_version"] = str(model_version)
    out["feature_timestamp"] = pd.to_datetime(online["event_timestamp"], utc=True).set_axis(
        frame.index
    )
    fields = [
        crm_fields(entity, row, rs, names)
        for row, rs in zip(frame.to_dict("records"), scored.reasons, strict=True)
    ]
    for name in fields[0] if fields else ():
        out[name] = [f[name] for f in fields]
    return out.reset_index(drop=True)


def score_items(
    model_name: str,
    model: CalibratedBoostingClassifier,
    records: Sequence[Mapping[str, Any]],
    overrides: Sequence[Mapping[str, Any] | None],
    top: int,
    names: Mapping[str, str],
) -> list[dict[str, Any]]:
    """Score online rows, with request-given features over them, for the API (no pandas).

    An id the online store does not hold and that came without features is reported as
    ``unknown`` and not scored; every other row is scored in one batch.

    Args:
        records: :meth:`features.store.OnlineReader.rows` in request order (join key,
            ``event_timestamp``, ``found`` and the features).
        overrides: per row, features given in the request (None for none).
        names: output name → CRM field name (``settings.crm_field_names``).

    Returns:
        one dict per row in the layout of ``serving.schemas.LeadScore`` / ``AccountScore``.
    """
    entity, key = MODEL_ENTITIES[model_name]
    results: list[dict[str, Any]] = []
    scorable: list[int] = []
    rows: list[Mapping[str, Any]] = []
    for i, record in enumerate(records):
        given = overrides[i]
        if not record["found"] and not given:
            results.append(
                {
                    key: str(record[key]),
                    "status": "unknown",
                    "error": f"{entity} {record[key]!r} is not in the online store "
                    "(send its features to score it anyway)",
                }
            )
            continue
        results.append({})
        scorable.append(i)
        rows.append({**record, **given} if given else record)
    if not rows:
        return results
    parts = explain_matrix(model, encode_records(model, rows))
    contrib = parts["contributions"]
    features = list(model.feature_names_in_)
    for n, (i, row) in enumerate(zip(scorable, rows, strict=True)):
        reasons = []
        for j in reason_order(contrib[n : n + 1], top)[0]:
            value = _plain(row.get(features[j]))
            reasons.append(
                Reason(features[j], value, float(contrib[n, j]), label(features[j], value))
            )
        record = records[i]
        source = ("online+request" if overrides[i] else "online") if record["found"] else "request"
        summary: dict[str, Any] = {"score": int(parts["score"][n]), "grade": str(parts["grade"][n])}
        probability = float(parts["probability"][n])
        out: dict[str, Any] = {
            key: str(record[key]),
            "status": "scored",
            "error": None,
            "probability": probability,
            **summary,
            "reasons": [r.as_dict() for r in reasons],
            "log_odds": float(parts["raw_log_odds"][n]),
            "base_value": float(parts["base_value"][n]),
            "feature_timestamp": record.get("event_timestamp") if record["found"] else None,
            "features_source": source,
        }
        if entity == "account":
            mrr = _plain(row.get(VALUE_FEATURE))
            summary["revenue_at_risk"] = out["revenue_at_risk"] = (
                probability * 12.0 * (mrr if isinstance(mrr, float) else 0.0)
            )
        out["crm_fields"] = crm_fields(entity, summary, reasons, names)
        results[i] = out
    return results
