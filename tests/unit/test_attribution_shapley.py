"""Shapley values: exact against brute force, sampled within its stated error."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from training.attribution import paths_to_journeys
from training.attribution.errors import AttributionError
from training.attribution.markov import fit_chain
from training.attribution.shapley import (
    MarkovGame,
    RateGame,
    coalition_values,
    exact_shapley,
    sampled_shapley,
    shapley,
)

pytestmark = pytest.mark.unit


def paths(rows: list[tuple[str, float, float, float]]):
    return paths_to_journeys(
        pd.DataFrame(
            rows, columns=["path", "total_conversions", "total_conversion_value", "total_null"]
        )
    )


def credit(result, column: str = "conversions") -> dict[str, float]:
    return dict(zip(result.channels["channel"], result.channels[column], strict=True))


def every_set_paths():
    """Three channels, every non-empty set observed."""
    return paths(
        [
            ("a", 1, 10.0, 9),
            ("b", 3, 30.0, 7),
            ("c", 2, 5.0, 8),
            ("a > b", 5, 50.0, 5),
            ("b > c", 4, 20.0, 6),
            ("a > c", 3, 15.0, 7),
            ("c > b > a", 7, 70.0, 3),
        ]
    )


def test_rate_game_matches_the_hand_computed_shapley_values() -> None:
    # given rates 0.1 for {a}, 0.3 for {b}, 0.5 for {a, b}, and no prior
    journeys = paths([("a", 1, 10.0, 9), ("b", 3, 30.0, 7), ("a > b", 5, 50.0, 5)])
    # when
    result = shapley(journeys, game="rate", prior_strength=0.0)
    # then phi_a = (0.1 + 0.2) / 2 = 0.15 and phi_b = 0.35, scaled to the 9 conversions
    assert credit(result) == pytest.approx({"a": 9 * 0.15 / 0.5, "b": 9 * 0.35 / 0.5})
    assert result.details["method"] == "exact"


def test_markov_game_exact_values_equal_brute_force_over_all_orderings() -> None:
    journeys = every_set_paths()
    game = MarkovGame(fit_chain(journeys, journeys.channel, len(journeys.channels), order=1))
    worth = coalition_values(game)
    brute = np.zeros((3, 2))
    for order in itertools.permutations(range(3)):
        code = 0
        for player in order:
            brute[player] += (worth[code | 1 << player] - worth[code]) / 6
            code |= 1 << player
    assert exact_shapley(worth) == pytest.approx(brute)
    # efficiency: the values sum to the observed conversions and revenue
    assert brute.sum(axis=0) == pytest.approx([25.0, 200.0])


def test_incremental_prefix_worth_equals_direct_solves() -> None:
    journeys = every_set_paths()
    game = MarkovGame(fit_chain(journeys, journeys.channel, len(journeys.channels), order=1))
    order = np.array([2, 0, 1])
    masks = np.zeros((4, 3), dtype=bool)
    for k in range(1, 4):
        masks[k, order[:k]] = True
    assert game.prefix_values(order) == pytest.approx(game.values(masks))


@pytest.mark.parametrize("game", ["markov", "rate"])
def test_sampled_values_fall_within_their_stated_error_of_the_exact_ones(game: str) -> None:
    journeys = every_set_paths()
    exact = shapley(journeys, game=game, prior_strength=0.0)
    sampled = shapley(
        journeys, game=game, prior_strength=0.0, max_exact_players=2, permutations=400, seed=1
    )
    assert sampled.details["method"].startswith("sampled")
    error = sampled.channels["std_error"].to_numpy()
    gap = np.abs(
        sampled.channels["conversions"].to_numpy() - exact.channels["conversions"].to_numpy()
    )
    assert np.all(gap <= 4 * error + 1e-9)
    assert sampled.channels["conversions"].sum() == pytest.approx(25.0)


def test_rate_game_sampled_raw_values_match_exact_when_every_set_is_seen() -> None:
    journeys = every_set_paths()
    game = RateGame(journeys, journeys.channel, 3, prior_strength=0.0)
    exact = exact_shapley(game.exact_values())
    values, error = sampled_shapley(game, permutations=300, seed=2)
    assert np.all(np.abs(values - exact) <= 4 * error + 1e-12)


def test_shapley_credits_content_by_sampling_and_states_the_error() -> None:
    # given journeys whose touches carry many content items (more players than exact allows)
    rng = np.random.default_rng(0)
    n_journeys, n_content = 400, 20
    lengths = rng.integers(1, 4, n_journeys)
    offsets = np.r_[0, np.cumsum(lengths)]
    content = rng.integers(-1, n_content, offsets[-1]).astype(np.int32)
    conv = (rng.random(n_journeys) < 0.3).astype(float)
    from training.attribution import Journeys

    journeys = Journeys(
        journey_id=np.arange(n_journeys).astype(str).astype(object),
        offsets=offsets,
        channel=rng.integers(0, 3, offsets[-1]).astype(np.int32),
        channels=("a", "b", "c"),
        conversions=conv,
        value=conv * 10,
        nulls=1 - conv,
        content=content,
        contents=tuple(f"C{i:02d}" for i in range(n_content)),
    )
    # when
    result = shapley(journeys, max_exact_players=15, permutations=20)
    # then channels are exact, content sampled with an error, and both sum to the conversions
    assert result.details["method"] == "exact"
    assert result.details["content_method"].startswith("sampled")
    assert result.content["std_error"].notna().all()
    assert result.content["conversions"].sum() == pytest.approx(conv.sum())
    assert result.channels["conversions"].sum() == pytest.approx(conv.sum())


def test_unknown_game_is_refused() -> None:
    with pytest.raises(AttributionError, match="unknown Shapley game"):
        shapley(every_set_paths(), game="banzhaf")
