"""Aggregated path journeys with a planted truth: "good" touches raise conversion, "noise"
touches change nothing. Shared by the attribution unit tests."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from training.attribution import Journeys, paths_to_journeys


def planted_paths(
    n: int,
    seed: int,
    probability: Callable[[np.ndarray], np.ndarray],
    good_mean: float,
    noise: Callable[[np.random.Generator, int], np.ndarray],
    value: float,
) -> Journeys:
    """``n`` journeys (those with at least one touch) of "good" and "noise" touches in random
    order; each converts with ``probability(number of good touches)`` and brings ``value``."""
    rng = np.random.default_rng(seed)
    good = rng.poisson(good_mean, n)
    noisy = noise(rng, n)
    keep = good + noisy > 0
    good, noisy = good[keep], noisy[keep]
    converted = rng.random(len(good)) < probability(good)
    paths = [
        " > ".join(rng.permutation(["good"] * g + ["noise"] * z))
        for g, z in zip(good, noisy, strict=True)
    ]
    return paths_to_journeys(
        pd.DataFrame(
            {
                "path": paths,
                "total_conversions": converted.astype(int),
                "total_conversion_value": np.where(converted, value, 0.0),
                "total_null": (~converted).astype(int),
            }
        )
    )
