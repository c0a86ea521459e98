"""The customer value page: how many customers are still buying, what they will spend, and how
well the model forecast a period it did not see.

Charts: the cohort's cumulative repeat purchases week by week (what happened, the model's
expectation and, over the holdout, the naive forecast); repeat purchases in the holdout by how
often customers bought before; customers by lifetime value. Drawn with the shared page style.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from reports.page_style import (
    BLUE,
    CURRENCY_NAMES,
    GREY,
    INK,
    MUTED,
    ORANGE,
    card,
    chart,
    count,
    money,
    percent,
    plain,
    render_sections_page,
)
from training.customer_value import CustomerValueModel, HoldoutCheck
from training.rfm import SEGMENTS

TOP_FREQUENCY = 7  # customers who bought back this often or more are one bar
DEFINITIONS = [
    (
        "Repeat purchase",
        "A day a customer bought on after their first purchase day; several purchases on one "
        "day count once.",
    ),
    (
        "Still a customer",
        "The chance that the customer has not quietly stopped buying, from how often and how "
        "recently they bought (BG/NBD).",
    ),
    (
        "Expected spend per purchase",
        "The customer's own mean spend per repeat purchase, pulled towards everyone's mean the "
        "fewer purchases it rests on (Gamma-Gamma).",
    ),
    (
        "Lifetime value",
        "Expected purchases over the horizon × expected spend per purchase, discounted month by "
        "month to today's money.",
    ),
    (
        "RFM segment",
        "From how recently (R), how often (F) and how much (M) a customer bought, each scored 1 "
        "to 4 by quartile among all customers: champions bought recently, often and much; at "
        "risk bought often and much but not lately; lost did none of these.",
    ),
    (
        "Naive forecast",
        "Each customer keeps buying at the rate they bought at before: repeat purchases ÷ "
        "weeks since their first purchase.",
    ),
]


def build_value_page(
    model: CustomerValueModel,
    values: pd.DataFrame,
    holdout: HoldoutCheck | None,
    *,
    horizon_weeks: int,
    annual_discount_rate: float,
    currency: str = "USD",
    title: str = "Customer value",
) -> str:
    """Render the page; ``values`` are :func:`training.customer_value.customer_values`' rows."""
    end = model.calibration_end
    customers = len(values)
    repeat = int((values["frequency"] > 0).sum())
    cards = [
        card("Customers", count(customers), f"first purchase on or before {end:%d %b %Y}"),
        card("Came back", percent(repeat / customers if customers else None), "bought again"),
        card(
            "Still customers",
            count(values["p_alive"].sum()),
            "expected number, from each one's chance",
        ),
        card(
            f"Purchases, next {horizon_weeks} weeks",
            count(values["expected_purchases"].sum()),
            "expected repeat purchases",
        ),
        card(
            f"Value, next {horizon_weeks} weeks",
            money(values["lifetime_value"].sum(), currency),
            f"discounted at {annual_discount_rate:.0%} a year",
        ),
    ]
    sections = []
    if holdout is not None:
        errors = holdout.mean_absolute_error
        sections.append(
            {
                "id": "holdout",
                "title": "How well it forecast a period it did not see",
                "lead": (
                    f"Fitted on purchases up to {end:%d %b %Y}, then asked for the next "
                    f"{holdout.weeks:.0f} weeks. Per customer, its forecast was off by "
                    f"{errors['model']:.2f} purchases on average; assuming each customer keeps "
                    f"their past rate was off by {errors['naive']:.2f}."
                ),
                "charts": [
                    chart(
                        "cumulative",
                        "Repeat purchases so far, week by week",
                        cumulative_chart(holdout, end),
                        420,
                        "Left of the dashed line the model learned from the purchases; right of "
                        "it, it had not seen them.",
                    ),
                    chart(
                        "by-frequency",
                        "Repeat purchases in the holdout, by purchases before",
                        conditional_chart(holdout, model.summary),
                        420,
                        "Mean per customer in each group.",
                    ),
                ],
            }
        )
    sections.append(
        {
            "id": "value",
            "title": "Where the value is",
            "lead": (
                f"Customers by lifetime value over the next {horizon_weeks} weeks. The top "
                f"tenth hold {percent(_top_share(values['lifetime_value']))} of it."
            ),
            "charts": [
                chart(
                    "segments",
                    "Customers and value by RFM segment",
                    segment_chart(values, currency),
                    380,
                    "Segments from how recently, how often and how much each customer bought.",
                ),
                chart(
                    "value-histogram",
                    "Customers by lifetime value",
                    value_histogram(values, currency),
                    380,
                    "Each bar: customers whose value falls in its range.",
                ),
            ],
        }
    )
    parameters = model.parameters
    fitted = ", ".join(f"{name} = {value:.3f}" for name, value in parameters.items())
    return render_sections_page(
        title=title,
        subtitle=(
            f"Purchases up to {end:%d %b %Y} · amounts in "
            f"{CURRENCY_NAMES.get(currency.upper(), currency.upper())}"
        ),
        kpi_heading="Customers at a glance",
        kpi_note=f"Fitted parameters: {fitted}.",
        kpis=cards,
        sections=sections,
        definitions=DEFINITIONS,
    )


