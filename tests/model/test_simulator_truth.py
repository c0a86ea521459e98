"""The planted ground truth agrees with what the simulated CRM actually did."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from crm.contract import CHANNELS
from simulator import SimulationConfig, SimulationResult, simulate
from simulator.touches import CHANNEL_WEIGHT

pytestmark = pytest.mark.model

WINDOW = pd.Timedelta(days=90)


@pytest.fixture(scope="module")
def sim() -> SimulationResult:
    return simulate(SimulationConfig(seed=5, accounts=1_500, leads=20_000, months=15))


def _calibration_gap(
    truth: pd.DataFrame, key: str, p: str, event_at: pd.Series, end: pd.Timestamp
) -> tuple[float, float]:
    """Mean true probability minus realised rate, and its standard error clustered by entity."""
    rows = truth[truth["snapshot_at"] + WINDOW <= end]
    event = pd.Series(event_at.reindex(rows[key]).to_numpy(), index=rows.index)
    start = rows["snapshot_at"]
    happened = ((event > start) & (event <= start + WINDOW)).to_numpy()
    residual = (
        pd.Series(happened.astype(float) - rows[p].to_numpy()).groupby(rows[key].to_numpy()).sum()
    )
    gap = -residual.sum() / len(rows)
    se = np.sqrt((residual**2).sum()) / len(rows)
    return gap, se


def test_true_conversion_probability_matches_realised_rate(sim: SimulationResult) -> None:
    converted_at = sim.tables["leads"].set_index("lead_id")["converted_at"]
    gap, se = _calibration_gap(
        sim.truth["lead_conversion"],
        "lead_id",
        "p_convert",
        converted_at,
        pd.Timestamp(sim.summary["end"]),
    )
    assert abs(gap) < 3.5 * se, (gap, se)
    assert se < 0.002  # the check is sharp enough to mean something


def test_true_churn_probability_matches_realised_rate(sim: SimulationResult) -> None:
    cancelled = sim.tables["subscriptions"].groupby("account_id")["cancelled_at"].min()
    gap, se = _calibration_gap(
        sim.truth["churn"], "account_id", "p_churn", cancelled, pd.Timestamp(sim.summary["end"])
    )
    assert abs(gap) < 3.5 * se, (gap, se)
    assert se < 0.005


def test_truth_rows_are_the_open_leads_at_each_snapshot(sim: SimulationResult) -> None:
    truth = sim.truth["lead_conversion"]
    leads = sim.tables["leads"].set_index("lead_id")
    created = leads["created_at"].reindex(truth["lead_id"]).to_numpy()
    converted = leads["converted_at"].reindex(truth["lead_id"]).to_numpy()
    snap = truth["snapshot_at"].to_numpy()
    assert (snap > created).all()
    assert not (converted <= snap).any()
    assert truth["p_convert"].between(0, 1).all()


def test_removing_a_zero_effect_channel_changes_no_conversion(sim: SimulationResult) -> None:
    process = sim.lead_process
    factual = process.conversion_age(process.effect_sum) > 0
    zero = [c for c, w in zip(CHANNELS, CHANNEL_WEIGHT, strict=True) if w == 0]
    assert zero  # the simulator plants at least one
    for name in zero:
        removed = process.touches["channel"] == CHANNELS.index(name)
        assert removed.sum() > 100  # the channel is really there
        assert np.array_equal(process.converted_without(removed), factual)
    shares = sim.truth["attribution_channels"].set_index("channel")
    assert (shares.loc[zero, "conversions_lost"] == 0).all()


def test_counterfactual_shares_are_nonnegative_and_explain_touch_conversions(
    sim: SimulationResult,
) -> None:
    process = sim.lead_process
    factual = process.conversion_age(process.effect_sum) > 0
    no_touches = process.converted_without(np.ones(len(process.touches["lead"]), dtype=bool))
    caused_by_touches = factual & ~no_touches
    assert caused_by_touches.sum() == sim.summary["touch_attributed_conversions"]
    for table in ("attribution_channels", "attribution_content"):
        frame = sim.truth[table]
        assert (frame["share"] >= 0).all() and (frame["conversions_lost"] >= 0).all()
        assert frame["share"].sum() == pytest.approx(1.0)
        assert frame["credited_conversions"].sum() == pytest.approx(caused_by_touches.sum())
    lost_any = np.zeros_like(factual)
    for c in range(len(CHANNELS)):
        lost_any |= factual & ~process.converted_without(process.touches["channel"] == c)
    # every conversion lost by removing one channel is one that touches caused
    assert not (lost_any & ~caused_by_touches).any()
    lost = sim.truth["attribution_channels"]["conversions_lost"].sum()
    assert 0.75 <= lost / caused_by_touches.sum() <= 1.25


def test_content_with_no_effect_loses_nothing(sim: SimulationResult) -> None:
    process = sim.lead_process
    factual = process.conversion_age(process.effect_sum) > 0
    touches = process.touches
    effect_by_item = pd.Series(touches["effect"]).groupby(touches["content"]).sum()
    dead = [k for k, e in effect_by_item.items() if k >= 0 and e == 0]
    assert dead
    for k in dead[:3]:
        assert np.array_equal(process.converted_without(touches["content"] == k), factual)
