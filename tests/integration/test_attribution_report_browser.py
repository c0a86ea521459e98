"""The report in headless Chromium: no console error, every chart drawn, a screenshot saved.

Chromium is driven over the DevTools protocol on loopback (``--remote-debugging-port=0``; the
port is read from ``DevToolsActivePort``) with the ``websockets`` client.
"""

from __future__ import annotations

import base64
import itertools
import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from reports.attribution import build_report, write_report
from training.attribution import (
    load_content_costs,
    load_content_names,
    load_journeys,
    read_truth,
    run_models,
)

pytestmark = pytest.mark.integration

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--mute-audio",
    "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",
]

CHART_PROBE = """
JSON.stringify(Array.from(document.querySelectorAll('figure.chart')).map(f => {
  const svg = f.querySelector('svg');
  const box = svg ? svg.getBoundingClientRect() : {width: 0, height: 0};
  return {id: f.dataset.chart, width: box.width, height: box.height,
          shapes: svg ? svg.querySelectorAll('path, rect, use').length : 0,
          visible: svg ? getComputedStyle(svg).display !== 'none' : false};
}))
"""


class DevTools:
    """A minimal DevTools-protocol session on one page target."""

    def __init__(self, socket: Any):
        self.socket = socket
        self.ids = itertools.count(1)
        self.session: str | None = None
        self.events: list[dict[str, Any]] = []

    def call(self, method: str, timeout: float = 30, **params: Any) -> dict[str, Any]:
        message_id = next(self.ids)
        message: dict[str, Any] = {"id": message_id, "method": method, "params": params}
        if self.session and not method.startswith("Target."):
            message["sessionId"] = self.session
        self.socket.send(json.dumps(message))
        deadline = time.monotonic() + timeout
        while True:
            reply = json.loads(self.socket.recv(timeout=max(0.1, deadline - time.monotonic())))
            if reply.get("id") == message_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method: str, timeout: float = 30) -> None:
        if any(e.get("method") == method for e in self.events):
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            event = json.loads(self.socket.recv(timeout=max(0.1, deadline - time.monotonic())))
            self.events.append(event)
            if event.get("method") == method:
                return
        raise TimeoutError(method)

    def errors(self) -> list[str]:
        found = []
        for event in self.events:
            params = event.get("params", {})
            if event.get("method") == "Runtime.exceptionThrown":
                details = params.get("exceptionDetails", {})
                found.append(
                    details.get("exception", {}).get("description")
                    or details.get("text", "exception")
                )
            elif event.get("method") == "Runtime.consoleAPICalled" and params.get("type") in (
                "error",
                "assert",
            ):
                found.append(json.dumps(params.get("args", []))[:300])
            elif (
                event.get("method") == "Log.entryAdded"
                and params.get("entry", {}).get("level") == "error"
            ):
                found.append(params["entry"].get("text", "")[:300])
        return found


def open_in_chromium(page: Path, tmp_path: Path) -> tuple[list[dict], list[str], Path]:
    """Open ``page`` in headless Chromium: chart probes, console errors, full-page screenshot."""
    from websockets.sync.client import connect

    assert CHROMIUM is not None
    profile = tmp_path / "profile"
    profile.mkdir()
    browser = subprocess.Popen(
        [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not (port_file.exists() and len(port_file.read_text().splitlines()) >= 2):
            assert browser.poll() is None, "chromium exited before opening DevTools"
            assert time.monotonic() < deadline, "chromium did not open DevTools in 30 s"
            time.sleep(0.1)
        port, path = port_file.read_text().splitlines()[:2]
        with connect(f"ws://127.0.0.1:{port}{path}", max_size=None, open_timeout=20) as socket:
            tools = DevTools(socket)
            target = tools.call("Target.createTarget", url="about:blank")["targetId"]
            tools.session = tools.call("Target.attachToTarget", targetId=target, flatten=True)[
                "sessionId"
            ]
            for domain in ("Page.enable", "Runtime.enable", "Log.enable"):
                tools.call(domain)
            tools.call(
                "Emulation.setDeviceMetricsOverride",
                width=1280,
                height=900,
                deviceScaleFactor=1,
                mobile=False,
            )
            tools.call("Page.navigate", url=page.as_uri())
            tools.wait_for("Page.loadEventFired")
            charts = json.loads(
                tools.call("Runtime.evaluate", expression=CHART_PROBE, returnByValue=True)[
                    "result"
                ]["value"]
            )
            height = tools.call("Page.getLayoutMetrics")["cssContentSize"]["height"]
            shot = tools.call(
                "Page.captureScreenshot",
                format="png",
                captureBeyondViewport=True,
                clip={"x": 0, "y": 0, "width": 1280, "height": height, "scale": 1},
            )
            screenshot = tmp_path / f"{page.stem}.png"
            screenshot.write_bytes(base64.b64decode(shot["data"]))
            errors = tools.errors()
            tools.call("Browser.close")
    finally:
        if browser.poll() is None:
            browser.terminate()
        browser.wait(timeout=30)
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


needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)"
)


@needs_chromium
def test_report_renders_every_chart_without_console_errors(
    report_file: Path, tmp_path: Path
) -> None:
    pytest.importorskip("websockets", reason="the websockets package drives Chromium")
    # when the page is opened from disk
    charts, errors, screenshot = open_in_chromium(report_file, tmp_path)
    # then no console error, ten charts each drawn with a size and shapes, and a screenshot
    assert errors == []
    assert [c["id"] for c in charts] == [
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
