"""Headless Chromium for the page tests, driven over the DevTools protocol.

Chromium listens on loopback (``--remote-debugging-port=0``; the port is read from
``DevToolsActivePort``) and is driven with the ``websockets`` client: no browser package, no
network.
"""

from __future__ import annotations

import base64
import itertools
import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

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

needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)"
)


# Every element with text of its own that is laid out and shown, with its computed font size
SHOWN_TEXTS = """
(() => {
  const shown = el => {
    for (let e = el; e && e.nodeType === 1; e = e.parentNode) {
      const s = getComputedStyle(e);
      if (s.display === 'none' || s.visibility === 'hidden' || +s.opacity === 0) return false;
    }
    return true;
  };
  const out = [];
  for (const el of document.querySelectorAll('body *')) {
    const own = Array.from(el.childNodes).filter(n => n.nodeType === 3)
      .map(n => n.textContent).join('').trim();
    if (!own) continue;
    const box = el.getBoundingClientRect();
    if (box.width === 0 || box.height === 0 || box.right < 0 || box.bottom < 0) continue;
    if (!shown(el)) continue;
    out.push({tag: el.tagName, text: own.slice(0, 40),
              px: parseFloat(getComputedStyle(el).fontSize), svg: el instanceof SVGElement});
  }
  return out;
})()
"""
# Each Plotly chart: its visible traces' point counts and the marks drawn in its SVG
PLOTLY_CHARTS = """
Array.from(document.querySelectorAll('.js-plotly-plot')).map(el => ({
  id: el.id,
  points: el.data.filter(t => t.visible !== false)
    .map(t => Math.max((t.x || []).length, (t.y || []).length)),
  marks: el.querySelectorAll(
    '.point, .scatterlayer .trace path, .funnellayer path, .heatmaplayer image').length,
  width: el.getBoundingClientRect().width,
  height: el.getBoundingClientRect().height,
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


class Page:
    """One browser tab at a fixed viewport: open a file, evaluate, click, screenshot."""

    def __init__(self, tools: DevTools, width: int, height: int):
        self.tools = tools
        self.width = width
        self.height = height

    def open(self, page: Path) -> None:
        self.tools.events = [
            e for e in self.tools.events if e.get("method") != "Page.loadEventFired"
        ]
        self.tools.call("Page.navigate", url=page.as_uri())
        self.tools.wait_for("Page.loadEventFired")

    def evaluate(self, expression: str) -> Any:
        """The JSON-able value of ``expression`` (promises are awaited)."""
        reply = self.tools.call(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in reply:
            raise RuntimeError(f"{expression[:80]}…: {reply['exceptionDetails']}")
        return reply["result"].get("value")

    def click(self, x: float, y: float) -> None:
        """A real left click at viewport coordinates (press and release)."""
        for kind in ("mousePressed", "mouseReleased"):
            self.tools.call(
                "Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1
            )

    def screenshot(self, out: Path) -> Path:
        """The whole page (beyond the viewport) as PNG."""
        height = self.tools.call("Page.getLayoutMetrics")["cssContentSize"]["height"]
        shot = self.tools.call(
            "Page.captureScreenshot",
            format="png",
            captureBeyondViewport=True,
            clip={"x": 0, "y": 0, "width": self.width, "height": height, "scale": 1},
        )
        out.write_bytes(base64.b64decode(shot["data"]))
        return out

    def errors(self) -> list[str]:
        return self.tools.errors()


@contextmanager
def chromium_page(tmp_path: Path, width: int = 1400, height: int = 900) -> Iterator[Page]:
    """A headless Chromium tab at ``width`` × ``height`` CSS pixels; closed on exit."""
    from websockets.sync.client import connect

    assert CHROMIUM is not None
    profile = tmp_path / "chromium-profile"
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
                width=width,
                height=height,
                deviceScaleFactor=1,
                mobile=False,
            )
            yield Page(tools, width, height)
            tools.call("Browser.close")
    finally:
        if browser.poll() is None:
            browser.terminate()
        browser.wait(timeout=30)
