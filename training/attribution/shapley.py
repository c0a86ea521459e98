"""Shapley-value attribution over channels (and content items).

A channel's Shapley value is its marginal worth averaged over every order in which the channels
could join a coalition. Two games price a coalition ``S`` of channels:

* ``"rate"`` (default; the causally motivated game of Dalessandro et al., 2012): ``v(S)`` is the
  conversion rate of journeys whose set of channels is exactly ``S``. A channel earns credit when
  journeys that add it convert more often than journeys without it, so a channel present in
  every journey but moving no one (say, a newsletter) earns little. Rates of rare sets are
  shrunk towards a prior with the weight of ``prior_strength`` journeys: exactly, towards the
  mean rate of the sets one channel smaller (a hierarchy that lets unseen sets borrow from their
  subsets); when sampled, towards the overall rate. The empty set is worth its own rate when
  journeys without any player exist (content: journeys without content), else 0. Values below
  0 are set to 0 and the rest scaled to the total conversions.
* ``"markov"``: ``v(S)`` is the conversions of the first-order Markov chain
  (:mod:`training.attribution.markov`) when every touch outside ``S`` ends its journey without
  conversion; ``v(all)`` is exactly the observed conversions and ``v(none) = 0``, so the values
  sum to the total conversions by themselves (efficiency).

Up to ``max_exact_players`` players (15 by default: 32,768 coalitions) the values are exact.
Beyond, they are estimated from random orderings (each also used reversed, which lowers the
variance), and ``std_error`` states each estimate's standard error, in credited conversions.
Revenue is credited by the same game with each conversion worth its revenue.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from training.attribution.credit import (
    Attribution,
    credit_frame,
    empty_content,
    require_conversions,
    seen_channels,
)
from training.attribution.errors import AttributionError
from training.attribution.journeys import NO_CONTENT, Journeys
from training.attribution.markov import Chain, content_tokens, fit_chain

MAX_EXACT_PLAYERS = 15
GAMES = ("rate", "markov")


def _shapley_weights(n: int) -> np.ndarray:
    return np.array(
        [math.factorial(k) * math.factorial(n - k - 1) / math.factorial(n) for k in range(n)]
    )


class RateGame:
    """The conversion-rate game: a coalition is worth the (shrunk) rate of its exact set.

    Attributes:
        player_token: the token of each player (tokens that occur in some journey).
    """

    def __init__(
        self, journeys: Journeys, tokens: np.ndarray, n_tokens: int, prior_strength: float = 100.0
    ):
        if prior_strength < 0:
            raise AttributionError(f"prior_strength must be >= 0, got {prior_strength}")
        self.player_token = np.flatnonzero(np.bincount(tokens, minlength=n_tokens) > 0)
        self.n_players = len(self.player_token)
        player_of = np.full(n_tokens, -1, dtype=np.int64)
        player_of[self.player_token] = np.arange(self.n_players)
        self.alpha = float(prior_strength)
        weight = journeys.conversions + journeys.nulls
        self.weight, self.conversions, self.value = weight, journeys.conversions, journeys.value
        total = weight.sum()
        self.prior = np.array([journeys.conversions.sum(), journeys.value.sum()]) / total
        self.touch_player = player_of[tokens]
        self.offsets = journeys.offsets
        self.touch_journey = journeys.touch_journey
        self.n_journeys = journeys.n_journeys

    def _pairs(self) -> tuple[np.ndarray, np.ndarray]:
        """Distinct (journey, player) pairs, sorted by journey then player."""
        pairs = np.unique(self.touch_journey * self.n_players + self.touch_player)
        return pairs // self.n_players, pairs % self.n_players

    def _rates(self, n: np.ndarray, outcome: np.ndarray, prior: np.ndarray) -> np.ndarray:
        return (outcome + self.alpha * prior) / np.maximum(n + self.alpha, 1e-300)

    def exact_values(self) -> np.ndarray:
        """Worth of every coalition (bit ``i`` = player ``i``), ``(2**n, 2)``."""
        n = self.n_players
        # Each journey's player set as a bit mask; touches of a journey are contiguous.
        bits = np.zeros(self.n_journeys, dtype=np.int64)
        touched = np.flatnonzero(np.diff(self.offsets) > 0)
        if len(touched):
            flags = np.left_shift(np.int64(1), self.touch_player.astype(np.int64))
            bits[touched] = np.bitwise_or.reduceat(flags, self.offsets[touched])
        count = np.bincount(bits, weights=self.weight, minlength=2**n)
        outcome = np.column_stack(
            [np.bincount(bits, weights=w, minlength=2**n) for w in (self.conversions, self.value)]
        )
        codes = np.arange(2**n, dtype=np.int64)
        size = (
            np.bitwise_count(codes)
            if hasattr(np, "bitwise_count")
            else np.array([bin(c).count("1") for c in codes])
        )
        worth = np.zeros((2**n, 2))
        if count[0] > 0:
            worth[0] = self._rates(count[0], outcome[0], self.prior)
        for k in range(1, n + 1):
            sets = codes[size == k]
            if k == 1:
                prior = np.broadcast_to(self.prior, (len(sets), 2))
            else:
                prior = np.zeros((len(sets), 2))
                for b in range(n):
                    has = (sets >> b) & 1 == 1
                    prior[has] += worth[sets[has] ^ (1 << b)]
                prior = prior / k
            worth[sets] = self._rates(count[sets][:, None], outcome[sets], prior)
        return worth

    def sampled_values(self, permutations: int, seed: int) -> np.ndarray:
        """Per ordering (and its reverse, averaged), each player's marginal worth.

        Returns:
            ``(permutations, n_players, 2)``.
        """
        n = self.n_players
        # Group journeys by their exact player set.
        pair_journey, pair_player = self._pairs()
        starts = np.flatnonzero(np.r_[True, np.diff(pair_journey) != 0])
        members = np.split(pair_player.astype(np.uint32), starts[1:])
        keys = np.array([m.tobytes() for m in members], dtype=object)
        group, uniques = pd.factorize(keys)
        journey_group = np.full(self.n_journeys, -1, dtype=np.int64)
        journey_group[pair_journey[starts]] = group
        count = np.bincount(journey_group + 1, weights=self.weight, minlength=len(uniques) + 1)
        outcome = np.column_stack(
            [
                np.bincount(journey_group + 1, weights=w, minlength=len(uniques) + 1)
                for w in (self.conversions, self.value)
            ]
        )
        empty = self._rates(count[0], outcome[0], self.prior) if count[0] > 0 else np.zeros(2)
        rate = self._rates(count[1:, None], outcome[1:], self.prior)
        elements = [np.frombuffer(u, dtype=np.uint32) for u in uniques]
        flat = np.concatenate(elements).astype(np.int64)
        size = np.array([len(e) for e in elements])
        offsets = np.r_[0, np.cumsum(size)[:-1]]
        rng = np.random.default_rng(seed)
        samples = np.zeros((permutations, n, 2))
        for p in range(permutations):
            order = rng.permutation(n)
            for ordering in (order, order[::-1]):
                rank = np.empty(n, dtype=np.int64)
                rank[ordering] = np.arange(n)
                last = np.maximum.reduceat(rank[flat], offsets)
                prefix = last == size - 1  # the set is exactly the first |set| players
                worth = np.broadcast_to(self.prior, (n + 1, 2)).copy()
                worth[0] = empty
                worth[size[prefix]] = rate[prefix]
                samples[p, ordering] += np.diff(worth, axis=0) / 2
        return samples


class MarkovGame:
    """The coalition game priced by an order-1 chain; players are the tokens that occur.

    Attributes:
        player_token: the token of each player (player ``i`` is the chain's state ``i + 1``).
    """

    def __init__(self, chain: Chain):
        if chain.order != 1:
            raise AttributionError("the Shapley game uses a first-order chain")
        self.chain = chain
        self.player_token = chain.state_tokens[1:, 0]
        self.n_players = chain.n_states - 1
        self.matrix = chain.transient.toarray()  # I - Q
        self.rewards = np.column_stack([chain.conversion, chain.value])
        self.scale = chain.total_journeys

    def values(self, masks: np.ndarray) -> np.ndarray:
        """Worth of each coalition (rows of a boolean ``(m, n_players)`` array).

        Returns:
            ``(m, 2)``: conversions and revenue the coalition brings.
        """
        m, n_states = masks.shape[0], self.chain.n_states
        keep = np.ones((m, n_states), dtype=bool)
        keep[:, 1:] = masks
        # A removed state neither receives nor sends flow: its equation becomes h = 0.
        systems = np.where(keep[:, :, None] & keep[:, None, :], self.matrix[None], 0.0)
        diagonal = np.arange(n_states)
        systems[:, diagonal, diagonal] += ~keep
        rhs = np.where(keep[:, :, None], self.rewards[None], 0.0)
        return np.linalg.solve(systems, rhs)[:, 0, :] * self.scale

    def prefix_values(self, order: np.ndarray) -> np.ndarray:
        """Worth of every prefix of a player ordering, growing the inverse one state at a time.

        Returns:
            ``(n_players + 1, 2)``: worth of the empty coalition, then after each player joins.
        """
        a = self.matrix
        out = np.zeros((len(order) + 1, 2))
        kept = [0]
        inverse = np.array([[1.0 / a[0, 0]]])
        out[0] = inverse[0] @ self.rewards[kept]
        for k, player in enumerate(order, start=1):
            x = int(player) + 1
            b = a[kept, x]
            c = a[x, kept]
            mb = inverse @ b
            cm = c @ inverse
            schur = a[x, x] - c @ mb
            grown = np.empty((len(kept) + 1, len(kept) + 1))
            grown[:-1, :-1] = inverse + np.outer(mb, cm) / schur
            grown[:-1, -1] = -mb / schur
            grown[-1, :-1] = -cm / schur
            grown[-1, -1] = 1.0 / schur
            inverse = grown
            kept.append(x)
            out[k] = inverse[0] @ self.rewards[kept]
        return out * self.scale


def coalition_values(game: MarkovGame) -> np.ndarray:
    """Worth of every coalition of a Markov game (bit ``i`` = player ``i``), ``(2**n, 2)``."""
    n = game.n_players
    codes = np.arange(2**n, dtype=np.int64)
    masks = ((codes[:, None] >> np.arange(n)) & 1).astype(bool)
    return np.concatenate([game.values(masks[i : i + 4096]) for i in range(0, 2**n, 4096)])


def exact_shapley(worth: np.ndarray) -> np.ndarray:
    """Exact Shapley values, ``(n_players, k)``, from the worth of all ``2**n`` coalitions."""
    n = int(round(np.log2(len(worth))))
    if n > 24:
        raise AttributionError(f"exact Shapley values over {n} players is too many coalitions")
    codes = np.arange(2**n, dtype=np.int64)
    masks = ((codes[:, None] >> np.arange(n)) & 1).astype(bool)
    size = masks.sum(axis=1)
    weight = _shapley_weights(n) if n > 0 else np.zeros(0)
    values = np.zeros((n, worth.shape[1]))
    for player in range(n):
        without = codes[~masks[:, player]]
        values[player] = (
            weight[size[without]][:, None] * (worth[without | (1 << player)] - worth[without])
        ).sum(axis=0)
    return values


def sampled_shapley(
    game: MarkovGame | RateGame, permutations: int = 200, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Shapley values estimated from random orderings and their reverses.

    Returns:
        ``(values, std_error)``, each ``(n_players, 2)``.
    """
    if permutations < 2:
        raise AttributionError(f"need at least 2 orderings to state an error, got {permutations}")
    if isinstance(game, RateGame):
        samples = game.sampled_values(permutations, seed)
        return samples.mean(axis=0), samples.std(axis=0, ddof=1) / np.sqrt(permutations)
    n = game.n_players
    rng = np.random.default_rng(seed)
    samples = np.zeros((permutations, n, 2))
    for p in range(permutations):
        order = rng.permutation(n)
        pair = np.zeros((n, 2))
        for ordering in (order, order[::-1]):
            marginal = np.diff(game.prefix_values(ordering), axis=0)
            pair[ordering] += marginal / 2
        samples[p] = pair
    values = samples.mean(axis=0)
    std_error = samples.std(axis=0, ddof=1) / np.sqrt(permutations)
    return values, std_error


def _token_values(
    game: MarkovGame | RateGame,
    n_tokens: int,
    max_exact_players: int,
    permutations: int,
    seed: int,
) -> tuple[np.ndarray, np.ndarray | None, str]:
    """Shapley values per token (0 for tokens that never occur), and their standard errors."""
    values = np.zeros((n_tokens, 2))
    if game.n_players <= max_exact_players:
        worth = game.exact_values() if isinstance(game, RateGame) else coalition_values(game)
        values[game.player_token] = exact_shapley(worth)
        return values, None, "exact"
    sampled, sampled_error = sampled_shapley(game, permutations, seed)
    values[game.player_token] = sampled
    error = np.zeros((n_tokens, 2))
    error[game.player_token] = sampled_error
    return values, error, f"sampled ({permutations} orderings and their reverses)"


def _game(
    journeys: Journeys, tokens: np.ndarray, n_tokens: int, game: str, prior_strength: float
) -> MarkovGame | RateGame:
    if game == "rate":
        return RateGame(journeys, tokens, n_tokens, prior_strength)
    return MarkovGame(fit_chain(journeys, tokens, n_tokens, order=1))


def _to_credit(
    values: np.ndarray, error: np.ndarray | None, totals: np.ndarray, game: str
) -> tuple[np.ndarray, np.ndarray | None]:
    """Scale Shapley values to credit: the rate game's (clipped) values to the totals."""
    if game == "markov":
        return values, error
    clipped = np.clip(values, 0.0, None)
    sums = clipped.sum(axis=0)
    scale = np.divide(totals, sums, out=np.zeros(2), where=sums > 0)
    return clipped * scale, None if error is None else error * scale


def shapley(
    journeys: Journeys,
    game: str = "rate",
    prior_strength: float = 100.0,
    max_exact_players: int = MAX_EXACT_PLAYERS,
    permutations: int = 200,
    seed: int = 0,
    content: bool = True,
) -> Attribution:
    """Shapley-value attribution over channels, and over content items.

    Args:
        journeys: the journeys to credit.
        game: ``"rate"`` or ``"markov"`` (see the module docstring).
        prior_strength: for the rate game, how many journeys' worth of prior a set's rate gets.
        max_exact_players: compute exactly up to this many players, sample beyond.
        permutations: random orderings (each also used reversed) when sampling.
        seed: seed of the orderings.
        content: also credit content items (players are then content items; usually sampled).

    Returns:
        Credit per channel and content item; ``std_error`` columns when sampled, and
        ``details["method"]`` / ``details["content_method"]`` saying which.

    Raises:
        AttributionError: an unknown game.
    """
    if game not in GAMES:
        raise AttributionError(f"unknown Shapley game {game!r}; known: {GAMES}")
    require_conversions(journeys)
    totals = np.array([journeys.total_conversions, journeys.total_value])
    n_channels = len(journeys.channels)
    values, error, method = _token_values(
        _game(journeys, journeys.channel, n_channels, game, prior_strength),
        n_channels,
        max_exact_players,
        permutations,
        seed,
    )
    values, error = _to_credit(values, error, totals, game)
    seen = seen_channels(journeys)
    channels = credit_frame(
        "channel",
        [journeys.channels[i] for i in seen],
        values[seen, 0],
        values[seen, 1],
        std_error=None if error is None else error[seen, 0],
    )
    details: dict[str, object] = {"game": game, "method": method, "players": int(len(seen))}
    if error is not None:
        details["max_std_error"] = float(error[seen, 0].max())
    if content and journeys.has_content:
        tokens, _, row = content_tokens(journeys)
        c_values, c_error, c_method = _token_values(
            _game(journeys, tokens, len(row), game, prior_strength),
            len(row),
            max_exact_players,
            permutations,
            seed,
        )
        c_values, c_error = _to_credit(c_values, c_error, totals, game)
        n_rows = len(journeys.contents) + 1
        conv = np.bincount(row, weights=c_values[:, 0], minlength=n_rows)
        value = np.bincount(row, weights=c_values[:, 1], minlength=n_rows)
        used = np.flatnonzero(np.bincount(row[tokens], minlength=n_rows) > 0)
        names = [NO_CONTENT, *journeys.contents]
        std = None
        if c_error is not None:
            # The "no content" row sums several sampled players; their errors add in quadrature.
            std = np.sqrt(np.bincount(row, weights=c_error[:, 0] ** 2, minlength=n_rows))[used]
            details["content_max_std_error"] = float(std.max())
        content_frame = credit_frame(
            "content_id", [names[i] for i in used], conv[used], value[used], std_error=std
        )
        details["content_method"] = c_method
    else:
        content_frame = empty_content()
    return Attribution("shapley", channels, content_frame, details)
