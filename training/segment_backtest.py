"""Keep or drop each segment's model by a back-test before the test period.

Einstein's lead scoring trains a separate model for each segment of leads with enough data and
the global model for the rest. Here a segment model (one per value of a categorical feature,
setting ``lead_segment_by``, e.g. ``source``) is kept only where it helps, decided as of the
test cutoff T of :func:`training.snapshots.train_time_split`:

1. Only snapshots whose label closed by T are used: nothing of the test period is known.
2. Folds are the purged as-of splits (:func:`training.protocol.as_of_parts`) at T, T − 28 days
   and T − 56 days: a fold scores the 28 days of its validation part (labels closed by its
   date) with models trained on the snapshots whose labels closed before those begin (a label
   window apart). Early stopping and calibration use a fifth of the training part's entities
   (held out by entity, so no lead is on both sides), never the scored rows. The back-test's own
   folds (a purged fit, then a period after it) would need 382 days of labelled history before
   T for one fold; the demo CRM has 358.
3. In each fold the global model (the champion's candidate, fitted on every training row) and
   each segment's model (the same candidate on the segment's rows; trees keep leaves of 1 % of
   their own rows) score the segment's scored rows.
4. A segment model is kept when, averaged over the folds, its log loss is at least
   :data:`LOG_LOSS_GAIN` (relative) below the global model's and its ROC AUC is not lower.

A segment is tried only with enough data: in every fold, Einstein's minimum in its training part
(1,000 rows, 120 positives: :class:`training.data.Minimums`) and 30 of each class in its scored
part. The others are scored by the global model.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import log_loss, roc_auc_score

from training.data import LABEL, TIMESTAMP, Minimums
from training.model import categorical_levels
from training.pipeline import ModelSpec, feature_columns
from training.protocol import DAY, AsOfParts, Protocol, as_of_parts
from training.segmented import segment_key
from training.selection import (
    Candidate,
    calibrate,
    fit_candidate,
    leaf_rows,
    monotone_directions,
)

SEGMENT_FOLDS = 3
LOG_LOSS_GAIN = 0.01  # a segment model must lower the mean log loss by 1 % of the global's
STOPPING_SHARE = 0.2  # of a fold's training entities, held out for early stopping/calibration
Progress = Callable[[str], None]
FIGURES = ("global_log_loss", "segment_log_loss", "global_roc_auc", "segment_roc_auc")


@dataclass(frozen=True)
class SegmentDecision:
    """One segment: its data, the back-test figures of both models and the verdict."""

    segment: str
    rows: int  # labelled snapshots closed by the cutoff
    positives: int
    least_train_positives: int  # in the smallest fold's training part
    folds: int
    global_log_loss: float | None
    segment_log_loss: float | None
    global_roc_auc: float | None
    segment_roc_auc: float | None
    kept: bool
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class SegmentBacktest:
    """The decision for every segment and the per-fold figures behind it."""

    segment_by: str
    cutoff: str
    protocol: str
    decisions: list[SegmentDecision]
    folds: list[dict[str, Any]] = field(default_factory=list)

    @property
    def kept(self) -> list[str]:
        return [d.segment for d in self.decisions if d.kept]

    @property
    def eligible(self) -> list[str]:
        return [d.segment for d in self.decisions if d.folds > 0]

    def table(self) -> pd.DataFrame:
        return pd.DataFrame([d.as_dict() for d in self.decisions])


def describe_protocol(protocol: Protocol, folds: int = SEGMENT_FOLDS) -> str:
    return (
        f"segment_backtest(as of the test cutoff, labels closed by it; {folds} folds "
        f"{protocol.validation_days}d apart, each scoring its {protocol.validation_days}d purged "
        f"validation part, window={protocol.label_window_days}d; early stopping and calibration "
        f"on {STOPPING_SHARE:.0%} of training entities; keep: mean log loss "
        f"{LOG_LOSS_GAIN:.0%} below the global model's and mean ROC AUC not below)"
    )


def utc(moment: Any) -> pd.Timestamp:
    """A date or time as a UTC timestamp (a training result keeps its cutoff as a date)."""
    stamp = pd.Timestamp(moment)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def sorted_snapshots(
    frame: pd.DataFrame, spec: ModelSpec
) -> tuple[pd.DataFrame, pd.Series, np.ndarray]:
    """Rows in (time, entity) order as every protocol fit sees them, their times and labels."""
    frame = frame.sort_values([TIMESTAMP, spec.entity_key], kind="stable").reset_index(drop=True)
    return frame, pd.to_datetime(frame[TIMESTAMP], utc=True), frame[LABEL].to_numpy(dtype=int)


def check_segment_column(X: pd.DataFrame, segment_by: str) -> None:
    """Raise ValueError unless ``segment_by`` is a categorical feature of ``X`` (the feature
    columns), naming the ones that are."""
    if segment_by in X.columns and categorical_levels(X[[segment_by]]):
        return
    choices = list(categorical_levels(X.head(1)))  # categorical by dtype: one row tells
    raise ValueError(
        f"segment column {segment_by!r} is not a categorical feature of this model; "
        f"choose one of: {', '.join(sorted(choices)) or 'none'}"
    )


def segment_keys(X: pd.DataFrame, segment_by: str) -> np.ndarray:
    """Each row's segment (its value of ``segment_by``; None when missing).

    Raises:
        ValueError: ``segment_by`` is not a categorical feature of ``X``.
    """
    check_segment_column(X, segment_by)
    return np.asarray([segment_key(v) for v in X[segment_by].tolist()], dtype=object)


def decision_folds(ts: pd.Series, cutoff: pd.Timestamp, protocol: Protocol) -> list[AsOfParts]:
    """The folds' as-of splits, latest first, keeping those with ``min_train_days`` of training."""
    first = pd.to_datetime(ts, utc=True).min()
    out = []
    for k in range(SEGMENT_FOLDS):
        parts = as_of_parts(ts, cutoff - k * protocol.validation_days * DAY, protocol)
        if parts.train_end - first >= protocol.min_train_days * DAY and parts.validation.any():
            out.append(parts)
    return out


