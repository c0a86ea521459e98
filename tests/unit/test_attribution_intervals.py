"""Bootstrap intervals of credit shares: resampling journeys, intervals beside the shares."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from planted_paths import planted_paths

from training.attribution import ModelOptions, credit_table, paths_to_journeys, run_models
from training.attribution.intervals import resample
from training.attribution.models import model_intervals

pytestmark = pytest.mark.unit


def planted(n: int = 4000, seed: int = 0):
    """ "good" raises conversion, "noise" does nothing and sits in most journeys."""
    return planted_paths(
        n,
        seed,
        lambda good: 1 - np.exp(-(0.02 + 0.25 * good)),
        good_mean=0.7,
        noise=lambda rng, size: 1 + rng.poisson(1.0, size),
        value=50.0,
    )


def test_a_replicate_keeps_value_per_conversion_and_redraws_counts() -> None:
    journeys = paths_to_journeys(
        pd.DataFrame(
            {
                "path": ["a", "a > b"],
                "total_conversions": [200, 100],
                "total_conversion_value": [2000.0, 500.0],
                "total_null": [800, 0],
            }
        )
    )
    sample = resample(journeys, np.random.default_rng(0))
    assert sample.conversions.tolist() != journeys.conversions.tolist()
    assert sample.value.tolist() == pytest.approx((sample.conversions * [10.0, 5.0]).tolist())
    assert abs(sample.total_journeys - journeys.total_journeys) < 5 * np.sqrt(1100)


def test_intervals_hold_the_share_and_mark_a_channel_of_no_effect() -> None:
    # given journeys where "noise" has no effect
    journeys = planted()
    options = ModelOptions(content=False)
    results = run_models(journeys, ["last_touch", "data_driven"], options)
    # when 20 replicates are drawn
    intervals = model_intervals(journeys, ["last_touch", "data_driven"], options, replicates=20)
    table = credit_table(results, intervals)
    channels = table[table["level"] == "channel"].set_index(["model", "channel"])
    # then each interval is around its share, and "noise" cannot be told from no effect
    assert (channels["share_low"] <= channels["share"] + 1e-9).all()
    assert (channels["share"] <= channels["share_high"] + 1e-9).all()
    assert bool(channels.loc[("data_driven", "noise"), "includes_zero"]) is True
    assert bool(channels.loc[("data_driven", "good"), "includes_zero"]) is False
    assert bool(channels.loc[("last_touch", "noise"), "includes_zero"]) is False
    assert set(intervals["replicates"]) == {20}


def test_without_replicates_the_table_has_empty_interval_columns() -> None:
    journeys = planted(500)
    results = run_models(journeys, ["linear"], ModelOptions(content=False))
    table = credit_table(results, model_intervals(journeys, ["linear"], replicates=0))
    assert {"share_low", "share_high", "includes_zero"} <= set(table.columns)
    assert table["share_low"].isna().all()
