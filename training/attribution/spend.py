"""Spend and return beside credit: what each channel, campaign and content type cost, and what
each model credits it with.

- **Spend** is the campaigns' ``cost``. A campaign belongs to one channel. Over a period, a
  campaign's cost is spread evenly over its days (``start`` to ``end``) and the period gets the
  days it overlaps; with no period, every campaign counts in full.
- **Campaign credit**: a model credits channels and content items, not campaigns. A channel's
  credit is split over its campaigns the way the data-driven model splits it over touches: within
  a journey, evenly over that channel's touches, so a campaign's part of the channel is the
  conversions (revenue) of the journeys it touched, each divided by the journey's touches on the
  channel. Touches without a campaign go to :data:`NO_CAMPAIGN`. Every channel's credit is kept:
  summed over campaigns it is the model's channel credit.
- **Content type credit** is the model's content credit summed by the content's type; a content
  type's spend is the campaign cost split over the content its touches carried
  (:func:`training.attribution.summaries.content_costs`).

Return on spend is credited revenue ÷ spend; cost per conversion is spend ÷ credited conversions.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from functools import cached_property

import numpy as np
import pandas as pd

from training.attribution.credit import Attribution
from training.attribution.journeys import NO_CONTENT, Journeys
from training.attribution.summaries import content_costs

NO_CAMPAIGN = "(no campaign)"
NO_TOUCHES = "(no touches)"
DAY = pd.Timedelta(days=1)


def _utc(values: pd.Series) -> pd.Series:
    times = pd.to_datetime(values, utc=True)
    return times.dt.tz_convert("UTC").dt.tz_localize(None)


def campaign_spend(
    campaigns: pd.DataFrame, start: date | None = None, end: date | None = None
) -> pd.DataFrame:
    """Each campaign's spend: its whole cost, or over the period ``start``–``end`` (UTC days,
    both included) the share of its days that fall in the period.

    Args:
        campaigns: the contract's ``campaigns`` (``campaign_id``, ``name``, ``channel``,
            ``cost``, ``start``, ``end``).

    Returns:
        ``campaign_id``, ``name``, ``channel``, ``cost`` and ``spend``.
    """
    frame = pd.DataFrame(
        {
            "campaign_id": campaigns["campaign_id"].astype("string"),
            "name": campaigns["name"].astype("string"),
            "channel": campaigns["channel"].astype("string"),
            "cost": pd.to_numeric(campaigns["cost"]).astype(float),
        }
    )
    if start is None or end is None:
        frame["spend"] = frame["cost"]
        return frame
    begins = _utc(campaigns["start"]).dt.floor("D")
    ends = _utc(campaigns["end"]).dt.floor("D") + DAY
    days = ((ends - begins) / DAY).clip(lower=1.0)
    lo, hi = pd.Timestamp(start), pd.Timestamp(end) + DAY
    overlap = ((ends.clip(upper=hi) - begins.clip(lower=lo)) / DAY).clip(lower=0.0)
    frame["spend"] = frame["cost"] * (overlap / days).to_numpy()
    return frame


TOUCH_KEYS = ["lead_id", "at", "channel"]


def campaign_touches(interactions: pd.DataFrame) -> pd.DataFrame:
    """The lead interactions keyed as journeys key their touches (``lead_id``, ``at`` in UTC
    nanoseconds, ``channel``), with their ``campaign_id``; two interactions of one lead on one
    channel at the same instant count as the first."""
    on_lead = interactions["lead_id"].notna()
    return pd.DataFrame(
        {
            "lead_id": interactions.loc[on_lead, "lead_id"].astype(str).to_numpy(),
            "at": _utc(interactions.loc[on_lead, "occurred_at"]).to_numpy().astype("int64"),
            "channel": interactions.loc[on_lead, "channel"].astype(str).to_numpy(),
            "campaign_id": interactions.loc[on_lead, "campaign_id"]
            .astype("string")
            .to_numpy(dtype=object, na_value=None),
        }
    ).drop_duplicates(TOUCH_KEYS)


def touch_campaigns(journeys: Journeys, touches: pd.DataFrame) -> np.ndarray:
    """Per touch of ``journeys``, the campaign id of the interaction it came from (None when it
    had no campaign), looked up in ``touches`` (:func:`campaign_touches`): a touch is the
    interaction of its lead, time and channel, which journeys built from interactions keep."""
    frame = journeys.touches_frame()
    if "touched_at" not in frame:
        return np.full(journeys.n_touches, None, dtype=object)
    keyed = pd.DataFrame(
        {
            "lead_id": frame["journey_id"].astype(str).to_numpy(),
            "at": frame["touched_at"].dt.tz_localize(None).to_numpy().astype("int64"),
            "channel": frame["channel"].astype(str).to_numpy(),
        }
    )
    merged = keyed.merge(touches, on=TOUCH_KEYS, how="left", validate="many_to_one")
    return merged["campaign_id"].to_numpy(dtype=object)


def campaign_mix(journeys: Journeys, campaign_of_touch: np.ndarray) -> pd.DataFrame:
    """How each channel's credit splits over its campaigns (module docstring): per channel and
    campaign (:data:`NO_CAMPAIGN` for touches without one), the share of the channel's
    conversions and of its revenue. The same for every model of one set of journeys.

    Returns:
        ``channel``, ``campaign_id``, ``conversions`` and ``value`` (shares summing to 1 within
        each channel; by touches where the channel's touches carry no conversion).
    """
    journey = journeys.touch_journey
    pairs = pd.DataFrame({"journey": journey, "channel": journeys.channel})
    on_channel = pairs.groupby(["journey", "channel"])["journey"].transform("size")
    on_channel = on_channel.to_numpy(dtype=float)
    touches = pd.DataFrame(
        {
            "channel": np.asarray(journeys.channels, dtype=object)[journeys.channel],
            "campaign_id": np.where(pd.isna(campaign_of_touch), NO_CAMPAIGN, campaign_of_touch),
            "conversions": journeys.conversions[journey] / on_channel,
            "value": journeys.value[journey] / on_channel,
            "touches": 1.0,
        }
    )
    mix = touches.groupby(["channel", "campaign_id"], sort=True).sum().reset_index()
    for column in ("conversions", "value"):
        total = mix.groupby("channel")[column].transform("sum")
        by_touches = mix["touches"] / mix.groupby("channel")["touches"].transform("sum")
        mix[column] = np.where(total > 0, mix[column] / total.where(total > 0), by_touches)
    return mix.drop(columns="touches")


def campaign_credit(result: Attribution, mix: pd.DataFrame) -> pd.DataFrame:
    """The model's channel credit split over each channel's campaigns by ``mix``
    (:func:`campaign_mix` of the journeys the model credited).

    Returns:
        ``campaign_id``, ``channel``, ``conversions`` and ``value``; per channel they sum to
        the model's channel credit.
    """
    credit = result.by_channel
    mix = mix[mix["channel"].isin(credit.index)]
    channel = mix["channel"].to_numpy(dtype=object)
    return pd.DataFrame(
        {
            "campaign_id": mix["campaign_id"].to_numpy(dtype=object),
            "channel": channel,
            "conversions": mix["conversions"].to_numpy()
            * credit["conversions"].reindex(channel).to_numpy(),
            "value": mix["value"].to_numpy() * credit["value"].reindex(channel).to_numpy(),
        }
    )


def content_type_credit(result: Attribution, content_types: Mapping[str, str]) -> pd.DataFrame:
    """The model's content credit summed by content type (``content_type``, ``conversions``,
    ``value``); touches without content under :data:`NO_CONTENT`."""
    if result.content.empty:
        return pd.DataFrame(columns=["content_type", "conversions", "value"])
    ids = result.content["content_id"].astype(str)
    kinds = ids.map(lambda i: NO_CONTENT if i == NO_CONTENT else content_types.get(i, "unknown"))
    frame = result.content[["conversions", "value"]].assign(content_type=kinds.to_numpy())
    return frame.groupby("content_type", sort=False).sum().reset_index()


def content_item_spend(interactions: pd.DataFrame, spend: pd.DataFrame) -> pd.Series:
    """Spend per content id: each campaign's ``spend`` split over the content its touches
    carried, in proportion to its touches (:data:`NO_CONTENT` for touches without content,
    :data:`NO_TOUCHES` for campaigns without a touch)."""
    costs = content_costs(
        interactions, spend[["campaign_id", "spend"]].rename(columns={"spend": "cost"})
    )
    return costs.set_index(costs["content_id"].astype(str))["cost"]


def content_type_spend(items: pd.Series, content_types: Mapping[str, str]) -> pd.DataFrame:
    """Spend by content type (``content_type``, ``spend``): the spend per content id of
    :func:`content_item_spend` summed by the content's type."""
    kinds = [
        i if i in (NO_CONTENT, NO_TOUCHES) else content_types.get(i, "unknown") for i in items.index
    ]
    frame = pd.DataFrame({"content_type": kinds, "spend": items.to_numpy()})
    return frame.groupby("content_type", sort=False).sum().reset_index()


