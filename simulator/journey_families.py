"""Attribution-only journey processes with counterfactual truth, in families that test a model.

The CRM simulator's conversion process credits a channel for being present, with a monotone
effect per touch; a model that only counts touches fits it well. Real journeys also have order (a
demo request helps more after a webinar), repeats with diminishing effect (the fifth email adds
less than the first), effects that fade with distance from the decision, channels shown to people
who were already engaged (retargeting), and a frequent channel of little effect. Each family here
plants one of those, strongly enough that first, last and linear touch and first-order Markov are
all far from the truth, so an attribution model has to see it to score well.

A journey is a sequence of touches on channels and then one conversion draw. Its conversion
probability comes from ``h``, the sum of a base hazard and each touch's contribution, through a
noisy-OR (``p = 1 - exp(-h)``; every family by default, ``link="logit"`` for a logistic link):

``effect[c] * repeat_decay[c] ** (earlier touches of c) * 0.5 ** (days before the end / half-life)``

plus a ``synergy`` bonus, once, when a touch of one channel follows a touch of another. The truth
for a channel is the expected conversions lost when its touches are removed from every journey
and the process is run on what remains (positions recomputed):
``sum over journeys of p(journey) - p(journey without the channel)``; value the same weighted by
each journey's amount. It is exact (no second random draw), so the truth is the process's, not a
sample's. The families are channel-level; content items are the CRM simulator's.

Nothing here changes :func:`simulator.simulate`: these are separate, opt-in processes used by the
attribution tests and ``benchmarks/attribution.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

LOGIT_INTERCEPT = -3.0
LOGIT_SCALE = 4.0
GAP_DAYS = 6.0  # mean days between two touches of a journey
CHANNELS_USED: tuple[str, ...] = (
    "email",
    "paid_search",
    "organic_search",
    "social",
    "display",
    "webinar",
    "event",
    "sales",
)


@dataclass(frozen=True)
class Targeting:
    """A channel shown to journeys whose earlier touches show engagement.

    Once a journey has ``threshold`` touches on ``engaging`` channels, with ``probability`` it
    gets ``1 + Poisson(extra_touches)`` touches of ``channel`` right after that touch.
    """

    channel: str
    engaging: tuple[str, ...]
    threshold: int = 2
    probability: float = 0.8
    extra_touches: float = 0.5


@dataclass(frozen=True)
class Synergy:
    """A bonus hazard, once per journey, when a touch of ``then`` follows a touch of ``first``."""

    first: str
    then: str
    bonus: float


@dataclass(frozen=True)
class JourneyFamily:
    """A journey process: how journeys are drawn and how they convert.

    Attributes:
        name: short name (``order``, ``repeats``, ...).
        description: one sentence on what the family plants.
        popularity: per channel of :data:`CHANNELS_USED`, its weight when a touch is drawn.
        effect: per channel, the hazard its first touch adds.
        repeat_decay: per channel, the factor on each further touch's contribution (1 = every
            touch adds the same).
        recency_half_life_days: a touch's contribution halves for every this many days between
            it and the journey's end (the conversion decision); None = time does not matter.
        base_hazard: the hazard of a journey whatever its touches.
        mean_extra_touches: journeys have ``1 + Poisson(mean_extra_touches)`` drawn touches.
        synergy: an ordered pair bonus, or None.
        targeting: a channel shown to the engaged, or None.
        link: ``"noisy_or"`` (``p = 1 - exp(-h)``: touches are independent causes) or
            ``"logit"`` (``p = 1 / (1 + exp(-(LOGIT_INTERCEPT + LOGIT_SCALE * (h - base))))``:
            effects add in the log-odds, so a touch adds more to a journey already likely to
            convert), so that no one model form is the truth of every family.
    """

    name: str
    description: str
    popularity: tuple[float, ...]
    effect: tuple[float, ...]
    repeat_decay: tuple[float, ...] = (1.0,) * len(CHANNELS_USED)
    recency_half_life_days: float | None = None
    base_hazard: float = 0.01
    mean_extra_touches: float = 3.0
    synergy: Synergy | None = None
    targeting: Targeting | None = None
    link: str = "noisy_or"
    channels: tuple[str, ...] = field(default=CHANNELS_USED)


def _family(name: str, description: str, **kw) -> JourneyFamily:
    return JourneyFamily(name=name, description=description, **kw)


#      email paid  organic social display webinar event sales
FAMILIES: dict[str, JourneyFamily] = {
    f.name: f
    for f in (
        _family(
            "order",
            "A sales touch after a webinar converts far more than either alone or the other way "
            "round (synergy between a pair of channels in one order).",
            popularity=(0.30, 0.20, 0.15, 0.12, 0.08, 0.07, 0.03, 0.05),
            effect=(0.010, 0.030, 0.020, 0.010, 0.010, 0.020, 0.060, 0.020),
            synergy=Synergy("webinar", "sales", 0.9),
        ),
        _family(
            "repeats",
            "Email comes in bursts whose later touches add little: the first email helps, the "
            "fifth barely (repeated touches with diminishing effect).",
            popularity=(0.45, 0.10, 0.08, 0.10, 0.08, 0.07, 0.06, 0.06),
            effect=(0.200, 0.020, 0.060, 0.010, 0.010, 0.100, 0.120, 0.150),
            repeat_decay=(0.15, 0.7, 0.7, 0.7, 0.7, 0.7, 0.7, 0.7),
            mean_extra_touches=5.0,
        ),
        _family(
            "recency",
            "A touch's effect halves every week before the decision, so recent touches matter "
            "most and early ones little (recency changes an effect).",
            popularity=(0.22, 0.20, 0.18, 0.12, 0.08, 0.08, 0.06, 0.06),
            effect=(0.060, 0.050, 0.220, 0.010, 0.020, 0.150, 0.140, 0.400),
            recency_half_life_days=7.0,
            mean_extra_touches=4.0,
        ),
        _family(
            "targeting",
            "Display retargeting has no effect, but is shown to people who already visited or "
            "attended twice, who convert more (a zero-effect channel targeted at the engaged).",
            popularity=(0.25, 0.15, 0.16, 0.12, 0.02, 0.15, 0.10, 0.05),
            effect=(0.015, 0.020, 0.080, 0.010, 0.000, 0.120, 0.120, 0.150),
            targeting=Targeting("display", ("organic_search", "webinar", "event"), 2, 0.85, 1.0),
        ),
        _family(
            "frequent",
            "Email sits in nearly every journey with a small effect, while rare channels carry "
            "most conversions (a frequent low-effect channel).",
            popularity=(0.55, 0.12, 0.08, 0.08, 0.06, 0.04, 0.03, 0.04),
            effect=(0.008, 0.030, 0.060, 0.020, 0.010, 0.200, 0.250, 0.300),
            mean_extra_touches=4.0,
        ),
    )
}


@dataclass(frozen=True, eq=False)
class FamilySample:
    """Journeys drawn from a family, in compressed arrays, with their counterfactual truth.

    Attributes:
        family: the process.
        offsets: ``n + 1`` touch offsets; journey ``i`` owns touches ``offsets[i]:offsets[i+1]``.
        channel: per touch, index into ``family.channels``.
        days_before_end: per touch, days from it to its journey's end (the conversion draw).
        converted: per journey, 1.0 when it converted.
        amount: per journey, the revenue it brings when it converts (drawn for every journey).
        probability: per journey, its conversion probability.
        truth: per channel: ``channel``, ``conversions_lost``, ``value_lost``, ``share``,
            ``value_share``.
    """

    family: JourneyFamily
    offsets: np.ndarray
    channel: np.ndarray
    days_before_end: np.ndarray
    converted: np.ndarray
    amount: np.ndarray
    probability: np.ndarray
    truth: pd.DataFrame

    @property
    def n_journeys(self) -> int:
        return len(self.offsets) - 1

    @property
    def value(self) -> np.ndarray:
        """Per journey, revenue of its conversion (0 when it did not convert)."""
        return self.converted * self.amount

    def path_table(self) -> pd.DataFrame:
        """Aggregated paths as ChannelAttribution takes them: ``path`` (``" > "``-joined),
        ``total_conversions``, ``total_conversion_value``, ``total_null``."""
        names = np.asarray(self.family.channels, dtype=object)[self.channel]
        paths = [" > ".join(p) for p in np.split(names, self.offsets[1:-1])]
        frame = pd.DataFrame(
            {
                "path": paths,
                "total_conversions": self.converted,
                "total_conversion_value": self.value,
                "total_null": 1.0 - self.converted,
            }
        )
        return frame.groupby("path", as_index=False, sort=True).sum()


def _lengths(offsets: np.ndarray) -> np.ndarray:
    return np.diff(offsets)


def conversion_probability(
    family: JourneyFamily, offsets: np.ndarray, channel: np.ndarray, days_before_end: np.ndarray
) -> np.ndarray:
    """Per journey, the probability that it converts under ``family``'s process.

    Args:
        family: the process.
        offsets: journey offsets into the touch arrays.
        channel: per touch, its channel index.
        days_before_end: per touch, days from it to its journey's end.
    """
    n, k = len(offsets) - 1, len(family.channels)
    lengths = _lengths(offsets)
    journey = np.repeat(np.arange(n), lengths)
    position = np.arange(len(channel)) - offsets[:-1][journey]
    # earlier touches of the same channel in the same journey (touches are in journey order)
    key = journey * k + channel
    order = np.argsort(key, kind="stable")
    sorted_key = key[order]
    starts = np.flatnonzero(np.r_[True, sorted_key[1:] != sorted_key[:-1]])
    run_start = np.repeat(starts, np.diff(np.r_[starts, len(order)]))
    earlier = np.empty(len(channel), dtype=np.int64)
    earlier[order] = np.arange(len(order)) - run_start
    effect = np.asarray(family.effect)[channel]
    decay = np.asarray(family.repeat_decay)[channel] ** earlier
    contribution = effect * decay
    if family.recency_half_life_days is not None:
        contribution = contribution * 0.5 ** (days_before_end / family.recency_half_life_days)
    hazard = family.base_hazard + np.bincount(journey, weights=contribution, minlength=n)
    if family.synergy is not None:
        first = family.channels.index(family.synergy.first)
        then = family.channels.index(family.synergy.then)
        big = np.iinfo(np.int64).max
        first_at = np.full(n, big)
        np.minimum.at(first_at, journey[channel == first], position[channel == first])
        last_then = np.full(n, -1)
        np.maximum.at(last_then, journey[channel == then], position[channel == then])
        hazard += family.synergy.bonus * (last_then > first_at)
    if family.link == "logit":
        log_odds = LOGIT_INTERCEPT + LOGIT_SCALE * (hazard - family.base_hazard)
        return 1.0 / (1.0 + np.exp(-log_odds))
    return 1.0 - np.exp(-hazard)


def _without(offsets: np.ndarray, channel: np.ndarray, days: np.ndarray, removed: int):
    """The journeys with one channel's touches removed; the other touches keep their times."""
    keep = channel != removed
    journey = np.repeat(np.arange(len(offsets) - 1), _lengths(offsets))
    counts = np.bincount(journey[keep], minlength=len(offsets) - 1)
    return np.r_[0, np.cumsum(counts)], channel[keep], days[keep]


