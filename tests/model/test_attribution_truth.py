"""Attribution against the simulator's counterfactual truth (total variation distance, TVD).

The truth is the simulator's: conversions lost when a channel's touches are removed with every
other random draw held fixed, normalised over channels. It is itself a sample quantity, so the
simulation must be large for a TVD of a few hundredths to mean anything: two simulations of 60k
leads differ from each other by about 0.02, and the data-driven model's TVD over seeds 1-3 was
0.088 / 0.062 / 0.039 / 0.034 on average at 20k / 60k / 120k / 200k leads (README table). This
test uses 120k leads (seed 7), about 20 s.
"""

from __future__ import annotations

import pytest

from simulator import SimulationConfig, simulate
from training.attribution import ModelOptions, journeys_from_interactions, run_models, tvd_table

pytestmark = pytest.mark.model

CONFIG = SimulationConfig(seed=7, accounts=10_000, leads=120_000, months=18)
MODELS = [
    "first_touch",
    "last_touch",
    "linear",
    "time_decay",
    "position_based",
    "markov_1",
    "markov_3",
    "shapley",
    "data_driven",
]


@pytest.fixture(scope="module")
def scored():
    sim = simulate(CONFIG)
    tables = sim.tables
    journeys = journeys_from_interactions(
        tables["interactions"], tables["leads"], tables["opportunities"]
    )
    results = run_models(journeys, MODELS, ModelOptions(content=False))
    truth = {"channel": sim.truth["attribution_channels"]}
    tvd = tvd_table(results, truth).set_index("model")["tvd"]
    return journeys, {r.model: r for r in results}, tvd, sim.truth["attribution_channels"]


def test_every_model_credits_exactly_the_conversions_and_revenue(scored) -> None:
    journeys, results, _, _ = scored
    for result in results.values():
        assert result.channels["conversions"].sum() == pytest.approx(journeys.total_conversions)
        assert result.channels["value"].sum() == pytest.approx(journeys.total_value)


def test_shapley_and_data_driven_beat_last_touch(scored) -> None:
    _, _, tvd, _ = scored
    assert tvd["shapley"] < tvd["last_touch"] - 0.03
    assert tvd["data_driven"] < tvd["last_touch"] - 0.1


def test_the_best_model_is_within_005_of_the_truth(scored) -> None:
    _, _, tvd, _ = scored
    assert tvd.idxmin() == "data_driven"
    assert tvd.min() <= 0.05


def test_zero_effect_channels_get_almost_no_data_driven_credit(scored) -> None:
    _, results, _, truth = scored
    share = results["data_driven"].channels.set_index("channel")["share"]
    for channel in truth.loc[truth["effect_weight"] == 0, "channel"]:
        assert share[channel] < 0.02, channel


@pytest.mark.xfail(
    strict=True,
    reason=(
        "Markov removal effects do not beat last touch on this simulator: over seeds 1-3 and "
        "20k-200k leads markov_1/2/3 score TVD 0.28-0.30 against last touch's 0.25-0.28. "
        "Removing a channel that sits in most journeys (email) kills most converting paths, so "
        "presence, not effect, earns Markov credit. See training/attribution/README.md."
    ),
)
def test_markov_beats_last_touch(scored) -> None:
    _, _, tvd, _ = scored
    assert min(tvd["markov_1"], tvd["markov_3"]) < tvd["last_touch"]
