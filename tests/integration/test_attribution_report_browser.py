"""``crm-intel attribution report`` on the small simulated CRM, and its page in headless Chromium.

Chromium is driven over the DevTools protocol on loopback (``--remote-debugging-port=0``; the
port is read from ``DevToolsActivePort``) with the ``websockets`` client.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from chromium import PLOTLY_CHARTS, SHOWN_TEXTS, chromium_page, needs_chromium
from plotly.offline import get_plotlyjs
from typer.testing import CliRunner

from crm_intel.cli import app

pytestmark = pytest.mark.integration

LOOKBACK = pd.Timedelta(days=90)
MODELS = "first_touch,last_touch,linear,markov_1,shapley,data_driven"
# The figures a model or period switch redraws, read back from the page
SHOWN = """
(() => {
  const data = id => { const el = document.getElementById(id);
                       return el && el.data ? el.data.map(t => [t.x, t.y]) : null; };
  return {
    revenue: data('channel-revenue'), campaigns: data('campaign-return'),
    paths: data('paths'), heat: data('channel-models'),
    conversions: document.querySelector('[data-text="kpi-conversions"]').textContent,
    about: document.querySelector('[data-text="model-about"]').textContent,
    campaign_rows: document.querySelectorAll('#campaign-table tbody tr').length,
  };
})()
"""
OPTIONS = """
(() => Object.fromEntries(['model-select', 'period-select'].map(id =>
  [id, Array.from(document.getElementById(id).options).map(o => [o.value, o.textContent])])))()
"""


def choose(select: str, value: str) -> str:
    """Script: pick ``value`` in a selector as a user would (the change event included), then
    wait two frames for the charts to redraw."""
    return f"""
