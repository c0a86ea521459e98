"""The tables behind the report's charts, and the page they make."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
from plotly.offline import get_plotlyjs

from reports.attribution import build_report
from training.attribution import NO_CONTENT, Journeys, paths_to_journeys, run_models
from training.attribution.summaries import (
    content_costs,
    monthly_trend,
    path_lengths,
    time_to_conversion,
    top_paths,
)

pytestmark = pytest.mark.unit

DAY = np.timedelta64(86400 * 10**9, "ns")
T0 = np.datetime64("2024-01-01T00:00:00", "ns")


def lead_journeys() -> Journeys:
    """Three leads: L1 email→sales converts on Jan 11 (600), L2 sales converts on Feb 5 (400),
    L3 email does not convert."""
    return Journeys(
        journey_id=np.array(["L1", "L2", "L3"], dtype=object),
        offsets=np.array([0, 2, 3, 4]),
        channel=np.array([0, 1, 1, 0], dtype=np.int32),
        channels=("email", "sales"),
        conversions=np.array([1.0, 1.0, 0.0]),
        value=np.array([600.0, 400.0, 0.0]),
        nulls=np.array([0.0, 0.0, 1.0]),
        content=np.array([0, -1, 1, 0], dtype=np.int32),
        contents=("C1", "C2"),
        touched_at=np.array([T0, T0 + 5 * DAY, T0 + 30 * DAY, T0 + 3 * DAY]),
        ended_at=np.array([T0 + 10 * DAY, T0 + 35 * DAY, T0 + 3 * DAY]),
        converted_at=np.array([T0 + 10 * DAY, T0 + 35 * DAY, np.datetime64("NaT", "ns")]),
        source="test",
    )


def test_top_paths_pool_identical_paths_with_their_rate() -> None:
    journeys = paths_to_journeys(
        pd.DataFrame(
            {
                "path": ["a > b", "c", "a > b"],
                "total_conversions": [2, 1, 3],
                "total_null": [3, 0, 2],
            }
        )
    )
    paths = top_paths(journeys, n=5)
    assert paths["path"].tolist() == ["a > b", "c"]
    assert paths["conversions"].tolist() == [5, 1]
    assert paths["rate"].tolist() == pytest.approx([0.5, 1.0])


def test_path_lengths_and_time_to_conversion() -> None:
    lengths = path_lengths(lead_journeys(), cap=3).set_index("touches")
    assert lengths.loc[1, "converting"] == 1 and lengths.loc[1, "not_converting"] == 1
    assert lengths.loc[2, "conversion_rate"] == 1.0
    assert time_to_conversion(lead_journeys()).tolist() == [10.0, 5.0]


def test_monthly_trend_sums_conversions_revenue_and_channel_mix() -> None:
    trend = monthly_trend(lead_journeys())
    assert trend["month"].dt.month.tolist() == [1, 2]
    assert trend["conversions"].tolist() == [1.0, 1.0]
    assert trend["value"].tolist() == [600.0, 400.0]
    assert trend[["email", "sales"]].to_numpy().tolist() == [[0.5, 0.5], [0.0, 1.0]]


def test_campaign_cost_is_split_over_the_content_its_touches_carried() -> None:
    interactions = pd.DataFrame(
        {
            "campaign_id": pd.array(["K1", "K1", "K1", "K1", None], dtype="string"),
            "content_id": pd.array(["C1", "C1", "C2", None, "C2"], dtype="string"),
        }
    )
    campaigns = pd.DataFrame(
        {"campaign_id": pd.array(["K1", "K2"], dtype="string"), "cost": [1000.0, 50.0]}
    )
    costs = content_costs(interactions, campaigns).set_index("content_id")["cost"].to_dict()
    assert costs == pytest.approx(
        {"C1": 500.0, "C2": 250.0, NO_CONTENT: 250.0, "(no touches)": 50.0}
    )


def _page_data(page: str) -> dict:
    found = re.search(
        r'<script type="application/json" id="report-data">(.*?)</script>', page, re.S
    )
    assert found is not None
    return json.loads(found.group(1))


def test_report_page_is_self_contained_with_every_chart() -> None:
    results = run_models(lead_journeys(), ["first_touch", "linear", "markov_1"])
    truth = {
        "channel": pd.DataFrame(
            {"channel": ["email", "sales"], "share": [0.2, 0.8], "value_share": [0.2, 0.8]}
        )
    }
    page = build_report(lead_journeys(), results, truth=truth, currency="EUR")
    data = _page_data(page)
    # every chart of the page is drawn from the page's own data, plotly.js inlined once
    charts = re.findall(r'<figure class="chart" data-chart="([^"]+)">', page)
    assert charts == [
        "channel-revenue",
        "channel-models",
        "content-revenue",
        "paths",
        "time-to-conversion",
        "path-length",
        "trend-totals",
        "trend-channels",
    ]
    assert set(data["charts"]) == set(charts)
    assert page.count(get_plotlyjs()) == 1
    assert not re.search(r'(src|href)="(https?:)?//', page.replace(get_plotlyjs(), ""))
    # plain words: channel and model names, the currency
    assert "Email" in data["charts"]["channel-revenue"]["data"][0]["y"]
    shown = re.sub(r"<[^>]*>", " ", page.replace(data_json(page), ""))  # text, not markup
    assert "Markov chain, 1 step" in shown and "markov" not in shown.lower().replace(
        "markov chain", ""
    )
    assert "amounts in euros" in page
    # one view per model for the model-dependent figures, each with its own numbers
    views = data["charts"]["channel-revenue"]["views"]
    assert set(views) == {"all|linear", "all|markov_1"}  # first_touch is the base figure
    # ids stay unique
    ids = re.findall(r' id="([^"]+)"', page)
    assert len(ids) == len(set(ids))


def data_json(page: str) -> str:
    found = re.search(r'id="report-data">(.*?)</script>', page, re.S)
    return found.group(1) if found else ""


def test_report_on_aggregated_paths_says_what_it_cannot_show() -> None:
    journeys = paths_to_journeys(
        pd.DataFrame({"path": ["a > b", "b"], "total_conversions": [1, 2], "total_null": [1, 1]})
    )
    page = build_report(journeys, run_models(journeys, ["linear"]))
    assert "These journeys carry no dates." in page
    assert "These journeys carry no content" in page
    assert "No campaigns in these journeys." in page
