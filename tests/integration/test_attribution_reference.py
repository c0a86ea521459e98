"""ChannelAttribution's example paths: heuristics exact, first-order Markov against the reference.

The reference table was produced by ChannelAttribution 2.2.5 with its defaults; its Markov
column is a Monte Carlo estimate (``nsim_start=1e5``, ``conv_par=0.05``, ``seed=0``), while this
package solves the chain exactly. Running ChannelAttribution itself with 100 times more
simulations (``nsim_start=1e7, conv_par=0.005``, seeds 0 and 5) converges to our numbers
(``CONVERGED`` below), and its seeds 1 and 2 at default settings differ from its own seed-0
table by up to 11 % for small channels. So the exact solution is compared with the converged
estimate at 2 %, and with the shipped seed-0 table at 2 % where that holds and at its Monte
Carlo tolerance (12 %) for the channels whose seed-0 estimate is off.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from training.attribution import read_paths, run_models

pytestmark = pytest.mark.integration

FOLDER = Path(__file__).resolve().parents[3] / "shared" / "datasets" / "channel_paths"
DATA = FOLDER / "ChannelAttribution_Data.csv"
REFERENCE = FOLDER / "ChannelAttribution_Data_reference_results.csv"

# ChannelAttribution 2.2.5 markov_model(order=1, nsim_start=1e7, conv_par=0.005): mean of seeds
# 0 and 5 (measured once; see the module docstring).
CONVERGED = {
    "eta": 3331.25,
    "iota": 3885.4,
    "alpha": 5350.6,
    "beta": 2528.15,
    "theta": 1974.7,
    "lambda": 1282.35,
    "kappa": 275.05,
    "zeta": 382.55,
    "epsilon": 598.1,
    "gamma": 170.15,
    "delta": 4.8,
    "mi": 2.0,
}
# Channels whose shipped seed-0 Monte Carlo estimate is more than 2 % from the exact chain.
NOISY_IN_REFERENCE = {"iota", "kappa", "zeta", "epsilon", "gamma"}

needs_data = pytest.mark.skipif(not DATA.exists(), reason=f"{DATA} is not present")


@pytest.fixture(scope="module")
def credit() -> dict[str, pd.Series]:
    journeys = read_paths(DATA)
    results = run_models(journeys, ["first_touch", "last_touch", "linear", "markov_1"])
    return {r.model: r.channels.set_index("channel")["conversions"] for r in results}


@pytest.fixture(scope="module")
def reference() -> pd.DataFrame:
    return pd.read_csv(REFERENCE).set_index("channel_name")


@needs_data
@pytest.mark.parametrize(
    ("model", "column"),
    [
        ("first_touch", "first_touch_conversions"),
        ("last_touch", "last_touch_conversions"),
        ("linear", "linear_touch_conversions"),
    ],
)
def test_heuristics_equal_the_reference_exactly(credit, reference, model: str, column: str) -> None:
    ours = credit[model].reindex(reference.index)
    assert ours.to_numpy() == pytest.approx(reference[column].to_numpy(), rel=1e-12, abs=1e-9)
    assert ours.sum() == pytest.approx(19785.0)


@needs_data
def test_first_order_markov_is_within_2_percent_of_the_converged_estimate(credit) -> None:
    ours = credit["markov_1"]
    for channel, expected in CONVERGED.items():
        if expected >= 100:
            assert ours[channel] == pytest.approx(expected, rel=0.02), channel


@needs_data
def test_first_order_markov_against_the_shipped_reference(credit, reference) -> None:
    ours = credit["markov_1"].reindex(reference.index)
    expected = reference["markov_o1_conversions"]
    large = expected[expected >= 100].index
    gap = (ours[large] / expected[large] - 1).abs()
    assert set(gap[gap > 0.02].index) <= NOISY_IN_REFERENCE
    assert gap[list(set(large) - NOISY_IN_REFERENCE)].max() < 0.02
    assert gap.max() < 0.12
    assert ours.sum() == pytest.approx(19785.0)