def stopping_rows(entities: np.ndarray, rows: np.ndarray, seed: int) -> np.ndarray:
    """Rows of a random :data:`STOPPING_SHARE` of the entities (integer codes) among ``rows``,
    all of their snapshots there: held out from a fold's fit for early stopping and calibration.
    """
    present = np.unique(entities[rows])
    held = np.zeros(int(entities.max()) + 1 if len(entities) else 0, dtype=bool)
    chosen = np.random.default_rng(seed).permutation(present)
    held[chosen[: int(round(STOPPING_SHARE * len(present)))]] = True
    return rows & held[entities]


def scaled(candidate: Candidate, train_rows: int) -> Candidate:
    """``candidate`` for a model trained on ``train_rows``: trees get leaves of 1 % of them,
    as selection sets them; other families are unchanged."""
    if not candidate.name.startswith("lightgbm"):
        return candidate
    params = {**candidate.params, "min_child_samples": leaf_rows(train_rows)}
    return Candidate(candidate.name, params, candidate.keeps_directions)


def _fit_fold(
    candidate: Candidate,
    X: pd.DataFrame,
    y: np.ndarray,
    fit: np.ndarray,
    stop: np.ndarray,
    parts: AsOfParts,
    spec: ModelSpec,
    seed: int,
) -> Any:
    fold = AsOfParts(parts.as_of, fit, stop, parts.validation_start, parts.train_end)
    monotone = monotone_directions(spec.name, list(X.columns))
    fitted = fit_candidate(
        scaled(candidate, int(fit.sum())), X, y, fold, monotone, spec.rules, seed
    )
    calibrate(fitted, X, y)
    return fitted.model


def _shortfall(
    y: np.ndarray, train: np.ndarray, scored: np.ndarray, minimums: Minimums, fold: int
) -> str | None:
    """Why a segment's part of a fold is too small, or None."""
    rows, pos = int(train.sum()), int(y[train].sum())
    if rows < minimums.train_rows or pos < minimums.train_positives:
        return (
            f"fold {fold} trains on {rows:,} rows with {pos:,} positives "
            f"(needs {minimums.train_rows:,} and {minimums.train_positives:,})"
        )
    if rows - pos < minimums.train_negatives:
        return f"fold {fold} trains on {rows - pos:,} negatives (needs {minimums.train_negatives})"
    s_pos = int(y[scored].sum())
    s_neg = int(scored.sum()) - s_pos
    if s_pos < minimums.eval_positives or s_neg < minimums.eval_negatives:
        return (
            f"fold {fold} scores {s_pos} positives and {s_neg} negatives "
            f"(needs {minimums.eval_positives} of each)"
        )
    return None


def _verdict(global_ll: float, segment_ll: float, global_auc: float, segment_auc: float) -> str:
    change = segment_ll / global_ll - 1.0
    loss = f"log loss {change:+.1%} against the global model's"
    auc = f"ROC AUC {segment_auc - global_auc:+.4f}"
    if change <= -LOG_LOSS_GAIN and segment_auc >= global_auc:
        return f"kept: {loss}, {auc}"
    if change > -LOG_LOSS_GAIN:
        return f"dropped: {loss} (needs {-LOG_LOSS_GAIN:.0%} or lower), {auc}"
    return f"dropped: {auc}, below the global model's ({loss})"


