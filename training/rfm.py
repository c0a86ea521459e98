"""RFM segments: each customer's recency, frequency and spend scored 1-4 against everyone's, then
named as marketers name them.

The summary is PyMC-Marketing's ``rfm_summary`` for segmentation (``include_first_transaction``):
``recency`` is days since the last purchase day, ``frequency`` the purchase days, and
``monetary_value`` the mean amount of a purchase day. Each is scored by its quartile among the
customers (recency reversed: more recent scores higher); tied values share the lowest rank of
their group, so equal customers get the same score and a value most customers share (one
purchase) scores as the lowest, not as the middle of its group.

The segment comes from the recency score R and the mean of the frequency and spend scores,
FM (rounded half up):

=====================  =====================  =========================================
segment                rule                   what to do
=====================  =====================  =========================================
champions              R 4, FM 4              reward; ask for referrals
loyal                  R ≥ 3, FM ≥ 3          upsell; keep close
potential loyalists    R ≥ 3, FM 2            offer a membership or a bundle
new customers          R 4, FM 1              onboard well
promising              R 3, FM 1              build the habit
can't lose them        R 1, FM 4              win back before a competitor does
at risk                R ≤ 2, FM ≥ 3          reach out personally
need attention         R 2, FM ≤ 2            a limited-time offer
hibernating            R 1, FM 2              remind them; cheap channels only
lost                   R 1, FM 1              leave out of paid campaigns
=====================  =====================  =========================================
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from crm.purchases import calendar_day, purchase_days

SEGMENTS = (
    "champions",
    "loyal",
    "potential loyalists",
    "new customers",
    "promising",
    "can't lose them",
    "at risk",
    "need attention",
    "hibernating",
    "lost",
)


def rfm_table(purchases: pd.DataFrame, as_of: pd.Timestamp) -> pd.DataFrame:
    """Per customer with a purchase on or before ``as_of``: ``recency_days``, ``frequency``,
    ``monetary_value``, the scores ``r``, ``f``, ``m`` (1-4), ``rfm_score`` (``"431"``) and
    ``segment``; sorted by ``customer_id``.

    Args:
        purchases: rows with ``customer_id``, ``purchased_at`` and ``amount``
            (:data:`crm.purchases.PURCHASES`; won opportunities for CRM accounts).
        as_of: the day the segments are for; later purchases are not seen.
    """
    from pymc_marketing.clv import rfm_summary

    end = calendar_day(as_of)
    days = purchase_days(purchases)
    days = days[days["day"] <= end]
    columns = ["customer_id", "recency_days", "frequency", "monetary_value", "r", "f", "m"]
    if days.empty:
        return pd.DataFrame(columns=[*columns, "rfm_score", "segment"])
    summary = rfm_summary(
        days,
        "customer_id",
        "day",
        monetary_value_col="amount",
        observation_period_end=end,
        time_unit="D",
        include_first_transaction=True,
    )
    summary = summary.rename(columns={"recency": "recency_days"}).sort_values(
        "customer_id", ignore_index=True
    )
    summary["r"] = quartile_score(-summary["recency_days"])
    summary["f"] = quartile_score(summary["frequency"])
    summary["m"] = quartile_score(summary["monetary_value"])
    summary["rfm_score"] = (
        summary["r"].astype(str) + summary["f"].astype(str) + summary["m"].astype(str)
    )
    summary["segment"] = segment_of(summary["r"], summary["f"], summary["m"])
    return summary[[*columns, "rfm_score", "segment"]]


def quartile_score(values: pd.Series) -> pd.Series:
    """1-4 by quartile of ``values`` among all (higher is better); ties share their lowest rank."""
    share = values.rank(method="min", pct=True)
    return np.ceil(share * 4).clip(1, 4).astype(int)


def segment_of(r: pd.Series, f: pd.Series, m: pd.Series) -> pd.Series:
    """The segment of each (R, F, M) score triple (the module's table)."""
    fm = np.floor((f.to_numpy() + m.to_numpy()) / 2 + 0.5).astype(int)
    r = r.to_numpy()
    rules = [
        (r == 4) & (fm == 4),
        (r >= 3) & (fm >= 3),
        (r >= 3) & (fm == 2),
        (r == 4) & (fm == 1),
        (r == 3) & (fm == 1),
        (r == 1) & (fm == 4),
        (r <= 2) & (fm >= 3),
        (r == 2) & (fm <= 2),
        (r == 1) & (fm == 2),
        (r == 1) & (fm == 1),
    ]
    return pd.Series(np.select(rules, SEGMENTS, default="lost"), index=f.index)
