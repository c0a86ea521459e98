"""The funnel cockpit: one self-contained HTML page for sales and marketing operations.

Plotly charts (plotly.js inlined once, in the page's head: it opens from disk, offline, with no
server): KPI cards for the latest complete month against the month before, the funnel
lead → opportunity → won, stage velocity, conversion by lead source, by segment (industry,
company size, region; buttons switch between them) and by month (the partial month marked), and
the lead and churn models' score distributions with revenue at risk.

The figures come from :mod:`training.funnel`; the scores are the batch scores the CLI passes in
(:func:`serving.batch.score_batch`, which this layer does not import). This module only words,
draws and lays out.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from reports.funnel_charts import (
    KPI_HINTS,
    KPI_LABELS,
    MODELS,
    activity_chart,
    funnel_chart,
    month_chart,
    risk_chart,
    score_chart,
    scored,
    segment_chart,
    source_chart,
    velocity_chart,
)
from reports.page_style import (
    CURRENCY_NAMES,
    chart,
    count,
    days,
    money,
    month_label,
    percent,
    plain,
    render_sections_page,
    write_page,
)
from training.funnel import Funnel, Kpi


def _kpi_card(kpi: Kpi, currency: str) -> dict[str, str]:
    def show(value: float | None) -> str:
        if kpi.name == "lead_conversion_rate":
            return percent(value)
        if kpi.name == "won_revenue":
            return money(value, currency)
        if kpi.name.startswith("median_days"):
            return days(value)
        return count(value)

    change, tone = "no month before to compare", "same"
    if kpi.change is not None:
        lower_is_better = kpi.name.startswith("median_days")
        if kpi.name == "lead_conversion_rate":
            change = f"{kpi.change * 100:+.1f} points"
        elif lower_is_better:
            change = f"{kpi.change:+,.0f} days"
        else:
            change = f"{kpi.change:+.0%}"
        change = change.replace("-", "−")
        better = kpi.change < 0 if lower_is_better else kpi.change > 0
        tone = "same" if abs(kpi.change) < 1e-12 else ("better" if better else "worse")
    elif kpi.previous is not None and kpi.value is not None:
        change = "no change to measure (none the month before)"
    return {
        "label": KPI_LABELS[kpi.name],
        "hint": KPI_HINTS[kpi.name],
        "value": show(kpi.value),
        "previous": f"{show(kpi.previous)} the month before",
        "change": change,
        "tone": tone,
    }


def _table(funnel: Funnel, currency: str) -> str:
    columns = (
        ("Lead source", lambda r: plain(r["source"])),
        ("Leads", lambda r: count(r["leads"])),
        ("Reached opportunity", lambda r: count(r["opportunities"])),
        ("Won", lambda r: count(r["won"])),
        ("Lead to opportunity", lambda r: percent(r["lead_to_opportunity"])),
        ("Opportunity to won", lambda r: percent(r["opportunity_to_won"])),
        ("Lead to won", lambda r: percent(r["lead_to_won"])),
        ("Median days to opportunity", lambda r: days(r["median_days_to_opportunity"])),
        ("Median days to won", lambda r: days(r["median_days_to_won"])),
        ("Won revenue", lambda r: money(r["won_revenue"], currency, compact=False)),
    )
    head = "".join(f"<th>{html.escape(name)}</th>" for name, _ in columns)
    rows = [
        "<tr>" + "".join(f"<td>{html.escape(show(row))}</td>" for _, show in columns) + "</tr>"
        for row in funnel.by_source.to_dict(orient="records")
    ]
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _scores_section(
    scores: Mapping[str, pd.DataFrame], notes: Mapping[str, str], currency: str
) -> dict[str, Any]:
    charts: list[dict] = []
    cards: list[dict[str, str]] = []
    empty: list[str] = []
    for model, name in MODELS.items():
        frame = scores.get(model)
        frame = None if frame is None else scored(frame)
        if frame is None or not len(frame):
            why = notes.get(model, "no batch scores were given to the page")
            empty.append(f"{name}: no scores yet ({why}).")
            continue
        who = "open leads" if model == "lead_conversion" else "customer accounts"
        cards.append({"label": f"{who.capitalize()} scored", "value": f"{len(frame):,}"})
        title = "Lead scores" if model == "lead_conversion" else "Churn risk scores"
        charts.append(
            chart(
                f"scores-{model.replace('_', '-')}",
                title,
                score_chart(frame, model),
                320,
                f"How the {len(frame):,} {who} scored by the current {name.lower()} model spread.",
            )
        )
        if model == "churn_risk" and "revenue_at_risk" in frame.columns:
            cards.append(
                {
                    "label": "Revenue at risk",
                    "value": money(float(frame["revenue_at_risk"].sum()), currency),
                }
            )
            risk = risk_chart(frame, currency)
            if risk is not None:
                charts.append(
                    chart(
                        "revenue-at-risk",
                        "Revenue at risk by churn risk band",
                        risk,
                        320,
                        "Revenue at risk: an account's chance to leave × what it is worth "
                        "while it stays (its margin over the months it is expected to stay, "
                        "discounted).",
                    )
                )
    return {
        "id": "scores",
        "title": "Model scores",
        "lead": "Where today's open leads and customers stand, from the nightly batch scores of "
        "the current models.",
        "cards": cards,
        "charts": charts,
        "empty": " ".join(empty),
    }


DEFINITIONS = (
    ("Lead", "a person in the CRM, counted in the month it was created."),
    (
        "Reached opportunity",
        "a lead the CRM marks as converted (its conversion date), counted in the month of "
        "conversion.",
    ),
    (
        "Won",
        "a converted lead with at least one won opportunity; its won deals and their amounts "
        "are the won deals and won revenue, counted in the month the deal closed.",
    ),
    (
        "Conversion rates",
        "lead to opportunity: reached opportunity ÷ leads; opportunity to won: won ÷ reached "
        "opportunity (deals still open count as not won yet); lead to won: won ÷ leads.",
    ),
    (
        "Lead conversion rate of a month",
        "leads reaching opportunity in the month ÷ leads created in the month.",
    ),
    (
        "Median days",
        "half of the leads (or deals) took fewer days, half more: lead created to opportunity; "
        "opportunity created to won.",
    ),
    (
        "Complete month",
        "a calendar month (UTC) that had ended by the time of the data's latest record; the "
        "month still under way is marked partial and never compared.",
    ),
    (
        "Segment",
        "the industry, company size and region of the lead's account (or, without one, of its "
        "opportunity's account).",
    ),
)


def build_funnel_page(
    funnel: Funnel,
    scores: Mapping[str, pd.DataFrame] | None = None,
    *,
    notes: Mapping[str, str] | None = None,
    currency: str = "USD",
    title: str = "Sales funnel",
) -> str:
    """Render the cockpit page.

    Args:
        funnel: the figures (:func:`training.funnel.load_funnel`).
        scores: batch scores by model (``lead_conversion``, ``churn_risk``): frames with
            ``probability`` and/or ``score``, and for accounts ``risk_band`` and
            ``revenue_at_risk`` (the rows of :func:`serving.batch.score_batch`; rows whose
            ``status`` is not ``scored`` are left out). A model without a frame shows "no
            scores yet".
        notes: by model, why it has no scores (shown on the page).
        currency: ISO 4217 code of the amounts.
        title: page title.

    Returns:
        The HTML page, self-contained (plotly.js inlined once).
    """
    scores = scores or {}
    notes = notes or {}
    totals = funnel.totals
    as_of = f"{funnel.as_of.day} {funnel.as_of:%b %Y}"
    months = funnel.by_month["month"]
    span = f"{month_label(months.iloc[0])} to {month_label(months.iloc[-1])}" if len(months) else ""
    currency_words = CURRENCY_NAMES.get(currency.upper(), currency.upper())

    kpis = funnel.kpis
    partial = (
        f" {month_label(funnel.partial_month)} is still under way (data to {as_of}) and is not "
        "compared."
        if funnel.partial_month
        else ""
    )
    if kpis is None:
        kpi_heading = "No complete month yet"
        kpi_note = f"The KPIs need one complete calendar month of data.{partial}"
        cards: list[dict[str, str]] = []
    else:
        kpi_heading = f"{month_label(kpis.month)}, the latest complete month"
        before = (
            f"compared with {month_label(kpis.previous_month)}"
            if kpis.previous_month
            else "no month before it to compare with"
        )
        kpi_note = f"What happened in the month, {before}.{partial}"
        cards = [_kpi_card(k, currency) for k in kpis.kpis]

    source_figure, source_height = source_chart(funnel)
    segment_figure, segment_height = segment_chart(funnel)
    velocity_figure, velocity_height = velocity_chart(funnel)
    aside = []
    without = funnel.without_lead
    if without["opportunities"]:
        aside.append(
            f"{without['opportunities']:,} opportunities without a lead "
            f"({without['won_deals']:,} won, {money(without['won_revenue'], currency)}) are not "
            "in the funnel."
        )
    if funnel.won_leads_without_conversion_date:
        aside.append(
            f"{funnel.won_leads_without_conversion_date:,} leads with a won deal but no "
            "conversion date are not counted as won."
        )
    sections = [
        {
            "id": "funnel",
            "title": "From lead to won deal",
            "lead": f"Every lead created from {span}, and how far it has gone so far.",
            "cards": [
                {"label": "Lead to won", "value": percent(totals["lead_to_won"])},
                {"label": "Won deals", "value": count(totals["won_deals"])},
                {"label": "Won revenue", "value": money(totals["won_revenue"], currency)},
                {
                    "label": "Median days, lead to won",
                    "value": days(totals["median_days_lead_to_won"]),
                },
            ],
            "charts": [
                chart(
                    "funnel-stages",
                    "Leads at each stage",
                    funnel_chart(funnel),
                    300,
                    "Opportunities still open count as not won yet.",
                ),
                chart(
                    "stage-velocity",
                    "Stage velocity: median days in each stage",
                    velocity_figure,
                    velocity_height,
                    "Lead created → opportunity; opportunity created → won (won deals only).",
                ),
            ],
            "note": " ".join(aside),
        },
        {
            "id": "sources",
            "title": "Conversion by lead source",
            "lead": "Which sources bring leads that become opportunities and won deals.",
            "charts": [
                chart(
                    "conversion-by-source",
                    "Conversion at each stage, by lead source",
                    source_figure,
                    source_height,
                    "Sources with most leads first.",
                ),
                chart(
                    "conversion-by-segment",
                    "Conversion at each stage, by segment",
                    segment_figure,
                    segment_height,
                    "Choose industry, company size or region above the chart. The segment is "
                    "the lead's account's.",
                ),
            ],
            "table": _table(funnel, currency),
        },
        {
            "id": "months",
            "title": "Month by month",
            "lead": "Left: each month's leads and how many of them have converted so far "
            "(recent months have had less time). Right: what happened in each month, the "
            "figures of the KPI cards.",
            "charts": [
                chart(
                    "conversion-by-month",
                    "Conversion by month the lead was created",
                    month_chart(funnel),
                    400,
                    "Hatched: the month still under way.",
                ),
                chart(
                    "activity-by-month",
                    "Each month's opportunities, won deals and new leads",
                    activity_chart(funnel),
                    400,
                    "Hatched: the month still under way.",
                ),
            ],
        },
        _scores_section(scores, notes, currency),
    ]
    return render_sections_page(
        title=title,
        subtitle=f"Data as of {as_of} · leads created {span} · amounts in {currency_words}",
        kpi_heading=kpi_heading,
        kpi_note=kpi_note,
        kpis=cards,
        sections=sections,
        definitions=DEFINITIONS,
    )


def write_funnel_page(page: str, out: Path | str) -> Path:
    """Write the page atomically; returns the path."""
    return write_page(page, out)
