"""Score trend from the score log: a lead warming up over four weekly scores reads
``improving``, one going quiet ``declining`` (the deployment's trained champion scores them)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from crm.settings import Settings
from crm_intel.demo import Deployment
from features.store import online_reader
from serving.batch import scorable_ids
from serving.score_log import append, open_log, rows_from_results
from serving.scoring import score_items
from serving.trend import add_trends, trend_label, trends
from training.registry import load_champion

pytestmark = [pytest.mark.integration]

WEEK = timedelta(days=7)
START = datetime(2025, 5, 5, tzinfo=UTC)


def _engagement(level: int, quiet_days: float, week: int) -> dict[str, float]:
    """Features of a lead created two weeks before the first score, in week ``week``: ``level``
    touches a week of growing intent, last seen ``quiet_days`` ago."""
    return {
        "days_since_created": 14.0 + 7 * week,
        "touches_7d": level,
        "touches_14d": 2 * level,
        "touches_prev_14d": max(level - 1, 0),
        "touches_30d": 4 * level,
        "touches_90d": 6 * level,
        "touches_page_view_30d": 2 * level,
        "touches_pricing_page_view_30d": level,
        "touches_pricing_page_view_90d": level,
        "touches_email_click_30d": level,
        "touches_demo_request_30d": 1 if level >= 3 else 0,
        "touches_demo_request_90d": 1 if level >= 3 else 0,
        "touches_meeting_30d": level // 2,
        "touches_meeting_90d": level // 2,
        "days_since_last_touch": quiet_days,
        "days_since_last_high_intent": quiet_days if level else 120.0,
        "touch_velocity_14d": float(level),
    }


def _weekly_scores(deployment: Deployment, tmp_path: Path, weeks: list[dict[str, float]]):
    settings = Settings(data_dir=deployment.data_dir, mlflow_tracking_uri=deployment.tracking_uri)
    champion = load_champion("lead_conversion", deployment.tracking_uri)
    names = settings.crm_field_names
    reader = online_reader(settings)
    try:
        records = reader.rows("lead", scorable_ids(settings, "lead"), status=True)
    finally:
        reader.close()
    # the lead whose score its engagement moves most (its firmographics as the CRM has them
    # today): the champion may saturate (an isotonic calibrator is flat past its last step)
    at_start, at_end = (
        score_items("lead_conversion", champion.model, records, [w] * len(records), 1, names)
        for w in (weeks[0], weeks[-1])
    )
    moved = [abs(b["score"] - a["score"]) for a, b in zip(at_start, at_end, strict=True)]
    record = records[max(range(len(records)), key=lambda i: (moved[i], records[i]["lead_id"]))]
    lead = record["lead_id"]
    engine = open_log(f"sqlite:///{tmp_path / 'trend.db'}")
    scores, last = [], None
    for n, features in enumerate(weeks):
        at = START + n * WEEK
        results = score_items(
            "lead_conversion", champion.model, [record], [features], 3, names, ttl=None
        )
        assert results[0]["status"] == "scored"
        scores.append(results[0]["score"])
        found = trends(engine, "lead", {lead: results[0]["score"]}, at, 30, 5)
        add_trends(results, found, "lead", "lead_id", names)
        last = results[0]
        append(
            engine,
            rows_from_results(
                results,
                entity="lead",
                key="lead_id",
                model="lead_conversion",
                model_version=champion.version,
                feature_service="lead_conversion_v1",
                arm="champion",
                source="batch",
                request_id=f"week-{n}",
                scored_at=at,
            ),
        )
    return scores, last


def test_a_lead_warming_up_over_four_weeks_is_improving(deployment, tmp_path):
    steps = ((0, 60), (2, 3), (5, 2), (10, 1))
    weeks = [_engagement(level, quiet, week) for week, (level, quiet) in enumerate(steps)]
    scores, last = _weekly_scores(deployment, tmp_path, weeks)
    assert last["trend"] == "improving", scores
    assert last["trend_change"] == scores[-1] - scores[0] >= 5
    assert last["crm_fields"]["Score_Trend__c"] == "improving"
    assert last["crm_fields"]["Score_Trend_Change__c"] == last["trend_change"]


def test_a_lead_going_quiet_over_four_weeks_is_declining(deployment, tmp_path):
    steps = ((10, 1), (4, 8), (1, 15), (0, 22))
    weeks = [_engagement(level, quiet, week) for week, (level, quiet) in enumerate(steps)]
    scores, last = _weekly_scores(deployment, tmp_path, weeks)
    assert last["trend"] == "declining", scores
    assert last["trend_change"] == scores[-1] - scores[0] <= -5


def test_trend_words_follow_the_business_for_churn_risk():
    assert trend_label("lead", 5, 5) == "improving"
    assert trend_label("lead", -5, 5) == "declining"
    assert trend_label("lead", 4, 5) == "steady"
    assert trend_label("account", 7, 5) == "declining"  # churn risk up: worse
    assert trend_label("account", -7, 5) == "improving"
