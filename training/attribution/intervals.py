"""Bootstrap intervals for credit shares: how much a share moves when the journeys are resampled.

Each replicate resamples the journeys (every journey drawn a Poisson(1) number of times, which a
weighted path row does for each journey it stands for) and runs the models again. The data-driven
models keep the conversion model the cross-validation chose on the full data and refit it on the
replicate (same candidate, same rounds), so the interval shows how the data move the credit, not
how the choice would. The interval of a share is the central ``level`` range of its replicates.

A bootstrap shows **sampling spread, not model bias**: a model that is wrong about how journeys
convert is wrong in every replicate, and its interval can be narrow around a wrong share. The
intervals say which differences between channels the data can tell apart, not which model is
right.

A channel whose interval reaches zero is marked (``includes_zero``): for the data-driven models
the interval is of the signed removal share (a channel whose removal would, in some replicates,
raise conversions has a negative lower end), so the data cannot tell its effect from none.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

import numpy as np
import pandas as pd

from training.attribution.credit import Attribution
from training.attribution.data_driven import ConversionModel, refit
from training.attribution.journeys import Journeys

DEFAULT_LEVEL = 0.9
INTERVAL_COLUMNS = ("share_low", "share_high", "includes_zero", "replicates")


def resample(journeys: Journeys, rng: np.random.Generator) -> Journeys:
    """A bootstrap replicate: each journey's conversions and non-conversions redrawn as Poisson
    counts with the same means (a lead's journey drawn 0, 1, 2, ... times), value with them."""
    conversions = rng.poisson(journeys.conversions).astype(np.float64)
    nulls = rng.poisson(journeys.nulls).astype(np.float64)
    per_conversion = np.divide(
        journeys.value,
        journeys.conversions,
        out=np.zeros_like(journeys.value),
        where=journeys.conversions > 0,
    )
    return replace(
        journeys, conversions=conversions, nulls=nulls, value=per_conversion * conversions
    )


def signed_shares(result: Attribution) -> pd.Series:
    """Per channel its share, or for a removal-based model its signed removal share (negative
    when removing it raises conversions in the model)."""
    shares = result.by_channel["share"]
    names = result.details.get("channels")  # the learned models' signed effects, per channel
    if names is None or result.details.get("fallback"):
        return shares
    effects = np.asarray(result.details["removal_effects"], dtype=np.float64)
    positive = np.clip(effects, 0.0, None).sum()
    if positive <= 0:
        return shares
    signed = pd.Series(effects / positive, index=list(names))
    return signed.reindex(shares.index).fillna(shares)


def bootstrap_intervals(
    journeys: Journeys,
    run: Callable[[Journeys, ConversionModel | None], Sequence[Attribution]],
    conversion_model: ConversionModel | None,
    replicates: int,
    level: float = DEFAULT_LEVEL,
    seed: int = 0,
    on_replicate: Callable[[int], None] | None = None,
) -> pd.DataFrame:
    """Per model and channel, the bootstrap interval of its share.

    Args:
        journeys: the journeys the credit was computed on.
        run: runs the models on a replicate, given the refitted conversion model (or None).
        conversion_model: the data-driven models' chosen model on the full journeys, or None.
        replicates: how many replicates (0 gives an empty table).
        level: the interval's coverage, e.g. 0.9 for the 5th to the 95th percentile.
        seed: seed of the resampling.
        on_replicate: called after each replicate with its number (for progress).

    Returns:
        Columns ``model``, ``channel``, ``share_low``, ``share_high``, ``includes_zero``,
        ``replicates``.
    """
    columns = ["model", "channel", *INTERVAL_COLUMNS]
    if replicates <= 0:
        return pd.DataFrame(columns=columns)
    rng = np.random.default_rng(seed)
    draws: dict[tuple[str, str], list[float]] = {}
    for number in range(replicates):
        sample = resample(journeys, rng)
        if sample.total_conversions <= 0:
            continue
        model = None if conversion_model is None else refit(conversion_model, sample, seed)
        for result in run(sample, model):
            for channel, share in signed_shares(result).items():
                draws.setdefault((result.model, str(channel)), []).append(float(share))
        if on_replicate is not None:
            on_replicate(number + 1)
    tail = (1.0 - level) / 2.0
    rows = []
    for (model_name, channel), values in draws.items():
        low, high = np.quantile(values, [tail, 1.0 - tail])
        rows.append((model_name, channel, float(low), float(high), bool(low <= 0.0), len(values)))
    return pd.DataFrame(rows, columns=columns)
