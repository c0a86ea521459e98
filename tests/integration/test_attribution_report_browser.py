"""The report in headless Chromium: no console error, every chart drawn, a screenshot saved.

Chromium is driven over the DevTools protocol on loopback (``--remote-debugging-port=0``; the
port is read from ``DevToolsActivePort``) with the ``websockets`` client.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from chromium import chromium_page, needs_chromium

from reports.attribution import build_report, write_report
from training.attribution import (
    load_content_costs,
    load_content_names,
    load_journeys,
    read_truth,
    run_models,
)

pytestmark = pytest.mark.integration

CHART_PROBE = """
JSON.stringify(Array.from(document.querySelectorAll('figure.chart')).map(f => {
  const svg = f.querySelector('svg');
  const box = svg ? svg.getBoundingClientRect() : {width: 0, height: 0};
  return {id: f.dataset.chart, width: box.width, height: box.height,
          shapes: svg ? svg.querySelectorAll('path, rect, use').length : 0,
          visible: svg ? getComputedStyle(svg).display !== 'none' : false};
}))
"""


def open_in_chromium(page: Path, tmp_path: Path) -> tuple[list[dict], list[str], Path]:
    """Open ``page`` in headless Chromium: chart probes, console errors, full-page screenshot."""
    with chromium_page(tmp_path, width=1280, height=900) as tab:
        tab.open(page)
        charts = json.loads(tab.evaluate(CHART_PROBE))
        screenshot = tab.screenshot(tmp_path / f"{page.stem}.png")
        errors = tab.errors()
    return charts, errors, screenshot


@pytest.fixture(scope="module")
def report_file(tmp_path_factory: pytest.TempPathFactory, small_data_dir: Path) -> Path:
    raw = small_data_dir / "raw"
    journeys = load_journeys(raw_dir=raw)
    results = run_models(
        journeys, ["first_touch", "last_touch", "linear", "markov_1", "shapley", "data_driven"]
    )
    page = build_report(
        journeys,
        results,
        costs=load_content_costs(raw),
        truth=read_truth(small_data_dir / "truth"),
        content_names=load_content_names(raw),
    )
    return write_report(page, tmp_path_factory.mktemp("report") / "attribution_report.html")


@needs_chromium
def test_report_renders_every_chart_without_console_errors(
    report_file: Path, tmp_path: Path
) -> None:
    pytest.importorskip("websockets", reason="the websockets package drives Chromium")
    # when the page is opened from disk
    charts, errors, screenshot = open_in_chromium(report_file, tmp_path)
    # then no console error, eleven charts each drawn with a size and shapes, and a screenshot
    assert errors == []
    assert [c["id"] for c in charts] == [
        "trust-intervals",
        "channel-headline",
        "channel-models",
        "content-models",
        "content-revenue",
        "paths",
        "time-to-conversion",
        "path-length",
        "roi",
        "trend-totals",
        "trend-channels",
    ]
    for chart in charts:
        assert chart["visible"] and chart["width"] > 200 and chart["height"] > 100, chart
        assert chart["shapes"] >= 10, chart
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert screenshot.stat().st_size > 50_000


@needs_chromium
def test_the_probe_does_see_console_errors_and_empty_charts(tmp_path: Path) -> None:
    pytest.importorskip("websockets", reason="the websockets package drives Chromium")
    # given a page with a failing script and a chart without drawing
    page = tmp_path / "broken.html"
    page.write_text(
        '<html><body><figure class="chart" data-chart="x"><svg width="0" '
        'height="0"></svg></figure><script>console.error("boom"); '
        "missing_function();</script></body></html>"
    )
    # when / then both are reported
    charts, errors, _ = open_in_chromium(page, tmp_path)
    assert len(errors) == 2 and "boom" in errors[0] and "missing_function" in errors[1]
    assert charts == [{"id": "x", "width": 0, "height": 0, "shapes": 0, "visible": True}]
