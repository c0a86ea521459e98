"""What the attribution report shows, as tables: the numbers behind every chart.

Plain functions over journeys and credit results, so the report (:mod:`reports.attribution`), the
notebook and the tests use the same numbers the page shows.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from training.attribution.credit import Attribution
from training.attribution.journeys import NO_CONTENT, Journeys

HEADLINE_ORDER = (
    "data_driven",
    "shapley",
    "markov_1",
    "markov_2",
    "markov_3",
    "time_decay",
    "position_based",
    "linear",
    "last_touch",
    "first_touch",
)
DAY_NS = 86400e9


def headline_model(results: Sequence[Attribution]) -> Attribution:
    """The model the report leads with: the most evidence-based one that was run."""
    by_name = {r.model: r for r in results}
    for name in HEADLINE_ORDER:
        if name in by_name:
            return by_name[name]
    return results[0]


def share_matrix(
    results: Sequence[Attribution], level: str = "channel", column: str = "share"
) -> pd.DataFrame:
    """Shares side by side: one row per channel (or content item), one column per model."""
    key = "channel" if level == "channel" else "content_id"
    frames = {
        r.model: (r.channels if level == "channel" else r.content).set_index(key)[column]
        for r in results
        if not (r.channels if level == "channel" else r.content).empty
    }
    matrix = pd.DataFrame(frames).fillna(0.0)
    matrix.index = matrix.index.astype(str)
    return matrix.loc[matrix.mean(axis=1).sort_values(ascending=False).index]


def top_paths(journeys: Journeys, n: int = 10, sep: str = " > ") -> pd.DataFrame:
    """The ``n`` paths with most conversions: ``path``, ``conversions``, ``journeys``, ``rate``."""
    frame = pd.DataFrame(
        {
            "path": journeys.paths(sep).to_numpy(dtype=object),
            "conversions": journeys.conversions,
            "journeys": journeys.conversions + journeys.nulls,
            "value": journeys.value,
        }
    )
    grouped = frame.groupby("path", sort=False).sum()
    grouped["rate"] = grouped["conversions"] / grouped["journeys"].where(grouped["journeys"] > 0)
    grouped = grouped[grouped["conversions"] > 0]
    top = grouped.sort_values(["conversions", "rate"], ascending=False).head(n)
    return top.reset_index()


def path_lengths(journeys: Journeys, cap: int = 10) -> pd.DataFrame:
    """Journeys by number of touches (``cap`` and more pooled): converting and not."""
    length = np.minimum(journeys.lengths, cap)
    frame = pd.DataFrame(
        {"touches": length, "converting": journeys.conversions, "not_converting": journeys.nulls}
    )
    table = frame.groupby("touches").sum().reindex(range(1, cap + 1), fill_value=0.0)
    table["conversion_rate"] = table["converting"] / (
        table["converting"] + table["not_converting"]
    ).where(lambda s: s > 0)
    return table.reset_index()


def time_to_conversion(journeys: Journeys) -> pd.Series:
    """Days from a converting journey's first touch to its conversion (empty without times)."""
    if journeys.touched_at is None or journeys.converted_at is None:
        return pd.Series(dtype="float64", name="days")
    converted = ~np.isnat(journeys.converted_at) & (journeys.lengths > 0)
    first = journeys.touched_at[journeys.first_touch[converted]]
    days = (journeys.converted_at[converted] - first).astype(np.int64) / DAY_NS
    return pd.Series(days, name="days")


def monthly_trend(journeys: Journeys) -> pd.DataFrame:
    """Per conversion month: conversions, revenue, and linear-touch conversions per channel.

    Returns:
        One row per month (``month`` as a timestamp), columns ``conversions``, ``value`` and one
        column per channel; empty when the journeys have no conversion times.
    """
    if journeys.converted_at is None:
        return pd.DataFrame()
    converted = ~np.isnat(journeys.converted_at)
    if not converted.any():
        return pd.DataFrame()
    month = pd.to_datetime(journeys.converted_at).to_period("M").to_timestamp()
    per_journey = pd.DataFrame(
        {"month": month, "conversions": journeys.conversions, "value": journeys.value}
    )[converted]
    totals = per_journey.groupby("month")[["conversions", "value"]].sum()
    touch = journeys.touch_journey
    on = converted[touch]
    credit = (journeys.conversions[touch] / journeys.lengths[touch])[on]
    channel = np.asarray(journeys.channels, dtype=object)[journeys.channel[on]]
    mix = pd.DataFrame(
        {"month": month[touch[on]], "channel": channel, "credit": credit}
    ).pivot_table(index="month", columns="channel", values="credit", aggfunc="sum", fill_value=0.0)
    return totals.join(mix).fillna(0.0).reset_index()


def content_costs(interactions: pd.DataFrame, campaigns: pd.DataFrame) -> pd.DataFrame:
    """Campaign cost allocated to content items.

    Each campaign's cost is split over the content its touches carried, in proportion to the
    number of touches per item; a campaign's touches without content take their share as
    :data:`NO_CONTENT`, and a campaign without any touch is reported under ``"(no touches)"``.

    Returns:
        ``content_id`` and ``cost``.
    """
    touches = interactions.loc[interactions["campaign_id"].notna(), ["campaign_id", "content_id"]]
    touches = touches.assign(content_id=touches["content_id"].astype("string").fillna(NO_CONTENT))
    counts = touches.groupby(["campaign_id", "content_id"]).size().rename("touches").reset_index()
    counts["share"] = counts["touches"] / counts.groupby("campaign_id")["touches"].transform("sum")
    cost = campaigns.set_index(campaigns["campaign_id"].astype("string"))["cost"]
    campaign_cost = cost.reindex(counts["campaign_id"].astype("string")).to_numpy()
    counts["cost"] = counts["share"] * campaign_cost
    allocated = counts.groupby("content_id")["cost"].sum()
    idle = cost[~cost.index.isin(counts["campaign_id"].astype("string"))].sum()
    if idle > 0:
        allocated.loc["(no touches)"] = idle
    out = allocated.rename_axis("content_id").reset_index()
    out["content_id"] = out["content_id"].astype("string")
    return out
