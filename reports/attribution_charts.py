"""The attribution page's words and charts: plain names for models and channels, and one Plotly
figure per chart in the shared style of :mod:`reports.page_style`. Each function draws one
view (a model and a period); :mod:`reports.attribution` builds every view and lays them out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from reports.page_style import (
    BLUE,
    CURRENCY_SYMBOLS,
    GREEN,
    GREY,
    INK,
    MUTED,
    ORANGE,
    RED,
    TEXT_SIZE,
    TICK_SIZE,
    money,
    percent,
    plain,
)

MODEL_NAMES = {
    "first_touch": "First touch",
    "last_touch": "Last touch",
    "linear": "Linear",
    "time_decay": "Time decay",
    "position_based": "U-shaped",
    "markov_1": "Markov chain, 1 step",
    "markov_2": "Markov chain, 2 steps",
    "markov_3": "Markov chain, 3 steps",
    "shapley": "Shapley on channel sets",
    "data_driven": "Data-driven",
    "data_driven_shapley": "Data-driven, shared fairly",
}
MODEL_ABOUT = {
    "first_touch": "All the credit goes to the first touch of the journey.",
    "last_touch": "All the credit goes to the last touch before the conversion.",
    "linear": "Every touch of the journey gets an equal part of the credit.",
    "time_decay": "Touches closer to the conversion get more credit (the weight halves every "
    "{half_life:g} days back).",
    "position_based": "40 % to the first touch, 40 % to the last, 20 % shared by the touches "
    "between.",
    "markov_1": "Channels as steps of a chain learned from all journeys; a channel gets the "
    "conversions lost when it is taken out of the chain. Remembers the last step.",
    "markov_2": "The Markov chain remembering the last two steps.",
    "markov_3": "The Markov chain remembering the last three steps.",
    "shapley": "A channel's fair share of the conversion rates of the channel combinations it "
    "appears in (order and repeats are ignored).",
    "data_driven": "A model learned from the journeys predicts each journey's chance to convert; "
    "a channel gets the conversions the model says would be lost without its touches.",
    "data_driven_shapley": "The learned model's chance to convert, shared among each journey's "
    "channels so that every order of adding them counts the same.",
}
NO_CONTENT_NAME = "No content"
CONTENT_TYPE_NAMES = {"(no content)": NO_CONTENT_NAME, "(no touches)": "Campaigns with no touch"}


def model_name(model: str) -> str:
    return MODEL_NAMES.get(model, plain(model))


def model_about(model: str, half_life_days: float = 7.0) -> str:
    return MODEL_ABOUT.get(model, "").format(half_life=half_life_days)


def channel_name(channel: object) -> str:
    return plain(channel)


def content_type_name(kind: object) -> str:
    return CONTENT_TYPE_NAMES.get(str(kind), plain(kind))


def shorten(text: str, width: int = 42) -> str:
    return text if len(text) <= width else text[: width - 1].rstrip() + "…"


def times(value: float | None) -> str:
    """A return on spend: ``3.2×``."""
    return "–" if value is None or pd.isna(value) else f"{value:,.1f}×"


def _bar_height(rows: int) -> int:
    return 110 + 30 * max(rows, 3)


def _money_axis(currency: str, title: str) -> dict:
    symbol = CURRENCY_SYMBOLS.get(currency.upper(), "")
    return {"title": {"text": title}, "tickprefix": symbol, "tickformat": "~s"}


def _room_for_labels(values: Sequence[float], axis: dict) -> dict:
    """``axis`` with a range that leaves room for the labels written beyond the longest bar."""
    top = max((float(v) for v in values if pd.notna(v)), default=0.0)
    return {**axis, "range": [0, top * 1.3 if top > 0 else 1.0]}


def _bars_layout(figure: go.Figure, rows: int, **layout: object) -> tuple[go.Figure, int]:
    figure.update_layout(
        margin={"l": 10, "r": 40, "t": 40, "b": 10},
        yaxis={"autorange": "reversed"},
        bargap=0.25,
        **layout,
    )
    return figure, _bar_height(rows)


# ----------------------------------------------------------------------------- trust
def interval_chart(shares: pd.DataFrame) -> tuple[go.Figure, int]:
    """The recommended model's channel shares with their bootstrap intervals; channels whose
    interval includes zero in grey. ``shares``: ``channel``, ``share``, ``share_low``,
    ``share_high``, ``includes_zero``."""
    uncertain = shares["includes_zero"].fillna(False).to_numpy(dtype=bool)
    low = (shares["share"] - shares["share_low"].fillna(shares["share"])).clip(lower=0)
    high = (shares["share_high"].fillna(shares["share"]) - shares["share"]).clip(lower=0)
    ranges = [
        f"{percent(lo)} to {percent(hi)}" if pd.notna(lo) else "not computed"
        for lo, hi in zip(shares["share_low"], shares["share_high"], strict=True)
    ]
    figure = go.Figure(
        go.Bar(
            y=[channel_name(c) for c in shares["channel"]],
            x=shares["share"].tolist(),
            orientation="h",
            marker_color=[GREY if u else BLUE for u in uncertain],
            error_x={
                "type": "data",
                "symmetric": False,
                "array": high.tolist(),
                "arrayminus": low.tolist(),
                "color": INK,
                "thickness": 1.5,
            },
            customdata=ranges,
            hovertemplate="%{y}: %{x:.1%} of conversions<br>90 % interval: %{customdata}"
            "<extra></extra>",
        )
    )
    return _bars_layout(
        figure, len(shares), xaxis={"tickformat": ".0%", "title": {"text": "Share of conversions"}}
    )


def disagreement_chart(disagreement: Mapping[str, float]) -> tuple[go.Figure, int]:
    """How far each other model's channel shares are from the recommended model's (total
    variation: the share of credit that would have to move)."""
    items = sorted(disagreement.items(), key=lambda kv: -kv[1])
    figure = go.Figure(
        go.Bar(
            y=[model_name(m) for m, _ in items],
            x=[d for _, d in items],
            orientation="h",
            marker_color=[RED if d >= 0.1 else ORANGE for _, d in items],
            text=[percent(d, 0) for _, d in items],
            textposition="outside",
            cliponaxis=False,
            hovertemplate="%{y}: %{x:.1%} of the credit would move<extra></extra>",
        )
    )
    return _bars_layout(
        figure,
        len(items),
        xaxis={"tickformat": ".0%", "title": {"text": "Share of credit placed differently"}},
    )


# ----------------------------------------------------------------------------- channels
def channel_revenue_chart(table: pd.DataFrame, currency: str) -> tuple[go.Figure, int]:
    """Credited revenue per channel. ``table``: ``channel``, ``value``, ``conversions``."""
    figure = go.Figure(
        go.Bar(
            y=[channel_name(c) for c in table["channel"]],
            x=table["value"].tolist(),
            orientation="h",
            marker_color=BLUE,
            text=[money(v, currency) for v in table["value"]],
            textposition="outside",
            cliponaxis=False,
            customdata=[f"{c:,.1f}" for c in table["conversions"]],
            hovertemplate="%{y}: %{text} credited, %{customdata} conversions<extra></extra>",
        )
    )
    return _bars_layout(
        figure,
        len(table),
        xaxis=_room_for_labels(
            table["value"], _money_axis(currency, f"Credited revenue ({currency.upper()})")
        ),
    )


def return_chart(
    labels: Sequence[str], table: pd.DataFrame, currency: str, what: str
) -> tuple[go.Figure, int]:
    """Return on spend per row of ``table`` (``return_on_spend``, ``spend``, ``value``,
    ``conversions``), with the break-even line at 1×."""
    ratio = table["return_on_spend"].fillna(0.0)
    figure = go.Figure(
        go.Bar(
            y=list(labels),
            x=ratio.tolist(),
            orientation="h",
            marker_color=[GREEN if r >= 1 else RED for r in ratio],
            text=[
                f"{times(r)} on {money(s, currency)}"
                for r, s in zip(table["return_on_spend"], table["spend"], strict=True)
            ],
            textposition="outside",
            cliponaxis=False,
            customdata=[
                [money(s, currency), money(v, currency), f"{c:,.1f}"]
                for s, v, c in zip(
                    table["spend"], table["value"], table["conversions"], strict=True
                )
            ],
            hovertemplate="%{y}<br>spend %{customdata[0]}, credited revenue %{customdata[1]}, "
            "%{customdata[2]} conversions<extra></extra>",
        )
    )
    figure.add_vline(
        x=1.0,
        line={"color": MUTED, "dash": "dash", "width": 1},
        annotation={"text": "break-even", "font": {"size": TICK_SIZE, "color": MUTED}},
        annotation_position="top",
    )
    return _bars_layout(
        figure,
        len(table),
        xaxis=_room_for_labels(
            ratio, {"title": {"text": f"Credited revenue per unit spent, by {what}"}}
        ),
    )


def wrapped(text: str, width: int = 12) -> str:
    """Words on lines of about ``width`` characters, joined by ``<br>`` (column labels)."""
    lines: list[str] = []
    for word in text.split():
        if lines and len(lines[-1]) + 1 + len(word) <= width:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return "<br>".join(lines)


def share_heatmap(shares: pd.DataFrame) -> tuple[go.Figure, int]:
    """Share of conversions per channel (rows) under each model (columns)."""
    rows = [channel_name(c) for c in shares.index]
    columns = [wrapped(model_name(m)) for m in shares.columns]
    values = shares.to_numpy(dtype=float)
    figure = go.Figure(
        go.Heatmap(
            z=values.round(4).tolist(),
            x=columns,
            y=rows,
            text=[[percent(v, 0) for v in row] for row in values],
            texttemplate="%{text}",
            textfont={"size": TICK_SIZE},
            colorscale="Blues",
            zmin=0,
            showscale=False,
            xgap=2,
            ygap=2,
            hovertemplate="%{y} under %{x}: %{z:.1%} of conversions<extra></extra>",
        )
    )
    figure.update_layout(
        margin={"l": 10, "r": 10, "t": 10, "b": 10},
        xaxis={"side": "top", "tickangle": 0, "automargin": True},
        yaxis={"autorange": "reversed"},
        plot_bgcolor="#ffffff",
    )
    return figure, 150 + 34 * len(rows)


# ----------------------------------------------------------------------------- content
def content_revenue_chart(table: pd.DataFrame, currency: str) -> tuple[go.Figure, int]:
    """Credited revenue per content item, by title. ``table``: ``title``, ``type``, ``value``,
    ``conversions``."""
    figure = go.Figure(
        go.Bar(
            y=[shorten(t) for t in table["title"]],
            x=table["value"].tolist(),
            orientation="h",
            marker_color=GREEN,
            text=[money(v, currency) for v in table["value"]],
            textposition="outside",
            cliponaxis=False,
            customdata=[
                [title, content_type_name(kind), f"{c:,.1f}"]
                for title, kind, c in zip(
                    table["title"], table["type"], table["conversions"], strict=True
                )
            ],
            hovertemplate="%{customdata[0]} (%{customdata[1]})<br>%{text} credited, "
            "%{customdata[2]} conversions<extra></extra>",
        )
    )
    return _bars_layout(
        figure,
        len(table),
        xaxis=_room_for_labels(
            table["value"], _money_axis(currency, f"Credited revenue ({currency.upper()})")
        ),
    )


def content_type_chart(table: pd.DataFrame, currency: str) -> tuple[go.Figure, int]:
    """Credited revenue beside spend per content type. ``table``: ``content_type``, ``value``,
    ``spend``."""
    names = [content_type_name(k) for k in table["content_type"]]
    figure = go.Figure(
        [
            go.Bar(
                x=names,
                y=table["value"].tolist(),
                name="Credited revenue",
                marker_color=BLUE,
                hovertemplate="%{x}: %{y:,.0f} credited<extra></extra>",
            ),
            go.Bar(
                x=names,
                y=table["spend"].tolist(),
                name="Spend",
                marker_color=ORANGE,
                hovertemplate="%{x}: %{y:,.0f} spent<extra></extra>",
            ),
        ]
    )
    figure.update_layout(
        barmode="group",
        margin={"l": 10, "r": 10, "t": 40, "b": 10},
        yaxis={**_money_axis(currency, f"Amount ({currency.upper()})"), "type": "log"},
    )
    return figure, 380


# ----------------------------------------------------------------------------- journeys
def paths_chart(paths: pd.DataFrame) -> tuple[go.Figure, int]:
    """Conversions of the top paths (``path`` with `` > ``-joined channels, ``conversions``,
    ``rate``)."""
    labels = [" → ".join(channel_name(c) for c in p.split(" > ")) for p in paths["path"]]
    figure = go.Figure(
        go.Bar(
            y=[shorten(label, 56) for label in labels],
            x=paths["conversions"].tolist(),
            orientation="h",
            marker_color=ORANGE,
            text=[
                f"{c:,.0f} · {percent(r)} convert"
                for c, r in zip(paths["conversions"], paths["rate"], strict=True)
            ],
            textposition="outside",
            cliponaxis=False,
            customdata=labels,
            hovertemplate="%{customdata}<br>%{text}<extra></extra>",
        )
    )
    return _bars_layout(
        figure,
        len(paths),
        xaxis=_room_for_labels(paths["conversions"], {"title": {"text": "Conversions"}}),
    )


def time_to_conversion_chart(days: pd.Series, lookback_days: float) -> tuple[go.Figure, int]:
    """Conversions by days from the first touch, with the look-back edge named."""
    width = max(1.0, float(np.ceil(lookback_days / 30)))
    edges = np.arange(0.0, lookback_days + width, width)
    counts, _ = np.histogram(days.clip(upper=lookback_days - 1e-9), bins=edges)
    centres = (edges[:-1] + edges[1:]) / 2
    edge = np.zeros(len(counts), dtype=bool)
    edge[-1] = True
    figure = go.Figure(
        go.Bar(
            x=centres.tolist(),
            y=counts.tolist(),
            width=width * 0.9,
            marker_color=[ORANGE if e else BLUE for e in edge],
            hovertemplate="%{x:.0f} days: %{y:,} conversions<extra></extra>",
        )
    )
    median = float(days.median()) if len(days) else 0.0
    figure.add_vline(
        x=median,
        line={"color": RED, "dash": "dash", "width": 1.5},
        annotation={"text": f"median {median:.0f} days", "font": {"size": TICK_SIZE, "color": RED}},
        annotation_position="top right",
    )
    figure.add_annotation(
        x=lookback_days,
        y=1.0,
        yref="paper",
        xanchor="right",
        yanchor="bottom",
        showarrow=False,
        text=f"{lookback_days:g}-day look-back edge",
        font={"size": TICK_SIZE, "color": ORANGE},
    )
    figure.update_layout(
        margin={"l": 10, "r": 10, "t": 40, "b": 10},
        xaxis={
            "title": {"text": "Days from first touch to conversion"},
            "range": [0, lookback_days + width],
        },
        yaxis={"title": {"text": "Conversions"}},
    )
    return figure, 360


def path_length_chart(lengths: pd.DataFrame) -> tuple[go.Figure, int]:
    """Conversion rate by touches in the journey (``touches``, ``conversion_rate``,
    ``converting``)."""
    top = int(lengths["touches"].max())
    labels = [str(t) if t < top else f"{t}+" for t in lengths["touches"]]
    figure = go.Figure(
        go.Bar(
            x=labels,
            y=lengths["conversion_rate"].fillna(0.0).tolist(),
            marker_color=GREEN,
            text=[f"{c:,.0f}" for c in lengths["converting"]],
            textposition="outside",
            cliponaxis=False,
            hovertemplate="%{x} touches: %{y:.1%} convert (%{text} conversions)<extra></extra>",
        )
    )
    figure.update_layout(
        margin={"l": 10, "r": 10, "t": 40, "b": 10},
        xaxis={"title": {"text": "Touches in the journey"}, "type": "category"},
        yaxis={"title": {"text": "Conversion rate"}, "tickformat": ".0%"},
    )
    return figure, 360


# ----------------------------------------------------------------------------- months
def _partial_band(figure: go.Figure, month: pd.Timestamp | None) -> None:
    if month is None:
        return
    figure.add_vrect(
        x0=month - pd.Timedelta(days=15),
        x1=month + pd.Timedelta(days=15),
        fillcolor=GREY,
        opacity=0.25,
        line_width=0,
    )
    figure.add_annotation(  # apart from the band: plotly cannot place a band's label on dates
        x=month,
        y=1.0,
        yref="paper",
        yanchor="bottom",
        showarrow=False,
        text="partial month",
        font={"size": TICK_SIZE, "color": MUTED},
    )


def trend_chart(
    trend: pd.DataFrame, currency: str, partial: pd.Timestamp | None
) -> tuple[go.Figure, int]:
    """Conversions (bars) and revenue (line, right axis) by month of conversion."""
    months = pd.to_datetime(trend["month"]) + pd.Timedelta(days=14)
    figure = go.Figure(
        [
            go.Bar(
                x=months,
                y=trend["conversions"].tolist(),
                name="Conversions",
                marker_color=BLUE,
                hovertemplate="%{x|%b %Y}: %{y:,} conversions<extra></extra>",
            ),
            go.Scatter(
                x=months,
                y=trend["value"].tolist(),
                name="Revenue",
                yaxis="y2",
                mode="lines+markers",
                line={"color": ORANGE, "width": 2},
                hovertemplate="%{x|%b %Y}: %{y:,.0f} revenue<extra></extra>",
            ),
        ]
    )
    _partial_band(figure, None if partial is None else partial + pd.Timedelta(days=14))
    figure.update_layout(
        margin={"l": 10, "r": 10, "t": 50, "b": 10},
        xaxis={"tickformat": "%b %Y", "dtick": "M2"},
        yaxis={"title": {"text": "Conversions"}},
        yaxis2={
            **_money_axis(currency, f"Revenue ({currency.upper()})"),
            "overlaying": "y",
            "side": "right",
            "showgrid": False,
            "tickfont": {"size": TICK_SIZE},
            "title": {"text": f"Revenue ({currency.upper()})", "font": {"size": TEXT_SIZE}},
        },
    )
    return figure, 380


def channel_mix_chart(trend: pd.DataFrame, partial: pd.Timestamp | None) -> tuple[go.Figure, int]:
    """Linear-touch conversions per channel by month, stacked."""
    months = pd.to_datetime(trend["month"]) + pd.Timedelta(days=14)
    channels = [c for c in trend.columns if c not in ("month", "conversions", "value")]
    channels = sorted(channels, key=lambda c: -trend[c].sum())
    colours = [
        BLUE,
        ORANGE,
        GREEN,
        RED,
        GREY,
        "#8e6bb8",
        "#5aa9a6",
        "#c9a227",
        "#7b8794",
        "#d4708f",
        "#4c7a34",
        "#a05a2c",
    ]
    figure = go.Figure(
        [
            go.Scatter(
                x=months,
                y=trend[c].tolist(),
                name=channel_name(c),
                stackgroup="mix",
                mode="lines",
                line={"width": 0.5, "color": colours[i % len(colours)]},
                hovertemplate="%{x|%b %Y} · " + channel_name(c) + ": %{y:,.1f}<extra></extra>",
            )
            for i, c in enumerate(channels)
        ]
    )
    _partial_band(figure, None if partial is None else partial + pd.Timedelta(days=14))
    figure.update_layout(
        margin={"l": 10, "r": 10, "t": 50, "b": 10},
        xaxis={"tickformat": "%b %Y", "dtick": "M2"},
        yaxis={"title": {"text": "Conversions (linear touch)"}},
        legend={"orientation": "h", "y": -0.15, "yanchor": "top"},
    )
    return figure, 460
