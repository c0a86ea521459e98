"""serving.reasons: every feature of the schema gets a readable label."""

from __future__ import annotations

import math

import pytest

from features.schema import ACCOUNT_CATEGORICAL, ACCOUNT_FEATURES, LEAD_CATEGORICAL, LEAD_FEATURES
from serving.reasons import label, signed

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("feature", "value", "expected"),
    [
        ("touches_pricing_page_view_7d", 3.0, "Viewed the pricing page 3 times in the last 7 days"),
        ("touches_pricing_page_view_30d", 1.0, "Viewed the pricing page once in the last 30 days"),
        ("touches_email_click_90d", 1.0, "Clicked 1 email in the last 90 days"),
        ("touches_demo_request_30d", 2.0, "Requested a demo twice in the last 30 days"),
        ("touches_7d", 5.0, "5 touches in the last 7 days"),
        ("touches_paid_search_90d", 2.0, "2 touches via paid search in the last 90 days"),
        ("content_case_study_touches", 2.0, "Engaged with 2 case studies"),
        ("days_since_last_touch", None, "No touch yet"),
        ("days_since_last_touch", 12.4, "Last touch 12 days ago"),
        ("email_click_rate_90d", 0.25, "Clicked 25% of opened emails in the last 90 days"),
        ("account_is_customer", 1.0, "Company is already a customer"),
        ("seniority", "vp", "Seniority: vp"),
        ("title_rank", "director", "Job title ranks as director"),
        ("title_rank", "c_level", "Job title ranks as C-level"),
        ("title_rank", "unknown", "Job title gives no rank"),
        ("title_rank", None, "No job title"),
        ("title_department", "finance", "Works in finance"),
        ("title_department", "customer_success", "Works in customer success"),
        ("title_department", "unknown", "Job title names no department"),
        ("rfm_segment", "at_risk", "Customer segment: at risk"),
        ("logins_trend", -0.5, "Logins down 50% on the previous 28 days"),
        ("active_user_ratio_28d", 0.4, "40% of seats active in the last 28 days"),
        ("something_new", 2.5, "Something new: 2.5"),
    ],
)
def test_labels_read_as_plain_words(feature, value, expected):
    assert label(feature, value) == expected


@pytest.mark.parametrize("feature", LEAD_FEATURES + ACCOUNT_FEATURES)
def test_every_schema_feature_has_a_specific_label(feature):
    # A feature without a rule would fall back to "<words>: <value>"; the schema's all have one.
    value = "x" if feature in LEAD_CATEGORICAL + ACCOUNT_CATEGORICAL else 3.0
    text = label(feature, value)
    assert text and "_" not in text
    if value != "x":  # numeric: a sentence, not the generic "<name>: <value>"
        assert ":" not in text
    for missing in (None, math.nan):
        assert label(feature, missing)


@pytest.mark.parametrize(
    ("feature", "value", "expected"),
    [
        ("source", "tiktok", 'Lead source "tiktok" (not seen in training)'),
        ("plan", "platinum", 'Plan "platinum" (not seen in training)'),
        ("new_category", "x", 'New category "x" (not seen in training)'),
    ],
)
def test_unseen_categories_say_so(feature, value, expected):
    assert label(feature, value, unseen=True) == expected
    assert label(feature, None, unseen=True).endswith("not known")  # missing is not unseen


def test_signed_labels_show_which_way_the_score_moves():
    assert signed("Viewed the pricing page once", 0.4) == "+ Viewed the pricing page once"
    assert signed("No touch yet", -0.2) == "\u2212 No touch yet"
