"""The figures of the attribution page that change with its selectors: for each period (the
whole run, then each calendar quarter) and each model, the channel, campaign and content
figures and tables; for each period, the model comparison, paths, timing and KPIs. They are
drawn into a :class:`reports.page_data.PageData`; :mod:`reports.attribution` lays them out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import pandas as pd

from reports.attribution_charts import (
    channel_name,
    channel_revenue_chart,
    content_revenue_chart,
    content_type_chart,
    content_type_name,
    path_length_chart,
    paths_chart,
    return_chart,
    share_heatmap,
    shorten,
    time_to_conversion_chart,
    times,
)
from reports.page_data import PageData, view_key
from reports.page_style import count, money, percent
from training.attribution.credit import Attribution
from training.attribution.journeys import NO_CONTENT, Journeys
from training.attribution.periods import PeriodCredit
from training.attribution.spend import (
    NO_CAMPAIGN,
    Marketing,
    campaign_credit,
    campaign_mix,
    campaign_spend,
    content_item_spend,
    content_type_credit,
    content_type_spend,
    touch_campaigns,
    with_returns,
)
from training.attribution.summaries import path_lengths, share_matrix, time_to_conversion, top_paths

ALL = "all"
QUARTER_NOTE = (
    "The figures are those of the journeys that ended in the quarter; the data-driven models "
    "credit them with the conversion model of the whole run."
)


@dataclass(frozen=True)
class PeriodView:
    """One choice of the period selector: its journeys, each model's credit on them, and its
    spend (none without campaign data)."""

    key: str
    label: str
    journeys: Journeys
    results: list[Attribution]
    partial: str = ""
    spend: pd.DataFrame | None = None
    campaign_mix: pd.DataFrame | None = None
    content_spend: pd.Series | None = None


def _interval_text(intervals: pd.DataFrame | None, model: str) -> dict[str, str]:
    if intervals is None or intervals.empty:
        return {}
    own = intervals[intervals["model"] == model]
    return {
        str(c): f" ({percent(lo, 0)}–{percent(hi, 0)})"
        for c, lo, hi in zip(own["channel"], own["share_low"], own["share_high"], strict=True)
        if pd.notna(lo)
    }


def draw_channels(
    page: PageData,
    period: PeriodView,
    result: Attribution,
    currency: str,
    intervals: pd.DataFrame | None,
) -> None:
    key = view_key(period.key, result.model)
    credit = result.channels[["channel", "conversions", "value", "share"]].astype({"channel": str})
    if period.spend is not None:
        spend = period.spend.groupby("channel")["spend"].sum().reset_index()
        table = with_returns(credit, spend.astype({"channel": str}), "channel")
    else:
        table = with_returns(credit, pd.DataFrame({"channel": [], "spend": []}), "channel")
    table["share"] = table["share"].fillna(0.0)
    table = table.sort_values("value", ascending=False)
    page.chart("channel-revenue", "view", key, channel_revenue_chart(table, currency))
    paid = table[table["spend"] > 0]
    if period.spend is not None and not paid.empty:
        page.chart(
            "channel-return",
            "view",
            key,
            return_chart([channel_name(c) for c in paid["channel"]], paid, currency, "channel"),
        )
    ranges = _interval_text(intervals, result.model) if period.key == ALL else {}
    page.table(
        "channel-table",
        "view",
        key,
        [
            "Channel",
            "Conversions",
            "Share of conversions (90 % interval)",
            "Credited revenue",
            "Spend",
            "Cost per conversion",
            "Return on spend",
        ],
        [
            [
                channel_name(row.channel),
                f"{row.conversions:,.1f}",
                percent(row.share) + ranges.get(str(row.channel), ""),
                money(row.value, currency, compact=False),
                money(row.spend, currency, compact=False) if row.spend > 0 else "–",
                money(row.cost_per_conversion, currency, compact=False),
                times(row.return_on_spend),
            ]
            for row in table.itertuples()
        ],
    )


def draw_campaigns(
    page: PageData, period: PeriodView, result: Attribution, currency: str, top: int
) -> None:
    if period.spend is None or period.campaign_mix is None:
        return
    key = view_key(period.key, result.model)
    credit = campaign_credit(result, period.campaign_mix)
    organic = credit[credit["campaign_id"] == NO_CAMPAIGN]["value"].sum()
    credit = (
        credit[credit["campaign_id"] != NO_CAMPAIGN]
        .groupby("campaign_id")[["conversions", "value"]]
        .sum()
        .reset_index()
        .astype({"campaign_id": str})
    )
    spend = period.spend[["campaign_id", "name", "channel", "spend"]].astype({"campaign_id": str})
    table = with_returns(credit, spend, "campaign_id")
    table = table[(table["spend"] > 0) | (table["value"] > 0)]
    table = table.sort_values(["spend", "value"], ascending=False)
    shown = table[table["spend"] > 0].head(top)
    page.chart(
        "campaign-return",
        "view",
        key,
        return_chart([shorten(str(n)) for n in shown["name"]], shown, currency, "campaign"),
    )
    page.table(
        "campaign-table",
        "view",
        key,
        [
            "Campaign",
            "Channel",
            "Spend",
            "Conversions",
            "Credited revenue",
            "Cost per conversion",
            "Return on spend",
        ],
        [
            [
                str(row.name),
                channel_name(row.channel),
                money(row.spend, currency, compact=False),
                f"{row.conversions:,.1f}",
                money(row.value, currency, compact=False),
                money(row.cost_per_conversion, currency, compact=False),
                times(row.return_on_spend),
            ]
            for row in table.itertuples()
        ],
    )
    total = result.channels["value"].sum()
    page.text(
        "campaign-organic",
        "view",
        key,
        f"{percent(organic / total if total else 0.0, 0)} of the credited revenue came through "
        "touches without a campaign (organic and sales touches); it is not in this table.",
    )


def draw_content(
    page: PageData,
    period: PeriodView,
    result: Attribution,
    marketing: Marketing | None,
    currency: str,
    top: int,
) -> None:
    if result.content.empty:
        return
    key = view_key(period.key, result.model)
    titles = marketing.content_titles if marketing is not None else {}
    kinds = marketing.content_types if marketing is not None else {}
    items = result.content[result.content["content_id"] != NO_CONTENT].astype({"content_id": str})
    items = items.sort_values("value", ascending=False).head(top)
    items = items.assign(
        title=[titles.get(i, i) for i in items["content_id"]],
        type=[kinds.get(i, "unknown") for i in items["content_id"]],
    )
    page.chart("content-revenue", "view", key, content_revenue_chart(items, currency))
    columns = ["Content", "Type", "Conversions", "Credited revenue", "Share of revenue"]
    spend = period.content_spend
    if spend is not None:
        columns += ["Spend", "Return on spend"]
    total = result.content["value"].sum()
    rows = []
    for row in items.itertuples():
        cells = [
            str(row.title),
            content_type_name(row.type),
            f"{row.conversions:,.1f}",
            money(row.value, currency, compact=False),
            percent(row.value / total if total else 0.0),
        ]
        if spend is not None:
            cost = float(spend.get(row.content_id, 0.0))
            cells += [
                money(cost, currency, compact=False) if cost > 0 else "–",
                times(row.value / cost) if cost > 0 else "–",
            ]
        rows.append(cells)
    page.table("content-table", "view", key, columns, rows)
    if period.content_spend is not None:
        by_type = with_returns(
            content_type_credit(result, kinds),
            content_type_spend(period.content_spend, kinds),
            "content_type",
        ).sort_values("value", ascending=False)
        page.chart("content-types", "view", key, content_type_chart(by_type, currency))


def draw_period(page: PageData, period: PeriodView, lookback_days: float, currency: str) -> None:
    journeys = period.journeys
    page.chart("channel-models", "period", period.key, share_heatmap(share_matrix(period.results)))
    paths = top_paths(journeys, 10)
    if not paths.empty:
        page.chart("paths", "period", period.key, paths_chart(paths))
    days = time_to_conversion(journeys)
    if not days.empty:
        page.chart(
            "time-to-conversion",
            "period",
            period.key,
            time_to_conversion_chart(days, lookback_days),
        )
    page.chart("path-length", "period", period.key, path_length_chart(path_lengths(journeys)))
    conversions = journeys.total_conversions
    spend = None if period.spend is None else float(period.spend["spend"].sum())
    cards = {
        "kpi-journeys": count(journeys.total_journeys),
        "kpi-conversions": count(conversions),
        "kpi-rate": percent(conversions / max(journeys.total_journeys, 1.0)),
        "kpi-revenue": money(journeys.total_value, currency),
        "kpi-spend": "–" if spend is None else money(spend, currency),
        "kpi-cost-per-conversion": "–"
        if spend is None or not conversions
        else money(spend / conversions, currency, compact=False),
        "kpi-return": "–" if not spend else times(journeys.total_value / spend),
        "period-note": period.partial,
    }
    for name, value in cards.items():
        page.text(name, "period", period.key, value)


def period_views(
    journeys: Journeys,
    results: Sequence[Attribution],
    periods: Sequence[PeriodCredit],
    marketing: Marketing | None,
) -> list[PeriodView]:
    def period(
        key: str, label: str, part: Journeys, credit: list[Attribution], spend: pd.DataFrame | None
    ) -> PeriodView:
        if marketing is None or spend is None or part.touched_at is None:
            return PeriodView(key, label, part, credit)
        return PeriodView(
            key,
            label,
            part,
            credit,
            spend=spend,
            campaign_mix=campaign_mix(part, touch_campaigns(part, marketing.campaign_touches)),
            content_spend=content_item_spend(marketing.interactions, spend),
        )

    span = ""
    if journeys.ended_at is not None:
        ends = pd.to_datetime(journeys.ended_at)
        span = f": {ends.min():%b %Y} to {ends.max():%b %Y}"
    whole = None if marketing is None else campaign_spend(marketing.campaigns)
    out = [period(ALL, f"Whole run{span}", journeys, list(results), whole)]
    for part in periods:
        p = part.period
        spend = None if marketing is None else campaign_spend(marketing.campaigns, p.start, p.end)
        view = period(
            f"{p.start:%Y-%m-%d}",
            f"{p.label} (partial)" if p.partial else p.label,
            part.journeys,
            part.results,
            spend,
        )
        note = f"{p.label} is partial: {p.covered}. " if p.partial else ""
        out.append(replace(view, partial=note + QUARTER_NOTE))
    return out
