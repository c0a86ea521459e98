"""Journeys drawn from the attribution-only journey families (:mod:`simulator.journey_families`).

The families are what the attribution models are checked on beyond the CRM simulator: each plants
order, repeats, recency, targeting or a frequent low-effect channel, with counterfactual truth.
"""

from __future__ import annotations

import numpy as np

from simulator.journey_families import FamilySample
from training.attribution.journeys import Journeys

# The families' journeys all end at this instant; touch times count back from it.
FAMILY_END = np.datetime64("2026-01-01T00:00:00", "ns")


def family_journeys(sample: FamilySample) -> Journeys:
    """The sample as :class:`Journeys`, with touch times (each journey ends at one instant)."""
    n = sample.n_journeys
    offset_ns = np.round(sample.days_before_end * 86_400e9).astype(np.int64)
    touched_at = FAMILY_END - offset_ns.astype("timedelta64[ns]")
    ended_at = np.full(n, FAMILY_END)
    converted_at = np.where(sample.converted > 0, ended_at, np.datetime64("NaT", "ns"))
    return Journeys(
        journey_id=np.arange(n),
        offsets=sample.offsets.astype(np.int64),
        channel=sample.channel.astype(np.int64),
        channels=sample.family.channels,
        conversions=sample.converted,
        value=sample.value,
        nulls=1.0 - sample.converted,
        touched_at=touched_at,
        ended_at=ended_at,
        converted_at=converted_at,
        source=f"journey family {sample.family.name!r}",
    )
