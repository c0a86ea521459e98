"""Evaluation metrics for a probability of a binary outcome."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score

ECE_BINS = 15


def expected_calibration_error(y: np.ndarray, p: np.ndarray, bins: int = ECE_BINS) -> float:
    """Expected calibration error over equal-width probability bins, weighted by bin size."""
    y = np.asarray(y, dtype=float)
    p = np.asarray(p, dtype=float)
    which = np.minimum((p * bins).astype(int), bins - 1)
    count = np.bincount(which, minlength=bins)
    gap = np.abs(np.bincount(which, weights=y - p, minlength=bins))
    return float(gap.sum() / max(len(y), 1)) if count.sum() else float("nan")


def top_decile(y: np.ndarray, p: np.ndarray) -> tuple[float, float]:
    """Precision among the top 10 % by score and its lift over the base rate."""
    y = np.asarray(y, dtype=float)
    n = max(int(np.ceil(0.1 * len(y))), 1)
    order = np.argsort(-np.asarray(p, dtype=float), kind="stable")
    precision = float(y[order[:n]].mean())
    base = float(y.mean())
    return precision, (precision / base if base > 0 else float("nan"))


def binary_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """ROC AUC, PR AUC, Brier score, log loss, ECE, top-decile precision and lift."""
    y = np.asarray(y, dtype=int)
    p = np.clip(np.asarray(p, dtype=float), 1e-7, 1 - 1e-7)
    precision, lift = top_decile(y, p)
    return {
        "roc_auc": float(roc_auc_score(y, p)),
        "pr_auc": float(average_precision_score(y, p)),
        "brier": float(brier_score_loss(y, p)),
        "log_loss": float(log_loss(y, p, labels=[0, 1])),
        "ece": expected_calibration_error(y, p),
        "top_decile_precision": precision,
        "top_decile_lift": lift,
        "base_rate": float(y.mean()),
        "rows": float(len(y)),
    }