def decide_segments(
    frame: pd.DataFrame,
    spec: ModelSpec,
    protocol: Protocol,
    cutoff: pd.Timestamp,
    candidate: Candidate,
    segment_by: str,
    minimums: Minimums | None = None,
    random_state: int = 0,
    progress: Progress | None = None,
) -> SegmentBacktest:
    """Keep or drop each segment's model as of ``cutoff`` (module docstring, steps 1–4).

    Args:
        frame: every labelled snapshot (entity key, ``event_timestamp``, ``label``, features);
            only those whose label closed by ``cutoff`` are read.
        candidate: the champion's configuration, for the global and the segment models.
        minimums: least data per fold part (default: Einstein's, :class:`Minimums`).
        progress: called with a description before each fit.
    """
    minimums = minimums or Minimums()
    cutoff = utc(cutoff)
    frame, ts, y = sorted_snapshots(frame, spec)
    closed = (ts + protocol.window <= cutoff).to_numpy()
    frame, ts, y = (
        frame[closed].reset_index(drop=True),
        ts[closed].reset_index(drop=True),
        y[closed],
    )
    X = frame[feature_columns(frame, spec.entity_key)]
    keys = segment_keys(X, segment_by)
    entities = pd.factorize(frame[spec.entity_key].astype(str))[0]
    folds = decision_folds(ts, cutoff, protocol)
    segments = sorted({k for k in keys if k is not None})
    stops = [stopping_rows(entities, p.train, random_state + k) for k, p in enumerate(folds)]
    short: dict[str, str] = {}
    least: dict[str, int] = {}
    for segment in segments:
        mine = keys == segment
        least[segment] = min((int(y[p.train & mine].sum()) for p in folds), default=0)
        for k, parts in enumerate(folds):
            problem = _shortfall(y, parts.train & mine, parts.validation & mine, minimums, k + 1)
            if problem is None and not (0 < y[stops[k] & mine].sum() < (stops[k] & mine).sum()):
                problem = f"fold {k + 1}'s early-stopping leads hold one class only"
            if problem is not None:
                short[segment] = problem
                break
        if not folds:
            short[segment] = "no fold fits in the labelled history before the test cutoff"
    eligible = [s for s in segments if s not in short]
    records: list[dict[str, Any]] = []
    for k, parts in enumerate(folds):
        if not eligible:
            break
        fit, stop = parts.train & ~stops[k], stops[k]
        if progress is not None:
            progress(f"fold {k + 1}/{len(folds)}: global model")
        global_p = _fit_fold(candidate, X, y, fit, stop, parts, spec, random_state)
        scored_X = X[parts.validation]
        p_global = global_p.predict_proba(scored_X)[:, 1]
        for segment in eligible:
            if progress is not None:
                progress(f"fold {k + 1}/{len(folds)}: {segment_by}={segment}")
            mine = keys == segment
            model = _fit_fold(candidate, X, y, fit & mine, stop & mine, parts, spec, random_state)
            in_scored = mine[parts.validation]
            y_s = y[parts.validation][in_scored]
            p_s = model.predict_proba(scored_X[in_scored])[:, 1]
            p_g = p_global[in_scored]
            records.append(
                {
                    "fold_as_of": str(parts.as_of.date()),
                    "scored_from": str(parts.validation_start.date()),
                    "scored_to": str((parts.as_of - protocol.window).date()),
                    "segment": segment,
                    "scored_rows": int(len(y_s)),
                    "scored_positives": int(y_s.sum()),
                    "global_log_loss": float(log_loss(y_s, p_g, labels=[0, 1])),
                    "segment_log_loss": float(log_loss(y_s, p_s, labels=[0, 1])),
                    "global_roc_auc": float(roc_auc_score(y_s, p_g)),
                    "segment_roc_auc": float(roc_auc_score(y_s, p_s)),
                }
            )
    per_fold = pd.DataFrame.from_records(records)
    decisions = []
    for segment in segments:
        mine = keys == segment
        counts: dict[str, Any] = {
            "segment": segment,
            "rows": int(mine.sum()),
            "positives": int(y[mine].sum()),
            "least_train_positives": least[segment],
        }
        if segment in short:
            decisions.append(
                SegmentDecision(
                    **counts,
                    folds=0,
                    global_log_loss=None,
                    segment_log_loss=None,
                    global_roc_auc=None,
                    segment_roc_auc=None,
                    kept=False,
                    reason="too few: " + short[segment],
                )
            )
            continue
        means = per_fold[per_fold["segment"] == segment].mean(numeric_only=True)
        figures: dict[str, Any] = {c: float(means[c]) for c in FIGURES}
        reason = _verdict(*figures.values())
        decisions.append(
            SegmentDecision(
                **counts, folds=len(folds), **figures, kept=reason.startswith("kept"), reason=reason
            )
        )
    return SegmentBacktest(
        segment_by, str(cutoff.date()), describe_protocol(protocol), decisions, records
    )
