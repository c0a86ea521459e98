"""Campaign influence per won opportunity: per-conversion credit written back to the CRM.

**An opportunity's journey** (setting ``attribution_opportunity_journey``):

- ``account`` (default): the touches of its account, those of the account's leads and the
  account-level touches of its contacts (``interactions.account_id`` without a lead), within
  the look-back window before the opportunity was created;
- ``lead``: the touches of the lead the opportunity names, in the same window.

Each won opportunity's amount is credited over its journey's touches by the registered
conversion model (:mod:`training.attribution.per_conversion`: model-based Shapley, shared
journey by journey). **Influence** is the part of a campaign among the campaigns that touched
the opportunity, as Salesforce's Customizable Campaign Influence keeps it: the credit of the
opportunity's campaign touches summed per campaign, as a share of all its campaign touches'
credit (so one opportunity's influence sums to 100 %); **revenue share** is influence × amount.
Touches without a campaign are credited in the per-conversion credit but are not campaigns to
influence; an opportunity without a campaign touch gets no row.
"""

from __future__ import annotations

import pandas as pd

from training.attribution.data_driven import ConversionModel, with_channels
from training.attribution.errors import EmptyJourneysError
from training.attribution.journeys import Journeys, journeys_from_interactions
from training.attribution.per_conversion import touch_credit
from training.attribution.spend import campaign_touches, touch_campaigns

JOURNEY_RULES = ("account", "lead")
INFLUENCE_COLUMNS = ("opportunity_id", "campaign_id", "influence", "revenue_share", "amount")


def opportunity_journeys(
    interactions: pd.DataFrame,
    leads: pd.DataFrame,
    opportunities: pd.DataFrame,
    lookback_days: float,
    rule: str = "account",
) -> tuple[Journeys, pd.DataFrame]:
    """The won opportunities' journeys (journey id = opportunity id, one conversion worth its
    amount), and their touches keyed for :func:`training.attribution.spend.touch_campaigns`.

    Raises:
        ValueError: an unknown ``rule``.
        EmptyJourneysError: no won opportunity has a touch in its window.
    """
    if rule not in JOURNEY_RULES:
        raise ValueError(f"opportunity journey rule must be one of {JOURNEY_RULES}, got {rule!r}")
    won = opportunities[
        opportunities["won"].astype("boolean").fillna(False) & opportunities["amount"].notna()
    ]
    won = won.assign(opportunity_id=won["opportunity_id"].astype(str))
    touches = interactions.assign(lead_id=interactions["lead_id"].astype("string"))
    if rule == "lead":
        key, on = "lead_id", won.dropna(subset=["lead_id"]).astype({"lead_id": str})
    else:
        account_of_lead = leads.set_index(leads["lead_id"].astype(str))["account_id"]
        touches = touches.assign(
            account=touches["account_id"]
            .astype("string")
            .fillna(touches["lead_id"].map(account_of_lead).astype("string"))
        )
        key, on = "account", won.rename(columns={"account_id": "account"})
    pairs = touches.merge(
        on[["opportunity_id", key, "created_at"]].astype({key: "string"}), on=key, how="inner"
    )
    window = pd.Timedelta(days=lookback_days)
    pairs = pairs[
        (pairs["occurred_at"] <= pairs["created_at"])
        & (pairs["occurred_at"] >= pairs["created_at"] - window)
    ].assign(lead_id=lambda f: f["opportunity_id"])
    if pairs.empty:
        raise EmptyJourneysError("no won opportunity has a touch before it was created")
    journeys = journeys_from_interactions(
        pairs[["occurred_at", "lead_id", "channel", "content_id"]].assign(
            interaction_id=range(len(pairs))
        ),
        won[["opportunity_id", "created_at"]].rename(
            columns={"opportunity_id": "lead_id", "created_at": "converted_at"}
        ),
        won[["opportunity_id", "amount", "won"]].assign(lead_id=won["opportunity_id"]),
        lookback_days,
    )
    return journeys, campaign_touches(pairs[["lead_id", "occurred_at", "channel", "campaign_id"]])


def campaign_influence(
    journeys: Journeys, keyed_touches: pd.DataFrame, model: ConversionModel, seed: int = 0
) -> pd.DataFrame:
    """One row per (won opportunity, campaign that touched it): ``opportunity_id``,
    ``campaign_id``, ``influence`` (0–1, summing to 1 per opportunity), ``revenue_share`` and
    the opportunity's ``amount`` (module docstring)."""
    on_model = with_channels(journeys, model.channels)
    campaign = touch_campaigns(on_model, keyed_touches)
    credit = touch_credit(on_model, model, seed)
    converted = on_model.conversions[on_model.touch_journey] > 0
    credit["campaign_id"] = campaign[converted]
    paid = credit.dropna(subset=["campaign_id"])
    per = (
        paid.groupby(["journey_id", "campaign_id"], sort=True)["value"]
        .sum()
        .rename("credit")
        .reset_index()
        .rename(columns={"journey_id": "opportunity_id"})
    )
    total = per.groupby("opportunity_id")["credit"].transform("sum")
    touches = paid.groupby(["journey_id", "campaign_id"]).size().to_numpy()
    # no credit on any campaign touch (the model sees no effect): shared by touches instead
    by_touches = pd.Series(touches, index=per.index) / per.assign(n=touches).groupby(
        "opportunity_id"
    )["n"].transform("sum")
    per["influence"] = (per["credit"] / total.where(total > 0)).fillna(by_touches)
    amount = pd.Series(journeys.value, index=journeys.journey_id.astype(str))
    per["amount"] = amount.reindex(per["opportunity_id"].astype(str)).to_numpy()
    per["revenue_share"] = per["influence"] * per["amount"]
    return per[list(INFLUENCE_COLUMNS)]


# ----------------------------------------------------------------------------- write-back
def influence_records(
    influence: pd.DataFrame,
    crm: str,
    model_label: str,
    opportunity_source_ids: pd.Series | None = None,
) -> pd.DataFrame:
    """The influence rows in the shape the CRM imports.

    - ``salesforce``: CampaignInfluence records: ``OpportunityId`` (the opportunity's
      Salesforce Id), ``CampaignId``, ``Model`` (map it to your custom influence model's
      ``ModelId`` in Data Loader), ``Influence`` (percent) and ``RevenueShare``;
    - ``hubspot``: ``Deal Record ID``, ``Campaign ID``, ``Model``, ``Influence %``,
      ``Revenue share``;
    - ``contract``: the contract's ids with ``model``, ``influence_percent`` and
      ``revenue_share``.

    Args:
        opportunity_source_ids: opportunity id → the source CRM's id (the contract's id is kept
            where there is none).
    """
    opportunity = influence["opportunity_id"].astype(str)
    if opportunity_source_ids is not None:
        mapped = opportunity.map(opportunity_source_ids.astype(str))
        opportunity = mapped.where(mapped.notna() & (mapped != "nan"), opportunity)
    percent = (100 * influence["influence"]).round(4)
    share = influence["revenue_share"].round(2)
    campaign = influence["campaign_id"].astype(str)
    columns = {
        "salesforce": ("OpportunityId", "CampaignId", "Model", "Influence", "RevenueShare"),
        "hubspot": ("Deal Record ID", "Campaign ID", "Model", "Influence %", "Revenue share"),
        "contract": (
            "opportunity_id",
            "campaign_id",
            "model",
            "influence_percent",
            "revenue_share",
        ),
    }[crm]
    values = (opportunity.to_numpy(), campaign.to_numpy(), model_label, percent, share)
    return pd.DataFrame(dict(zip(columns, values, strict=True)))
