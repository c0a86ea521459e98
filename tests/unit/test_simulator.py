"""The demo CRM: deterministic, inside the contract, realistic, and point-in-time sane."""

from __future__ import annotations

import pandas as pd
import pytest

from crm.contract import validate_tables
from simulator import SimulationConfig, SimulationResult, simulate

pytestmark = pytest.mark.unit


def test_same_seed_gives_equal_tables_and_other_seed_differs() -> None:
    config = SimulationConfig(seed=3, accounts=100, leads=800, months=6)
    first, again, other = (
        simulate(config),
        simulate(config),
        simulate(SimulationConfig(seed=4, accounts=100, leads=800, months=6)),
    )
    for name, frame in first.tables.items():
        pd.testing.assert_frame_equal(frame, again.tables[name])
    assert not first.tables["interactions"].equals(other.tables["interactions"])


def test_tables_satisfy_the_contract(small_sim: SimulationResult) -> None:
    end = pd.Timestamp(small_sim.summary["end"])
    typed = validate_tables(small_sim.tables, now=end)
    assert {name: len(frame) for name, frame in typed.items()} == small_sim.summary["rows"]


def test_rates_are_realistic(small_sim: SimulationResult) -> None:
    summary = small_sim.summary
    assert 0.02 <= summary["lead_conversion_rate"] <= 0.20
    assert 0.10 <= summary["annual_logo_churn"] <= 0.25
    touches = summary["touches_per_lead"]
    assert 0.0 < touches["no_touches"] < 0.2  # some leads are never touched
    assert 3 <= touches["mean"] <= 15 and touches["p95"] <= 30


def test_no_touch_after_conversion_or_before_creation(small_sim: SimulationResult) -> None:
    leads = small_sim.tables["leads"].set_index("lead_id")
    touches = small_sim.tables["interactions"].dropna(subset=["lead_id"])
    created = leads["created_at"].reindex(touches["lead_id"]).to_numpy()
    converted = leads["converted_at"].reindex(touches["lead_id"]).to_numpy()
    occurred = touches["occurred_at"].to_numpy()
    assert (occurred >= created).all()
    assert not (occurred >= converted).any()  # NaT compares False


def test_content_is_touched_only_after_it_is_published(small_sim: SimulationResult) -> None:
    content = small_sim.tables["content"].set_index("content_id")["published_at"]
    touches = small_sim.tables["interactions"].dropna(subset=["content_id"])
    published = content.reindex(touches["content_id"]).to_numpy()
    assert len(touches) > 0
    assert (touches["occurred_at"].to_numpy() > published).all()


def test_usage_and_tickets_stop_when_an_account_churns(small_sim: SimulationResult) -> None:
    cancelled = small_sim.tables["subscriptions"].groupby("account_id")["cancelled_at"].min()
    usage = small_sim.tables["usage"]
    tickets = small_sim.tables["tickets"]
    assert not (usage["date"].to_numpy() > cancelled.reindex(usage["account_id"]).to_numpy()).any()
    assert not (
        tickets["opened_at"].to_numpy() > cancelled.reindex(tickets["account_id"]).to_numpy()
    ).any()


def test_won_opportunities_belong_to_converted_leads(small_sim: SimulationResult) -> None:
    opps = small_sim.tables["opportunities"]
    leads = small_sim.tables["leads"].set_index("lead_id")
    assert leads["converted_at"].reindex(opps["lead_id"]).notna().all()
    closed = opps.dropna(subset=["won"])
    assert 0.2 <= closed["won"].astype(bool).mean() <= 0.6


@pytest.mark.parametrize(
    "bad", [dict(leads=5), dict(accounts=0), dict(months=1), dict(start="2024-01-03")]
)
def test_bad_config_is_refused_with_the_field_named(bad: dict) -> None:
    field = next(iter(bad))
    with pytest.raises(ValueError, match=field):
        SimulationConfig(**bad)
