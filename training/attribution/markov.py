"""Markov chain attribution by removal effect, order 1 to 3.

The journeys are read as walks of a Markov chain from a start state through touch states to one
of two absorbing states, conversion or null. In an order-``k`` chain a touch's state is the tuple
of its channel and the ``k - 1`` channels before it (fewer at the start of a journey), so
``a > b > c`` at order 2 walks ``start → (a) → (a, b) → (b, c) → conversion``.

The *removal effect* of a channel is the relative drop of the chain's conversion probability when
every state holding that channel leads to null instead. Credit is the total conversions split in
proportion to the removal effects. Revenue is split the same way with the *value* removal effect:
the drop of the expected revenue when each state's transition into conversion carries the mean
revenue of the journeys that converted from it.

Everything is computed exactly by solving the chain's linear equations (no simulation), so the
result is deterministic. For order 1 all removal effects come from one matrix inverse: with
``N = (I - Q)^-1`` the probability of ever visiting ``s`` from the start is
``N[start, s] / N[s, s]``, and by the strong Markov property removing ``s`` loses exactly
``P(visit s) · P(convert from s)``.

Content items are credited by a first-order chain built over content instead of channels (a
touch without content is the state "no content on channel x"; those are summed into one
:data:`NO_CONTENT` row). Higher orders over dozens of items would multiply the states far beyond
what the journeys can estimate, so content always uses order 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from training.attribution.credit import (
    Attribution,
    credit_frame,
    empty_content,
    require_conversions,
    seen_channels,
)
from training.attribution.errors import AttributionError
from training.attribution.journeys import NO_CONTENT, Journeys

MAX_DENSE_STATES = 4000


@dataclass(frozen=True)
class Chain:
    """A fitted absorbing Markov chain over touch states; state 0 is the start.

    Attributes:
        order: how many past tokens a state remembers.
        n_tokens: number of distinct tokens (channels or content keys).
        transient: ``I - Q`` over the transient states (start included), sparse CSC.
        conversion: per state, the probability of moving to conversion next.
        value: per state, the expected revenue collected on moving next (mean revenue of the
            conversions from that state times its conversion probability).
        state_tokens: per state, its tokens (``-1`` where the history is shorter than ``order``),
            shape ``(n_states, order)``; the start row is all ``-1``.
        total_conversions: conversions in the data.
        total_value: revenue in the data.
        total_journeys: journeys (weights) in the data.
    """

    order: int
    n_tokens: int
    transient: sp.csc_matrix
    conversion: np.ndarray
    value: np.ndarray
    state_tokens: np.ndarray
    total_conversions: float
    total_value: float
    total_journeys: float

    @property
    def n_states(self) -> int:
        return self.transient.shape[0]


def _compact(codes: np.ndarray, bound: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct codes and each code's index among them (``codes`` in ``[0, bound)``).

    A direct lookup table when ``bound`` is small, a hash otherwise: both avoid sorting millions
    of touches.
    """
    if bound <= 1 << 24:
        seen = np.zeros(bound, dtype=bool)
        seen[codes] = True
        distinct = np.flatnonzero(seen)
        index = np.cumsum(seen) - 1
        return distinct, index[codes]
    index, distinct = pd.factorize(codes, sort=True)
    return np.asarray(distinct, dtype=np.int64), index.astype(np.int64)


