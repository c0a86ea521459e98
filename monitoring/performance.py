"""How the scores that were served turned out: the score log joined to outcomes.

A logged score of a lead at time t is a positive when the lead converted in
``(t, t + conversion_window_days]``; of an account, when the subscription live at t was cancelled
in ``(t, t + churn_window_days]``: the training labels' definitions
(:func:`features.pipeline.lead_labels`, :func:`features.pipeline.account_labels`), applied at the
time the score was given. A score whose window has not closed by the data's as-of time has no
outcome yet and is left out.

Each entity counts once per (week, model version, arm): its first score that week, so a lead the
CRM asked about fifty times weighs as much as one asked about once.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import sqlalchemy as sa
from scipy.stats import rankdata
from sklearn.metrics import roc_auc_score
from sqlalchemy.engine import Engine

from crm.settings import Settings
from features.schema import STATUS_TABLES
from serving.score_log import scores

OUTCOME_COLUMNS = ("label", "outcome_due")
CALIBRATION_BINS = 10


@dataclass(frozen=True)
class Interval:
    """A figure with its 95 % bootstrap interval."""

    value: float
    low: float
    high: float


def logged_scores(engine: Engine, model: str, arms: Sequence[str] | None = None) -> pd.DataFrame:
    """Every logged score of ``model``: one row per log row, ``scored_at`` in UTC."""
    columns = [
        scores.c.scored_at,
        scores.c.entity,
        scores.c.entity_id,
        scores.c.model_version,
        scores.c.arm,
        scores.c.probability,
        scores.c.score,
        scores.c.source,
    ]
    query = sa.select(*columns).where(scores.c.model == model)
    if arms:
        query = query.where(scores.c.arm.in_(list(arms)))
    with engine.connect() as conn:
        frame = pd.DataFrame(conn.execute(query).fetchall(), columns=[c.name for c in columns])
    frame["scored_at"] = pd.to_datetime(frame["scored_at"], utc=True)
    return frame


def data_as_of(settings: Settings, entity: str) -> pd.Timestamp:
    """The time the CRM data describes: the lifecycle table's timestamp (set by the build)."""
    _, stem, _ = STATUS_TABLES[entity]
    stamps = pq.read_table(settings.features_dir / f"{stem}.parquet", columns=["event_timestamp"])
    return pd.Timestamp(stamps["event_timestamp"].to_pandas().max()).tz_convert("UTC")


def with_outcomes(settings: Settings, entity: str, logged: pd.DataFrame) -> pd.DataFrame:
    """``logged`` plus ``outcome_due`` (when the outcome window closes) and ``label`` (1, 0, or
    <NA> while the window is open at the data's as-of time)."""
    out = logged.copy()
    if entity == "lead":
        window = pd.Timedelta(days=settings.conversion_window_days)
        leads = pd.read_parquet(
            settings.raw_dir / "leads.parquet", columns=["lead_id", "converted_at"]
        )
        converted = pd.to_datetime(
            out["entity_id"].map(leads.set_index("lead_id")["converted_at"]), utc=True
        )
        event = converted
    else:
        window = pd.Timedelta(days=settings.churn_window_days)
        event = _cancellation_of_live_subscription(settings, out)
    t = out["scored_at"]
    happened = event.notna() & (event > t) & (event <= t + window)
    due = t + window
    label = pd.Series(happened.astype("int64"), index=out.index).astype("Int64")
    label[due > data_as_of(settings, entity)] = pd.NA
    out["outcome_due"] = due
    out["label"] = label
    return out


def _cancellation_of_live_subscription(settings: Settings, logged: pd.DataFrame) -> pd.Series:
    """Per logged account score: when the subscription live at the score's time (the latest
    started, as the labels take it) was cancelled; NaT when it was not (or none was live)."""
    subs = pd.read_parquet(
        settings.raw_dir / "subscriptions.parquet", columns=["account_id", "start", "cancelled_at"]
    )
    subs = subs.sort_values(["account_id", "start"])
    by_account = {str(k): g for k, g in subs.groupby("account_id", observed=True)}
    out = []
    for entity_id, t in zip(logged["entity_id"], logged["scored_at"], strict=True):
        group = by_account.get(str(entity_id))
        found = pd.NaT
        if group is not None:
            live = group[
                (group["start"] <= t) & (group["cancelled_at"].isna() | (group["cancelled_at"] > t))
            ]
            if len(live):
                found = live["cancelled_at"].iloc[-1]
        out.append(found)
    return pd.to_datetime(pd.Series(out, index=logged.index), utc=True)


def first_each_week(frame: pd.DataFrame) -> pd.DataFrame:
    """Each entity's first score per (week, model version, arm); ``week`` is the Monday."""
    week = frame["scored_at"].dt.tz_convert("UTC").dt.tz_localize(None).dt.to_period("W-SUN")
    out = frame.assign(week=week.dt.start_time.dt.date)
    out = out.sort_values("scored_at", kind="stable")
    return out.drop_duplicates(["week", "model_version", "arm", "entity_id"], keep="first")


def metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float | int]:
    """ROC AUC (NaN with one class), mean predicted, observed rate and expected calibration
    error (10 equal-width bins of the predicted probability)."""
    n = len(y)
    positives = int(y.sum())
    auc = roc_auc_score(y, p) if 0 < positives < n else math.nan
    bins = np.minimum((p * CALIBRATION_BINS).astype(int), CALIBRATION_BINS - 1)
    ece = 0.0
    for b in np.unique(bins):
        inside = bins == b
        ece += inside.sum() / n * abs(p[inside].mean() - y[inside].mean())
    return {
        "n": n,
        "positives": positives,
        "roc_auc": float(auc),
        "mean_predicted": float(p.mean()) if n else math.nan,
        "observed_rate": float(y.mean()) if n else math.nan,
        "calibration_error": float(ece) if n else math.nan,
    }


def realised(
    frame: pd.DataFrame, by: Sequence[str] = ("week", "model_version", "arm")
) -> pd.DataFrame:
    """Metrics of the scores with an outcome, per group of ``by``."""
    known = frame[frame["label"].notna()]
    rows = []
    for keys, group in known.groupby(list(by), sort=True):
        keys = keys if isinstance(keys, tuple) else (keys,)
        y = group["label"].to_numpy(dtype=int)
        p = group["probability"].to_numpy(dtype=float)
        rows.append({**dict(zip(by, keys, strict=True)), **metrics(y, p)})
    columns = [
        *by,
        "n",
        "positives",
        "roc_auc",
        "mean_predicted",
        "observed_rate",
        "calibration_error",
    ]
    return pd.DataFrame(rows, columns=columns)


def bootstrap_auc(y: np.ndarray, p: np.ndarray, picks: np.ndarray) -> np.ndarray:
    """ROC AUC of each resample (row of ``picks``, indices into ``y``/``p``), all at once: the
    Mann-Whitney form, from average ranks (ties count half); NaN where a resample holds one
    class."""
    yy, pp = y[picks], p[picks]
    ranks = rankdata(pp, axis=1)
    positives = yy.sum(axis=1)
    negatives = yy.shape[1] - positives
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = ((ranks * yy).sum(axis=1) - positives * (positives + 1) / 2) / (positives * negatives)
    auc[(positives == 0) | (negatives == 0)] = np.nan
    return auc


def _resamples(n: int, draws: int, rng: np.random.Generator) -> np.ndarray:
    return rng.integers(0, n, size=(draws, n))


def _interval_of(value: float, draws: np.ndarray) -> Interval:
    low, high = np.nanpercentile(draws, [2.5, 97.5])
    return Interval(float(value), float(low), float(high))


def auc_interval(y: np.ndarray, p: np.ndarray, draws: int = 1000, seed: int = 0) -> Interval | None:
    """ROC AUC with a 95 % bootstrap interval (resampling entities); None with one class."""
    if not 0 < y.sum() < len(y):
        return None
    picks = _resamples(len(y), draws, np.random.default_rng(seed))
    return _interval_of(roc_auc_score(y, p), bootstrap_auc(y, p, picks))


def paired_auc_difference(
    y: np.ndarray,
    p_challenger: np.ndarray,
    p_champion: np.ndarray,
    draws: int = 1000,
    seed: int = 0,
) -> Interval | None:
    """Challenger minus champion ROC AUC on the same entities, with a 95 % paired bootstrap
    interval (both scores of an entity resampled together)."""
    if not 0 < y.sum() < len(y):
        return None
    picks = _resamples(len(y), draws, np.random.default_rng(seed))
    draws_ = bootstrap_auc(y, p_challenger, picks) - bootstrap_auc(y, p_champion, picks)
    value = roc_auc_score(y, p_challenger) - roc_auc_score(y, p_champion)
    return _interval_of(value, draws_)


def unpaired_auc_difference(
    y_a: np.ndarray,
    p_a: np.ndarray,
    y_b: np.ndarray,
    p_b: np.ndarray,
    draws: int = 1000,
    seed: int = 0,
) -> Interval | None:
    """ROC AUC of ``a`` minus ``b`` (different entities), each resampled on its own."""
    if not (0 < y_a.sum() < len(y_a) and 0 < y_b.sum() < len(y_b)):
        return None
    rng = np.random.default_rng(seed)
    draws_a = bootstrap_auc(y_a, p_a, _resamples(len(y_a), draws, rng))
    draws_b = bootstrap_auc(y_b, p_b, _resamples(len(y_b), draws, rng))
    value = roc_auc_score(y_a, p_a) - roc_auc_score(y_b, p_b)
    return _interval_of(value, draws_a - draws_b)
