"""Spend and return beside credit, and the calendar periods of the attribution page."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest

from training.attribution import Journeys, run_models
from training.attribution.periods import calendar_quarters, credit_by_period
from training.attribution.spend import (
    NO_CAMPAIGN,
    campaign_credit,
    campaign_mix,
    campaign_spend,
    campaign_touches,
    content_item_spend,
    content_type_credit,
    content_type_spend,
    touch_campaigns,
    with_returns,
)

pytestmark = pytest.mark.unit

DAY = np.timedelta64(86400 * 10**9, "ns")
T0 = np.datetime64("2024-03-20T00:00:00", "ns")


def journeys() -> Journeys:
    """L1: email (K1), email (K2), sales → converts (900) on Mar 30; L2: email (K1) → converts
    (300) on Apr 9; L3: email (no campaign), does not convert."""
    return Journeys(
        journey_id=np.array(["L1", "L2", "L3"], dtype=object),
        offsets=np.array([0, 3, 4, 5]),
        channel=np.array([0, 0, 1, 0, 0], dtype=np.int32),
        channels=("email", "sales"),
        conversions=np.array([1.0, 1.0, 0.0]),
        value=np.array([900.0, 300.0, 0.0]),
        nulls=np.array([0.0, 0.0, 1.0]),
        content=np.array([0, 1, -1, 0, -1], dtype=np.int32),
        contents=("C1", "C2"),
        touched_at=np.array([T0, T0 + DAY, T0 + 2 * DAY, T0 + 15 * DAY, T0 + 3 * DAY]),
        ended_at=np.array([T0 + 10 * DAY, T0 + 20 * DAY, T0 + 3 * DAY]),
        converted_at=np.array([T0 + 10 * DAY, T0 + 20 * DAY, np.datetime64("NaT", "ns")]),
        source="test",
    )


def interactions() -> pd.DataFrame:
    at = pd.to_datetime(journeys().touched_at).tz_localize("UTC")
    return pd.DataFrame(
        {
            "lead_id": ["L1", "L1", "L1", "L2", "L3", None],
            "occurred_at": [*at, at[0]],
            "channel": ["email", "email", "sales", "email", "email", "email"],
            "content_id": pd.array(["C1", "C2", None, "C1", None, "C2"], dtype="string"),
            "campaign_id": pd.array(["K1", "K2", None, "K1", None, "K2"], dtype="string"),
        }
    )


def campaigns() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "campaign_id": ["K1", "K2", "K3"],
            "name": ["Spring mail", "Webinar mail", "Unused"],
            "channel": ["email", "email", "display"],
            "cost": [100.0, 50.0, 10.0],
            "start": pd.to_datetime(["2024-03-01", "2024-03-20", "2024-06-01"], utc=True),
            "end": pd.to_datetime(["2024-04-09", "2024-03-29", "2024-06-30"], utc=True),
        }
    )


def test_spend_is_the_whole_cost_or_the_share_of_the_campaigns_days_in_the_period() -> None:
    whole = campaign_spend(campaigns()).set_index("campaign_id")["spend"]
    assert whole.to_dict() == {"K1": 100.0, "K2": 50.0, "K3": 10.0}
    # K1 runs 40 days (1 Mar–9 Apr), 31 of them in March; K2's 10 days all in March
    march = campaign_spend(campaigns(), date(2024, 3, 1), date(2024, 3, 31))
    assert march.set_index("campaign_id")["spend"].to_dict() == pytest.approx(
        {"K1": 100.0 * 31 / 40, "K2": 50.0, "K3": 0.0}
    )


def test_each_touch_finds_its_interactions_campaign() -> None:
    found = touch_campaigns(journeys(), campaign_touches(interactions()))
    assert found.tolist() == ["K1", "K2", None, "K1", None]


def test_a_channels_credit_is_split_over_its_campaigns_by_their_touches() -> None:
    (linear,) = run_models(journeys(), ["linear"])
    mix = campaign_mix(journeys(), touch_campaigns(journeys(), campaign_touches(interactions())))
    credit = campaign_credit(linear, mix)
    by_campaign = credit.set_index("campaign_id")
    # linear credits email 900 (600 from L1, 300 from L2). Within email, a touch weighs its
    # journey's revenue over the journey's email touches: L1's two 450 each (K1, K2), L2's one
    # 300 (K1); so K1 gets 750 / 1200 of email's 900 and K2 450 / 1200
    assert by_campaign.loc["K1", "value"] == pytest.approx(900 * 750 / 1200)
    assert by_campaign.loc["K2", "value"] == pytest.approx(900 * 450 / 1200)
    organic = credit[credit["campaign_id"] == NO_CAMPAIGN].set_index("channel")["value"]
    assert organic.to_dict() == pytest.approx({"email": 0.0, "sales": 300.0})  # L3 converts not
    # every channel keeps its credit
    assert credit.groupby("channel")["value"].sum().to_dict() == pytest.approx(
        linear.by_channel["value"].to_dict()
    )
    assert credit["conversions"].sum() == pytest.approx(2.0)


def test_returns_are_revenue_over_spend_and_spend_over_conversions() -> None:
    credit = pd.DataFrame(
        {"channel": ["email", "sales"], "conversions": [4.0, 2.0], "value": [900.0, 300.0]}
    )
    spend = pd.DataFrame({"channel": ["email", "display"], "spend": [150.0, 10.0]})
    table = with_returns(credit, spend, "channel").set_index("channel")
    assert table.loc["email", "return_on_spend"] == pytest.approx(6.0)
    assert table.loc["email", "cost_per_conversion"] == pytest.approx(37.5)
    assert np.isnan(table.loc["sales", "return_on_spend"])  # no spend
    assert table.loc["display", "value"] == 0.0 and table.loc["display", "return_on_spend"] == 0.0


def test_content_types_carry_their_content_credit_and_spend() -> None:
    (linear,) = run_models(journeys(), ["linear"])
    kinds = {"C1": "blog", "C2": "webinar"}
    credit = content_type_credit(linear, kinds).set_index("content_type")["value"]
    assert credit.sum() == pytest.approx(1200.0)
    assert credit["blog"] == pytest.approx(300.0 + 300.0)  # L1's C1 touch, L2's C1 touch
    items = content_item_spend(interactions(), campaign_spend(campaigns()))
    spend = content_type_spend(items, kinds)
    # K1's two touches carry C1; K2's two carry C2; K3 has none
    assert spend.set_index("content_type")["spend"].to_dict() == pytest.approx(
        {"blog": 100.0, "webinar": 50.0, "(no touches)": 10.0}
    )


def test_quarters_mark_the_ones_the_data_covers_only_in_part() -> None:
    quarters = calendar_quarters(journeys())
    assert [(q.label, q.start, q.end, q.partial) for q in quarters] == [
        ("Q1 2024", date(2024, 1, 1), date(2024, 3, 31), True),
        ("Q2 2024", date(2024, 4, 1), date(2024, 6, 30), True),
    ]
    assert quarters[0].covered == "data from 20 Mar to 31 Mar 2024"


def test_credit_by_period_runs_every_model_on_each_periods_journeys() -> None:
    parts = credit_by_period(journeys(), ["linear", "last_touch"])
    assert [p.period.label for p in parts] == ["Q1 2024", "Q2 2024"]
    first, second = parts
    assert first.journeys.journey_id.tolist() == ["L1", "L3"]
    assert [r.model for r in first.results] == ["linear", "last_touch"]
    assert first.results[0].channels["value"].sum() == pytest.approx(900.0)
    assert second.results[1].by_channel.loc["email", "value"] == pytest.approx(300.0)