def with_returns(credit: pd.DataFrame, spend: pd.DataFrame, key: str) -> pd.DataFrame:
    """Credit and spend side by side on ``key`` (an outer join: spend without credit and credit
    without spend both stay), with ``cost_per_conversion`` and ``return_on_spend`` (NaN where
    there is no spend or no conversion)."""
    frame = credit.merge(spend, on=key, how="outer")
    for column in ("conversions", "value", "spend"):
        frame[column] = pd.to_numeric(frame[column]).fillna(0.0)
    paid = frame["spend"] > 0
    frame["cost_per_conversion"] = np.where(
        paid & (frame["conversions"] > 0),
        frame["spend"] / frame["conversions"].where(frame["conversions"] > 0),
        np.nan,
    )
    frame["return_on_spend"] = np.where(paid, frame["value"] / frame["spend"].where(paid), np.nan)
    return frame


@dataclass(frozen=True)
class Marketing:
    """What the spend and content figures need from the CRM: ``campaigns`` (the contract's
    table), lead ``interactions`` (``lead_id``, ``occurred_at``, ``channel``, ``content_id``,
    ``campaign_id``) and the ``content`` catalogue (``content_id``, ``title``, ``type``)."""

    campaigns: pd.DataFrame
    interactions: pd.DataFrame
    content: pd.DataFrame

    @cached_property
    def campaign_touches(self) -> pd.DataFrame:
        """:func:`campaign_touches` of the interactions (prepared once)."""
        return campaign_touches(self.interactions)

    @property
    def content_titles(self) -> dict[str, str]:
        return dict(
            zip(
                self.content["content_id"].astype(str),
                self.content["title"].astype(str),
                strict=True,
            )
        )

    @property
    def content_types(self) -> dict[str, str]:
        return dict(
            zip(
                self.content["content_id"].astype(str),
                self.content["type"].astype(str),
                strict=True,
            )
        )
