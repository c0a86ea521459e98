"""Evaluation plots written as PNG files: ROC, precision-recall, calibration, cumulative gains,
and a summary of per-feature contributions (exact TreeSHAP for trees, exact linear contributions
for the logistic model, points for the points score)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # headless: plots are files, never windows

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.metrics import precision_recall_curve, roc_curve  # noqa: E402

LABELS = {
    "p_model": "champion (calibrated)",
    "p_logistic": "logistic regression",
    "p_rules": "rule-based points",
    "p_oracle": "oracle (true probability)",
}


def _curves(evaluation: pd.DataFrame) -> list[str]:
    return [c for c in LABELS if c in evaluation.columns and evaluation[c].notna().all()]


def roc_plot(evaluation: pd.DataFrame, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(5, 5))
    y = evaluation["label"].to_numpy()
    for col in _curves(evaluation):
        fpr, tpr, _ = roc_curve(y, evaluation[col])
        ax.plot(fpr, tpr, label=LABELS[col])
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC")
    ax.legend(loc="lower right", fontsize=8)
    return _save(fig, path)


def pr_plot(evaluation: pd.DataFrame, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(5, 5))
    y = evaluation["label"].to_numpy()
    for col in _curves(evaluation):
        precision, recall, _ = precision_recall_curve(y, evaluation[col])
        ax.plot(recall, precision, label=LABELS[col])
    ax.axhline(y.mean(), color="k", ls=":", lw=0.8)
    ax.set(xlabel="recall", ylabel="precision", title="Precision-recall")
    ax.legend(loc="upper right", fontsize=8)
    return _save(fig, path)


def calibration_plot(evaluation: pd.DataFrame, path: Path, bins: int = 15) -> Path:
    fig, ax = plt.subplots(figsize=(5, 5))
    y = evaluation["label"].to_numpy(dtype=float)
    for col in _curves(evaluation):
        p = evaluation[col].to_numpy(dtype=float)
        edges = np.unique(np.quantile(p, np.linspace(0, 1, bins + 1)))
        which = np.clip(
            np.searchsorted(edges, p, side="right") - 1, 0, max(len(edges) - 2, 0)
        )  # one bin when every prediction is equal
        mean_p = np.bincount(which, p) / np.maximum(np.bincount(which), 1)
        mean_y = np.bincount(which, y) / np.maximum(np.bincount(which), 1)
        ax.plot(mean_p, mean_y, "o-", ms=3, label=LABELS[col])
    top = float(max(evaluation[_curves(evaluation)].max().max(), y.mean()))
    ax.plot([0, top], [0, top], "k:", lw=0.8)
    ax.set(
        xlabel="predicted probability",
        ylabel="observed rate",
        title="Calibration (equal-count bins)",
    )
    ax.legend(loc="upper left", fontsize=8)
    return _save(fig, path)


def gains_plot(evaluation: pd.DataFrame, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(5, 5))
    y = evaluation["label"].to_numpy(dtype=float)
    share = np.arange(1, len(y) + 1) / len(y)
    for col in _curves(evaluation):
        order = np.argsort(-evaluation[col].to_numpy(), kind="stable")
        ax.plot(share, np.cumsum(y[order]) / max(y.sum(), 1), label=LABELS[col])
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.set(
        xlabel="share of entities contacted (highest score first)",
        ylabel="share of positives found",
        title="Cumulative gains",
    )
    ax.legend(loc="lower right", fontsize=8)
    return _save(fig, path)


def shap_summary_plot(
    model: Any,
    X: pd.DataFrame,
    path: Path,
    max_rows: int = 2000,
    random_state: int = 0,
) -> Path:
    """Beeswarm of the model's per-feature contributions on up to ``max_rows`` rows."""
    import shap

    sample = X.sample(min(max_rows, len(X)), random_state=random_state) if len(X) else X
    contrib = model.contributions(sample)
    values = contrib.drop(columns="bias").to_numpy()
    shown = sample[list(contrib.columns.drop("bias"))].apply(
        lambda s: (
            pd.Series(pd.factorize(s)[0], index=s.index).replace(-1, np.nan)
            if not pd.api.types.is_numeric_dtype(s.dtype)
            else s
        )
    )
    shap.summary_plot(values, shown, max_display=20, show=False, plot_size=(7, 7))
    fig = plt.gcf()
    unit = "points" if getattr(model, "family", "") == "points" else "log-odds, before calibration"
    fig.suptitle(f"Contributions ({unit})", fontsize=10)
    return _save(fig, path)


def write_plots(
    evaluation: pd.DataFrame,
    model: Any,
    X_holdout: pd.DataFrame,
    directory: Path,
) -> list[Path]:
    """Every evaluation plot into ``directory``; returns the files written."""
    directory.mkdir(parents=True, exist_ok=True)
    return [
        roc_plot(evaluation, directory / "roc.png"),
        pr_plot(evaluation, directory / "precision_recall.png"),
        calibration_plot(evaluation, directory / "calibration.png"),
        gains_plot(evaluation, directory / "cumulative_gains.png"),
        shap_summary_plot(model, X_holdout, directory / "shap_summary.png"),
    ]


def _save(fig: plt.Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