def removal_truth(
    family: JourneyFamily,
    offsets: np.ndarray,
    channel: np.ndarray,
    days_before_end: np.ndarray,
    amount: np.ndarray,
) -> pd.DataFrame:
    """Per channel, expected conversions (and revenue) lost when its touches are removed."""
    full = conversion_probability(family, offsets, channel, days_before_end)
    rows = []
    for index, name in enumerate(family.channels):
        reduced = conversion_probability(
            family, *_without(offsets, channel, days_before_end, index)
        )
        lost = full - reduced
        rows.append((name, float(lost.sum()), float((lost * amount).sum())))
    truth = pd.DataFrame(rows, columns=["channel", "conversions_lost", "value_lost"])
    truth["share"] = truth["conversions_lost"] / truth["conversions_lost"].sum()
    truth["value_share"] = truth["value_lost"] / truth["value_lost"].sum()
    return truth


def _draw_touches(family: JourneyFamily, n: int, rng: np.random.Generator):
    lengths = 1 + rng.poisson(family.mean_extra_touches, size=n)
    popularity = np.asarray(family.popularity, dtype=float)
    channel = rng.choice(
        len(family.channels), size=int(lengths.sum()), p=popularity / popularity.sum()
    )
    offsets = np.r_[0, np.cumsum(lengths)]
    if family.targeting is not None:
        offsets, channel = _target(family, family.targeting, offsets, channel, rng)
    # Times: gaps of a few days between touches, and a few days from the last to the decision.
    n = len(offsets) - 1
    journey = np.repeat(np.arange(n), _lengths(offsets))
    gaps = rng.exponential(GAP_DAYS, size=len(channel))
    to_end = rng.exponential(GAP_DAYS / 2, size=n)
    # days before the end = the gaps after the touch within its journey, plus the final wait
    after = np.cumsum(gaps[::-1])[::-1]  # gaps from this touch to the last touch overall ...
    last = offsets[1:] - 1
    days = after - after[last][journey] + to_end[journey]
    return offsets, channel, np.round(days, 3)