(async () => {{
  const el = document.getElementById('{select}');
  el.value = '{value}';
  el.dispatchEvent(new Event('change'));
  await new Promise(done => requestAnimationFrame(() => requestAnimationFrame(done)));
  return el.value;
}})()
"""


def page_data(page: str) -> dict:
    found = re.search(r'id="report-data">(.*?)</script>', page, re.S)
    assert found is not None
    return json.loads(found.group(1))


def amount(text: str) -> float:
    return float(text.replace("$", "").replace(",", "")) if text != "–" else 0.0


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory, small_data_dir: Path) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("report") / "attribution.html"
    result = CliRunner().invoke(
        app,
        [
            "attribution",
            "report",
            "--data-dir",
            str(small_data_dir),
            "--models",
            MODELS,
            "--bootstrap",
            "3",
            "--out",
            str(out),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    return out, json.loads(result.stdout.strip().splitlines()[-1])


def revenue_of_journeys_with_a_touch(raw: Path) -> float:
    """Won revenue of the converted leads with a touch in the 90 days up to their conversion,
    counted here from the raw tables."""
    leads = pq.read_table(raw / "leads.parquet").to_pandas()
    touches = pq.read_table(raw / "interactions.parquet").to_pandas()
    deals = pq.read_table(raw / "opportunities.parquet").to_pandas()
    converted = leads.dropna(subset=["converted_at"])[["lead_id", "converted_at"]]
    joined = touches.merge(converted, on="lead_id")
    inside = joined[
        (joined["occurred_at"] <= joined["converted_at"])
        & (joined["occurred_at"] >= joined["converted_at"] - LOOKBACK)
    ]
    touched = set(inside["lead_id"])
    won = deals[deals["won"].fillna(False).astype(bool) & deals["lead_id"].isin(touched)]
    return float(won["amount"].sum())


def test_spend_is_the_campaigns_cost_and_credit_sums_to_the_revenue_of_touched_journeys(
    report: tuple[Path, dict], small_data_dir: Path
) -> None:
    out, summary = report
    page = out.read_text(encoding="utf-8")
    data = page_data(page)
    raw = small_data_dir / "raw"
    cost = float(pq.read_table(raw / "campaigns.parquet").to_pandas()["cost"].sum())
    revenue = revenue_of_journeys_with_a_touch(raw)
    assert summary["value"] == pytest.approx(revenue)
    models = MODELS.split(",")
    for model in models:
        view = f"all|{model}"
        # the campaigns table of the whole run lists every campaign with its whole cost
        campaigns = data["tables"]["campaign-table"]["views"][view]
        assert sum(amount(row[2]) for row in campaigns) == pytest.approx(cost, abs=len(campaigns))
        # the channel table: credited revenue sums to the revenue of journeys with a touch,
        # spend to the campaigns' cost
        channels = data["tables"]["channel-table"]["views"][view]
        assert sum(amount(row[3]) for row in channels) == pytest.approx(revenue, abs=len(channels))
        assert sum(amount(row[4]) for row in channels) == pytest.approx(cost, abs=len(channels))
    assert len(summary["periods"]) >= 4  # the quarters of the period selector
    # page weight: plotly.js inlined once, the rest of the page under 1 MB
    plotly_js = get_plotlyjs()
    assert page.count(plotly_js) == 1 and "cdn.plot.ly" not in page.replace(plotly_js, "")
    assert len(page.encode("utf-8")) - len(plotly_js.encode("utf-8")) <= 1_000_000


@needs_chromium
def test_the_page_renders_readable_charts_and_the_selectors_switch_the_figures(
    report: tuple[Path, dict], tmp_path: Path
) -> None:
    pytest.importorskip("websockets", reason="the websockets package drives Chromium")
    out, _ = report
    with chromium_page(tmp_path, 1400, 900) as page:
        # when the page is opened from disk at 1400 × 900
        page.open(out)
        charts = page.evaluate(PLOTLY_CHARTS)
        texts = page.evaluate(SHOWN_TEXTS)
        options = page.evaluate(OPTIONS)
        first = page.evaluate(SHOWN)
        page.screenshot(tmp_path / "attribution.png")
        page.evaluate(choose("model-select", "last_touch"))
        other_model = page.evaluate(SHOWN)
        quarter = options["period-select"][2][0]
        page.evaluate(choose("period-select", quarter))
        other_period = page.evaluate(SHOWN)
        page.evaluate(choose("model-select", "data_driven"))
        back = page.evaluate(SHOWN)
        shot = page.screenshot(tmp_path / "attribution-quarter.png")
        errors = page.errors()
    # then no console error
    assert errors == []
    # every chart drawn, with data
    assert [c["id"] for c in charts] == [
        "trust-intervals",
        "model-disagreement",
        "channel-revenue",
        "channel-return",
        "channel-models",
        "campaign-return",
        "content-revenue",
        "content-types",
        "paths",
        "time-to-conversion",
        "path-length",
        "trend-totals",
        "trend-channels",
    ]
    for chart in charts:
        assert chart["points"] and min(chart["points"]) > 0, chart
        assert chart["marks"] >= 1 and chart["width"] > 400 and chart["height"] >= 250, chart
    # every shown text, charts' SVG text included, is at least 11 px; plain words
    smallest = min(texts, key=lambda t: t["px"])
    assert smallest["px"] >= 11, smallest
    chart_texts = [t["text"] for t in texts if t["svg"]]
    assert "Paid search" in chart_texts and "paid_search" not in chart_texts
    assert "Markov chain, 1 step" in chart_texts
    assert chart_texts.count("partial month") == 2  # on both monthly charts
    # the recommended model first; the whole run, then quarters, partial ones marked
    assert options["model-select"][0] == ["data_driven", "Data-driven (recommended)"]
    periods = [label for _, label in options["period-select"]]
    assert periods[0].startswith("Whole run") and periods[1].startswith("Q")
    assert any(label.endswith("(partial)") for label in periods)
    # switching the model redraws the model's figures, not the period's
    assert other_model["revenue"] != first["revenue"]
    assert other_model["campaigns"] != first["campaigns"]
    assert other_model["about"] != first["about"] and "last touch" in other_model["about"]
    assert other_model["paths"] == first["paths"] and other_model["heat"] == first["heat"]
    assert other_model["conversions"] == first["conversions"]
    # switching the period redraws both, and the KPIs
    assert other_period["paths"] != other_model["paths"]
    assert other_period["heat"] != other_model["heat"]
    assert other_period["revenue"] != other_model["revenue"]
    assert amount(other_period["conversions"]) < amount(first["conversions"])
    assert back["revenue"] != other_period["revenue"]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 100_000
    assert (tmp_path / "attribution.png").stat().st_size > 100_000


@needs_chromium
def test_the_probe_does_see_console_errors_and_small_text(tmp_path: Path) -> None:
    pytest.importorskip("websockets", reason="the websockets package drives Chromium")
    # given a page with a failing script and 8 px text
    page_file = tmp_path / "broken.html"
    page_file.write_text(
        '<html><body><p style="font-size:8px">tiny</p><script>console.error("boom"); '
        "missing_function();</script></body></html>"
    )
    # when / then both are reported
    with chromium_page(tmp_path, 1400, 900) as page:
        page.open(page_file)
        texts = page.evaluate(SHOWN_TEXTS)
        errors = page.errors()
    assert len(errors) == 2 and "boom" in errors[0] and "missing_function" in errors[1]
    assert texts == [{"tag": "P", "text": "tiny", "px": 8.0, "svg": False}]
