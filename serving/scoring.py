"""Scoring without BentoML: feature vectors + a champion → probability, score, band, reasons.

The same functions run behind HTTP (``serving.service``), in the nightly batch
(``crm-intel score leads|accounts``) and in tests, so a lead gets the same numbers everywhere.

Trees score in one LightGBM call per batch: ``pred_contrib=True`` gives exact TreeSHAP
contributions in the raw (uncalibrated, class-weighted) log-odds, one per feature plus the base
value (``bias``). The logistic model gives exact linear contributions in log-odds, the points
score points per rule. In every family the contributions plus the base value sum to the
**raw margin** (log-odds before calibration, or points); the probability shown comes from the
champion's calibrator applied to that margin, so the margin is not the probability's log-odds.

Reasons: ``reasons`` are the features with the largest absolute contributions (signed),
``reasons_up`` the ones that raise the score most, ``reasons_down`` the ones that lower it most,
each with a plain-words label (:func:`serving.reasons.label`; a category the model never saw in
training says so). Which items are scored at all is :mod:`serving.status`'s decision.
"""

from __future__ import annotations

import contextlib
import json
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from serving.explain import LOG_ODDS, explain_frame, explain_records, margin_unit
from serving.explain import encode as encode  # re-exported: the benchmark encodes with it
from serving.reasons import label, signed
from serving.status import Standing, parse_time, standing
from training.model import MISSING

# Model name → (entity in the online store, its join key).
MODEL_ENTITIES: dict[str, tuple[str, str]] = {
    "lead_conversion": ("lead", "lead_id"),
    "churn_risk": ("account", "account_id"),
}
MODEL_OF_ENTITY: dict[str, str] = {entity: model for model, (entity, _) in MODEL_ENTITIES.items()}
# an account's remaining lifetime beside its churn score (serving.lifetime)
LIFETIME_FIELDS = (
    "expected_remaining_months",
    "lifetime_value",
    "lifetime_value_low",
    "lifetime_value_high",
)
SEGMENT_FEATURE = "rfm_segment"  # the account's RFM segment, given beside its churn risk


@dataclass(frozen=True)
class Reason:
    """One feature's part in a score."""

    feature: str
    value: float | str | None
    contribution: float  # in the margin's unit; > 0 raises the score
    label: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "feature": self.feature,
            "value": self.value,
            "contribution": self.contribution,
            "label": self.label,
        }


@dataclass(frozen=True)
class Explanation:
    """A row's reasons: the largest by size (signed), the largest raising and lowering it."""

    reasons: list[Reason]
    up: list[Reason]
    down: list[Reason]


@dataclass(frozen=True)
class Scored:
    """Scores of a batch of rows, aligned with the input frame's rows.

    Attributes:
        frame: ``probability`` (calibrated), ``score`` (1–99), ``grade`` (A–D), ``risk_band``
            (high, medium, low), ``raw_margin`` (contributions + base value, before
            calibration), ``base_value`` and, given the accounts' lifetimes, their
            :data:`LIFETIME_FIELDS` and ``revenue_at_risk``.
        contributions: one column per model feature (the margin's unit), without ``bias``.
        reasons: per row, its top reasons by absolute contribution.
        reasons_up / reasons_down: per row, the features raising / lowering its score most.
        margin_unit: ``log-odds before calibration`` or ``points``.
    """

    frame: pd.DataFrame
    contributions: pd.DataFrame
    reasons: list[list[Reason]]
    reasons_up: list[list[Reason]] = field(default_factory=list)
    reasons_down: list[list[Reason]] = field(default_factory=list)
    margin_unit: str = LOG_ODDS


_VOCABULARIES: weakref.WeakKeyDictionary[Any, dict[str, frozenset[str]]] = (
    weakref.WeakKeyDictionary()
)


def vocabulary(model: Any) -> Mapping[str, frozenset[str]]:
    """Categorical feature → the values the model saw in training (trees: their fixed levels;
    the logistic model: its one-hot encoder's categories; a points score has none)."""
    try:
        return _VOCABULARIES[model]
    except (KeyError, TypeError):
        pass
    out: dict[str, frozenset[str]] = {}
    levels = getattr(model, "categories_", None)
    columns = getattr(model, "columns_", None)
    if isinstance(levels, dict):
        out = {col: frozenset(map(str, values)) - {MISSING} for col, values in levels.items()}
    elif columns is not None and getattr(model, "categorical_", None):
        try:
            encoder = columns.named_transformers_["categorical"][-1]
            out = {
                col: frozenset(map(str, encoder.categories_[i])) - {MISSING}
                for i, col in enumerate(model.categorical_)
            }
        except (KeyError, AttributeError, IndexError, TypeError):
            out = {}
    with contextlib.suppress(TypeError):  # not weak-referenceable: computed again next time
        _VOCABULARIES[model] = out
    return out


