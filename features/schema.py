"""Feature tables, declared once: names, kinds and the files they live in.

Numeric features are ``float32`` (counts are exact up to 2**24); categorical features are strings
(pandas ``string`` dtype, missing as ``<NA>``). Feast sees them as ``Float32`` and ``String``.
"""

from __future__ import annotations

from crm.contract import CHANNELS, CONTENT_TYPES, INTERACTION_TYPES

LEAD_WINDOWS_DAYS: tuple[int, ...] = (7, 30, 90)

LEAD_CATEGORICAL: tuple[str, ...] = (
    "seniority",
    "source",
    "country",
    "purchase_timeframe",
    "account_employee_band",
    "account_industry",
    "account_region",
    # the lead's job title read as a rank and a department (features.job_titles)
    "title_rank",
    "title_department",
)
LEAD_NUMERIC: tuple[str, ...] = (
    "days_since_created",
    *(f"touches_{w}d" for w in LEAD_WINDOWS_DAYS),
    *(f"touches_{c}_90d" for c in CHANNELS),
    *(f"touches_{t}_30d" for t in INTERACTION_TYPES),
    *(f"touches_{t}_90d" for t in INTERACTION_TYPES),
    "days_since_last_touch",
    "days_since_last_high_intent",
    "touches_14d",
    "touches_prev_14d",
    "touch_velocity_14d",
    *(f"content_{c}_touches" for c in CONTENT_TYPES),
    "distinct_content",
    "distinct_topics",
    "email_click_rate_90d",
    "email_reply_rate_90d",
    "calls_total",
    "meetings_total",
    "account_is_customer",
)
LEAD_FEATURES: tuple[str, ...] = LEAD_NUMERIC + LEAD_CATEGORICAL

ACCOUNT_CATEGORICAL: tuple[str, ...] = (
    "plan",
    "rfm_segment",
    "employee_band",
    "industry",
    "region",
)
ACCOUNT_NUMERIC: tuple[str, ...] = (
    "mrr",
    "seats",
    "tenure_days",
    "days_to_renewal",
    "active_user_ratio_28d",
    "active_users_28d",
    "active_users_prev_28d",
    "active_users_trend",
    "logins_28d",
    "logins_prev_28d",
    "logins_trend",
    "key_feature_events_28d",
    "key_feature_events_prev_28d",
    "key_feature_events_trend",
    "tickets_90d",
    "high_priority_tickets_90d",
    "mean_satisfaction_90d",
    "open_tickets",
    "open_ticket_mean_age_days",
    "rfm_recency_days",
    "rfm_frequency",
    "rfm_monetary",
    "account_touches_30d",
    "account_touches_90d",
)
ACCOUNT_FEATURES: tuple[str, ...] = ACCOUNT_NUMERIC + ACCOUNT_CATEGORICAL

# The values a numeric lead or account feature can take, by definition: counts, days, amounts
# and rates are never negative; trends and velocities are signed; a few are bounded by what
# they measure. MAX_FEATURE_VALUE caps the rest far above any real CRM (a billion touches,
# days or dollars of MRR) so that nonsense such as 1e308 is refused, not scored.
MAX_FEATURE_VALUE = 1e9
SIGNED_FEATURES: frozenset[str] = frozenset(
    {"touch_velocity_14d", "active_users_trend", "logins_trend", "key_feature_events_trend"}
)
BOUNDED_FEATURES: dict[str, tuple[float, float]] = {
    "account_is_customer": (0.0, 1.0),
    "active_user_ratio_28d": (0.0, 1.0),
    "mean_satisfaction_90d": (1.0, 5.0),  # the contract's satisfaction scale
}


def numeric_domain(name: str) -> tuple[float, float]:
    """(lowest, highest) value the numeric feature ``name`` can take."""
    if name in BOUNDED_FEATURES:
        return BOUNDED_FEATURES[name]
    if name in SIGNED_FEATURES:
        return (-MAX_FEATURE_VALUE, MAX_FEATURE_VALUE)
    return (0.0, MAX_FEATURE_VALUE)


CONTENT_CATEGORICAL: tuple[str, ...] = ("content_type", "topic")
CONTENT_NUMERIC: tuple[str, ...] = (
    "days_since_published",
    "reach",
    "reach_30d",
    "engaged_leads",
    "converted_engaged_leads",
    "engaged_conversion_rate",
)
CONTENT_FEATURES: tuple[str, ...] = CONTENT_NUMERIC + CONTENT_CATEGORICAL

RFM_SEGMENTS: tuple[str, ...] = ("champion", "loyal", "recent", "at_risk", "lapsed", "no_deals")

# entity → (join key, feature table file stem, numeric features, categorical features)
ENTITIES: dict[str, tuple[str, str, tuple[str, ...], tuple[str, ...]]] = {
    "lead": ("lead_id", "lead_features", LEAD_NUMERIC, LEAD_CATEGORICAL),
    "account": ("account_id", "account_features", ACCOUNT_NUMERIC, ACCOUNT_CATEGORICAL),
    "content": ("content_id", "content_features", CONTENT_NUMERIC, CONTENT_CATEGORICAL),
}

# Lifecycle ("status") tables: where each lead and account stands in the CRM as of the data's
# as-of time. Never model features (no feature service names them); the scoring service reads
# them beside the features to tell scorable entities from closed ones. Timestamps are ISO 8601
# strings (UTC), missing when not known.
LEAD_STATUS_FIELDS: tuple[str, ...] = ("status", "created_at", "converted_at")
ACCOUNT_STATUS_FIELDS: tuple[str, ...] = ("status", "customer_since", "cancelled_at")
# lead.status: the CRM's own value (open, recycled, converted, disqualified), "converted"
# whenever converted_at is set. account.status: customer (a live subscription), cancelled (every
# subscription cancelled), prospect (never subscribed).
ACCOUNT_STATUSES: tuple[str, ...] = ("customer", "cancelled", "prospect")
CLOSED_STATUSES: dict[str, tuple[str, ...]] = {
    "lead": ("converted", "disqualified"),
    "account": ("cancelled",),
}
# entity → (join key, status table file stem = feature view name, fields)
STATUS_TABLES: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "lead": ("lead_id", "lead_status", LEAD_STATUS_FIELDS),
    "account": ("account_id", "account_status", ACCOUNT_STATUS_FIELDS),
}
