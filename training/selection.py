"""Candidates and model selection as of a date: the champion is whichever wins on purged
validation, never a fixed family.

Candidates (all fitted on the same purged training rows, early-stopped and calibrated on the same
validation rows, see :mod:`training.protocol`):

* ``lightgbm``: trees whose complexity is set by the data's size (leaves, least rows per leaf and
  L2 penalty from a small grid scaled by the training rows, rounds by early stopping);
* ``lightgbm_monotone``: the same grid with monotone constraints on the engagement features whose
  direction is known (:func:`monotone_directions`);
* ``logistic``: logistic regression on the same features, sign-constrained in those directions;
* ``points``: the CRM-style points score, its points mapped to probabilities on validation rows.

Only candidates that keep the known directions may serve (``lightgbm`` is fitted and reported so
the cost of the constraints is visible). The winner has the best validation ROC AUC; on small data
the validation figure is the mean over several as-of dates, since one validation period is noisy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from training.baselines import Rule, RulePointsScore, applicable_rules
from training.linear import CalibratedLogisticClassifier
from training.model import CalibratedBoostingClassifier
from training.protocol import DAY, AsOfParts, Protocol, as_of_parts

# Validation parts with fewer positives than this are averaged over several as-of dates.
SMALL_VALIDATION_POSITIVES = 400
SELECTION_DATES = 3
# Families from simplest to most complex: a tie (within this ROC AUC) goes to the simpler one.
SIMPLICITY = ("points", "logistic", "lightgbm_monotone", "lightgbm")
TIE = 0.001
SCALE_ROUNDS = False


def monotone_directions(model_name: str, features: list[str]) -> dict[str, int]:
    """The features whose effect has a known direction, and that direction.

    Leads: every touch count and the recent pace of touches (more touches of any kind, in any
    window, never lower the chance to convert: no touch has a negative effect), and the days
    since the last
    touch and the last high-intent touch (a more recent touch never lowers it). Accounts: the
    current level of usage (fewer active users, logins or key-feature events never lower the
    churn risk).
    """
    out: dict[str, int] = {}
    for f in features:
        if model_name == "lead_conversion":
            if f.startswith("touches_") or f in (
                "touch_velocity_14d",
                "calls_total",
                "meetings_total",
            ):
                out[f] = 1
            elif f in ("days_since_last_touch", "days_since_last_high_intent"):
                out[f] = -1
        elif model_name == "churn_risk" and f in (
            "active_users_28d",
            "active_user_ratio_28d",
            "logins_28d",
            "key_feature_events_28d",
        ):
            out[f] = -1
    return out


def leaf_rows(train_rows: int) -> int:
    """Least rows per leaf for trees fitted on ``train_rows``: 1 % of them, within 50–3,000."""
    return int(np.clip(train_rows // 100, 50, 3000))


def lightgbm_grid(train_rows: int) -> list[dict[str, Any]]:
    """Tree settings scaled by the training rows: shallow or deeper trees, both with leaves of at
    least 1 % of the rows (snapshots repeat each entity weekly, so the effective sample is far
    below the rows: measured on the simulator, smaller leaves never won on validation)."""
    leaf = leaf_rows(train_rows)
    base = {"learning_rate": 0.05, "colsample_bytree": 0.5, "reg_lambda": 10.0}
    return [{**base, "num_leaves": leaves, "min_child_samples": leaf} for leaves in (4, 12)]


@dataclass(frozen=True)
class Candidate:
    """One way to build a model: a family and its settings."""

    name: str  # lightgbm, lightgbm_monotone, logistic, points
    params: dict[str, Any]
    keeps_directions: bool

    def build(self, monotone: dict[str, int], rules: tuple[Rule, ...], seed: int) -> Any:
        """The unfitted estimator, uncalibrated: a ranking is chosen before calibration, and
        :func:`calibrate` fits the calibrator of the candidates kept."""
        if self.name.startswith("lightgbm"):
            constraints = monotone if self.name == "lightgbm_monotone" else None
            return CalibratedBoostingClassifier(
                **self.params, monotone=constraints, random_state=seed, calibration="none"
            )
        if self.name == "logistic":
            return CalibratedLogisticClassifier(
                monotone=monotone, random_state=seed, calibration="none", **self.params
            )
        return RulePointsScore(rules)

    def describe(self) -> str:
        settings = ", ".join(f"{k}={v}" for k, v in sorted(self.params.items()))
        return f"{self.name}({settings})" if settings else self.name


def candidate_record(candidate: Candidate) -> dict[str, Any]:
    """What the registry keeps about a candidate (a version's ``candidate`` tag)."""
    return {
        "name": candidate.name,
        "params": dict(candidate.params),
        "keeps_directions": candidate.keeps_directions,
        "description": candidate.describe(),
    }


def candidate_from_record(record: dict[str, Any]) -> Candidate:
    """The candidate a ``candidate`` tag describes."""
    return Candidate(
        str(record["name"]),
        dict(record.get("params", {})),
        bool(record.get("keeps_directions", True)),
    )


def candidates(train_rows: int, rules: tuple[Rule, ...], columns: list[str]) -> list[Candidate]:
    """Every candidate for data of this size and these columns."""
    out = [Candidate("lightgbm", p, False) for p in lightgbm_grid(train_rows)]
    out += [Candidate("lightgbm_monotone", p, True) for p in lightgbm_grid(train_rows)]
    out.append(Candidate("logistic", {"C": 1.0}, True))
    if applicable_rules(rules, columns):
        out.append(Candidate("points", {}, True))
    return out


@dataclass
class Fitted:
    """A candidate fitted as of one date, with its validation figures."""

    candidate: Candidate
    model: Any
    validation_auc: float
    parts: AsOfParts


@dataclass
class Selection:
    """The outcome of selection as of a date."""

    winner: Fitted
    fitted: dict[str, Fitted]  # best of each family, as of the selection date
    scores: dict[str, float]  # candidate description → selection ROC AUC (mean over dates)
    dates: list[str]
    reason: str
    notes: list[str] = field(default_factory=list)


def fit_candidate(
    candidate: Candidate,
    X: pd.DataFrame,
    y: np.ndarray,
    parts: AsOfParts,
    monotone: dict[str, int],
    rules: tuple[Rule, ...],
    seed: int,
) -> Fitted:
    """Fit on the training part, early-stop and calibrate on the validation part."""
    model = candidate.build(monotone, rules, seed)
    model.fit(X[parts.train], y[parts.train], X[parts.validation], y[parts.validation])
    p = model.predict_proba(X[parts.validation])[:, 1]
    return Fitted(candidate, model, float(roc_auc_score(y[parts.validation], p)), parts)


def _selection_dates(as_of: pd.Timestamp, protocol: Protocol, small: bool) -> list[pd.Timestamp]:
    if not small:
        return [as_of]
    return [as_of - k * protocol.validation_days * DAY for k in range(SELECTION_DATES)]


def _usable(parts: AsOfParts, y: np.ndarray) -> bool:
    tr, va = y[parts.train], y[parts.validation]
    return bool(len(tr) and len(va) and 0 < tr.sum() < len(tr) and 0 < va.sum() < len(va))


def select(
    X: pd.DataFrame,
    y: np.ndarray,
    ts: pd.Series,
    as_of: pd.Timestamp,
    model_name: str,
    rules: tuple[Rule, ...],
    protocol: Protocol,
    seed: int = 0,
    only: list[Candidate] | None = None,
    fixed: Candidate | None = None,
) -> Selection:
    """Fit every candidate as of ``as_of`` and choose the one that may serve.

    Args:
        X, y, ts: features, 0/1 labels and snapshot times of every labelled row (only those
            closed by ``as_of`` are used).
        only: restrict to these candidates (a champion refitted for the gate).
        fixed: the winner, chosen before (a back-test of a given champion); the rest of the pool
            is fitted for comparison.
    """
    parts = as_of_parts(ts, as_of, protocol)
    monotone = monotone_directions(model_name, list(X.columns))
    pool = only or candidates(int(parts.train.sum()), rules, list(X.columns))
    small = int(y[parts.validation].sum()) < SMALL_VALIDATION_POSITIVES
    dates = _selection_dates(as_of, protocol, small and only is None and fixed is None)
    scores: dict[str, list[float]] = {}
    fitted: dict[str, Fitted] = {}
    used_dates = []
    for k, date in enumerate(dates):
        date_parts = parts if k == 0 else as_of_parts(ts, date, protocol)
        if not _usable(date_parts, y):
            continue
        used_dates.append(str(date.date()))
        for cand in pool:
            fit = fit_candidate(cand, X, y, date_parts, monotone, rules, seed)
            scores.setdefault(cand.describe(), []).append(fit.validation_auc)
            if k == 0:
                fitted[cand.describe()] = fit
    if not fitted:
        raise ValueError("no candidate could be fitted: a part has only one class")
    mean = {name: float(np.mean(v)) for name, v in scores.items()}
    eligible = [f for f in fitted.values() if f.candidate.keeps_directions]

    def rank(f: Fitted) -> tuple[float, int]:
        return (-mean[f.candidate.describe()], SIMPLICITY.index(f.candidate.name))

    best = min(eligible, key=rank)
    # a simpler family within TIE of the best wins
    for f in sorted(eligible, key=lambda f: SIMPLICITY.index(f.candidate.name)):
        if mean[f.candidate.describe()] >= mean[best.candidate.describe()] - TIE:
            best = f
            break
    if fixed is not None:
        best = fitted[fixed.describe()]
    unconstrained = [f for f in fitted.values() if not f.candidate.keeps_directions]
    how = "mean over " + ", ".join(used_dates) if len(used_dates) > 1 else used_dates[0]
    reason = (
        f"{best.candidate.describe()} was chosen before this date"
        if fixed is not None
        else f"{best.candidate.describe()} has the best validation ROC AUC "
        f"{mean[best.candidate.describe()]:.4f} ({how}) among candidates that keep the known "
        "directions"
    )
    if unconstrained:
        top = max(unconstrained, key=lambda f: mean[f.candidate.describe()])
        reason += (
            f"; unconstrained trees reached {mean[top.candidate.describe()]:.4f} but may lower a "
            "score when engagement rises, so they do not serve"
        )
    best_of_family: dict[str, Fitted] = {}
    for f in fitted.values():
        current = best_of_family.get(f.candidate.name)
        if current is None or mean[f.candidate.describe()] > mean[current.candidate.describe()]:
            best_of_family[f.candidate.name] = f
    best_of_family[best.candidate.name] = best
    for f in best_of_family.values():
        calibrate(f, X, y)
    return Selection(best, best_of_family, mean, used_dates, reason)


def calibrate(fit: Fitted, X: pd.DataFrame, y: np.ndarray) -> None:
    """Fit the calibrator of a kept candidate on its validation rows (isotonic or sigmoid,
    whichever has the lower cross-fitted log loss there). The points score maps its points on
    the validation rows when fitted, which is its calibration."""
    if hasattr(fit.model, "calibrate"):
        fit.model.calibrate(X[fit.parts.validation], y[fit.parts.validation])


def refit_on_closed(
    fit: Fitted, X: pd.DataFrame, y: np.ndarray, ts: pd.Series, protocol: Protocol
) -> Any:
    """The winner widened to every row closed at its as-of date (trees refitted with the rounds
    early stopping chose, scaled; logistic weights refitted; the calibrator kept). The points
    score is returned as fitted."""
    model = fit.model
    stamps = pd.DatetimeIndex(pd.to_datetime(ts, utc=True))
    closed = np.asarray(stamps + protocol.window <= fit.parts.as_of)
    if isinstance(model, CalibratedBoostingClassifier):
        model.refit_trees(X[closed], y[closed], int(fit.parts.train.sum()), SCALE_ROUNDS)
    elif isinstance(model, CalibratedLogisticClassifier):
        model.refit_weights(X[closed], y[closed])
    return model
