"""The funnel cockpit's words and charts: plain names for the CRM's values, amounts in the
page's currency, and one Plotly figure per chart, all in one readable style (every text at least
12 px at 1400 × 900). :mod:`reports.funnel` lays them out on the page.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import pandas as pd
import plotly.graph_objects as go

from reports.page_style import (
    BLUE,
    CURRENCY_SYMBOLS,
    GREEN,
    GREY,
    GRID,
    MUTED,
    ORANGE,
    RED,
    TEXT_SIZE,
    TICK_SIZE,
    days,
    money,
    percent,
    plain,
)
from training.funnel import NOT_RECORDED, SEGMENTS, Funnel

STAGES = {
    "lead_to_opportunity": "Lead to opportunity",
    "opportunity_to_won": "Opportunity to won",
    "lead_to_won": "Lead to won",
}
SEGMENT_NAMES = {"industry": "Industry", "employee_band": "Company size", "region": "Region"}
KPI_LABELS = {
    "lead_conversion_rate": "Lead conversion rate",
    "leads": "Leads",
    "opportunities": "Opportunities",
    "won_deals": "Won deals",
    "won_revenue": "Won revenue",
    "median_days_to_opportunity": "Median days to opportunity",
    "median_days_to_won": "Median days to won",
}
KPI_HINTS = {
    "lead_conversion_rate": "leads reaching opportunity ÷ leads created, in the month",
    "leads": "leads created",
    "opportunities": "leads that reached opportunity",
    "won_deals": "deals closed and won",
    "won_revenue": "amount of the deals won",
    "median_days_to_opportunity": "lead created → opportunity",
    "median_days_to_won": "opportunity created → won",
}
MODELS = {"lead_conversion": "Lead conversion", "churn_risk": "Churn risk"}
RISK_BANDS = ("high", "medium", "low")


# ----------------------------------------------------------------------------- words
def company_size(band: object) -> str:
    """An employee band in words: ``1001-5000`` → ``1,001–5,000 employees``."""
    text = str(band)
    if text == NOT_RECORDED:
        return "Not recorded"
    text = re.sub(r"\d{4,}", lambda m: f"{int(m.group()):,}", text).replace("-", "–")
    return f"{text} employees"


def segment_label(segment: str, value: object) -> str:
    return company_size(value) if segment == "employee_band" else plain(value)


# ----------------------------------------------------------------------------- charts
def funnel_chart(funnel: Funnel) -> go.Figure:
    totals = funnel.totals
    counts = [totals["leads"], totals["opportunities"], totals["won"]]
    shares = [
        "",
        f" · {percent(totals['lead_to_opportunity'])} of leads",
        f" · {percent(totals['opportunity_to_won'])} of opportunities",
    ]
    figure = go.Figure(
        go.Funnel(
            y=["Leads", "Reached opportunity", "Won"],
            x=counts,
            text=[f"{c:,}{s}" for c, s in zip(counts, shares, strict=True)],
            textinfo="text",
            textposition=["inside", "outside", "outside"],
            textfont={"size": TEXT_SIZE},
            insidetextfont={"size": TEXT_SIZE, "color": "#ffffff"},
            marker={"color": [BLUE, ORANGE, GREEN]},
            connector={"fillcolor": "#eef2f7"},
            hovertemplate="%{y}: %{x:,} leads<extra></extra>",
        )
    )
    figure.update_layout(margin={"l": 10, "r": 10, "t": 10, "b": 10}, showlegend=False)
    return figure


def _rate_bars(
    labels: Sequence[str], table: pd.DataFrame, stages: Sequence[str], visible: bool = True
) -> list[go.Bar]:
    colours = {"lead_to_opportunity": BLUE, "opportunity_to_won": GREEN, "lead_to_won": ORANGE}
    return [
        go.Bar(
            y=list(labels),
            x=table[stage].fillna(0.0).tolist(),
            name=STAGES[stage],
            orientation="h",
            marker_color=colours[stage],
            visible=visible,
            text=[percent(v) for v in table[stage]],
            textposition="outside",
            cliponaxis=False,
            customdata=table[["leads", "opportunities", "won"]].to_numpy().tolist(),
            hovertemplate="%{y}<br>" + STAGES[stage] + ": %{text}<br>%{customdata[0]:,} leads, "
            "%{customdata[1]:,} reached opportunity, %{customdata[2]:,} won<extra></extra>",
        )
        for stage in stages
    ]


def _rate_layout(figure: go.Figure, top: int = 40) -> None:
    figure.update_layout(
        barmode="group",
        bargap=0.25,
        margin={"l": 10, "r": 30, "t": top, "b": 10},
        xaxis={"tickformat": ".0%", "title": {"text": "Share of leads moving on"}},
        yaxis={"autorange": "reversed"},
    )


def source_chart(funnel: Funnel) -> tuple[go.Figure, int]:
    table = funnel.by_source
    labels = [plain(s) for s in table["source"]]
    figure = go.Figure(_rate_bars(labels, table, ("lead_to_opportunity", "opportunity_to_won")))
    _rate_layout(figure)
    return figure, 110 + 44 * max(len(labels), 3)


def segment_chart(funnel: Funnel) -> tuple[go.Figure, int]:
    traces: list[go.Bar] = []
    owners: list[str] = []
    stages = ("lead_to_opportunity", "opportunity_to_won")
    for i, segment in enumerate(SEGMENTS):
        table = funnel.by_segment[segment]
        labels = [segment_label(segment, v) for v in table["segment"]]
        traces += _rate_bars(labels, table, stages, visible=i == 0)
        owners += [segment] * len(stages)
    figure = go.Figure(traces)
    buttons = [
        {
            "label": SEGMENT_NAMES[segment],
            "method": "update",
            "args": [{"visible": [owner == segment for owner in owners]}],
        }
        for segment in SEGMENTS
    ]
    figure.update_layout(
        updatemenus=[
            {
                "type": "buttons",
                "direction": "right",
                "buttons": buttons,
                "active": 0,
                "showactive": True,
                "x": 0,
                "xanchor": "left",
                "y": 1.0,
                "yanchor": "bottom",
                "pad": {"b": 36},
                "font": {"size": TEXT_SIZE},
                "bgcolor": "#ffffff",
                "bordercolor": GRID,
            }
        ],
        legend={"y": 1.0, "yanchor": "bottom", "x": 1, "xanchor": "right"},
    )
    _rate_layout(figure, top=90)
    longest = max(len(funnel.by_segment[s]) for s in SEGMENTS)
    return figure, 150 + 44 * max(longest, 3)


def _month_axis(months: Sequence[str]) -> list[str]:
    """Each ``YYYY-MM`` as its first day: a date axis with one period per month."""
    return [f"{m}-01" for m in months]


PERIOD = {"xperiod": "M1", "xperiodalignment": "middle"}
HATCH = {"shape": "/", "fillmode": "overlay", "fgcolor": "#ffffff", "fgopacity": 0.7}


def _hatched(partial: Sequence[bool]) -> dict[str, Any]:
    return {**HATCH, "shape": ["/" if p else "" for p in partial]}


def _date_axis(title: str) -> dict[str, Any]:
    return {
        "type": "date",
        "tickformat": "%b %Y",
        "ticklabelmode": "period",
        "nticks": 8,
        "title": {"text": title},
    }


def _right_axis(title: str, **extra: Any) -> dict[str, Any]:
    return {
        "overlaying": "y",
        "side": "right",
        "showgrid": False,
        "title": {"text": title, "font": {"size": TEXT_SIZE}},
        "tickfont": {"size": TICK_SIZE},
        "rangemode": "tozero",
        **extra,
    }


def month_chart(funnel: Funnel) -> go.Figure:
    table = funnel.by_month
    partial = ~table["complete"].to_numpy(dtype=bool)
    x = _month_axis(table["month"])
    figure = go.Figure()
    figure.add_bar(
        x=x,
        y=table["leads"].tolist(),
        name="Leads created",
        marker={"color": "#c9d3de", "pattern": _hatched(partial)},
        hovertemplate="%{x|%b %Y}: %{y:,} leads created<extra></extra>",
        **PERIOD,
    )
    for stage, colour in (("lead_to_opportunity", BLUE), ("lead_to_won", GREEN)):
        figure.add_scatter(
            x=x,
            y=table[stage].tolist(),
            name=STAGES[stage],
            yaxis="y2",
            mode="lines+markers",
            line={"color": colour, "width": 3},
            marker={"size": 8},
            hovertemplate="%{x|%b %Y}: %{y:.1%} " + STAGES[stage].lower() + "<extra></extra>",
            **PERIOD,
        )
    _mark_partial(figure, funnel.partial_month)
    figure.update_layout(
        margin={"l": 10, "r": 10, "t": 40, "b": 10},
        yaxis={"title": {"text": "Leads created"}, "rangemode": "tozero"},
        yaxis2=_right_axis("Share of the month's leads", tickformat=".0%"),
        xaxis=_date_axis("Month the lead was created"),
        legend={"x": 0, "xanchor": "left"},
    )
    return figure


def activity_chart(funnel: Funnel) -> go.Figure:
    table = funnel.periods
    partial = ~table["complete"].to_numpy(dtype=bool)
    x = _month_axis(table["month"])
    figure = go.Figure()
    for column, name, colour in (
        ("opportunities", "Reached opportunity", ORANGE),
        ("won_deals", "Won deals", GREEN),
    ):
        figure.add_bar(
            x=x,
            y=table[column].tolist(),
            name=name,
            marker={"color": colour, "pattern": _hatched(partial)},
            hovertemplate="%{x|%b %Y}: %{y:,} " + name.lower() + "<extra></extra>",
            **PERIOD,
        )
    figure.add_scatter(
        x=x,
        y=table["leads"].tolist(),
        name="Leads created",
        yaxis="y2",
        mode="lines+markers",
        line={"color": BLUE, "width": 3},
        hovertemplate="%{x|%b %Y}: %{y:,} leads created<extra></extra>",
        **PERIOD,
    )
    _mark_partial(figure, funnel.partial_month)
    figure.update_layout(
        barmode="group",
        margin={"l": 10, "r": 10, "t": 40, "b": 10},
        yaxis={"title": {"text": "Opportunities and won deals"}, "rangemode": "tozero"},
        yaxis2=_right_axis("Leads created"),
        xaxis=_date_axis("Month"),
        legend={"x": 0, "xanchor": "left"},
    )
    return figure


def _mark_partial(figure: go.Figure, month: str | None) -> None:
    """Shade the month still under way and say so on the chart."""
    if month is None:
        return
    start = pd.Timestamp(f"{month}-01")
    end = start + pd.offsets.MonthBegin(1)
    figure.add_vrect(
        x0=start.strftime("%Y-%m-%d"),
        x1=end.strftime("%Y-%m-%d"),
        fillcolor="#fdf3e7",
        line_width=0,
        layer="below",
    )
    figure.add_annotation(
        x=(start + (end - start) / 2).strftime("%Y-%m-%d"),
        y=1,
        yref="paper",
        yanchor="bottom",
        text="partial month",
        showarrow=False,
        font={"size": TICK_SIZE, "color": MUTED},
    )


def velocity_chart(funnel: Funnel) -> tuple[go.Figure, int]:
    table = funnel.by_source
    labels = ["All leads", *(plain(s) for s in table["source"])]
    figure = go.Figure()
    for column, name, colour in (
        ("median_days_to_opportunity", "Lead to opportunity", BLUE),
        ("median_days_to_won", "Opportunity to won", GREEN),
    ):
        values = [funnel.totals[column], *table[column].tolist()]
        figure.add_bar(
            y=labels,
            x=[0.0 if v is None or pd.isna(v) else v for v in values],
            name=name,
            orientation="h",
            marker_color=colour,
            text=[days(v) for v in values],
            textposition="outside",
            cliponaxis=False,
            hovertemplate="%{y}: median %{text} " + name.lower() + "<extra></extra>",
        )
    figure.update_layout(
        barmode="group",
        bargap=0.25,
        margin={"l": 10, "r": 40, "t": 40, "b": 10},
        xaxis={"title": {"text": "Median days in the stage"}},
        yaxis={"autorange": "reversed"},
    )
    return figure, 110 + 44 * len(labels)


def scored(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows that hold a score (a batch file also lists closed and stale rows)."""
    if "status" in frame.columns:
        frame = frame[frame["status"].astype(str) == "scored"]
    column = "probability" if "probability" in frame.columns else "score"
    return frame[frame[column].notna()]