def _target(
    family: JourneyFamily,
    targeting: Targeting,
    offsets: np.ndarray,
    channel: np.ndarray,
    rng: np.random.Generator,
):
    """Insert the targeted channel's touches right after each journey's engaging threshold."""
    n = len(offsets) - 1
    journey = np.repeat(np.arange(n), _lengths(offsets))
    engaging = np.isin(channel, [family.channels.index(c) for c in targeting.engaging])
    running = np.cumsum(engaging)
    before_journey = np.r_[0, running][offsets[:-1]][journey]
    count_so_far = running - before_journey
    at_threshold = engaging & (count_so_far == targeting.threshold)
    shown = at_threshold & (rng.random(len(channel)) < targeting.probability)
    extra = np.where(shown, 1 + rng.poisson(targeting.extra_touches, size=len(channel)), 0)
    repeated = np.repeat(np.arange(len(channel)), 1 + extra)
    copy_number = np.arange(len(repeated)) - np.r_[0, np.cumsum(1 + extra)][:-1][repeated]
    new_channel = np.where(
        copy_number > 0, family.channels.index(targeting.channel), channel[repeated]
    )
    counts = np.bincount(journey, weights=1 + extra, minlength=n).astype(np.int64)
    return np.r_[0, np.cumsum(counts)], new_channel


def sample_family(family: JourneyFamily | str, n_journeys: int, seed: int) -> FamilySample:
    """Draw ``n_journeys`` journeys from a family (by name or object) with seed ``seed``."""
    if isinstance(family, str):
        if family not in FAMILIES:
            raise ValueError(f"unknown journey family {family!r}; known: {', '.join(FAMILIES)}")
        family = FAMILIES[family]
    rng = np.random.default_rng(seed)
    offsets, channel, days = _draw_touches(family, n_journeys, rng)
    probability = conversion_probability(family, offsets, channel, days)
    converted = (rng.random(n_journeys) < probability).astype(np.float64)
    amount = np.round(rng.lognormal(np.log(20_000), 0.6, size=n_journeys), 2)
    truth = removal_truth(family, offsets, channel, days, amount)
    return FamilySample(family, offsets, channel, days, converted, amount, probability, truth)
