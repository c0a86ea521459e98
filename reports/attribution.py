"""The marketer's attribution page: one self-contained HTML file with interactive charts.

Plotly charts (plotly.js inlined once, in the page's head: it opens from disk, offline, in a mail
attachment or on a file share). Two selectors at the top choose the **model** (the recommended
one first) and the **period** (the whole run, then each calendar quarter; partial quarters are
marked); every figure that depends on them is redrawn from data embedded in the page.

Sections: which model to trust (the recommendation, by the cross-validated conversion
log-likelihood of the data-driven model's candidates, with the intervals and how much the other
models disagree), credit, spend and return per channel, how the models compare, campaigns,
content (by title and type), the top converting paths, time to conversion and path length, and
month by month (the partial month marked). Amounts are in the settings' currency.

Every figure is built in Python for every view (model × period): :mod:`reports.attribution_views`
draws them with :mod:`reports.attribution_charts` into the page's data
(:mod:`reports.page_data`), which a small script in the page redraws from. The numbers come from
:mod:`training.attribution` (summaries, spend, periods); this module lays out the sections and
draws the ones that do not change with the selectors.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from reports.attribution_charts import (
    channel_mix_chart,
    channel_name,
    disagreement_chart,
    interval_chart,
    model_about,
    model_name,
    trend_chart,
)
from reports.attribution_views import (
    draw_campaigns,
    draw_channels,
    draw_content,
    draw_period,
    period_views,
)
from reports.page_data import PageData
from reports.page_style import CURRENCY_NAMES, month_label, percent, render_page, write_page
from training.attribution.credit import Attribution
from training.attribution.evaluate import tvd_table
from training.attribution.journeys import DEFAULT_LOOKBACK_DAYS, Journeys
from training.attribution.periods import PeriodCredit
from training.attribution.recommend import RECOMMENDED, recommendation
from training.attribution.spend import Marketing
from training.attribution.summaries import headline_model, monthly_trend

BOOTSTRAP_CAVEAT = (
    "Whiskers: 90 % of bootstrap replicates (journeys resampled, the model refitted) fall inside. "
    "They show sampling spread, not model bias: a model that credits the wrong way is wrong in "
    "every replicate."
)


# ----------------------------------------------------------------------------- fixed sections
def _trust_section(
    page: PageData,
    results: Sequence[Attribution],
    intervals: pd.DataFrame | None,
    truth: dict[str, pd.DataFrame] | None,
) -> dict[str, Any] | None:
    advice = recommendation(results, intervals)
    if advice is None:
        return None
    chosen = next(r for r in results if r.model == RECOMMENDED)
    shares = chosen.channels[["channel", "share"]].astype({"channel": str})
    if intervals is not None and not intervals.empty:
        own = intervals[intervals["model"] == RECOMMENDED][
            ["channel", "share_low", "share_high", "includes_zero"]
        ].astype({"channel": str})
        shares = shares.merge(own, on="channel", how="left")
    else:
        shares = shares.assign(share_low=np.nan, share_high=np.nan, includes_zero=False)
    shares = shares.sort_values("share", ascending=False)
    page.chart("trust-intervals", "fixed", "", interval_chart(shares))
    charts = [("trust-intervals", "The data-driven model's credit by channel, whole run", "")]
    if advice["disagreement"]:
        page.chart("model-disagreement", "fixed", "", disagreement_chart(advice["disagreement"]))
        charts.append(("model-disagreement", "How far each other model is from it, whole run", ""))
    page.table(
        "candidate-table",
        "fixed",
        "",
        ["Model form tried", "Held-out log-loss (lower predicts better)", ""],
        [
            [
                c["candidate"][:1].upper() + c["candidate"][1:],
                f"{c['cv_log_loss']:.4f}",
                "chosen" if c["candidate"] == advice["conversion_model"] else "",
            ]
            for c in advice["candidates"]
        ],
    )
    far = [m for m, d in advice["disagreement"].items() if d >= 0.1]
    uncertain = [channel_name(c) for c in advice["uncertain_channels"]]
    lead = (
        f"Over the whole run, whatever period is chosen above: trust the data-driven model. "
        f"It learned how these journeys convert "
        f"({advice['conversion_model']}), chosen among {len(advice['candidates'])} model forms "
        f"by 3-fold cross-validation because {advice['choice']}. It ranks a converting journey "
        f"above one that did not {advice['cv_auc']:.0%} of the time. The other models are rules "
        "with no such check."
    )
    if far:
        lead += (
            f" {len(far)} of them place 10 % of the credit or more differently, so the choice "
            "of model matters here."
        )
    if uncertain:
        lead += f" The data cannot tell the effect of {', '.join(uncertain)} from none."
    has_intervals = shares["share_low"].notna().any()
    note = (
        BOOTSTRAP_CAVEAT if has_intervals else "No intervals in this run (bootstrap replicates: 0)."
    )
    if truth is not None:
        tvd = tvd_table(results, truth).sort_values("tvd")
        note += (
            " Check on simulated data only (a planted truth does not exist on real data): "
            "distance of each model's channel shares from the truth: "
            + ", ".join(
                f"{model_name(m)} {percent(t)}"
                for m, t in zip(tvd["model"], tvd["tvd"], strict=True)
            )
            + "."
        )
    return {
        "id": "trust",
        "title": "Which model to trust",
        "lead": lead,
        "charts": charts,
        "tables": ["candidate-table"],
        "note": note,
    }


def _months_section(page: PageData, journeys: Journeys, currency: str) -> dict[str, Any]:
    section = {
        "id": "months",
        "title": "Month by month",
        "lead": "Conversions and revenue by month of conversion, and the channels behind them "
        "(credit shared equally over each journey's touches). Every month of the data, "
        "whatever period is chosen above.",
    }
    trend = monthly_trend(journeys)
    if trend.empty:
        return {**section, "empty": "These journeys carry no dates."}
    last = pd.Timestamp(pd.to_datetime(journeys.ended_at).max())
    month_end = last.to_period("M").end_time
    partial = pd.Timestamp(trend["month"].iloc[-1]) if last.date() < month_end.date() else None
    page.chart("trend-totals", "fixed", "", trend_chart(trend, currency, partial))
    page.chart("trend-channels", "fixed", "", channel_mix_chart(trend, partial))
    note = (
        f"{month_label(f'{partial:%Y-%m}')} is partial: the data ends on {last:%-d %b %Y}, so it "
        "may look lower than it will be."
        if partial is not None
        else ""
    )
    return {
        **section,
        "charts": [
            ("trend-totals", "Conversions and revenue", "Shaded: the month still under way."),
            ("trend-channels", "Channel mix", "Shaded: the month still under way."),
        ],
        "note": note,
    }


# ----------------------------------------------------------------------------- the page
def build_report(
    journeys: Journeys,
    results: Sequence[Attribution],
    *,
    periods: Sequence[PeriodCredit] = (),
    marketing: Marketing | None = None,
    truth: dict[str, pd.DataFrame] | None = None,
    intervals: pd.DataFrame | None = None,
    currency: str = "USD",
    lookback_days: float = DEFAULT_LOOKBACK_DAYS,
    half_life_days: float = 7.0,
    title: str = "Attribution report",
    top: int = 15,
    on_view: Callable[[str], None] | None = None,
) -> str:
    """Render the page.

    Args:
        journeys: the journeys the models credited (the whole run).
        results: each model's credit on ``journeys``; the selector lists them recommended first.
        periods: the same models on each period's journeys
            (:func:`training.attribution.periods.credit_by_period`), for the period selector.
        marketing: campaigns, interactions and the content catalogue
            (:func:`training.attribution.load_marketing`), for spend, return and content titles.
        truth: simulator truth, shown as a check beside the recommendation.
        intervals: bootstrap intervals of the whole run's channel shares.
        currency: ISO 4217 code of the amounts.
        lookback_days: the journeys' look-back window (named on the time-to-conversion chart).
        half_life_days: the time-decay model's half-life (named in its explanation).
        title: page title.
        top: how many campaigns and content items the charts show.
        on_view: called with each period's label as its figures are drawn (progress).

    Returns:
        The HTML page, self-contained (plotly.js inlined once).
    """
    if not results:
        raise ValueError("the report needs at least one model result")
    page = PageData()
    recommended = (
        RECOMMENDED
        if any(r.model == RECOMMENDED for r in results)
        else headline_model(results).model
    )
    order = [recommended, *(r.model for r in results if r.model != recommended)]
    for view in period_views(journeys, results, periods, marketing):
        for result in view.results:
            draw_channels(page, view, result, currency, intervals)
            draw_campaigns(page, view, result, currency, top)
            draw_content(page, view, result, marketing, currency, top)
        draw_period(page, view, lookback_days, currency)
        period_options = page.texts.setdefault("period-options", {"scope": "fixed", "views": {}})
        period_options["views"][view.key] = view.label
        if on_view is not None:
            on_view(view.label)
    for model in order:
        page.text("model-about", "model", model, model_about(model, half_life_days))
    trust = _trust_section(page, results, intervals, truth)
    sections = [
        *([trust] if trust else []),
        {
            "id": "channels",
            "title": "Channels: credit, spend and return",
            "lead": "What each channel brought under the chosen model, what was spent on it and "
            "what each unit spent brought back. Spend is the campaigns' cost (over a period, the "
            "share of each campaign's days in it).",
            "charts": [
                ("channel-revenue", "Credited revenue", ""),
                (
                    "channel-return",
                    "Return on spend",
                    "Credited revenue ÷ spend, on the channels with "
                    "campaign spend; below 1× the "
                    "channel brought back less than it cost.",
                ),
            ],
            "tables": ["channel-table"],
        },
        {
            "id": "models",
            "title": "How the models compare",
            "lead": "Each column is one model's split of the conversions over the channels "
            "(each sums to 100 %). Rows that change colour across a row depend on the model.",
            "charts": [("channel-models", "Share of conversions by channel, each model", "")],
        },
        {
            "id": "campaigns",
            "title": "Campaigns",
            "lead": "Return on each campaign's spend under the chosen model. A channel's "
            "credit is split over its campaigns by the touches they made in the credited "
            "journeys.",
            "charts": [
                (
                    "campaign-return",
                    f"Return on spend, the campaigns that spent most (up to {top})",
                    "",
                )
            ],
            "tables": ["campaign-table"],
            "texts": ["campaign-organic"],
            "empty": "" if marketing is not None else "No campaigns in these journeys.",
        },
        {
            "id": "content",
            "title": "Content",
            "lead": "Which content moves leads to convert under the chosen model, by title, and "
            "what each type of content brought back for its share of the campaign spend.",
            "charts": [
                ("content-revenue", f"Credited revenue, top {top} content items", ""),
                (
                    "content-types",
                    "Credited revenue and spend by content type",
                    "Log scale. Spend is split over the content each campaign's touches carried.",
                ),
            ],
            "tables": ["content-table"],
            "empty": "" if not results[0].content.empty else "These journeys carry no content.",
        },
        {
            "id": "converting-paths",
            "title": "Top converting paths",
            "lead": "The channel sequences behind most conversions, and how often each converts.",
            "charts": [("paths", "Conversions by path", "Channels in touch order.")],
        },
        {
            "id": "timing",
            "title": "Time to conversion and path length",
            "lead": "How long and how many touches it takes.",
            "charts": [
                (
                    "time-to-conversion",
                    "Days from first touch to conversion",
                    f"Journeys count touches up to {lookback_days:g} days before the "
                    "conversion, so journeys that began earlier all show at the edge (orange).",
                ),
                (
                    "path-length",
                    "Conversion rate by touches in the journey",
                    "Numbers: conversions.",
                ),
            ],
        },
        _months_section(page, journeys, currency),
    ]
    for section in sections:
        section["charts"] = [
            {"id": cid, "title": t, "caption": c}
            for cid, t, c in section.get("charts", [])
            if cid in page.charts
        ]
        section["tables"] = [t for t in section.get("tables", []) if t in page.tables]
        section["texts"] = [t for t in section.get("texts", []) if t in page.texts]
        for key in ("note", "empty"):
            section.setdefault(key, "")
        if not section["charts"] and not section["empty"]:
            section["empty"] = "Nothing to show for these journeys."
    options = page.texts.pop("period-options")["views"]
    currency_words = CURRENCY_NAMES.get(currency.upper(), currency.upper())
    return render_page(
        "attribution.html",
        title=title,
        subtitle=f"Source: {journeys.source or 'journeys'} · amounts in {currency_words} · "
        f"{len(results)} models",
        models=[
            {
                "id": m,
                "name": model_name(m) + (" (recommended)" if m == RECOMMENDED else ""),
                "plain": model_name(m),
                "about": model_about(m, half_life_days),
            }
            for m in order
        ],
        periods=[{"id": k, "label": v} for k, v in options.items()],
        sections=sections,
        page_data=page.json(),
        footnote="Credit sums to the conversions and revenue of journeys with at least one "
        "touch; conversions with no touch in the look-back window are not credited. Generated "
        "by crm-intel.",
        dropped=_dropped_note(journeys),
    )


def _dropped_note(journeys: Journeys) -> str:
    lost = journeys.dropped.get("conversions_without_touch", 0)
    return (
        f"{lost:,.0f} conversions had no touch in the look-back window and are not credited."
        if lost
        else ""
    )


def write_report(page: str, out: Path | str) -> Path:
    """Write the page atomically; returns the path."""
    return write_page(page, out)
