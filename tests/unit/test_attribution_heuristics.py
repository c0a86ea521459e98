"""Rule-based models on hand-checkable journeys."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from training.attribution import EmptyJourneysError, Journeys, paths_to_journeys
from training.attribution.errors import AttributionError
from training.attribution.heuristics import (
    first_touch,
    last_touch,
    linear,
    position_based,
    time_decay,
)

pytestmark = pytest.mark.unit


def journeys() -> Journeys:
    """``a > b > a > c`` converting twice (value 40) and ``b`` converting once (value 5)."""
    return paths_to_journeys(
        pd.DataFrame(
            {
                "path": ["a > b > a > c", "b", "c > a"],
                "total_conversions": [2, 1, 0],
                "total_conversion_value": [40.0, 5.0, 0.0],
                "total_null": [1, 3, 4],
            }
        )
    )


def credit(result) -> dict[str, float]:
    return dict(zip(result.channels["channel"], result.channels["conversions"], strict=True))


def value(result) -> dict[str, float]:
    return dict(zip(result.channels["channel"], result.channels["value"], strict=True))


def test_first_and_last_touch_give_everything_to_one_end() -> None:
    assert credit(first_touch(journeys())) == {"a": 2.0, "b": 1.0, "c": 0.0}
    assert credit(last_touch(journeys())) == {"a": 0.0, "b": 1.0, "c": 2.0}
    assert value(last_touch(journeys())) == {"a": 0.0, "b": 5.0, "c": 40.0}


def test_linear_counts_repeated_channels_once_per_touch() -> None:
    result = linear(journeys())
    assert credit(result) == pytest.approx({"a": 1.0, "b": 1.5, "c": 0.5})
    assert value(result) == pytest.approx({"a": 20.0, "b": 15.0, "c": 10.0})
    assert result.channels["share"].tolist() == pytest.approx([1 / 3, 1 / 2, 1 / 6])


def test_position_based_gives_40_20_40_and_handles_short_paths() -> None:
    result = position_based(journeys())
    # a > b > a > c: a 0.4 + 0.1, b 0.1, c 0.4; times 2 conversions; b alone gets 1
    assert credit(result) == pytest.approx({"a": 1.0, "b": 1.2, "c": 0.8})
    two = paths_to_journeys(pd.DataFrame({"path": ["x > y"], "total_conversions": [1]}))
    assert credit(position_based(two, first=0.3, last=0.5)) == pytest.approx(
        {"x": 0.375, "y": 0.625}
    )


def test_time_decay_without_times_halves_per_step_before_the_last() -> None:
    # a > b > a > c with half-life 1 touch: weights 1/8, 1/4, 1/2, 1 (sum 15/8)
    result = time_decay(journeys(), half_life_touches=1.0)
    assert credit(result) == pytest.approx(
        {
            "a": 2 * (1 / 8 + 1 / 2) / (15 / 8),
            "b": 2 * (1 / 4) / (15 / 8) + 1,
            "c": 2 * 1 / (15 / 8),
        }
    )
    assert result.details["half_life_unit"] == "touches"


def test_time_decay_with_times_uses_days_before_the_conversion() -> None:
    # given one journey with touches 14 and 7 days before its conversion
    day = np.timedelta64(86400 * 10**9, "ns")
    end = np.datetime64("2024-03-01T00:00:00", "ns")
    journey = Journeys(
        journey_id=np.array(["L1"], dtype=object),
        offsets=np.array([0, 2]),
        channel=np.array([0, 1], dtype=np.int32),
        channels=("email", "sales"),
        conversions=np.array([1.0]),
        value=np.array([90.0]),
        nulls=np.array([0.0]),
        touched_at=np.array([end - 14 * day, end - 7 * day]),
        ended_at=np.array([end]),
    )
    # when credited with a 7-day half-life
    result = time_decay(journey, half_life_days=7.0)
    # then the older touch weighs half the younger one
    assert credit(result) == pytest.approx({"email": 1 / 3, "sales": 2 / 3})
    assert value(result) == pytest.approx({"email": 30.0, "sales": 60.0})


def test_every_heuristic_sums_to_total_conversions_and_value() -> None:
    for model in (first_touch, last_touch, linear, time_decay, position_based):
        result = model(journeys())
        assert result.channels["conversions"].sum() == pytest.approx(3.0)
        assert result.channels["value"].sum() == pytest.approx(45.0)
        assert result.channels["share"].sum() == pytest.approx(1.0)


def test_no_conversion_and_bad_parameters_are_named_errors() -> None:
    none = paths_to_journeys(
        pd.DataFrame({"path": ["a"], "total_conversions": [0], "total_null": [3]})
    )
    with pytest.raises(EmptyJourneysError, match="no conversions to credit"):
        linear(none)
    with pytest.raises(AttributionError, match="half_life_touches must be > 0"):
        time_decay(journeys(), half_life_touches=0)
    with pytest.raises(AttributionError, match="position weights"):
        position_based(journeys(), first=0.7, last=0.7)
