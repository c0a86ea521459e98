"""The marketer's attribution report: one self-contained HTML page with charts.

The page holds inline SVG charts drawn with matplotlib (no script, no font or network request), so
it opens from disk, in a mail attachment or on a file share. Sections: credit by channel and by
content under each model side by side, the top converting paths, time to conversion and path
length, content ROI (credited revenue ÷ campaign cost) and the monthly trend.

The tables behind the charts come from :mod:`training.attribution.summaries`, so the notebook
and tests use the same numbers the page shows; this module only draws and lays out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path

import jinja2
import numpy as np
import pandas as pd

from crm.io import atomic_file
from reports.attribution_trust import trust_section
from reports.svg_charts import PALETTE
from reports.svg_charts import figure as _figure
from reports.svg_charts import html_table as _table
from reports.svg_charts import svg as _svg
from training.attribution.credit import Attribution
from training.attribution.evaluate import tvd_table
from training.attribution.journeys import NO_CONTENT, Journeys
from training.attribution.summaries import (
    content_roi,
    headline_model,
    monthly_trend,
    path_lengths,
    share_matrix,
    time_to_conversion,
    top_paths,
)


def _shorten(text: str, width: int = 48) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _heatmap(matrix: pd.DataFrame, title: str, key: str, fmt: str = "{:.0%}") -> str:
    rows, cols = matrix.shape
    fig, ax = _figure(max(5.5, 0.9 * cols + 2.5), max(2.5, 0.34 * rows + 1.4))
    values = matrix.to_numpy(dtype=float)
    image = ax.imshow(
        values, aspect="auto", cmap="Blues", vmin=0, vmax=max(float(np.nanmax(values)), 1e-9)
    )
    ax.set_xticks(
        range(cols), [c.replace("_", " ") for c in matrix.columns], rotation=30, ha="right"
    )
    ax.set_yticks(range(rows), [_shorten(str(i), 32) for i in matrix.index])
    top = np.nanmax(values) if values.size else 0
    for (i, j), v in np.ndenumerate(values):
        ax.text(
            j,
            i,
            fmt.format(v),
            ha="center",
            va="center",
            fontsize=8,
            color="white" if v > 0.6 * top else "#1f2933",
        )
    ax.set_title(title, fontsize=11, loc="left")
    fig.colorbar(image, ax=ax, fraction=0.03, pad=0.02)
    return _svg(fig, key)


def _barh(
    labels: Sequence[str],
    values: Sequence[float],
    title: str,
    key: str,
    xlabel: str,
    annotations: Sequence[str] | None = None,
    color: str = PALETTE[0],
) -> str:
    fig, ax = _figure(6.4, max(2.2, 0.34 * len(labels) + 1.0))
    y = np.arange(len(labels))[::-1]
    ax.barh(y, values, color=color)
    ax.set_yticks(y, [_shorten(str(label)) for label in labels])
    ax.set_xlabel(xlabel, fontsize=9)
    ax.set_title(title, fontsize=11, loc="left")
    if annotations is not None:
        for yi, v, text in zip(y, values, annotations, strict=True):
            ax.text(v, yi, f" {text}", va="center", fontsize=8, color="#3e4c59")
        ax.set_xlim(0, max(values) * 1.25 if len(values) and max(values) > 0 else 1)
    return _svg(fig, key)


def _compact(x: float) -> str:
    for bound, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= bound:
            return f"{x / bound:.1f}{suffix}"
    return f"{x:,.0f}" if abs(x) >= 10 else f"{x:,.1f}"


# ----------------------------------------------------------------------------- page
def _chart(key: str, svg: str, caption: str) -> dict[str, str]:
    return {"id": key, "svg": svg, "caption": caption}


def _channel_section(results: Sequence[Attribution], truth: dict | None) -> dict:
    shares = share_matrix(results, "channel")
    if truth is not None:
        true = truth["channel"].set_index(truth["channel"]["channel"].astype(str))["share"]
        shares["truth (simulated)"] = true.reindex(shares.index).fillna(0.0)
    headline = headline_model(results)
    frame = headline.channels.sort_values("conversions", ascending=False)
    bar = _barh(
        frame["channel"].astype(str).tolist(),
        frame["conversions"].tolist(),
        f"Credited conversions by channel — {headline.model.replace('_', ' ')}",
        "channel-headline",
        "conversions",
        [
            f"{s:.0%} · revenue {_compact(v)}"
            for s, v in zip(frame["share"], frame["value"], strict=True)
        ],
    )
    order = shares.mean(axis=1).sort_values(ascending=False).index
    heat = _heatmap(
        shares.loc[order], "Share of conversions by channel, each model", "channel-models"
    )
    note = ""
    if truth is not None:
        tvd = tvd_table(results, truth)
        note = (
            "Distance from the simulated truth (total variation, 0 = exact): "
            + ", ".join(
                f"{m.replace('_', ' ')} {t:.3f}"
                for m, t in zip(tvd["model"], tvd["tvd"], strict=True)
            )
            + "."
        )
    return {
        "id": "channels",
        "title": "Credit by channel",
        "lead": "Which channels bring conversions. Models disagree where journeys mix channels; "
        "read the heat map across a row to see how much a channel's credit depends on "
        "the model.",
        "charts": [
            _chart("channel-headline", bar, f"Headline model: {headline.model}."),
            _chart("channel-models", heat, "Each column sums to 100 %."),
        ],
        "note": note,
    }


def _named(ids: Sequence[str], names: Mapping[str, str] | None) -> list[str]:
    return [str(i) if names is None or i not in names else f"{names[i]} ({i})" for i in ids]


def _content_section(
    results: Sequence[Attribution], top: int, names: Mapping[str, str] | None
) -> dict:
    with_content = [r for r in results if not r.content.empty]
    if not with_content:
        return {
            "id": "content",
            "title": "Credit by content",
            "lead": "",
            "charts": [],
            "empty": "These journeys carry no content (aggregated paths).",
        }
    shares = share_matrix(with_content, "content")
    items = shares.drop(index=NO_CONTENT, errors="ignore")
    order = items.mean(axis=1).sort_values(ascending=False).index[:top]
    heat = _heatmap(
        items.loc[order].set_axis(_named(list(order), names)),
        f"Share of conversions, top {len(order)} content items",
        "content-models",
        fmt="{:.1%}",
    )
    headline = headline_model(with_content)
    frame = headline.content[headline.content["content_id"] != NO_CONTENT]
    frame = frame.sort_values("value", ascending=False).head(top)
    bar = _barh(
        _named(frame["content_id"].astype(str).tolist(), names),
        frame["value"].tolist(),
        f"Credited revenue by content — {headline.model.replace('_', ' ')}",
        "content-revenue",
        "revenue",
        [f"{c:.1f} conv." for c in frame["conversions"]],
        color=PALETTE[2],
    )
    none_share = shares.loc[NO_CONTENT].mean() if NO_CONTENT in shares.index else 0.0
    return {
        "id": "content",
        "title": "Credit by content",
        "lead": "Which content items move leads to convert, under each model.",
        "charts": [
            _chart("content-models", heat, "Shares of all conversions."),
            _chart("content-revenue", bar, f"Headline model: {headline.model}."),
        ],
        "note": f"Touches without content hold {none_share:.0%} of the credit on average "
        "(not shown).",
    }


def _paths_section(journeys: Journeys, top: int) -> dict:
    paths = top_paths(journeys, top)
    if paths.empty:
        return {
            "id": "paths",
            "title": "Top converting paths",
            "lead": "",
            "charts": [],
            "empty": "No converting path.",
        }
    bar = _barh(
        paths["path"].tolist(),
        paths["conversions"].tolist(),
        "Conversions by path",
        "paths",
        "conversions",
        [f"{r:.1%} convert" for r in paths["rate"]],
        color=PALETTE[1],
    )
    table = _table(
        paths[["path", "conversions", "journeys", "rate", "value"]],
        {"conversions": "{:,.0f}", "journeys": "{:,.0f}", "rate": "{:.1%}", "value": "{:,.0f}"},
    )
    return {
        "id": "paths",
        "title": "Top converting paths",
        "lead": "The channel sequences behind most conversions, with how often each converts.",
        "charts": [_chart("paths", bar, "Channels in touch order.")],
        "table": table,
    }


def _timing_section(journeys: Journeys) -> dict:
    charts = []
    days = time_to_conversion(journeys)
    if not days.empty:
        fig, ax = _figure(6.0, 3.2)
        ax.hist(days, bins=min(40, max(5, int(days.max()) + 1)), color=PALETTE[0])
        ax.axvline(days.median(), color=PALETTE[3], linestyle="--")
        ax.text(
            days.median(),
            ax.get_ylim()[1] * 0.92,
            f" median {days.median():.0f} days",
            fontsize=8,
            color=PALETTE[3],
        )
        ax.set_xlabel("days from first touch to conversion", fontsize=9)
        ax.set_ylabel("conversions", fontsize=9)
        ax.set_title("Time to conversion", fontsize=11, loc="left")
        charts.append(
            _chart(
                "time-to-conversion", _svg(fig, "time-to-conversion"), "Within the lookback window."
            )
        )
    lengths = path_lengths(journeys)
    fig, ax = _figure(6.0, 3.2)
    x = lengths["touches"].to_numpy()
    ax.bar(x, lengths["conversion_rate"].fillna(0.0), color=PALETTE[2])
    ax.set_xticks(x, [str(v) if v < x.max() else f"{v}+" for v in x])
    ax.set_xlabel("touches in the journey", fontsize=9)
    ax.set_ylabel("conversion rate", fontsize=9)
    ax.yaxis.set_major_formatter(lambda v, _: f"{v:.0%}")
    ax.set_title("Path length and conversion rate", fontsize=11, loc="left")
    for xi, conv in zip(x, lengths["converting"], strict=True):
        ax.text(xi, 0, f"{conv:,.0f}", ha="center", va="bottom", fontsize=7, color="white")
    charts.append(
        _chart(
            "path-length", _svg(fig, "path-length"), "Bars: conversion rate; numbers: conversions."
        )
    )
    return {
        "id": "timing",
        "title": "Time to conversion and path length",
        "lead": "How long and how many touches it takes.",
        "charts": charts,
    }


def _roi_section(
    results: Sequence[Attribution],
    costs: pd.DataFrame | None,
    top: int,
    names: Mapping[str, str] | None,
) -> dict:
    base = {
        "id": "roi",
        "title": "Content ROI",
        "lead": "Credited revenue for each euro or dollar of campaign cost behind the "
        "content (campaign costs split over the content their touches carried).",
        "charts": [],
    }
    with_content = [r for r in results if not r.content.empty]
    if costs is None or not with_content:
        return {**base, "empty": "No campaign costs or no content in these journeys."}
    headline = headline_model(with_content)
    roi = content_roi(headline, costs)
    if roi.empty:
        return {**base, "empty": "No content item carries campaign cost."}
    shown = roi.head(top)
    bar = _barh(
        _named(shown["content_id"].astype(str).tolist(), names),
        shown["roi"].tolist(),
        f"Revenue per unit of cost — {headline.model.replace('_', ' ')}",
        "roi",
        "credited revenue ÷ cost",
        [
            f"{r:.1f}× · cost {_compact(c)}"
            for r, c in zip(shown["roi"], shown["cost"], strict=True)
        ],
        color=PALETTE[4],
    )
    table = _table(
        shown[["content_id", "conversions", "value", "cost", "roi"]],
        {"conversions": "{:,.1f}", "value": "{:,.0f}", "cost": "{:,.0f}", "roi": "{:.2f}"},
    )
    return {**base, "charts": [_chart("roi", bar, "Best first.")], "table": table}


def _trend_section(journeys: Journeys) -> dict:
    trend = monthly_trend(journeys)
    base = {
        "id": "trend",
        "title": "Monthly trend",
        "lead": "Conversions and revenue by month of conversion, and the channel mix behind "
        "them (linear touch).",
        "charts": [],
    }
    if trend.empty:
        return {**base, "empty": "Aggregated paths carry no dates."}
    months = trend["month"]
    fig, ax = _figure(6.0, 3.2)
    ax.plot(months, trend["conversions"], marker="o", color=PALETTE[0], label="conversions")
    ax.set_ylabel("conversions", fontsize=9)
    right = ax.twinx()
    right.plot(months, trend["value"], marker="s", color=PALETTE[1], label="revenue")
    right.set_ylabel("revenue", fontsize=9)
    right.spines[["top"]].set_visible(False)
    right.tick_params(labelsize=9)
    right.yaxis.set_major_formatter(lambda v, _: _compact(v))
    ax.set_title("Conversions and revenue", fontsize=11, loc="left")
    fig.legend(loc="upper left", fontsize=8, frameon=False, bbox_to_anchor=(0.08, 0.88))
    fig.autofmt_xdate()
    line = _svg(fig, "trend-totals")
    channels = [c for c in trend.columns if c not in ("month", "conversions", "value")]
    channels = sorted(channels, key=lambda c: -trend[c].sum())
    fig, ax = _figure(6.0, 3.2)
    ax.stackplot(
        months,
        [trend[c] for c in channels],
        labels=channels,
        colors=[PALETTE[i % len(PALETTE)] for i in range(len(channels))],
    )
    ax.set_ylabel("credited conversions", fontsize=9)
    ax.set_title("Channel mix by month", fontsize=11, loc="left")
    ax.legend(fontsize=7, ncols=2, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.autofmt_xdate()
    stack = _svg(fig, "trend-channels")
    return {
        **base,
        "charts": [
            _chart("trend-totals", line, "By month of conversion."),
            _chart("trend-channels", stack, "Linear-touch credit."),
        ],
    }


def build_report(
    journeys: Journeys,
    results: Sequence[Attribution],
    costs: pd.DataFrame | None = None,
    truth: dict[str, pd.DataFrame] | None = None,
    title: str = "Attribution report",
    top: int = 15,
    content_names: Mapping[str, str] | None = None,
    intervals: pd.DataFrame | None = None,
) -> str:
    """Render the report page.

    Args:
        journeys: the journeys the models credited.
        results: model results, shown side by side in the order given.
        costs: campaign cost per content item (:func:`content_costs`), for content ROI.
        truth: simulator truth (:func:`training.attribution.evaluate.read_truth`), shown beside
            the models when given.
        title: page title.
        top: how many paths and content items to show.
        content_names: content id → title, to label content charts.
        intervals: bootstrap intervals of the channel shares
            (:func:`training.attribution.models.model_intervals`), for the trust section.

    Returns:
        The HTML page, self-contained.
    """
    if not results:
        raise ValueError("the report needs at least one model result")
    dropped = dict(journeys.dropped)
    kpis = [
        {"label": "journeys", "value": f"{journeys.total_journeys:,.0f}"},
        {"label": "conversions", "value": f"{journeys.total_conversions:,.0f}"},
        {
            "label": "conversion rate",
            "value": f"{journeys.total_conversions / max(journeys.total_journeys, 1):.1%}",
        },
        {"label": "revenue credited", "value": _compact(journeys.total_value)},
        {"label": "channels", "value": str(int((np.bincount(journeys.channel) > 0).sum()))},
        {"label": "models", "value": str(len(results))},
    ]
    if dropped.get("conversions_without_touch"):
        kpis.append(
            {
                "label": "conversions with no touch (not credited)",
                "value": f"{dropped['conversions_without_touch']:,.0f}",
            }
        )
    trust = trust_section(results, intervals)
    sections = [
        *([trust] if trust else []),
        _channel_section(results, truth),
        _content_section(results, top, content_names),
        _paths_section(journeys, min(top, 10)),
        _timing_section(journeys),
        _roi_section(results, costs, top, content_names),
        _trend_section(journeys),
    ]
    template = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined).from_string(
        resources.files("reports")
        .joinpath("templates/attribution.html")
        .read_text(encoding="utf-8")
    )
    for section in sections:
        section.setdefault("table", "")
        section.setdefault("note", "")
        section.setdefault("empty", "")
    models = ", ".join(r.model.replace("_", " ") for r in results)
    return template.render(
        title=title,
        subtitle=f"Source: {journeys.source or 'journeys'} · models: {models}",
        kpis=kpis,
        sections=sections,
        footnote="Credit sums to the conversions (and revenue) of journeys with at least one "
        "touch; shares are within each model. Generated by crm-intel.",
    )


def write_report(page: str, out: Path | str) -> Path:
    """Write the page atomically; returns the path."""
    out = Path(out)
    with atomic_file(out) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return out
