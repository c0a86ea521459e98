"""The feature pipeline: exact window arithmetic, populations, labels and bad input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from crm.contract import DTYPES, TABLES
from crm.settings import Settings
from features.pipeline import (
    FeatureInputError,
    account_labels,
    as_of_time,
    build_account_features,
    build_content_features,
    build_lead_features,
    lead_labels,
    snapshot_times,
)
from features.schema import ACCOUNT_FEATURES, CONTENT_FEATURES, LEAD_FEATURES
from simulator import SimulationResult

pytestmark = pytest.mark.unit

T = pd.Timestamp("2024-01-15", tz="UTC")  # a Monday snapshot
DAY = pd.Timedelta(days=1)
NS = pd.Timedelta(1, "ns")


def _frame(name: str, rows: list[dict]) -> pd.DataFrame:
    spec = TABLES[name]
    frame = pd.DataFrame(rows, columns=spec.names)
    return frame.astype({c.name: DTYPES[c.kind] for c in spec.columns})


def _crm(touches: list[tuple], **overrides: list[dict]) -> dict[str, pd.DataFrame]:
    """A tiny CRM: two accounts (A1 a customer), leads L1 (A1) and L2, the given touches.

    ``touches`` are ``(lead_id, occurred_at, channel, type, content_id)``.
    """
    start = pd.Timestamp("2024-01-01", tz="UTC")
    tables = {
        "accounts": [
            {
                "account_id": "A1",
                "name": "One",
                "industry": "software",
                "employee_band": "11-50",
                "region": "EMEA",
                "created_at": start - 400 * DAY,
            },
            {
                "account_id": "A2",
                "name": "Two",
                "industry": None,
                "employee_band": None,
                "region": None,
                "created_at": start - 10 * DAY,
            },
        ],
        "leads": [
            {
                "lead_id": "L1",
                "account_id": "A1",
                "source": "webinar",
                "created_at": start + pd.Timedelta(hours=1),
                "seniority": "vp",
                "country": "DE",
                "email_hash": "x",
                "status": "open",
                "converted_at": pd.NaT,
            },
            {
                "lead_id": "L2",
                "account_id": None,
                "source": "direct",
                "created_at": start + 2 * DAY,
                "seniority": None,
                "country": None,
                "email_hash": "y",
                "status": "converted",
                "converted_at": start + 20 * DAY,
            },
        ],
        "opportunities": [
            {
                "opportunity_id": "O1",
                "account_id": "A1",
                "lead_id": "L1",
                "stage": "closed_won",
                "amount": 1000.0,
                "created_at": start - 30 * DAY,
                "closed_at": start - 5 * DAY,
                "won": True,
            },
            {
                "opportunity_id": "O2",
                "account_id": "A1",
                "lead_id": None,
                "stage": "closed_won",
                "amount": 500.0,
                "created_at": start,
                "closed_at": T + NS,
                "won": True,
            },
        ],
        "content": [
            {
                "content_id": "C1",
                "title": "t",
                "type": "blog",
                "topic": "pricing",
                "published_at": start - 30 * DAY,
            },
            {
                "content_id": "C2",
                "title": "u",
                "type": "ebook",
                "topic": "pricing",
                "published_at": start - 30 * DAY,
            },
        ],
        "campaigns": [],
        "interactions": [
            {
                "interaction_id": f"I{i}",
                "occurred_at": at,
                "lead_id": lead,
                "account_id": None,
                "channel": channel,
                "type": kind,
                "content_id": content,
                "campaign_id": None,
            }
            for i, (lead, at, channel, kind, content) in enumerate(touches)
        ],
        "subscriptions": [
            {
                "subscription_id": "S1",
                "account_id": "A1",
                "plan": "growth",
                "mrr": 100.0,
                "seats": 10,
                "start": start - 400 * DAY,
                "renewal_date": start + 330 * DAY,
                "cancelled_at": start + 50 * DAY,
            },
        ],
        "usage": [
            {
                "account_id": "A1",
                "date": T - 7 * DAY,
                "active_users": 4,
                "logins": 10,
                "key_feature_events": 1,
            },
            {
                "account_id": "A1",
                "date": T,
                "active_users": 6,
                "logins": 30,
                "key_feature_events": 3,
            },
            {
                "account_id": "A1",
                "date": T + 7 * DAY,
                "active_users": 10,
                "logins": 999,
                "key_feature_events": 99,
            },
        ],
        "tickets": [
            {
                "ticket_id": "K1",
                "account_id": "A1",
                "opened_at": T - 2 * DAY,
                "closed_at": T + DAY,
                "priority": "urgent",
                "satisfaction": 1.0,
            },
            {
                "ticket_id": "K2",
                "account_id": "A1",
                "opened_at": T - 10 * DAY,
                "closed_at": T - 9 * DAY,
                "priority": "low",
                "satisfaction": 4.0,
            },
            {
                "ticket_id": "K3",
                "account_id": "A1",
                "opened_at": T + NS,
                "closed_at": pd.NaT,
                "priority": "high",
                "satisfaction": None,
            },
        ],
    }
    tables.update(overrides)
    return {name: _frame(name, rows) for name, rows in tables.items()}


TOUCHES = [
    ("L1", T, "email", "email_open", None),  # exactly at the snapshot: counts
    ("L1", T + NS, "email", "email_click", None),  # one nanosecond later: never
    ("L1", T - 3 * DAY, "email", "email_click", None),
    ("L1", T - 10 * DAY, "paid_search", "pricing_page_view", "C1"),
    ("L1", T - 12 * DAY, "social", "content_download", "C2"),
    ("L2", T - 5 * DAY, "sales", "meeting", None),
]
SETTINGS = Settings(data_dir="/nonexistent")


def _row(frame: pd.DataFrame, key: str, entity: str, at: pd.Timestamp) -> pd.Series:
    rows = frame[(frame[key] == entity) & (frame["event_timestamp"] == at)]
    assert len(rows) == 1, rows
    return rows.iloc[0]


def test_lead_window_counts_include_the_snapshot_instant_and_nothing_after() -> None:
    # given a lead with touches at, just after, and before the snapshot
    tables = _crm(TOUCHES)
    # when its features are built
    row = _row(build_lead_features(tables, SETTINGS), "lead_id", "L1", T)
    # then the windows hold exactly the touches in (t - w, t]
    assert row["touches_7d"] == 2
    assert row["touches_30d"] == 4
    assert row["touches_email_90d"] == 2
    assert row["touches_email_click_30d"] == 1
    assert row["email_click_rate_90d"] == 1.0  # one click per open
    assert row["touches_pricing_page_view_90d"] == 1
    assert row["days_since_last_touch"] == 0
    assert row["days_since_last_high_intent"] == pytest.approx(10)
    assert row["touches_14d"] == 4 and row["touches_prev_14d"] == 0
    assert row["touch_velocity_14d"] == 4
    assert row["content_blog_touches"] == 1 and row["content_ebook_touches"] == 1
    assert row["distinct_content"] == 2 and row["distinct_topics"] == 1
    assert row["days_since_created"] == pytest.approx(14 - 1 / 24)
    assert row["account_is_customer"] == 1
    assert (row["seniority"], row["account_industry"], row["account_region"]) == (
        "vp",
        "software",
        "EMEA",
    )


def test_the_stated_purchase_timeframe_is_a_feature_and_may_be_absent() -> None:
    # given leads with a stated timeframe, and the same leads from a CRM that has no such column
    tables = _crm(TOUCHES)
    tables["leads"]["purchase_timeframe"] = pd.array(["0-3_months", None], dtype=DTYPES["category"])
    without = {**tables, "leads": tables["leads"].drop(columns=["purchase_timeframe"])}
    # when lead features are built from each
    stated = build_lead_features(tables, SETTINGS)
    absent = build_lead_features(without, SETTINGS)
    # then the timeframe is the lead's own, and missing where there is none to read
    assert _row(stated, "lead_id", "L1", T)["purchase_timeframe"] == "0-3_months"
    assert pd.isna(_row(stated, "lead_id", "L2", T)["purchase_timeframe"])
    assert absent["purchase_timeframe"].isna().all()
    pd.testing.assert_frame_equal(
        absent.drop(columns=["purchase_timeframe"]), stated.drop(columns=["purchase_timeframe"])
    )


def test_the_job_title_is_read_as_a_rank_and_a_department_and_may_be_absent() -> None:
    # given L1 with a title in another language and L2 with none, and a CRM with no title column
    tables = _crm(TOUCHES)
    tables["leads"]["job_title"] = pd.array(["Leiterin Vertrieb", None], dtype=DTYPES["str"])
    without = {**tables, "leads": tables["leads"].drop(columns=["job_title"])}
    # when lead features are built from each
    titled = build_lead_features(tables, SETTINGS)
    absent = build_lead_features(without, SETTINGS)
    # then L1's title reads as a sales director at every snapshot; no title is missing, not guessed
    l1 = titled[titled["lead_id"] == "L1"]
    assert (l1["title_rank"] == "director").all() and (l1["title_department"] == "sales").all()
    assert pd.isna(_row(titled, "lead_id", "L2", T)["title_rank"])
    assert pd.isna(_row(titled, "lead_id", "L2", T)["title_department"])
    assert absent[["title_rank", "title_department"]].isna().all().all()
    assert str(titled["title_rank"].dtype) == str(titled["seniority"].dtype)


def test_lead_population_is_open_leads_and_stops_at_conversion() -> None:
    # given L2 converting on day 20 and L1 never converting
    tables = _crm(TOUCHES)
    features = build_lead_features(tables, SETTINGS)
    # then L2 has snapshots only before its conversion, L1 every week until the as-of time
    l2 = features[features["lead_id"] == "L2"]["event_timestamp"].tolist()
    assert l2 == [T - 7 * DAY, T]  # created on day 2, converted on day 20
    l1 = features[features["lead_id"] == "L1"]["event_timestamp"]
    assert l1.min() == pd.Timestamp("2024-01-08", tz="UTC")
    assert l1.max() < as_of_time(tables)
    assert features["account_industry"].isna().sum() == len(l2)  # L2 has no account


def test_lead_labels_look_exactly_one_window_ahead_and_wait_for_it_to_close() -> None:
    # given L2 converting 5 days after the T snapshot, and an as-of time 90 days later
    tables = _crm(TOUCHES + [("L1", T + 90 * DAY, "direct", "page_view", None)])
    labels = lead_labels(tables, SETTINGS)
    assert _row(labels, "lead_id", "L2", T)["label"] == 1
    l1 = labels[labels["lead_id"] == "L1"].set_index("event_timestamp")["label"]
    assert (l1.dropna() == 0).all()
    # then snapshots whose window is not over are unlabelled
    as_of = as_of_time(tables)
    open_window = l1.index + pd.Timedelta(days=90) > as_of
    assert l1[open_window].isna().all() and l1[~open_window].notna().all()


def test_account_features_use_usage_from_its_close_date_and_open_tickets_at_t() -> None:
    tables = _crm(TOUCHES)
    row = _row(build_account_features(tables, SETTINGS), "account_id", "A1", T)
    # usage rows dated T-7 and T count, the one dated T+7 does not
    assert row["logins_28d"] == 40
    assert row["active_users_28d"] == 5
    assert row["active_user_ratio_28d"] == pytest.approx(0.5)
    assert np.isnan(row["logins_trend"])  # nothing in the 28 days before
    # tickets: K1 open at T (opened 2 days before), K2 closed, K3 opened after T
    assert row["open_tickets"] == 1
    assert row["open_ticket_mean_age_days"] == pytest.approx(2)
    assert row["tickets_90d"] == 2 and row["high_priority_tickets_90d"] == 1
    assert row["mean_satisfaction_90d"] == 4.0  # K1's rating arrives when it closes, after T
    # RFM: only the deal closed before T
    assert row["rfm_frequency"] == 1 and row["rfm_monetary"] == 1000
    assert row["rfm_recency_days"] == pytest.approx(19)
    assert row["rfm_segment"] == "recent"
    assert row["plan"] == "growth" and row["seats"] == 10
    assert row["days_to_renewal"] == pytest.approx(365 - (414 % 365))


def test_account_population_and_churn_labels() -> None:
    tables = _crm(TOUCHES + [("L1", T + 200 * DAY, "direct", "page_view", None)])
    features = build_account_features(tables, SETTINGS)
    # A1 is live from 2024-01-01 until it cancels on day 50; A2 never subscribes
    assert set(features["account_id"]) == {"A1"}
    assert features["event_timestamp"].max() < pd.Timestamp("2024-01-01", tz="UTC") + 50 * DAY
    labels = account_labels(tables, SETTINGS)
    assert (labels["label"] == 1).all()  # every live week is within 90 days of the cancellation
    assert len(labels) == len(features)


def test_content_reach_and_conversions_among_engaged_leads() -> None:
    touches = TOUCHES + [("L2", T - 4 * DAY, "social", "content_download", "C1")]
    frame = build_content_features(_crm(touches), SETTINGS)
    at_t = _row(frame, "content_id", "C1", T)
    assert (at_t["reach"], at_t["engaged_leads"], at_t["converted_engaged_leads"]) == (2, 2, 0)
    later = _row(frame, "content_id", "C1", T + 7 * DAY)
    assert later["converted_engaged_leads"] == 1  # L2 converted on day 20, after engaging
    assert later["engaged_conversion_rate"] == pytest.approx(0.5)


def test_snapshots_are_mondays_at_midnight_before_the_as_of_time(
    small_sim: SimulationResult,
) -> None:
    grid = snapshot_times(small_sim.tables, SETTINGS)
    assert (grid.dayofweek == 0).all() and (grid == grid.normalize()).all()
    assert grid.max() < as_of_time(small_sim.tables) <= grid.max() + pd.Timedelta(days=7)


def test_populations_equal_the_simulator_truth_rows(small_sim: SimulationResult) -> None:
    leads = build_lead_features(small_sim.tables, SETTINGS)
    truth = small_sim.truth["lead_conversion"]
    assert set(zip(leads["lead_id"], leads["event_timestamp"], strict=True)) == set(
        zip(truth["lead_id"].astype(str), truth["snapshot_at"], strict=True)
    )
    accounts = build_account_features(small_sim.tables, SETTINGS)
    churn = small_sim.truth["churn"]
    assert set(zip(accounts["account_id"], accounts["event_timestamp"], strict=True)) == set(
        zip(churn["account_id"].astype(str), churn["snapshot_at"], strict=True)
    )


def test_outputs_have_the_declared_columns_and_dtypes(small_sim: SimulationResult) -> None:
    for build, key, names in (
        (build_lead_features, "lead_id", LEAD_FEATURES),
        (build_account_features, "account_id", ACCOUNT_FEATURES),
        (build_content_features, "content_id", CONTENT_FEATURES),
    ):
        frame = build(small_sim.tables, SETTINGS)
        assert list(frame.columns) == [key, "event_timestamp", *names]
        assert str(frame["event_timestamp"].dtype) == "datetime64[ns, UTC]"
        assert frame[key].dtype == "string"
        assert not frame.duplicated([key, "event_timestamp"]).any()


def test_pipeline_never_mutates_its_input_and_ignores_status_and_email() -> None:
    tables = _crm(TOUCHES)
    before = {name: frame.copy() for name, frame in tables.items()}
    features = build_lead_features(tables, SETTINGS)
    for name, frame in tables.items():
        pd.testing.assert_frame_equal(frame, before[name])
    leaked = {**tables, "leads": tables["leads"].assign(status="disqualified", email_hash="z")}
    pd.testing.assert_frame_equal(build_lead_features(leaked, SETTINGS), features)


@pytest.mark.parametrize(
    "breakage, message",
    [
        (lambda t: t.pop("usage"), "table 'usage' is missing"),
        (lambda t: t.update(interactions=t["interactions"].iloc[0:0]), "'interactions' is empty"),
        (
            lambda t: t.update(leads=t["leads"].assign(created_at="2024-01-01")),
            "leads.created_at is not a UTC timestamp",
        ),
        (lambda t: t.update(interactions=t["interactions"].assign(lead_id="L9")), "unknown leads"),
        (lambda t: t.update(leads=t["leads"].drop(columns="country")), "lacks column"),
    ],
)
def test_bad_input_raises_a_named_error(breakage, message: str) -> None:
    tables = _crm(TOUCHES)
    breakage(tables)
    with pytest.raises(FeatureInputError, match=message):
        build_lead_features(tables, SETTINGS)
