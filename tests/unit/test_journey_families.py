"""The attribution-only journey families: their process, computed one journey at a time, and
their counterfactual truth."""

from __future__ import annotations

import math

import numpy as np
import pytest

from simulator.journey_families import (
    FAMILIES,
    LOGIT_INTERCEPT,
    LOGIT_SCALE,
    conversion_probability,
    removal_truth,
    sample_family,
)

pytestmark = pytest.mark.unit


def one_journey(family, channels: list[int], days: list[float]) -> float:
    """The family's conversion probability written out touch by touch, independently of the
    vectorised code."""
    hazard = family.base_hazard
    seen: dict[int, int] = {}
    for c, d in zip(channels, days, strict=True):
        contribution = family.effect[c] * family.repeat_decay[c] ** seen.get(c, 0)
        if family.recency_half_life_days is not None:
            contribution *= 0.5 ** (d / family.recency_half_life_days)
        hazard += contribution
        seen[c] = seen.get(c, 0) + 1
    if family.synergy is not None:
        first = family.channels.index(family.synergy.first)
        then = family.channels.index(family.synergy.then)
        if any(a == first and b == then for i, a in enumerate(channels) for b in channels[i + 1 :]):
            hazard += family.synergy.bonus
    if family.link == "logit":
        z = LOGIT_INTERCEPT + LOGIT_SCALE * (hazard - family.base_hazard)
        return 1 / (1 + math.exp(-z))
    return 1 - math.exp(-hazard)


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_probability_and_truth_match_the_process_written_out(name: str) -> None:
    # given 300 journeys of the family
    sample = sample_family(name, 300, seed=5)
    family = sample.family
    journeys = [
        (
            sample.channel[a:b].tolist(),
            sample.days_before_end[a:b].tolist(),
        )
        for a, b in zip(sample.offsets[:-1], sample.offsets[1:], strict=True)
    ]
    # then the vectorised probability is the written-out one
    expected = [one_journey(family, c, d) for c, d in journeys]
    assert sample.probability == pytest.approx(expected, rel=1e-9)
    # and the truth is the expected conversions lost when a channel's touches go
    for index, channel in enumerate(family.channels):
        lost = 0.0
        for (c, d), p in zip(journeys, expected, strict=True):
            kept = [(ci, di) for ci, di in zip(c, d, strict=True) if ci != index]
            lost += p - one_journey(family, [k[0] for k in kept], [k[1] for k in kept])
        row = sample.truth.set_index("channel").loc[channel]
        assert row["conversions_lost"] == pytest.approx(lost, rel=1e-9, abs=1e-12)


def test_same_seed_gives_the_same_journeys_and_another_seed_others() -> None:
    a, b = sample_family("order", 2000, seed=3), sample_family("order", 2000, seed=3)
    c = sample_family("order", 2000, seed=4)
    assert np.array_equal(a.channel, b.channel) and np.array_equal(a.converted, b.converted)
    assert not np.array_equal(a.converted, c.converted)


def test_the_targeted_channel_has_no_effect_but_follows_engagement() -> None:
    sample = sample_family("targeting", 20_000, seed=1)
    truth = sample.truth.set_index("channel")
    assert truth.loc["display", "conversions_lost"] == pytest.approx(0.0, abs=1e-9)
    # display is shown mostly to journeys that converted more often
    display = sample.family.channels.index("display")
    journey = np.repeat(np.arange(sample.n_journeys), np.diff(sample.offsets))
    shown = np.zeros(sample.n_journeys, dtype=bool)
    shown[journey[sample.channel == display]] = True
    assert sample.converted[shown].mean() > 1.5 * sample.converted[~shown].mean()


def test_removing_every_channel_loses_what_touches_add() -> None:
    sample = sample_family("frequent", 5000, seed=2)
    truth = removal_truth(
        sample.family, sample.offsets, sample.channel, sample.days_before_end, sample.amount
    )
    assert truth["share"].sum() == pytest.approx(1.0)
    assert (truth["conversions_lost"] >= 0).all()
    base = conversion_probability(
        sample.family,
        np.zeros(sample.n_journeys + 1, dtype=np.int64),
        np.zeros(0, int),
        np.zeros(0),
    )
    assert base == pytest.approx(1 - math.exp(-sample.family.base_hazard))


def test_unknown_family_is_named() -> None:
    with pytest.raises(ValueError, match="unknown journey family 'nope'"):
        sample_family("nope", 10, seed=1)
