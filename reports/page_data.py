"""The data an interactive page draws from: every chart, table and text for every view (a
choice of the page's selectors), embedded once as JSON.

A chart keeps its first view's Plotly figure whole and, for each other view, only the trace and
layout keys that differ; the page's script merges them before ``Plotly.react``. Floats keep 5
significant digits. Each entry has a ``scope``: ``view`` (per model and period), ``period``,
``model`` or ``fixed``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import plotly.graph_objects as go

from reports.page_style import CONFIG, TEMPLATE


def rounded(value: Any) -> Any:
    """Floats to 5 significant digits, recursively: the page carries every view's numbers."""
    if isinstance(value, float):
        return value if not math.isfinite(value) or value == 0 else float(f"{value:.5g}")
    if isinstance(value, list):
        return [rounded(v) for v in value]
    if isinstance(value, dict):
        return {k: rounded(v) for k, v in value.items()}
    return value


# The page style once per chart base (applying it to every view's figure costs seconds)
TEMPLATE_JSON = json.loads(go.Figure(layout={"template": TEMPLATE}).to_json())["layout"]["template"]


def plain_figure(figure: go.Figure, height: int) -> dict[str, Any]:
    """The figure as plain JSON values, without a template (the chart's base carries the page
    style once; an empty one here keeps Plotly from adding its default to every view)."""
    figure.update_layout(height=height, autosize=True, template=go.layout.Template())
    plain = rounded(json.loads(figure.to_json()))
    plain["layout"].pop("template", None)
    return plain


def _differences(base: Mapping[str, Any], other: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in other.items() if base.get(k) != v}


@dataclass
class PageData:
    """Everything the page's script draws: charts, tables and texts, each with a ``scope``
    (``view``: per model and period, ``period``, ``model`` or ``fixed``) and its value per key."""

    charts: dict[str, dict[str, Any]] = field(default_factory=dict)
    tables: dict[str, dict[str, Any]] = field(default_factory=dict)
    texts: dict[str, dict[str, Any]] = field(default_factory=dict)

    def chart(self, chart_id: str, scope: str, key: str, drawn: tuple[go.Figure, int]) -> None:
        figure = plain_figure(*drawn)
        if chart_id not in self.charts:
            self.charts[chart_id] = {
                "scope": scope,
                "key": key,
                "data": figure["data"],
                "layout": {**figure["layout"], "template": TEMPLATE_JSON},
                "views": {},
            }
            return
        chart = self.charts[chart_id]
        base_data = chart["data"]
        patch: dict[str, Any] = {
            "data": [
                _differences(base_data[i] if i < len(base_data) else {}, trace)
                for i, trace in enumerate(figure["data"])
            ],
            "layout": _differences(chart["layout"], figure["layout"]),
        }
        if len(figure["data"]) != len(base_data):
            patch["data"] = figure["data"]
            patch["replace"] = True
        chart["views"][key] = patch

    def table(
        self, table_id: str, scope: str, key: str, columns: Sequence[str], rows: list[list[str]]
    ) -> None:
        table = self.tables.setdefault(
            table_id, {"scope": scope, "columns": list(columns), "views": {}}
        )
        table["views"][key] = rows

    def text(self, name: str, scope: str, key: str, value: str) -> None:
        self.texts.setdefault(name, {"scope": scope, "views": {}})["views"][key] = value

    def json(self) -> str:
        data = {"config": CONFIG, "charts": self.charts, "tables": self.tables, "texts": self.texts}
        return json.dumps(data, separators=(",", ":"), ensure_ascii=False).replace("</", "<\\/")


def view_key(period: str, model: str) -> str:
    """The key of a view: a period and a model."""
    return f"{period}|{model}"
