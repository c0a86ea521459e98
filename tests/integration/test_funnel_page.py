"""``crm-intel report funnel`` on the small simulated CRM, and its page in headless Chromium."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from chromium import PLOTLY_CHARTS, SHOWN_TEXTS, chromium_page, needs_chromium
from plotly.offline import get_plotlyjs
from typer.testing import CliRunner

from crm_intel.cli import app
from reports.funnel import build_funnel_page, write_funnel_page
from training.funnel import load_funnel

pytestmark = pytest.mark.integration

SEGMENT_SHOWN = """
(async () => {
  await new Promise(done => requestAnimationFrame(() => requestAnimationFrame(done)));
  const el = document.getElementById('conversion-by-segment');
  return {
    data: el.data.filter(t => t.visible !== false).map(t => [t.name, t.y, t.x]),
    ticks: Array.from(el.querySelectorAll('.ytick text')).map(t => t.textContent),
  };
})()
"""
BUTTONS = """
(() => {
  document.getElementById('conversion-by-segment').scrollIntoView({block: 'center'});
  return Array.from(document.querySelectorAll('#conversion-by-segment .updatemenu-button'))
    .map(b => { const r = b.getBoundingClientRect();
                return {label: b.textContent, x: r.x + r.width / 2, y: r.y + r.height / 2}; });
})()
"""


def _report(*args: str) -> tuple[int, str, dict | None]:
    result = CliRunner().invoke(app, ["report", "funnel", *args])
    lines = result.stdout.strip().splitlines()
    payload = json.loads(lines[-1]) if result.exit_code == 0 and lines else None
    return result.exit_code, result.output, payload


def test_report_funnel_json_counts_equal_the_raw_tables(
    small_data_dir: Path, tmp_path: Path
) -> None:
    # given the small simulated CRM (no features, no models)
    out = tmp_path / "funnel.html"
    # when
    code, output, payload = _report("--data-dir", str(small_data_dir), "--out", str(out), "--json")
    # then the stage counts are those of the raw tables, read here with pyarrow and counted
    assert code == 0, output
    raw = small_data_dir / "raw"
    leads = pq.read_table(raw / "leads.parquet").to_pylist()
    opportunities = pq.read_table(raw / "opportunities.parquet").to_pylist()
    converted = {lead["lead_id"] for lead in leads if lead["converted_at"] is not None}
    won = {o["lead_id"] for o in opportunities if o["won"] and o["lead_id"] in converted}
    totals = payload["totals"]
    assert (totals["leads"], totals["opportunities"], totals["won"]) == (
        len(leads),
        len(converted),
        len(won),
    )
    assert len(won) > 50  # enough for the test to mean something
    assert totals["won_revenue"] == pytest.approx(
        sum(o["amount"] for o in opportunities if o["won"] and o["lead_id"] in converted)
    )
    by_source = {
        r["source"]: (r["leads"], r["opportunities"], r["won"]) for r in payload["by_source"]
    }
    source_of = {lead["lead_id"]: lead["source"] for lead in leads}
    counted = {
        source: (n, Counter(source_of[i] for i in converted)[source], 0)
        for source, n in Counter(source_of.values()).items()
    }
    for lead_id in won:
        n, c, w = counted[source_of[lead_id]]
        counted[source_of[lead_id]] = (n, c, w + 1)
    assert by_source == counted
    created = Counter(lead["created_at"].strftime("%Y-%m") for lead in leads)
    assert {r["month"]: r["leads"] for r in payload["by_month"]} == dict(created)
    # the partial month is named, never compared
    assert payload["partial_month"] == max(created)
    assert payload["kpis"]["month"] < payload["partial_month"]
    # without models, the page says so instead of failing
    assert payload["scores"] == {} and set(payload["score_notes"]) == {
        "lead_conversion",
        "churn_risk",
    }
    page = out.read_text(encoding="utf-8")
    assert "no scores yet" in page and f"→ {out}" in output
    # plotly.js inlined once; the rest of the page well under 1 MB
    plotly_js = get_plotlyjs()
    assert page.count(plotly_js) == 1 and "cdn.plot.ly" not in page.replace(plotly_js, "")
    assert len(page) - len(plotly_js) <= 1_000_000


@pytest.fixture(scope="module")
def page_file(tmp_path_factory: pytest.TempPathFactory, small_data_dir: Path) -> Path:
    """The page of the small CRM with both models' scores (seeded stand-ins for batch scores)."""
    rng = np.random.default_rng(5)
    leads = rng.beta(1.2, 6.0, 800)
    churn = rng.beta(1.5, 5.0, 120)
    scores = {
        "lead_conversion": pd.DataFrame(
            {"status": "scored", "probability": leads, "score": np.clip(leads * 100, 1, 99)}
        ),
        "churn_risk": pd.DataFrame(
            {
                "status": "scored",
                "probability": churn,
                "score": np.clip(churn * 100, 1, 99).round(),
                "risk_band": np.where(churn > 0.4, "high", np.where(churn > 0.2, "medium", "low")),
                "revenue_at_risk": churn * 12 * rng.uniform(200, 3000, 120),
            }
        ),
    }
    page = build_funnel_page(load_funnel(small_data_dir / "raw"), scores=scores, currency="EUR")
    return write_funnel_page(page, tmp_path_factory.mktemp("funnel") / "funnel.html")


@needs_chromium
def test_the_page_renders_readable_charts_and_the_segment_buttons_switch(
    page_file: Path, tmp_path: Path
) -> None:
    pytest.importorskip("websockets", reason="the websockets package drives Chromium")
    with chromium_page(tmp_path, 1400, 900) as page:
        # when the page is opened from disk at 1400 × 900
        page.open(page_file)
        charts = page.evaluate(PLOTLY_CHARTS)
        texts = page.evaluate(SHOWN_TEXTS)
        before = page.evaluate(SEGMENT_SHOWN)
        buttons = {b["label"]: b for b in page.evaluate(BUTTONS)}
        page.click(buttons["Company size"]["x"], buttons["Company size"]["y"])
        after = page.evaluate(SEGMENT_SHOWN)
        screenshot = page.screenshot(tmp_path / "funnel.png")
        errors = page.errors()
    # then no console error
    assert errors == []
    # every chart drawn, with data
    assert [c["id"] for c in charts] == [
        "funnel-stages",
        "stage-velocity",
        "conversion-by-source",
        "conversion-by-segment",
        "conversion-by-month",
        "activity-by-month",
        "scores-lead-conversion",
        "scores-churn-risk",
        "revenue-at-risk",
    ]
    for chart in charts:
        assert chart["points"] and min(chart["points"]) > 0, chart
        assert chart["marks"] >= 2 and chart["width"] > 400 and chart["height"] >= 300, chart
    # every shown text, charts' SVG text included, is at least 11 px
    smallest = min(texts, key=lambda t: t["px"])
    assert smallest["px"] >= 11, smallest
    chart_texts = [t["text"] for t in texts if t["svg"]]
    assert len(chart_texts) > 150
    assert "Paid search" in chart_texts and "paid_search" not in chart_texts
    assert chart_texts.count("partial month") == 2  # on both monthly charts
    # the segment buttons switch the figures shown: industries, then company sizes
    assert set(buttons) == {"Industry", "Company size", "Region"}
    assert before != after
    assert "Software" in before["ticks"] and "11–50 employees" not in before["ticks"]
    assert "11–50 employees" in after["ticks"] and "Software" not in after["ticks"]
    assert [name for name, _, _ in after["data"]] == ["Lead to opportunity", "Opportunity to won"]
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert screenshot.stat().st_size > 100_000
