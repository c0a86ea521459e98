"""The learned model credits the channel that moves conversion, not the one that is merely there."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from training.attribution import Journeys, paths_to_journeys
from training.attribution.data_driven import data_driven, journey_features

pytestmark = pytest.mark.unit


def planted(n: int = 6000, seed: int = 0) -> Journeys:
    """Each touch on "good" adds to the conversion odds; "noise" touches change nothing."""
    rng = np.random.default_rng(seed)
    good = rng.poisson(0.8, n)
    noise = rng.poisson(1.5, n)
    keep = good + noise > 0
    good, noise = good[keep], noise[keep]
    p = 1 / (1 + np.exp(-(-3.0 + 1.2 * good)))
    converted = rng.random(len(p)) < p
    paths = [
        " > ".join(rng.permutation(["good"] * g + ["noise"] * z))
        for g, z in zip(good, noise, strict=True)
    ]
    return paths_to_journeys(
        pd.DataFrame(
            {
                "path": paths,
                "total_conversions": converted.astype(int),
                "total_conversion_value": np.where(converted, 100.0, 0.0),
                "total_null": (~converted).astype(int),
            }
        )
    )


def test_features_count_touches_per_channel() -> None:
    journeys = paths_to_journeys(
        pd.DataFrame({"path": ["a > b > a", "b"], "total_conversions": [1, 0]})
    )
    assert journey_features(journeys).tolist() == [[2.0, 1.0], [0.0, 1.0]]


def test_credit_goes_to_the_channel_that_moves_conversion() -> None:
    # given journeys where only "good" touches raise conversion
    journeys = planted()
    # when
    result = data_driven(journeys)
    # then "good" takes nearly all credit, which sums to the conversions and revenue
    share = dict(zip(result.channels["channel"], result.channels["share"], strict=True))
    assert share["good"] > 0.9
    assert result.channels["conversions"].sum() == pytest.approx(journeys.total_conversions)
    assert result.channels["value"].sum() == pytest.approx(journeys.total_value)
    assert result.details["holdout_auc"] > 0.7
    assert result.details["fallback"] is False


def test_same_seed_gives_the_same_credit() -> None:
    journeys = planted(2000, seed=1)
    a, b = data_driven(journeys, random_state=3), data_driven(journeys, random_state=3)
    assert a.channels["conversions"].tolist() == b.channels["conversions"].tolist()


def test_without_non_converting_journeys_credit_is_split_evenly_and_flagged() -> None:
    journeys = paths_to_journeys(
        pd.DataFrame(
            {
                "path": ["a > b", "a"],
                "total_conversions": [1, 1],
                "total_conversion_value": [10.0, 20.0],
            }
        )
    )
    result = data_driven(journeys, validation_fraction=0)
    assert result.details["fallback"] is True
    assert dict(
        zip(result.channels["channel"], result.channels["conversions"], strict=True)
    ) == pytest.approx({"a": 1.5, "b": 0.5})
    assert dict(
        zip(result.channels["channel"], result.channels["value"], strict=True)
    ) == pytest.approx({"a": 25.0, "b": 5.0})