def fit_chain(journeys: Journeys, tokens: np.ndarray, n_tokens: int, order: int = 1) -> Chain:
    """Estimate the order-``order`` chain whose states are tuples of ``tokens`` (one per touch).

    Raises:
        AttributionError: ``order`` outside 1-3.
    """
    if order not in (1, 2, 3):
        raise AttributionError(f"Markov order must be 1, 2 or 3, got {order}")
    base = n_tokens + 1
    position = journeys.position
    code = tokens.astype(np.int64) + 1
    for lag in range(1, order):
        earlier = np.zeros_like(code)
        earlier[lag:] = tokens[:-lag].astype(np.int64) + 1
        earlier[position < lag] = 0
        code = code + earlier * base**lag
    state_codes, state = _compact(code, base**order)
    state = state + 1  # 0 is the start
    n_states = len(state_codes) + 1

    weight = (journeys.conversions + journeys.nulls)[journeys.touch_journey]
    previous = np.empty_like(state)
    previous[0] = 0
    previous[1:] = state[:-1]
    previous[position == 0] = 0
    pair_codes, pair = _compact(previous * n_states + state, n_states * n_states)
    pair_weight = np.bincount(pair, weights=weight, minlength=len(pair_codes))
    counts = sp.csr_matrix(
        (pair_weight, (pair_codes // n_states, pair_codes % n_states)), shape=(n_states, n_states)
    )
    has_touch = journeys.lengths > 0
    last_state = state[journeys.last_touch[has_touch]]
    conv = np.bincount(last_state, weights=journeys.conversions[has_touch], minlength=n_states)
    value = np.bincount(last_state, weights=journeys.value[has_touch], minlength=n_states)
    null = np.bincount(last_state, weights=journeys.nulls[has_touch], minlength=n_states)
    out = np.asarray(counts.sum(axis=1)).ravel() + conv + null
    inverse = np.divide(1.0, out, out=np.zeros_like(out), where=out > 0)
    q = sp.diags(inverse) @ counts
    transient = (sp.identity(n_states, format="csc") - q).tocsc()

    digits = np.full((n_states, order), -1, dtype=np.int64)
    for lag in range(order):
        digits[1:, lag] = (state_codes // base**lag) % base - 1
    return Chain(
        order=order,
        n_tokens=n_tokens,
        transient=transient,
        conversion=conv * inverse,
        value=value * inverse,
        state_tokens=digits,
        total_conversions=float(journeys.conversions[has_touch].sum()),
        total_value=float(journeys.value[has_touch].sum()),
        total_journeys=float((journeys.conversions + journeys.nulls)[has_touch].sum()),
    )


def _solve(matrix: sp.csc_matrix, rhs: np.ndarray) -> np.ndarray:
    if matrix.shape[0] <= MAX_DENSE_STATES // 4:
        return np.linalg.solve(matrix.toarray(), rhs)
    return np.asarray(spla.splu(matrix).solve(rhs))


def removal_effects(chain: Chain) -> tuple[np.ndarray, np.ndarray, float, float]:
    """Removal effect of every token, for conversions and for value.

    Returns:
        ``(effect, value_effect, p_conversion, expected_value)``: per-token relative drops of
        the conversion probability and of the expected revenue from the start, and those two
        base figures.
    """
    rhs = np.column_stack([chain.conversion, chain.value])
    base = _solve(chain.transient, rhs)
    p_conv, e_value = float(base[0, 0]), float(base[0, 1])
    effect = np.zeros(chain.n_tokens)
    value_effect = np.zeros(chain.n_tokens)
    if chain.order == 1 and chain.n_states <= MAX_DENSE_STATES:
        fundamental = np.linalg.inv(chain.transient.toarray())
        reach = fundamental[0] / np.diag(fundamental)
        token = chain.state_tokens[1:, 0]
        effect[token] = reach[1:] * base[1:, 0]
        value_effect[token] = reach[1:] * base[1:, 1]
    else:
        for t in np.unique(chain.state_tokens[chain.state_tokens >= 0]):
            keep = ~(chain.state_tokens == t).any(axis=1)
            index = np.flatnonzero(keep)
            sub = chain.transient[index][:, index].tocsc()
            solved = _solve(sub, rhs[index])
            effect[t] = p_conv - solved[0, 0]
            value_effect[t] = e_value - solved[0, 1]
    effect = effect / p_conv if p_conv > 0 else effect
    value_effect = value_effect / e_value if e_value > 0 else value_effect
    return np.clip(effect, 0.0, None), np.clip(value_effect, 0.0, None), p_conv, e_value


def _split(total: float, effect: np.ndarray) -> np.ndarray:
    weight = effect.sum()
    return total * effect / weight if weight > 0 else np.zeros_like(effect)


def content_tokens(journeys: Journeys) -> tuple[np.ndarray, list[str], np.ndarray]:
    """Per touch a content token; touches without content get one token per channel.

    Returns:
        ``(tokens, names, row)``: the tokens, their names, and for each token the index of the
        output row it is credited to (all "no content" tokens share the :data:`NO_CONTENT` row,
        row 0; content ``i`` is row ``i + 1``).
    """
    assert journeys.content is not None
    n_content = len(journeys.contents)
    tokens = np.where(journeys.content >= 0, journeys.content, n_content + journeys.channel)
    names = [*journeys.contents, *(f"{NO_CONTENT}: {c}" for c in journeys.channels)]
    row = np.concatenate([np.arange(1, n_content + 1), np.zeros(len(journeys.channels), int)])
    return tokens.astype(np.int64), names, row


def markov(journeys: Journeys, order: int = 1, content: bool = True) -> Attribution:
    """Removal-effect attribution with an order-``order`` Markov chain.

    Args:
        journeys: the journeys to credit.
        order: 1, 2 or 3.
        content: also credit content items (a second chain over content).

    Returns:
        Credit per channel and content item, with ``details["removal_effects"]`` (per channel:
        ``removal_effect`` and ``value_removal_effect``), ``details["conversion_probability"]``
        and ``details["states"]``.
    """
    require_conversions(journeys)
    chain = fit_chain(journeys, journeys.channel, len(journeys.channels), order)
    effect, value_effect, p_conv, _ = removal_effects(chain)
    seen = seen_channels(journeys)
    names = [journeys.channels[i] for i in seen]
    channels = credit_frame(
        "channel",
        names,
        _split(chain.total_conversions, effect)[seen],
        _split(chain.total_value, value_effect)[seen],
    )
    details = {
        "order": order,
        "states": chain.n_states - 1,
        "conversion_probability": p_conv,
        "removal_effects": pd.DataFrame(
            {
                "channel": pd.array(names, dtype="string"),
                "removal_effect": effect[seen],
                "value_removal_effect": value_effect[seen],
            }
        ),
    }
    if content and journeys.has_content:
        tokens, _, row = content_tokens(journeys)
        # Content uses the first-order chain at every order: with dozens of items, longer
        # histories multiply the states far beyond what the journeys can estimate.
        content_chain = fit_chain(journeys, tokens, len(row), order=1)
        c_effect, c_value_effect, _, _ = removal_effects(content_chain)
        conv = np.bincount(
            row,
            weights=_split(chain.total_conversions, c_effect),
            minlength=len(journeys.contents) + 1,
        )
        value = np.bincount(
            row,
            weights=_split(chain.total_value, c_value_effect),
            minlength=len(journeys.contents) + 1,
        )
        used = np.flatnonzero(np.bincount(row[tokens], minlength=len(conv)) > 0)
        all_names = [NO_CONTENT, *journeys.contents]
        content_frame = credit_frame(
            "content_id", [all_names[i] for i in used], conv[used], value[used]
        )
        details["content_states"] = content_chain.n_states - 1
    else:
        content_frame = empty_content()
    return Attribution(f"markov_{order}", channels, content_frame, details)
