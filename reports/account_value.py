"""The account value page: how long subscription accounts are expected to stay, what they are
worth, and, on simulated data, how the expected lifetimes compare with the true ones."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from reports.page_style import (
    BLUE,
    CURRENCY_NAMES,
    GREY,
    INK,
    ORANGE,
    card,
    chart,
    count,
    money,
    plain,
    render_sections_page,
)

DEFINITIONS = [
    (
        "Expected remaining lifetime",
        "How many more months the account is expected to stay: the churn model asked about the "
        "account at each of its next renewals and between them, then the months it survives, "
        "added up (up to 20 years).",
    ),
    (
        "Range",
        "Eight in ten accounts like this one stay between the low and the high figure.",
    ),
    (
        "Lifetime value",
        "The margin on the account's monthly revenue for every month it is expected to stay, "
        "discounted to today's money.",
    ),
    (
        "Segment's mean lifetime",
        "What a plain spreadsheet would use: every account of a plan stays the plan's mean "
        "lifetime (months at risk ÷ churns so far).",
    ),
]


def build_account_value_page(
    values: pd.DataFrame,
    *,
    as_of: str,
    gross_margin: float,
    annual_discount_rate: float,
    check: dict | None = None,
    calibration: pd.DataFrame | None = None,
    currency: str = "USD",
    title: str = "Account value",
) -> str:
    """Render the page; ``values`` are :func:`serving.account_value.account_values`' rows."""
    cards = [
        card("Live accounts", count(len(values)), "with a subscription and fresh features"),
        card("Monthly revenue", money(values["mrr"].sum(), currency), "MRR of those accounts"),
        card(
            "Expected stay",
            f"{values['expected_remaining_months'].median():.0f} months",
            "median account",
        ),
        card(
            "Lifetime value",
            money(values["lifetime_value"].sum(), currency),
            f"{gross_margin:.0%} margin, discounted at {annual_discount_rate:.0%} a year",
        ),
    ]
    sections = [
        {
            "id": "lifetime",
            "title": "How long accounts are expected to stay",
            "lead": "Each account's expected remaining months, by plan.",
            "charts": [
                chart(
                    "lifetime-by-plan",
                    "Expected remaining lifetime, by plan",
                    lifetime_chart(values),
                    380,
                    "Each box: the middle half of the plan's accounts; the line, its median.",
                )
            ],
        }
    ]
    if check is not None and calibration is not None:
        sections.append(
            {
                "id": "truth",
                "title": "Against the true lifetimes (simulated data)",
                "lead": (
                    f"On {check['accounts']:,} accounts: rank correlation with the true "
                    f"expected lifetime {check['spearman_lifetime']:.3f}, against "
                    f"{check['spearman_lifetime_peer']:.3f} for the segment's mean lifetime; "
                    f"off by {check['mean_absolute_error_months']:.0f} months on average "
                    f"({check['mean_absolute_error_months_peer']:.0f} for the segment mean)."
                ),
                "charts": [
                    chart(
                        "lifetime-calibration",
                        "Expected against true remaining lifetime",
                        calibration_chart(calibration),
                        420,
                        "Accounts in ten groups by their expected lifetime; on the line, the "
                        "expectation is right on average.",
                    )
                ],
            }
        )
    return render_sections_page(
        title=title,
        subtitle=(
            f"Accounts as of {as_of} · amounts in "
            f"{CURRENCY_NAMES.get(currency.upper(), currency.upper())}"
        ),
        kpi_heading="Accounts at a glance",
        kpi_note="Live subscription accounts valued with the churn model.",
        kpis=cards,
        sections=sections,
        definitions=DEFINITIONS,
    )


def lifetime_chart(values: pd.DataFrame) -> go.Figure:
    figure = go.Figure()
    plans = values["plan"].astype(str) if "plan" in values else pd.Series("all", index=values.index)
    for plan in sorted(plans.unique()):
        months = values.loc[plans == plan, "expected_remaining_months"]
        figure.add_box(y=months, name=plain(plan), marker_color=BLUE, boxpoints=False)
    figure.update_layout(
        yaxis_title="Expected remaining months",
        showlegend=False,
        margin={"l": 10, "r": 10, "t": 20, "b": 10},
    )
    return figure


def calibration_chart(calibration: pd.DataFrame) -> go.Figure:
    top = float(max(calibration[["expected", "true", "peer"]].max()))
    figure = go.Figure()
    figure.add_scatter(
        x=[0, top], y=[0, top], mode="lines", name="Right on average", line={"color": GREY}
    )
    figure.add_scatter(
        x=calibration["expected"],
        y=calibration["true"],
        mode="lines+markers",
        name="crm-intel",
        line={"color": BLUE},
    )
    figure.add_scatter(
        x=calibration["peer"],
        y=calibration["true"],
        mode="markers",
        name="Segment's mean lifetime",
        marker={"color": ORANGE, "size": 9},
    )
    figure.update_layout(
        xaxis_title="Expected remaining months (group mean)",
        yaxis_title="True remaining months (group mean)",
        legend={"font": {"color": INK}},
        margin={"l": 10, "r": 10, "t": 40, "b": 10},
    )
    return figure
