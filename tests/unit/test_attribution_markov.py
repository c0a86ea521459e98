"""Markov removal effects on chains small enough to solve by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from training.attribution import paths_to_journeys
from training.attribution.errors import AttributionError
from training.attribution.markov import fit_chain, markov, removal_effects

pytestmark = pytest.mark.unit


def paths(rows: list[tuple[str, float, float, float]]):
    return paths_to_journeys(
        pd.DataFrame(
            rows, columns=["path", "total_conversions", "total_conversion_value", "total_null"]
        )
    )


def credit(result, column: str = "conversions") -> dict[str, float]:
    return dict(zip(result.channels["channel"], result.channels[column], strict=True))


def test_first_order_removal_effects_match_the_hand_solution() -> None:
    # given: a > b converts (value 10), a never does, b converts once in two (value 30)
    journeys = paths([("a > b", 1, 10.0, 0), ("a", 0, 0.0, 1), ("b", 1, 30.0, 1)])
    # when
    result = markov(journeys, order=1)
    # then P(conv) = 1/2; without a it is 1/3 (effect 1/3), without b 0 (effect 1)
    effects = result.details["removal_effects"].set_index("channel")
    assert effects["removal_effect"].to_dict() == pytest.approx({"a": 1 / 3, "b": 1.0})
    assert result.details["conversion_probability"] == pytest.approx(0.5)
    assert credit(result) == pytest.approx({"a": 0.5, "b": 1.5})
    assert credit(result, "value") == pytest.approx({"a": 10.0, "b": 30.0})


def test_second_order_sees_which_channel_came_before() -> None:
    # given b converts after a but not after c
    journeys = paths([("a > b", 1, 0.0, 0), ("c > b", 0, 0.0, 1)])
    # when / then: first order cannot tell a from c, second order can
    assert credit(markov(journeys, order=1)) == pytest.approx({"a": 0.25, "b": 0.5, "c": 0.25})
    assert credit(markov(journeys, order=2)) == pytest.approx({"a": 0.5, "b": 0.5, "c": 0.0})


def test_closed_form_and_one_solve_per_channel_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    # given a random set of paths
    rng = np.random.default_rng(3)
    names = list("abcdef")
    rows = [
        (
            " > ".join(rng.choice(names, rng.integers(1, 6))),
            int(rng.integers(0, 4)),
            float(rng.integers(0, 50)),
            int(rng.integers(0, 6)),
        )
        for _ in range(300)
    ]
    rows = [(p, c, v if c else 0.0, n) for p, c, v, n in rows]
    journeys = paths(rows)
    chain = fit_chain(journeys, journeys.channel, len(journeys.channels), order=1)
    # when removal effects come from the fundamental matrix, then from one solve per channel
    closed = removal_effects(chain)
    monkeypatch.setattr("training.attribution.markov.MAX_DENSE_STATES", 0)
    solved = removal_effects(chain)
    # then they agree, and the chain reproduces the observed conversion rate
    assert closed[0] == pytest.approx(solved[0], abs=1e-10)
    assert closed[1] == pytest.approx(solved[1], abs=1e-10)
    assert closed[2] == pytest.approx(journeys.total_conversions / journeys.total_journeys)


@pytest.mark.parametrize("order", [1, 2, 3])
def test_credit_sums_to_conversions_and_revenue_for_every_order(order: int) -> None:
    journeys = paths([("a > b > c", 3, 30.0, 2), ("b > a", 1, 5.0, 4), ("c", 2, 8.0, 1)])
    result = markov(journeys, order=order)
    assert result.model == f"markov_{order}"
    assert result.channels["conversions"].sum() == pytest.approx(6.0)
    assert result.channels["value"].sum() == pytest.approx(43.0)


def test_order_outside_one_to_three_is_refused() -> None:
    with pytest.raises(AttributionError, match="order must be 1, 2 or 3"):
        markov(paths([("a", 1, 0.0, 0)]), order=4)
