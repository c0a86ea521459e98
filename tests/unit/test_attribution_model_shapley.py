"""Model-based Shapley: per journey, Shapley values of the learned model over its channels."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from simulator.journey_families import sample_family
from training.attribution.data_driven import fit_conversion_model
from training.attribution.families import family_journeys
from training.attribution.model_shapley import model_shapley

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def fitted():
    journeys = family_journeys(sample_family("order", 8000, seed=4))
    return journeys, fit_conversion_model(journeys)


def brute_force(model, journeys, index: int) -> dict[int, float]:
    """Shapley values of one journey by averaging over every order of its channels."""
    one = journeys.select(np.arange(journeys.n_journeys) == index)
    players = sorted(set(one.channel.tolist()))

    def value(coalition: set[int]) -> float:
        return float(model.probability(one, keep=np.isin(one.channel, list(coalition)))[0])

    phi = dict.fromkeys(players, 0.0)
    orders = list(itertools.permutations(players))
    for order in orders:
        joined: set[int] = set()
        for player in order:
            before = value(joined)
            joined.add(player)
            phi[player] += value(joined) - before
    return {p: v / len(orders) for p, v in phi.items()}


def test_exact_values_match_every_order_averaged(fitted) -> None:
    journeys, model = fitted
    # given converted journeys with two to four channels
    converted = np.flatnonzero(journeys.conversions > 0)
    distinct = [
        i
        for i in converted
        if 2 <= len(set(journeys.channel[journeys.offsets[i] : journeys.offsets[i + 1]])) <= 4
    ][:5]
    result = model_shapley(journeys, model)
    assert result.channels["conversions"].sum() == pytest.approx(journeys.total_conversions)
    # when the credit fractions are recomputed one journey at a time
    for index in distinct:
        phi = brute_force(model, journeys, index)
        one = journeys.select(np.arange(journeys.n_journeys) == index)
        full = float(model.probability(one)[0])
        empty = float(model.probability(one, keep=np.zeros(one.n_touches, dtype=bool))[0])
        # then they are efficient: they sum to p(journey) - p(no touch)
        assert sum(phi.values()) == pytest.approx(full - empty, abs=1e-12)
        single = model_shapley(one, model)
        lost = dict(zip(single.details["channels"], single.details["removal_effects"], strict=True))
        for player, value in phi.items():
            assert lost[journeys.channels[player]] == pytest.approx(value / full, abs=1e-9)


def test_sampled_orders_estimate_the_exact_values(fitted) -> None:
    journeys, model = fitted
    exact = model_shapley(journeys, model)
    sampled = model_shapley(journeys, model, max_exact_players=1, permutations=200, seed=1)
    assert sampled.details["sampled_journeys"] > 0
    e = exact.channels.set_index("channel")["share"]
    s = sampled.channels.set_index("channel")["share"]
    assert (e - s).abs().max() < 0.02
    assert math.isclose(s.sum(), 1.0)
