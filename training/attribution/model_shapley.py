"""Model-based Shapley attribution: Shapley values of a learned conversion model, per journey.

For a converted journey with channels ``N``, a coalition ``S ⊆ N`` is worth the learned model's
conversion probability of the journey restricted to ``S`` (its touches on channels outside ``S``
removed, the features recomputed; :mod:`training.attribution.data_driven` chooses and fits the
model). Channel ``c``'s Shapley value averages its marginal worth ``v(S ∪ {c}) - v(S)`` over every
order in which the journey's channels could join, so a synergy (a demo after a webinar) is split
between the pair instead of credited to both, as removal does. The values of one journey sum to
``p(journey) - p(no touch)``; divided by ``p(journey)`` they are the fractions of its conversion
each channel earns, which are credited like the data-driven model's removal fractions (summed
per channel, scaled to the total conversions and revenue).

Exact (every coalition, ``2 ** m`` model evaluations for a journey with ``m`` channels) up to
``max_exact_players`` channels in a journey; beyond, estimated from random orderings, each used
with its reverse.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from training.attribution.credit import Attribution, require_conversions
from training.attribution.data_driven import (
    ConversionModel,
    converted_journeys,
    credit_from_fractions,
)
from training.attribution.journey_features import days_before_last_touch, journey_matrix
from training.attribution.journeys import Journeys
from training.attribution.shapley import MAX_EXACT_PLAYERS


def _local_players(journeys: Journeys) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per journey its number of channels ``m`` and the channel of each local player, and per
    touch the local index of its channel (channels in index order)."""
    present = journey_matrix(journeys, "counts") > 0
    rank = np.cumsum(present, axis=1) - 1
    m = present.sum(axis=1)
    local = rank[journeys.touch_journey, journeys.channel]
    players = np.full(present.shape, -1)
    rows, channels = np.nonzero(present)
    players[rows, rank[rows, channels]] = channels
    return m, players, local


def _tiled(group: Journeys, copies: int) -> Journeys:
    """``copies`` copies of the journeys, one after another (each copy's touches in order)."""
    lengths = np.tile(group.lengths, copies)

    def tile(values: np.ndarray | None) -> np.ndarray | None:
        return None if values is None else np.tile(values, copies)

    return replace(
        group,
        journey_id=np.tile(group.journey_id, copies),
        offsets=np.concatenate([[0], np.cumsum(lengths)]).astype(group.offsets.dtype),
        channel=np.tile(group.channel, copies),
        conversions=np.tile(group.conversions, copies),
        value=np.tile(group.value, copies),
        nulls=np.tile(group.nulls, copies),
        content=tile(group.content),
        touched_at=tile(group.touched_at),
        ended_at=tile(group.ended_at),
        converted_at=tile(group.converted_at),
    )


MAX_ROWS = 400_000  # journey copies scored in one call


def _exact(
    model: ConversionModel, group: Journeys, local: np.ndarray, days: np.ndarray | None, m: int
) -> np.ndarray:
    """Per journey of ``group`` (all with ``m`` channels) the Shapley value of each local player.

    Every coalition of every journey is one copy of the journey with the other players'
    touches removed, scored in as few model calls as memory allows."""
    n = group.n_journeys
    values = np.empty((n, 2**m))
    per_call = max(1, MAX_ROWS // max(n, 1))
    for start in range(0, 2**m, per_call):
        subsets = np.arange(start, min(start + per_call, 2**m))
        copies = _tiled(group, len(subsets))
        subset_of_touch = np.repeat(subsets, group.n_touches)
        keep = ((subset_of_touch >> np.tile(local, len(subsets))) & 1).astype(bool)
        tiled_days = None if days is None else np.tile(days, len(subsets))
        scored = model.probability(copies, keep=keep, days=tiled_days)
        values[:, subsets] = scored.reshape(len(subsets), n).T
    weights = np.array(
        [math.factorial(s) * math.factorial(m - s - 1) / math.factorial(m) for s in range(m)]
    )
    size = np.array([bin(s).count("1") for s in range(2**m)])
    phi = np.zeros((n, m))
    for player in range(m):
        bit = 1 << player
        without = np.array([s for s in range(2**m) if not s & bit])
        phi[:, player] = (values[:, without | bit] - values[:, without]) @ weights[size[without]]
    return phi


def _sampled(
    model: ConversionModel,
    group: Journeys,
    local: np.ndarray,
    days: np.ndarray | None,
    m: int,
    permutations: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Shapley values estimated from random orderings of the players (and their reverses)."""
    phi = np.zeros((group.n_journeys, m))
    orders = [rng.permutation(m) for _ in range(max(1, permutations // 2))]
    orders += [order[::-1] for order in orders]
    for order in orders:
        joined = np.zeros(m, dtype=bool)
        previous = model.probability(group, keep=np.zeros(group.n_touches, dtype=bool), days=days)
        for player in order:
            joined[player] = True
            current = model.probability(group, keep=joined[local], days=days)
            phi[:, player] += current - previous
            previous = current
    return phi / len(orders)


def shapley_fractions(
    model: ConversionModel,
    subset: Journeys,
    max_exact_players: int = MAX_EXACT_PLAYERS,
    permutations: int = 200,
    seed: int = 0,
) -> tuple[np.ndarray, int]:
    """Per journey of ``subset`` and channel, the channel's Shapley value of ``model``'s
    conversion probability over the journey's channels, as a fraction of the journey's
    probability; and how many journeys were sampled (more channels than ``max_exact_players``)."""
    k = len(subset.channels)
    fractions = np.zeros((subset.n_journeys, k))
    sampled = 0
    if model.classifier is None:
        return fractions, sampled
    days = days_before_last_touch(subset)
    m_of, players, local = _local_players(subset)
    full = model.probability(subset, days=days)
    rng = np.random.default_rng(seed)
    for m in np.unique(m_of):
        rows = m_of == m
        group = subset.select(rows)
        touches = np.repeat(rows, subset.lengths)
        group_days = None if days is None else days[touches]
        if m <= max_exact_players:
            phi = _exact(model, group, local[touches], group_days, int(m))
        else:
            phi = _sampled(model, group, local[touches], group_days, int(m), permutations, rng)
            sampled += int(rows.sum())
        index = np.flatnonzero(rows)
        for player in range(int(m)):
            channel = players[rows, player]
            fractions[index, channel] = phi[:, player] / full[rows]
    return fractions, sampled


def model_shapley(
    journeys: Journeys,
    model: ConversionModel,
    max_exact_players: int = MAX_EXACT_PLAYERS,
    permutations: int = 200,
    seed: int = 0,
) -> Attribution:
    """Credit by per-journey Shapley values of ``model``'s conversion probability.

    Each converted journey's conversion (and revenue) is shared among its channels in
    proportion to their positive Shapley values (evenly when none is positive), so one
    conversion's credit sums to that conversion, and the run's credit is the sum of its
    conversions' (:func:`training.attribution.data_driven.credit_from_fractions` with
    ``per_journey``).

    Returns:
        Credit per channel and content item; ``details`` holds ``model`` (the conversion model's
        candidate), ``sampled_journeys`` (journeys with more channels than
        ``max_exact_players``) and ``removal_effects`` (per channel, the summed Shapley fractions
        before scaling).
    """
    require_conversions(journeys)
    converted, subset = converted_journeys(journeys)
    fractions, sampled = shapley_fractions(model, subset, max_exact_players, permutations, seed)
    details: dict[str, object] = {"model": model.candidate.name, "sampled_journeys": sampled}
    return credit_from_fractions(
        journeys, "data_driven_shapley", converted, subset, fractions, details, per_journey=True
    )
