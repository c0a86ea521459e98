"""serving.status: which items are scored, from their online row and lifecycle row."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from serving.status import parse_time, standing

pytestmark = pytest.mark.unit

AS_OF = datetime(2025, 6, 30, tzinfo=UTC)
TTL = timedelta(days=14)


def _lead(status: str = "open", converted_at: str | None = None, created: str | None = None):
    return {
        "as_of": AS_OF,
        "status": status,
        "created_at": created or "2025-01-02T10:00:00Z",
        "converted_at": converted_at,
    }


def _record(found: bool = True, at: datetime | None = None, lifecycle=None):
    return {
        "lead_id": "L1",
        "found": found,
        "event_timestamp": (at or AS_OF - timedelta(days=7)) if found else None,
        "lifecycle": lifecycle,
    }


def test_an_open_lead_with_fresh_features_is_scored():
    st = standing("lead", "L1", _record(lifecycle=_lead()), ttl=TTL)
    assert (st.status, st.stale, st.error, st.lifecycle) == ("scored", False, None, "open")
    assert st.feature_row == "snapshot" and st.data_as_of == AS_OF


@pytest.mark.parametrize(
    ("entity", "lifecycle", "since", "words"),
    [
        ("lead", _lead("converted", "2025-06-25T08:00:00Z"), "2025-06-25", "converted on"),
        ("lead", _lead("disqualified"), None, "date not recorded"),
        (
            "account",
            {"as_of": AS_OF, "status": "cancelled", "cancelled_at": "2025-05-01T00:00:00Z"},
            "2025-05-01",
            "cancelled on",
        ),
    ],
)
def test_converted_disqualified_and_cancelled_are_closed_whatever_their_features(
    entity, lifecycle, since, words
):
    # given fresh online features and features in the request too
    st = standing(entity, "X1", _record(lifecycle=lifecycle), given=True, ttl=TTL)
    # then the item is closed, since when it is known, and not scored
    assert st.status == "closed" and not st.scorable
    assert st.error is not None and st.error["code"] == "closed" and words in st.error["message"]
    assert (st.closed_at.date().isoformat() if st.closed_at else None) == since
    assert st.lifecycle == lifecycle["status"]


def test_old_features_are_stale_unless_allowed():
    old = AS_OF - timedelta(days=40)
    st = standing("lead", "L1", _record(at=old, lifecycle=_lead("recycled")), ttl=TTL, field="f")
    assert (st.status, st.stale) == ("stale", True)
    assert st.error["code"] == "stale_features" and st.error["field"] == "f"
    assert "40 days" in st.error["message"] and "allow_stale" in st.error["fix"]
    allowed = standing("lead", "L1", _record(at=old, lifecycle=_lead()), ttl=TTL, allow_stale=True)
    assert (allowed.status, allowed.stale, allowed.error) == ("scored", True, None)
    # exactly the TTL old is still fresh
    edge = standing("lead", "L1", _record(at=AS_OF - TTL, lifecycle=_lead()), ttl=TTL)
    assert (edge.status, edge.stale) == ("scored", False)


@pytest.mark.parametrize("later", [0, 1])
def test_a_creation_row_is_scored_and_named_so(later):
    # a creation row is stamped at created_at rounded up to the second
    created = "2025-06-27T09:15:42Z"
    at = parse_time(created) + timedelta(seconds=later)
    st = standing("lead", "L1", _record(at=at, lifecycle=_lead(created=created)), ttl=TTL)
    assert (st.status, st.feature_row) == ("scored", "creation")


@pytest.mark.parametrize(
    ("lifecycle", "given", "status", "code"),
    [
        (None, False, "unknown", "unknown_id"),
        (_lead(), False, "unknown", "no_features"),
        (None, True, "scored", None),
    ],
)
def test_without_online_features(lifecycle, given, status, code):
    st = standing("lead", "L1", _record(found=False, lifecycle=lifecycle), given=given, ttl=TTL)
    assert st.status == status
    assert (st.error or {}).get("code") == code
    assert st.feature_row is None


def test_a_prospect_account_is_unknown_for_churn():
    lifecycle = {"as_of": AS_OF, "status": "prospect", "customer_since": None}
    record = {"account_id": "A1", "found": False, "event_timestamp": None, "lifecycle": lifecycle}
    st = standing("account", "A1", record, ttl=TTL)
    assert (st.status, st.error["code"], st.lifecycle) == ("unknown", "not_a_customer", "prospect")


def test_without_a_lifecycle_row_staleness_is_not_judged():
    st = standing("lead", "L1", _record(at=AS_OF - timedelta(days=400)), ttl=TTL)
    assert (st.status, st.stale, st.lifecycle, st.data_as_of) == ("scored", False, None, None)
