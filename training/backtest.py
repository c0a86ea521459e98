"""Back-tests: train as of rolling cutoffs, score the period after each, compare with what then
happened.

At each cutoff the model is selected and trained exactly as
:func:`training.snapshots.train_time_split` would have done on that day (purged protocol, only
labels closed by the cutoff), and scored on the following ``test_days`` of snapshots, beside each
baseline and, on simulated data, the oracle.
Per cutoff and over all of them: ROC AUC, PR AUC, top-decile lift, log loss, ECE (10 quantile
bins), calibration slope and intercept. The difference between the champion and the best baseline
is reported with a 90 % interval over cutoffs (Student's t; cutoffs' test periods do not overlap).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from training.data import LABEL, TIMESTAMP
from training.pipeline import ModelSpec
from training.protocol import Protocol, cutoffs
from training.selection import Candidate
from training.snapshots import evaluate_as_of

METRICS = (
    "roc_auc",
    "pr_auc",
    "top_decile_lift",
    "log_loss",
    "ece",
    "calibration_slope",
    "calibration_intercept",
)
BASELINES = ("logistic", "rules")
# Back-test periods are shorter than the training test period, so that several fit in the
# history of a small CRM (18 months hold four).
BACKTEST_TEST_DAYS = 28


@dataclass
class BacktestResult:
    """Per-cutoff figures and their summary."""

    model_name: str
    protocol: str
    rows: pd.DataFrame  # one row per (cutoff, model): metrics, champion candidate, rows, positives
    summary: dict[str, Any] = field(default_factory=dict)

    def table(self) -> pd.DataFrame:
        """Mean of each metric per model over cutoffs."""
        return self.rows.groupby("model")[list(METRICS)].mean()


def backtest_protocol(protocol: Protocol) -> Protocol:
    """``protocol`` with the back-test's shorter test period."""
    return Protocol(
        label_window_days=protocol.label_window_days,
        validation_days=protocol.validation_days,
        test_days=BACKTEST_TEST_DAYS,
        min_train_days=protocol.min_train_days,
    )


def interval(differences: np.ndarray, level: float = 0.9) -> tuple[float, float]:
    """Two-sided Student-t interval of the mean of ``differences`` (NaN with one value)."""
    n = len(differences)
    if n < 2:
        return float("nan"), float("nan")
    mean = float(np.mean(differences))
    half = float(stats.t.ppf(0.5 + level / 2, n - 1) * np.std(differences, ddof=1) / np.sqrt(n))
    return mean - half, mean + half


def summarize(rows: pd.DataFrame) -> dict[str, Any]:
    """Means per model, the champion minus the best baseline (mean and 90 % interval) and the
    gap to the oracle."""
    wide = rows.pivot(index="cutoff", columns="model", values="roc_auc")
    out: dict[str, Any] = {"cutoffs": int(len(wide))}
    for model in wide.columns:
        out[f"{model}_roc_auc"] = float(wide[model].mean())
    baselines = [b for b in BASELINES if b in wide.columns]
    if baselines:
        best = max(baselines, key=lambda b: wide[b].mean())
        diff = (wide["model"] - wide[best]).to_numpy()
        low, high = interval(diff)
        out.update(
            best_baseline=best,
            lift_over_best_baseline=float(diff.mean()),
            lift_interval_low=low,
            lift_interval_high=high,
        )
    if "oracle" in wide.columns:
        out["gap_to_oracle"] = float((wide["oracle"] - wide["model"]).mean())
    return out


def backtest(
    frame: pd.DataFrame,
    spec: ModelSpec,
    protocol: Protocol,
    count: int = 4,
    truth: pd.DataFrame | None = None,
    random_state: int = 0,
    champion: Candidate | None = None,
    progress: Any = None,
) -> BacktestResult:
    """Back-test at up to ``count`` cutoffs (see the module docstring).

    Args:
        protocol: the training protocol; its test period is shortened to
            :data:`BACKTEST_TEST_DAYS`.
        champion: back-test this configuration (beside the baselines) instead of selecting at
            each cutoff: the short back-test ``train`` runs before it registers.
        progress: called with a description before each cutoff.
    """
    protocol = backtest_protocol(protocol)
    ts = pd.to_datetime(frame[TIMESTAMP], utc=True)
    dates = cutoffs(ts, protocol, count)
    if not dates:
        raise ValueError(
            f"no back-test cutoff fits in {int((ts.max() - ts.min()).days) + 1} days of labelled "
            f"snapshots: one needs {protocol.history_needed_days()}"
        )
    only = None
    if champion is not None:
        only = [champion, Candidate("logistic", {"C": 1.0}, True), Candidate("points", {}, True)]
        only = list({c.describe(): c for c in only}.values())
    records = []
    for k, cutoff in enumerate(dates):
        if progress is not None:
            progress(f"cutoff {k + 1}/{len(dates)} ({cutoff.date()})")
        out = evaluate_as_of(frame, spec, cutoff, protocol, truth, random_state, only, champion)
        winner = out["selection"].winner.candidate.describe()
        test = out["test"]
        for model, metrics in out["metrics"].items():
            if model == "model_on_oracle_rows":
                continue
            records.append(
                {
                    "cutoff": str(cutoff.date()),
                    "model": model,
                    "champion": winner,
                    "test_rows": int(len(test)),
                    "test_positives": int(test[LABEL].sum()),
                    **{m: float(metrics[m]) for m in METRICS},
                }
            )
    rows = pd.DataFrame.from_records(records)
    return BacktestResult(spec.name, protocol.name, rows, summarize(rows))


def backtest_chart(result: BacktestResult, path: Path) -> Path:
    """ROC AUC per cutoff of the champion, each baseline and the oracle, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = {
        "model": "champion",
        "logistic": "logistic regression",
        "rules": "points score",
        "oracle": "oracle (true probability)",
    }
    fig, ax = plt.subplots(figsize=(7, 4))
    wide = result.rows.pivot(index="cutoff", columns="model", values="roc_auc")
    for model, label in names.items():
        if model in wide.columns:
            ax.plot(wide.index, wide[model], marker="o", label=label)
    ax.set(
        xlabel="cutoff (trained as of this date, scored on the weeks after)",
        ylabel="ROC AUC",
        title=f"Back-test of {result.model_name}",
    )
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.autofmt_xdate()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
