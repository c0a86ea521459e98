"""``crm-intel models compare``: how each arm of a gray release did, and what to do next.

Reads the score log joined to outcomes (:mod:`monitoring.performance`), the scores whose outcome
window has closed:

* **shadow**: the challenger scored the same entities as the champion, at the same time. The
  difference in ROC AUC is measured on those pairs, with a paired bootstrap interval.
* **canary**: each arm scored its own share of entities (chosen by a hash of the id, so the
  shares are alike). Each arm's ROC AUC has its bootstrap interval; the difference's interval
  resamples the two arms independently.

The recommendation: ``promote`` when the whole 95 % interval of (challenger − champion) is above
the promotion margin (``promotion_margin``, the gate training uses); ``reject`` (roll the
challenger back) when it is wholly below zero; else ``keep collecting``, with the outcomes
counted so far.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from crm.settings import Settings
from monitoring.performance import (
    Interval,
    auc_interval,
    first_each_week,
    logged_scores,
    metrics,
    paired_auc_difference,
    unpaired_auc_difference,
    with_outcomes,
)
from serving.release import CHALLENGER_ARM, CHAMPION_ARM, SHADOW_ARM
from serving.score_log import open_log
from serving.scoring import MODEL_ENTITIES

DRAWS = 1000


def _interval(value: Interval | None) -> dict[str, float] | None:
    return None if value is None else {"value": value.value, "low": value.low, "high": value.high}


def _arm_row(arm: str, rows: pd.DataFrame) -> dict[str, Any]:
    y = rows["label"].to_numpy(dtype=int)
    p = rows["probability"].to_numpy(dtype=float)
    figures = metrics(y, p) if len(rows) else {"n": 0, "positives": 0}
    versions = sorted(rows["model_version"].astype(str).unique()) if len(rows) else []
    return {
        "arm": arm,
        "versions": versions,
        **figures,
        "roc_auc_interval": _interval(auc_interval(y, p, DRAWS) if len(rows) else None),
    }


def recommendation(difference: Interval | None, margin: float, outcomes: int) -> dict[str, str]:
    """What to do with the challenger, given (challenger − champion) ROC AUC and its interval."""
    if difference is None:
        return {
            "action": "keep collecting",
            "why": f"{outcomes:,} scored entities have an outcome so far, not yet both outcomes "
            "in each arm",
        }
    if difference.low > margin:
        return {
            "action": "promote",
            "why": f"the challenger ranks better by {difference.value:+.3f} ROC AUC (95 % "
            f"interval {difference.low:+.3f} to {difference.high:+.3f}, above the margin "
            f"{margin:.3f}): `crm-intel models promote`",
        }
    if difference.high < 0:
        return {
            "action": "reject",
            "why": f"the challenger ranks worse by {difference.value:+.3f} ROC AUC (95 % "
            f"interval {difference.low:+.3f} to {difference.high:+.3f}): turn the release off "
            "and train another",
        }
    return {
        "action": "keep collecting",
        "why": f"the difference is {difference.value:+.3f} ROC AUC, interval "
        f"{difference.low:+.3f} to {difference.high:+.3f}: not yet clear either way "
        f"({outcomes:,} outcomes so far)",
    }


def compare(settings: Settings, model: str) -> dict[str, Any]:
    """Each arm's realised figures, the challenger-minus-champion difference and a
    recommendation, from the logged scores whose outcome is known."""
    entity, _ = MODEL_ENTITIES[model]
    logged = logged_scores(open_log(settings.score_log_url()), model)
    out: dict[str, Any] = {"model": model, "arms": [], "difference": None}
    if not len(logged):
        out["recommendation"] = recommendation(None, settings.promotion_margin, 0)
        return out
    served = first_each_week(with_outcomes(settings, entity, logged))
    known = served[served["label"].notna()]
    by_arm = {arm: known[known["arm"] == arm] for arm in (CHAMPION_ARM, CHALLENGER_ARM, SHADOW_ARM)}
    out["arms"] = [_arm_row(arm, rows) for arm, rows in by_arm.items() if len(rows)]
    shadow = by_arm[SHADOW_ARM]
    difference: Interval | None = None
    if len(shadow):
        pairs = shadow.merge(
            by_arm[CHAMPION_ARM], on=["entity_id", "week"], suffixes=("_challenger", "_champion")
        )
        out["mode"] = "shadow"
        out["pairs"] = len(pairs)
        if len(pairs):
            difference = paired_auc_difference(
                pairs["label_challenger"].to_numpy(dtype=int),
                pairs["probability_challenger"].to_numpy(dtype=float),
                pairs["probability_champion"].to_numpy(dtype=float),
                DRAWS,
            )
    elif len(by_arm[CHALLENGER_ARM]):
        out["mode"] = "canary"
        challenger, champion = by_arm[CHALLENGER_ARM], by_arm[CHAMPION_ARM]
        difference = unpaired_auc_difference(
            challenger["label"].to_numpy(dtype=int),
            challenger["probability"].to_numpy(dtype=float),
            champion["label"].to_numpy(dtype=int),
            champion["probability"].to_numpy(dtype=float),
            DRAWS,
        )
    else:
        out["mode"] = "champion only"
    out["difference"] = _interval(difference)
    out["recommendation"] = recommendation(difference, settings.promotion_margin, len(known))
    out["awaiting_outcome"] = int(served["label"].isna().sum())
    for row in out["arms"]:
        for k, v in list(row.items()):
            if isinstance(v, float) and math.isnan(v):
                row[k] = None
    return out
