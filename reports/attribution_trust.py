"""The report's "which model to trust" section: the recommendation, its evidence, the intervals.

The recommendation and its reasons come from :func:`training.attribution.recommend.recommendation`
(the cross-validated likelihood of the data-driven model's candidates and the bootstrap
intervals); this module only draws the recommended model's shares with their intervals and lays
out the evidence.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from reports.svg_charts import PALETTE, figure, html_table, svg
from training.attribution.credit import Attribution
from training.attribution.recommend import RECOMMENDED, recommendation

BOOTSTRAP_CAVEAT = (
    "Intervals: 90 % of bootstrap replicates (journeys resampled, the model refitted) fall inside "
    "each bar. They show sampling spread, not model bias: a model that credits the wrong way is "
    "wrong in every replicate."
)


def _interval_chart(shares: pd.DataFrame) -> str:
    fig, ax = figure(6.4, max(2.2, 0.34 * len(shares) + 1.0))
    y = np.arange(len(shares))[::-1]
    uncertain = shares["includes_zero"].fillna(False).to_numpy(dtype=bool)
    colors = [PALETTE[7] if u else PALETTE[0] for u in uncertain]
    ax.barh(y, shares["share"], color=colors)
    low = np.clip(shares["share"] - shares["share_low"].fillna(shares["share"]), 0, None)
    high = np.clip(shares["share_high"].fillna(shares["share"]) - shares["share"], 0, None)
    ax.errorbar(shares["share"], y, xerr=[low, high], fmt="none", ecolor="#1f2933", capsize=3)
    ax.set_yticks(y, shares["channel"].astype(str).tolist())
    ax.set_xlabel("share of conversions", fontsize=9)
    ax.xaxis.set_major_formatter(lambda v, _: f"{v:.0%}")
    ax.set_title("Data-driven credit by channel, with 90 % intervals", fontsize=11, loc="left")
    return svg(fig, "trust-intervals")


def trust_section(
    results: Sequence[Attribution], intervals: pd.DataFrame | None = None
) -> dict | None:
    """The section (``id``, ``title``, ``lead``, ``charts``, ``table``, ``note``), or None
    when the data-driven model was not run."""
    advice = recommendation(results, intervals)
    if advice is None:
        return None
    chosen = next(r for r in results if r.model == RECOMMENDED)
    shares = chosen.channels[["channel", "share"]].copy()
    shares["channel"] = shares["channel"].astype(str)
    if intervals is not None and not intervals.empty:
        own = intervals[intervals["model"] == RECOMMENDED][
            ["channel", "share_low", "share_high", "includes_zero"]
        ].astype({"channel": str})
        shares = shares.merge(own, on="channel", how="left")
    else:
        shares["share_low"] = np.nan
        shares["share_high"] = np.nan
        shares["includes_zero"] = False
    shares = shares.sort_values("share", ascending=False)
    candidates = pd.DataFrame(advice["candidates"]).rename(
        columns={"candidate": "model form", "cv_log_loss": "held-out log-loss (lower is better)"}
    )
    candidates["chosen"] = np.where(
        candidates["model form"] == advice["conversion_model"], "chosen", ""
    )
    disagreement = ", ".join(
        f"{model.replace('_', ' ')} {tvd:.0%}" for model, tvd in advice["disagreement"].items()
    )
    has_intervals = shares["share_low"].notna().any()
    return {
        "id": "trust",
        "title": "Which model to trust",
        "lead": advice["reason"],
        "charts": [
            {
                "id": "trust-intervals",
                "svg": _interval_chart(shares),
                "caption": "Grey bars: the interval includes zero."
                if has_intervals
                else "No intervals were computed for this run (bootstrap replicates: 0).",
            }
        ],
        "table": html_table(candidates, {"held-out log-loss (lower is better)": "{:.4f}"}),
        "note": (BOOTSTRAP_CAVEAT + " " if has_intervals else "")
        + f"How far each other model's channel shares are from the data-driven model's: "
        f"{disagreement}.",
    }
