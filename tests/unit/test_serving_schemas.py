"""serving.schemas: bad input is rejected with the offending field named."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from features.schema import LEAD_FEATURES
from serving.schemas import (
    MAX_IDS,
    AttributionRequest,
    LeadFeatures,
    ScoreAccountsRequest,
    ScoreLeadsRequest,
)

pytestmark = pytest.mark.unit


def _locs(err: ValidationError) -> list[tuple]:
    return [tuple(e["loc"]) for e in err.errors()]


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"lead_ids": []}, ("lead_ids",)),
        ({"lead_ids": ["x"] * (MAX_IDS + 1)}, ("lead_ids",)),
        ({"lead_ids": [3]}, ("lead_ids", 0)),
        ({"lead_ids": ["has space"]}, ("lead_ids", 0)),
        ({"lead_ids": ["a"], "extra": 1}, ("extra",)),
        ({"leads": [{"lead_id": "a", "features": {"nope": 1}}]}, ("leads", 0, "features", "nope")),
        (
            {"leads": [{"lead_id": "a", "features": {"touches_7d": "many"}}]},
            ("leads", 0, "features", "touches_7d"),
        ),
        (
            {"leads": [{"lead_id": "a", "features": {"seniority": 3}}]},
            ("leads", 0, "features", "seniority"),
        ),
        ({"lead_ids": ["a"], "top_reasons": -1}, ("top_reasons",)),
        ({"lead_ids": ["a"], "allow_stale": "sometimes"}, ("allow_stale",)),
    ],
)
def test_bad_lead_requests_name_the_field(body, loc):
    with pytest.raises(ValidationError) as err:
        ScoreLeadsRequest.model_validate(body)
    assert loc in _locs(err.value)


@pytest.mark.parametrize("body", [{}, {"lead_ids": ["a"], "leads": [{"lead_id": "a"}]}])
def test_exactly_one_of_ids_or_leads(body):
    with pytest.raises(ValidationError, match="exactly one of 'lead_ids' or 'leads'"):
        ScoreLeadsRequest.model_validate(body)


def test_non_finite_numbers_are_rejected_from_json():
    with pytest.raises(ValidationError):
        ScoreLeadsRequest.model_validate_json(
            '{"leads": [{"lead_id": "a", "features": {"touches_7d": NaN}}]}'
        )


def test_valid_requests_parse():
    req = ScoreLeadsRequest.model_validate(
        {"leads": [{"lead_id": "L1", "features": {"touches_7d": 2, "seniority": "vp"}}]}
    )
    assert req.leads[0].features.model_dump(exclude_unset=True) == {
        "touches_7d": 2.0,
        "seniority": "vp",
    }
    accounts = ScoreAccountsRequest.model_validate({"account_ids": ["A1"]})
    assert accounts.top_reasons == 3 and accounts.allow_stale is False
    assert ScoreLeadsRequest.model_validate({"lead_ids": ["L1"], "allow_stale": True}).allow_stale
    assert set(LeadFeatures.model_fields) == set(LEAD_FEATURES)


def test_attribution_request_needs_journeys_or_period_and_known_channels():
    with pytest.raises(ValidationError, match="exactly one of 'journeys' or 'period'"):
        AttributionRequest.model_validate({})
    with pytest.raises(ValidationError) as err:
        AttributionRequest.model_validate({"journeys": [{"channels": ["carrier_pigeon"]}]})
    assert ("journeys", 0, "channels", 0) in _locs(err.value)
    with pytest.raises(ValidationError, match="before its start"):
        AttributionRequest.model_validate({"period": {"start": "2026-02-01", "end": "2026-01-01"}})


def test_results_name_their_status_and_the_margin_unambiguously():
    from serving.schemas import AccountScore, LeadScore

    lead = LeadScore.model_validate({"lead_id": "L1", "status": "closed"})
    assert lead.grade is None and lead.raw_margin is None and lead.stale is False
    fields = LeadScore.model_fields
    assert "log_odds" not in fields and "calibrator" in (fields["raw_margin"].description or "")
    assert set(AccountScore.model_fields) - set(fields) == {
        "account_id",
        "risk_band",
        "revenue_at_risk",
        "rfm_segment",
        "expected_remaining_months",
        "lifetime_value",
        "lifetime_value_low",
        "lifetime_value_high",
    }
    with pytest.raises(ValidationError):
        LeadScore.model_validate({"lead_id": "L1", "status": "expired"})