def cumulative_chart(holdout: HoldoutCheck, calibration_end: pd.Timestamp) -> go.Figure:
    curve = holdout.cumulative
    figure = go.Figure()
    figure.add_scatter(x=curve["date"], y=curve["actual"], name="What happened", line_color=INK)
    figure.add_scatter(
        x=curve["date"],
        y=curve["model"],
        name="Model (BG/NBD)",
        line={"color": BLUE, "dash": "dash"},
    )
    figure.add_scatter(
        x=curve["date"],
        y=curve["naive"],
        name="Same rate as before",
        line={"color": ORANGE, "dash": "dot"},
    )
    figure.add_vline(x=calibration_end, line={"color": MUTED, "dash": "dash", "width": 1})
    figure.update_layout(
        yaxis_title="Repeat purchases, cumulative", margin={"l": 10, "r": 10, "t": 40, "b": 10}
    )
    return figure


def conditional_chart(holdout: HoldoutCheck, summary: pd.DataFrame) -> go.Figure:
    frame = holdout.customers.assign(
        before=np.minimum(summary["frequency"].to_numpy(), TOP_FREQUENCY).astype(int)
    )
    means = frame.groupby("before")[["actual", "model", "naive"]].mean()
    labels = [f"{b}+" if b == TOP_FREQUENCY else str(b) for b in means.index]
    figure = go.Figure()
    for column, name, colour in (
        ("actual", "What happened", INK),
        ("model", "Model (BG/NBD)", BLUE),
        ("naive", "Same rate as before", ORANGE),
    ):
        figure.add_bar(x=labels, y=means[column], name=name, marker_color=colour)
    figure.update_layout(
        barmode="group",
        xaxis={"type": "category", "title": "Repeat purchases before the holdout"},
        yaxis_title="Repeat purchases in the holdout, mean",
        margin={"l": 10, "r": 10, "t": 40, "b": 10},
    )
    return figure


def segment_chart(values: pd.DataFrame, currency: str) -> go.Figure:
    present = [s for s in SEGMENTS if s in set(values["segment"])]
    grouped = values.groupby("segment").agg(
        customers=("customer_id", "size"), value=("lifetime_value", "sum")
    )
    grouped = grouped.reindex(present)
    labels = [plain(s) for s in present]
    figure = go.Figure()
    figure.add_bar(x=labels, y=grouped["customers"], name="Customers", marker_color=GREY)
    figure.add_bar(
        x=labels,
        y=grouped["value"],
        name=f"Lifetime value ({currency.upper()})",
        marker_color=BLUE,
        yaxis="y2",
        offsetgroup=1,
    )
    figure.update_traces(selector={"name": "Customers"}, offsetgroup=0)
    figure.update_layout(
        barmode="group",
        xaxis={"type": "category"},
        yaxis_title="Customers",
        yaxis2={
            "title": f"Lifetime value ({currency.upper()})",
            "overlaying": "y",
            "side": "right",
            "showgrid": False,
        },
        margin={"l": 10, "r": 10, "t": 40, "b": 10},
    )
    return figure


def value_histogram(values: pd.DataFrame, currency: str) -> go.Figure:
    figure = go.Figure()
    figure.add_histogram(x=values["lifetime_value"], nbinsx=40, marker_color=GREY)
    figure.update_layout(
        xaxis_title=f"Lifetime value ({currency.upper()})",
        yaxis_title="Customers",
        yaxis={"type": "log", "dtick": 1},  # powers of ten only: no small in-between labels
        showlegend=False,
        margin={"l": 10, "r": 10, "t": 20, "b": 10},
    )
    return figure


def _top_share(value: pd.Series) -> float | None:
    total = float(value.sum())
    if total <= 0:
        return None
    top = value.sort_values(ascending=False).head(max(1, len(value) // 10))
    return float(top.sum()) / total
