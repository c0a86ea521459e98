"""The look every page shares: one Plotly template, readable at 1400 × 900 (every chart text at
least 12 px), the page's words for CRM values, amounts, shares and months, and one way to turn a
figure into a chart block of a page. :mod:`reports.funnel_charts` and
:mod:`reports.attribution_charts` draw with it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jinja2
import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio
from plotly.offline import get_plotlyjs

from crm.io import atomic_file
from training.funnel import NOT_RECORDED

FONT = '-apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif'
INK = "#1f2933"
MUTED = "#616e7c"
GRID = "#e4e7eb"
BLUE, ORANGE, GREEN, RED, GREY = "#2f6fb0", "#e07b39", "#3a9a5b", "#c44e52", "#9aa5b1"
TEXT_SIZE = 13  # every chart text is at least this or TICK_SIZE: readable at 1400 × 900
TICK_SIZE = 12
CONFIG = {"displayModeBar": False, "responsive": True}

REGIONS = {
    "NA": "North America",
    "EMEA": "Europe, Middle East and Africa",
    "APAC": "Asia-Pacific",
    "LATAM": "Latin America",
}
CURRENCY_SYMBOLS = {"USD": "$", "EUR": "€", "GBP": "£", "JPY": "¥", "INR": "₹"}
CURRENCY_NAMES = {
    "USD": "US dollars",
    "EUR": "euros",
    "GBP": "pounds sterling",
    "JPY": "yen",
    "CAD": "Canadian dollars",
    "AUD": "Australian dollars",
    "CHF": "Swiss francs",
    "INR": "rupees",
}

# One small template for every chart (Plotly's default one adds ~8 kB to each figure).
TEMPLATE = go.layout.Template(
    layout={
        "font": {"family": FONT, "size": TEXT_SIZE, "color": INK},
        "paper_bgcolor": "#ffffff",
        "plot_bgcolor": "#ffffff",
        "colorway": [BLUE, ORANGE, GREEN, RED, GREY],
        "hoverlabel": {"font": {"size": TEXT_SIZE, "family": FONT}},
        "legend": {"font": {"size": TEXT_SIZE}, "orientation": "h", "y": 1.02, "yanchor": "bottom"},
        "uniformtext": {"minsize": TICK_SIZE, "mode": "hide"},
        "xaxis": {
            "gridcolor": GRID,
            "zerolinecolor": GRID,
            "tickfont": {"size": TICK_SIZE},
            "title": {"font": {"size": TEXT_SIZE}},
            "automargin": True,
        },
        "yaxis": {
            "gridcolor": GRID,
            "zerolinecolor": GRID,
            "tickfont": {"size": TICK_SIZE},
            "title": {"font": {"size": TEXT_SIZE}},
            "automargin": True,
        },
    }
)


# ----------------------------------------------------------------------------- words
def plain(value: object) -> str:
    """A CRM value in plain words: ``paid_search`` → ``Paid search``; codes (``EMEA``) stay."""
    text = str(value).strip()
    if text == NOT_RECORDED:
        return "Not recorded"
    if text in REGIONS:
        return REGIONS[text]
    words = text.replace("_", " ")
    if words.isupper():
        return words
    return words[:1].upper() + words[1:]


def month_label(month: str, partial: bool = False) -> str:
    """``2025-06`` → ``Jun 2025`` (``Jun 2025 (partial)``)."""
    text = pd.Timestamp(f"{month}-01").strftime("%b %Y")
    return f"{text} (partial)" if partial else text


def money(value: float | None, currency: str, compact: bool = True) -> str:
    """An amount with its currency: ``$1.2M`` (``CHF 1.2M`` without a symbol)."""
    if value is None or pd.isna(value):
        return "–"
    symbol = CURRENCY_SYMBOLS.get(currency.upper())
    prefix = symbol if symbol else f"{currency.upper()} "
    amount = abs(float(value))
    sign = "−" if value < 0 else ""
    if compact:
        for bound, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
            if amount >= bound:
                return f"{sign}{prefix}{amount / bound:.1f}{suffix}"
    return f"{sign}{prefix}{amount:,.0f}"


def percent(value: float | None, digits: int = 1) -> str:
    return "–" if value is None or pd.isna(value) else f"{value:.{digits}%}"


def days(value: float | None) -> str:
    return "–" if value is None or pd.isna(value) else f"{value:,.0f} days"


def count(value: float | None) -> str:
    return "–" if value is None or pd.isna(value) else f"{value:,.0f}"


# ----------------------------------------------------------------------------- charts
def chart_html(figure: go.Figure, div_id: str, height: int) -> str:
    figure.update_layout(template=TEMPLATE, height=height, autosize=True)
    return pio.to_html(
        figure,
        full_html=False,
        include_plotlyjs=False,
        div_id=div_id,
        default_height=f"{height}px",
        config=CONFIG,
    )


def chart(div_id: str, title: str, figure: go.Figure, height: int, caption: str = "") -> dict:
    html = chart_html(figure, div_id, height)
    return {"id": div_id, "title": title, "html": html, "caption": caption}


def card(label: str, value: str, hint: str) -> dict:
    """A KPI card of the sections page (no change against an earlier period)."""
    return {"label": label, "value": value, "hint": hint, "change": "", "tone": "", "previous": ""}


# ----------------------------------------------------------------------------- pages
def render_page(template: str, **values: Any) -> str:
    """Render ``templates/<template>`` (each extends ``base.html``: the shared shell and style,
    with plotly.js inlined once in the head)."""
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("reports", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    return environment.get_template(template).render(plotly_js=get_plotlyjs(), **values)


def render_sections_page(
    *,
    title: str,
    subtitle: str,
    kpi_heading: str,
    kpi_note: str,
    kpis: Sequence[dict],
    sections: Sequence[dict],
    definitions: Sequence[tuple[str, str]],
) -> str:
    """The page of KPI cards, then sections, then definitions (``templates/sections.html``).
    A section is a dict with ``id``, ``title`` and ``lead``, and any of ``cards``, ``charts``
    (:func:`chart` blocks), ``table`` (HTML), ``note`` and ``empty`` (said when it has nothing)."""
    filled = [
        {"cards": [], "charts": [], "table": "", "note": "", "empty": "", **section}
        for section in sections
    ]
    return render_page(
        "sections.html",
        title=title,
        subtitle=subtitle,
        kpi_heading=kpi_heading,
        kpi_note=kpi_note,
        kpis=kpis,
        sections=filled,
        definitions=definitions,
    )


def write_page(page: str, out: Path | str) -> Path:
    """Write a page atomically; returns the path."""
    out = Path(out)
    with atomic_file(out) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return out
