"""Evaluation metrics for a probability of a binary outcome.

Calibration is measured three ways, each with its protocol stated where it is reported:

* ECE over ``ECE_BINS`` (10) **quantile** bins (equal counts), weighted by bin size. Equal-width
  bins let a constant base-rate predictor score about 0, since all its rows share one bin.
* Calibration slope: the coefficient of ``logit(p)`` in a logistic regression of the outcome on
  it (1 is ideal; under 1, predictions are too extreme).
* Calibration intercept (calibration-in-the-large): the intercept of that regression with the
  slope held at 1, i.e. ``logit(p)`` as an offset (0 is ideal; above 0, predictions are too low).
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize
from scipy.special import expit, logit
from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score

ECE_BINS = 10
CLIP = 1e-7


def expected_calibration_error(y: np.ndarray, p: np.ndarray, bins: int = ECE_BINS) -> float:
    """Expected calibration error over quantile bins of ``p`` (equal counts), weighted by size.

    Rows with tied probabilities always share a bin, so a bin may hold more than ``n / bins``.
    """
    y = np.asarray(y, dtype=float)
    p = np.asarray(p, dtype=float)
    if not len(y):
        return float("nan")
    order = np.argsort(p, kind="stable")
    # bin of each rank, then every row of a tied value takes the bin of its first rank
    rank_bin = np.minimum((np.arange(len(p)) * bins) // len(p), bins - 1)
    sorted_p = p[order]
    first = np.searchsorted(sorted_p, sorted_p, side="left")
    which = np.empty(len(p), dtype=int)
    which[order] = rank_bin[first]
    gap = np.abs(np.bincount(which, weights=y - p, minlength=bins))
    return float(gap.sum() / len(y))


def calibration_slope_intercept(y: np.ndarray, p: np.ndarray) -> tuple[float, float]:
    """(slope, intercept) of the outcome's logistic recalibration on ``logit(p)``.

    The slope comes from ``logit P(y=1) = a + b·logit(p)``; the intercept from
    ``logit P(y=1) = a + logit(p)`` (slope fixed at 1), both by maximum likelihood.
    """
    y = np.asarray(y, dtype=float)
    z = logit(np.clip(np.asarray(p, dtype=float), CLIP, 1 - CLIP))
    if len(np.unique(y)) < 2:
        return float("nan"), float("nan")

    def loss(theta: np.ndarray, offset_only: bool) -> tuple[float, np.ndarray]:
        a = theta[0]
        b = 1.0 if offset_only else theta[1]
        eta = a + b * z
        q = expit(eta)
        value = float(np.sum(np.logaddexp(0.0, eta) - y * eta))
        resid = q - y
        grad = [resid.sum()] if offset_only else [resid.sum(), (resid * z).sum()]
        return value, np.asarray(grad)

    full = minimize(loss, np.array([0.0, 1.0]), args=(False,), jac=True, method="L-BFGS-B")
    offset = minimize(loss, np.array([0.0]), args=(True,), jac=True, method="L-BFGS-B")
    return float(full.x[1]), float(offset.x[0])


def top_decile(y: np.ndarray, p: np.ndarray) -> tuple[float, float]:
    """Precision among the top 10 % by score and its lift over the base rate."""
    y = np.asarray(y, dtype=float)
    n = max(int(np.ceil(0.1 * len(y))), 1)
    order = np.argsort(-np.asarray(p, dtype=float), kind="stable")
    precision = float(y[order[:n]].mean())
    base = float(y.mean())
    return precision, (precision / base if base > 0 else float("nan"))


def binary_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """ROC AUC, PR AUC, Brier score, log loss, ECE (10 quantile bins), calibration slope and
    intercept, top-decile precision and lift, base rate and rows."""
    y = np.asarray(y, dtype=int)
    p = np.clip(np.asarray(p, dtype=float), CLIP, 1 - CLIP)
    precision, lift = top_decile(y, p)
    slope, intercept = calibration_slope_intercept(y, p)
    return {
        "roc_auc": float(roc_auc_score(y, p)),
        "pr_auc": float(average_precision_score(y, p)),
        "brier": float(brier_score_loss(y, p)),
        "log_loss": float(log_loss(y, p, labels=[0, 1])),
        "ece": expected_calibration_error(y, p),
        "calibration_slope": slope,
        "calibration_intercept": intercept,
        "top_decile_precision": precision,
        "top_decile_lift": lift,
        "base_rate": float(y.mean()),
        "rows": float(len(y)),
    }