def _score_values(frame: pd.DataFrame) -> pd.Series:
    if "score" in frame.columns and frame["score"].notna().all():
        return frame["score"].astype(float)
    return (frame["probability"].astype(float) * 100).round()


def score_chart(frame: pd.DataFrame, model: str) -> go.Figure:
    scores = _score_values(frame)
    who = "leads" if model == "lead_conversion" else "accounts"
    meaning = "likely to convert" if model == "lead_conversion" else "likely to leave"
    figure = go.Figure(
        go.Histogram(
            x=scores.tolist(),
            xbins={"start": 0, "end": 100, "size": 5},
            marker_color=BLUE if model == "lead_conversion" else RED,
            hovertemplate="score %{x}: %{y:,} " + who + "<extra></extra>",
        )
    )
    figure.update_layout(
        margin={"l": 10, "r": 10, "t": 10, "b": 10},
        bargap=0.05,
        xaxis={"range": [0, 100], "title": {"text": f"Score (1–99; higher: more {meaning})"}},
        yaxis={"title": {"text": who.capitalize()}},
        showlegend=False,
    )
    return figure


def risk_chart(frame: pd.DataFrame, currency: str) -> go.Figure | None:
    if "revenue_at_risk" not in frame.columns or "risk_band" not in frame.columns:
        return None
    by_band = frame.groupby(frame["risk_band"].astype(str))["revenue_at_risk"].agg(["sum", "size"])
    bands = [b for b in RISK_BANDS if b in by_band.index] + [
        b for b in by_band.index if b not in RISK_BANDS
    ]
    by_band = by_band.reindex(bands)
    figure = go.Figure(
        go.Bar(
            x=[f"{plain(b)} risk" for b in bands],
            y=by_band["sum"].tolist(),
            marker_color=[
                {"high": RED, "medium": ORANGE, "low": GREEN}.get(b, GREY) for b in bands
            ],
            text=[money(v, currency) for v in by_band["sum"]],
            textposition="outside",
            cliponaxis=False,
            customdata=by_band["size"].tolist(),
            hovertemplate="%{x}: %{text} at risk over %{customdata:,} accounts<extra></extra>",
        )
    )
    symbol = CURRENCY_SYMBOLS.get(currency.upper(), "")
    figure.update_layout(
        margin={"l": 10, "r": 10, "t": 30, "b": 10},
        yaxis={"title": {"text": f"Revenue at risk ({currency.upper()})"}, "tickprefix": symbol},
        xaxis={"title": {"text": "Churn risk band"}},
        showlegend=False,
    )
    return figure


# ----------------------------------------------------------------------------- page