def _plain(value: Any) -> float | str | None:
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, str):
        return value
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    return None if np.isnan(number) else number


def _unseen(feature: str, value: Any, vocab: Mapping[str, frozenset[str]]) -> bool:
    return (
        isinstance(value, str)
        and value not in ("", MISSING)
        and feature in vocab
        and value not in vocab[feature]
    )


def reason_order(contributions: np.ndarray, top: int) -> np.ndarray:
    """Per row, the column indices of the ``top`` largest absolute contributions, largest first
    (ties keep feature order)."""
    top = max(0, min(top, contributions.shape[1]))
    return np.argsort(-np.abs(contributions), axis=1, kind="stable")[:, :top]


def signed_orders(contributions: np.ndarray, top: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the column indices of the ``top`` largest contributions (largest first) and of
    the ``top`` smallest (most negative first); callers keep the positive / negative ones."""
    top = max(0, min(top, contributions.shape[1]))
    up = np.argsort(-contributions, axis=1, kind="stable")[:, :top]
    down = np.argsort(contributions, axis=1, kind="stable")[:, :top]
    return up, down


def explain_rows(
    contributions: np.ndarray,
    names: Sequence[str],
    values: Sequence[Mapping[str, Any]] | pd.DataFrame,
    top: int,
    vocab: Mapping[str, frozenset[str]] | None = None,
) -> list[Explanation]:
    """Each row's :class:`Explanation` from its contributions and feature values.

    Args:
        contributions: ``(rows, features)`` in the margin's unit (no bias column).
        names: the model's features, in the columns' order.
        values: per row, its feature values (dicts, or a frame's rows).
        top: the length of each list at most.
        vocab: :func:`vocabulary` of the model, to label unseen categories.
    """
    vocab = vocab or {}
    by_size = reason_order(contributions, top)
    ups, downs = signed_orders(contributions, top)
    frame = values if isinstance(values, pd.DataFrame) else None
    columns = (
        {n: frame.columns.get_loc(n) for n in names if n in frame.columns}
        if frame is not None
        else {}
    )
    out = []
    for i in range(contributions.shape[0]):
        row = contributions[i]
        made: dict[int, Reason] = {}
        for j in {*by_size[i], *ups[i], *downs[i]}:
            feature = names[j]
            if frame is not None:
                raw = frame.iat[i, columns[feature]] if feature in columns else None
            else:
                raw = values[i].get(feature)
            value = _plain(raw)
            text = label(feature, value, _unseen(feature, value, vocab))
            made[j] = Reason(feature, value, float(row[j]), text)
        out.append(
            Explanation(
                [made[j] for j in by_size[i]],
                [made[j] for j in ups[i] if row[j] > 0],
                [made[j] for j in downs[i] if row[j] < 0],
            )
        )
    return out


def top_reasons(
    contributions: pd.DataFrame, features: pd.DataFrame, top: int
) -> list[list[Reason]]:
    """The ``top`` features by absolute contribution per row, largest first (ties by name)."""
    rows = explain_rows(
        contributions.to_numpy(dtype=float), list(contributions.columns), features, top
    )
    return [r.reasons for r in rows]


def score(
    model: Any,
    features: pd.DataFrame,
    top: int = 3,
    lifetime: pd.DataFrame | None = None,
) -> Scored:
    """Score feature vectors with a champion's model and explain each score.

    Args:
        model: a fitted family (trees, logistic or points score).
        features: one row per entity holding (at least) the model's features; numeric ones as
            numbers (NaN when missing), categorical ones as strings. Not modified.
        top: reasons per row (in each of the three lists).
        lifetime: per row of ``features``, in order, the account's remaining lifetime
            (:meth:`serving.lifetime.LifetimeReference.values`): its columns are added and
            ``revenue_at_risk`` = probability × ``lifetime_value``. None for leads.

    Returns:
        :class:`Scored`, rows in the order of ``features``.
    """
    parts = explain_frame(model, features)
    names = ("probability", "score", "grade", "risk_band", "raw_margin", "base_value")
    frame = pd.DataFrame({name: parts[name] for name in names}, index=features.index)
    if lifetime is not None:
        for column in LIFETIME_FIELDS:
            frame[column] = lifetime[column].to_numpy(dtype=float)
        frame["revenue_at_risk"] = revenue_at_risk(
            frame["probability"].to_numpy(), frame["lifetime_value"].to_numpy()
        )
    columns = list(model.feature_names_in_)
    per_feature = pd.DataFrame(parts["contributions"], index=features.index, columns=columns)
    rows = explain_rows(parts["contributions"], columns, features, top, vocabulary(model))
    return Scored(
        frame,
        per_feature,
        [r.reasons for r in rows],
        [r.up for r in rows],
        [r.down for r in rows],
        margin_unit(model),
    )


def revenue_at_risk(probability: np.ndarray, lifetime_value: np.ndarray) -> np.ndarray:
    """What an account's churn would cost: its churn probability × its remaining lifetime
    value (margin-adjusted, discounted MRR over the months it is expected to stay; 0 when
    unknown)."""
    return np.asarray(probability, dtype=float) * np.nan_to_num(
        np.asarray(lifetime_value, dtype=float)
    )


def reasons_text(reasons: Sequence[Reason]) -> str:
    """Reasons as one line for a CRM text field, each with its sign: those raising the score
    first (largest first), then those lowering it (largest first), joined by "; ", e.g.
    ``+ Viewed the pricing page 3 times in the last 30 days; − Last touch 45 days ago``."""
    up = sorted((r for r in reasons if r.contribution > 0), key=lambda r: -r.contribution)
    down = sorted((r for r in reasons if r.contribution < 0), key=lambda r: r.contribution)
    return "; ".join(signed(r.label, r.contribution) for r in [*up, *down])


def crm_fields(
    entity: str,
    row: Mapping[str, Any] | None,
    reasons: Sequence[Reason],
    names: Mapping[str, str],
    standing_: Standing | None = None,
) -> dict[str, Any]:
    """The CRM's field names (from settings) → values, for one entity.

    A scored entity gets its score, grade (lead) or risk band (account), revenue at risk and
    signed reasons. A closed or stale one gets the same fields emptied and the reason it is not
    scored in the reasons field, so the CRM clears a score that no longer applies; an unknown one
    gets none (there may be no record to write to).
    """
    status = "scored" if standing_ is None else standing_.status
    if status == "unknown":
        return {}
    band = "grade" if entity == "lead" else "risk_band"
    if status != "scored" or row is None:
        error = (standing_.error or {}) if standing_ is not None else {}
        out: dict[str, Any] = {
            names[f"{entity}_score"]: None,
            names[f"{entity}_{band}"]: None,
            names[f"{entity}_reasons"]: f"Not scored ({status}): {error.get('message', '')}",
        }
        if entity == "account":
            out[names["account_revenue_at_risk"]] = None
            out[names["account_lifetime_value"]] = None
            out[names["account_rfm_segment"]] = None
        return out
    out = {
        names[f"{entity}_score"]: int(row["score"]),
        names[f"{entity}_{band}"]: str(row[band]),
        names[f"{entity}_reasons"]: reasons_text(reasons),
    }
    if entity == "account":
        out[names["account_revenue_at_risk"]] = _money(row.get("revenue_at_risk"))
        out[names["account_lifetime_value"]] = _money(row.get("lifetime_value"))
        out[names["account_rfm_segment"]] = row.get("rfm_segment")
    return out


def _money(value: Any) -> float | None:
    """A money figure for a CRM field: to the cent; None when not known."""
    plain = _plain(value)
    return round(plain, 2) if isinstance(plain, float) else None


def iter_chunks(ids: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    """``ids`` in consecutive chunks of at most ``size``."""
    for start in range(0, len(ids), size):
        yield ids[start : start + size]


def _reasons_json(reasons: Sequence[Reason]) -> str:
    return json.dumps([r.as_dict() for r in reasons])


def _time(value: Any) -> datetime | None:
    return None if value is None or value is pd.NaT or pd.isna(value) else value


def standing_fields(st: Standing) -> dict[str, Any]:
    """A result's status fields (both the API's and the batch's)."""
    return {
        "status": st.status,
        "stale": st.stale,
        "error": st.error,
        "lifecycle": st.lifecycle,
        "closed_at": st.closed_at,
        "data_as_of": st.data_as_of,
        "feature_row": st.feature_row,
    }


def batch_frame(
    entity: str,
    online: pd.DataFrame,
    scored: Scored | None,
    model_name: str,
    model_version: str,
    names: Mapping[str, str],
    standings: Sequence[Standing] | None = None,
) -> pd.DataFrame:
    """What the nightly batch writes: one row per entity of ``online``, with the API's fields
    and the CRM columns.

    Args:
        online: the online rows (join key, ``event_timestamp``, features).
        scored: :func:`score` of the scorable rows, in order (every row without ``standings``).
        standings: per row of ``online``, its :class:`serving.status.Standing` (default: all
            scored).

    ``reasons``, ``reasons_up``, ``reasons_down`` and ``error`` are JSON (lists of
    ``{feature, value, contribution, label}``; ``{code, field, message, fix}``) so that Parquet
    and CSV hold the same text. A row that is not scored has empty score columns.
    """
    _, key = MODEL_ENTITIES[MODEL_OF_ENTITY[entity]]
    n = len(online)
    standings = list(standings) if standings is not None else [Standing("scored")] * n
    band = "grade" if entity == "lead" else "risk_band"
    scored_at = [i for i, st in enumerate(standings) if st.scorable]
    frame = scored.frame if scored is not None else pd.DataFrame(index=range(0))
    assert len(frame) == len(scored_at), "scored rows must be the scorable rows, in order"
    by_row = {i: k for k, i in enumerate(scored_at)}
    rows: list[dict[str, Any]] = []
    timestamps = pd.to_datetime(online["event_timestamp"], utc=True).tolist()
    ids = online[key].astype(str).tolist()
    records = frame.to_dict("records")
    segments = online[SEGMENT_FEATURE].tolist() if SEGMENT_FEATURE in online else [None] * n
    empty: list[Reason] = []
    for i, st in enumerate(standings):
        k = by_row.get(i)
        values = records[k] if k is not None else None
        if values is not None and entity == "account":
            values = {**values, "rfm_segment": _plain(segments[i])}
        reasons = scored.reasons[k] if scored is not None and k is not None else empty
        fields = standing_fields(st)
        out: dict[str, Any] = {key: ids[i], **fields}
        out["error"] = None if st.error is None else json.dumps(st.error)
        out["probability"] = None if values is None else values["probability"]
        out["score"] = None if values is None else int(values["score"])
        out[band] = None if values is None else str(values[band])
        if entity == "account":
            # the CLI's summary counts "grade"; for churn it is the risk band (see README)
            out["grade"] = out[band]
            for column in (*LIFETIME_FIELDS, "revenue_at_risk"):
                out[column] = None if values is None else values.get(column)
            out["rfm_segment"] = None if values is None else values["rfm_segment"]
        out["raw_margin"] = None if values is None else values["raw_margin"]
        out["margin_unit"] = None if values is None or scored is None else scored.margin_unit
        out["base_value"] = None if values is None else values["base_value"]
        out["reasons"] = _reasons_json(reasons)
        out["reasons_up"] = _reasons_json(scored.reasons_up[k] if scored and k is not None else [])
        out["reasons_down"] = _reasons_json(
            scored.reasons_down[k] if scored and k is not None else []
        )
        out["model"] = model_name
        out["model_version"] = str(model_version)
        out["feature_timestamp"] = _time(timestamps[i])
        out.update(crm_fields(entity, values, reasons, names, st))
        rows.append(out)
    result = pd.DataFrame(rows)
    if len(result):
        result["score"] = result["score"].astype("Int64")
        for column in ("probability", "raw_margin", "base_value", "revenue_at_risk"):
            if column in result:
                result[column] = result[column].astype("float64")
        for column in LIFETIME_FIELDS:
            if column in result:
                result[column] = result[column].astype("float64")
        for column in ("feature_timestamp", "closed_at", "data_as_of"):
            result[column] = pd.to_datetime(result[column], utc=True)
    return result


def score_items(
    model_name: str,
    model: Any,
    records: Sequence[Mapping[str, Any]],
    overrides: Sequence[Mapping[str, Any] | None],
    top: int,
    names: Mapping[str, str],
    *,
    ttl: timedelta | None = None,
    allow_stale: bool = False,
    fields: Sequence[str] | None = None,
    lifetime_of: Callable[[Sequence[Mapping[str, Any]]], pd.DataFrame] | None = None,
) -> list[dict[str, Any]]:
    """Score online rows, with request-given features over them, for the API (no pandas).

    Each item gets its status first (:func:`serving.status.standing`): closed, unknown and stale
    items are reported and not scored; the scorable ones are scored in one batch.

    Args:
        records: :meth:`features.store.OnlineReader.rows` in request order (join key,
            ``event_timestamp``, ``found``, the features and, read with ``status=True``,
            ``lifecycle``).
        overrides: per row, features given in the request (None for none; an empty dict for
            an empty ``features`` object, which gives none).
        names: output name → CRM field name (``settings.crm_field_names``).
        ttl: how long a feature row answers for (the feature view's TTL).
        allow_stale: score items whose features are older than ``ttl`` anyway.
        fields: per row, the request field naming it (for errors), e.g. ``lead_ids[0]``.
        lifetime_of: accounts: the remaining lifetime of the scored rows, in order
            (:meth:`serving.lifetime.LifetimeReference.of_records`); None leaves the lifetime
            fields and revenue at risk empty.

    Returns:
        one dict per row in the layout of ``serving.schemas.LeadScore`` / ``AccountScore``.
    """
    entity, key = MODEL_ENTITIES[model_name]
    band = "grade" if entity == "lead" else "risk_band"
    results: list[dict[str, Any]] = []
    scorable: list[tuple[int, Standing]] = []
    rows: list[Mapping[str, Any]] = []
    data_as_of = _data_as_of(records)
    for i, record in enumerate(records):
        given = overrides[i]
        st = standing(
            entity,
            str(record[key]),
            record,
            given=bool(given),
            ttl=ttl,
            allow_stale=allow_stale,
            field=fields[i] if fields else None,
            empty_features=given is not None and not given,
            data_as_of=data_as_of,
        )
        out: dict[str, Any] = {key: str(record[key]), **standing_fields(st)}
        if record.get("found"):
            out["feature_timestamp"] = record.get("event_timestamp")
        results.append(out)
        if not st.scorable:
            out["crm_fields"] = crm_fields(entity, None, [], names, st)
            continue
        scorable.append((i, st))
        rows.append({**record, **given} if given else record)
    if not rows:
        return results
    parts = explain_records(model, rows)
    features = list(model.feature_names_in_)
    explained = explain_rows(parts["contributions"], features, rows, top, vocabulary(model))
    unit = margin_unit(model)
    lifetime = lifetime_of(rows) if entity == "account" and lifetime_of is not None else None
    for n, ((i, st), row) in enumerate(zip(scorable, rows, strict=True)):
        record = records[i]
        source = ("online+request" if overrides[i] else "online") if record["found"] else "request"
        summary: dict[str, Any] = {"score": int(parts["score"][n]), band: str(parts[band][n])}
        probability = float(parts["probability"][n])
        why = explained[n]
        out = results[i]
        out.update(
            probability=probability,
            **summary,
            reasons=[r.as_dict() for r in why.reasons],
            reasons_up=[r.as_dict() for r in why.up],
            reasons_down=[r.as_dict() for r in why.down],
            raw_margin=float(parts["raw_margin"][n]),
            margin_unit=unit,
            base_value=float(parts["base_value"][n]),
            features_source=source,
        )
        if entity == "account":
            if lifetime is not None:
                for column in LIFETIME_FIELDS:
                    out[column] = float(lifetime[column].iloc[n])
                value = np.array([out["lifetime_value"]])
                summary["revenue_at_risk"] = out["revenue_at_risk"] = float(
                    revenue_at_risk(np.array([probability]), value)[0]
                )
            else:
                summary["revenue_at_risk"] = out["revenue_at_risk"] = None
            summary["lifetime_value"] = out.get("lifetime_value")
            segment = _plain(row.get(SEGMENT_FEATURE))
            summary["rfm_segment"] = out["rfm_segment"] = (
                segment if isinstance(segment, str) else None
            )
        out["crm_fields"] = crm_fields(entity, summary, why.reasons, names, st)
    return results


def _data_as_of(records: Sequence[Mapping[str, Any]]) -> datetime | None:
    """The time the loaded CRM data describes, from the first item with a lifecycle row (every
    lifecycle row of one load has the same as-of time); None when no item has one."""
    for record in records:
        lifecycle = record.get("lifecycle")
        if lifecycle and lifecycle.get("as_of") is not None:
            return parse_time(lifecycle["as_of"])
    return None
