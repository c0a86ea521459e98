"""The truth of planted drift, as ``truth/drift.json``: what changed, when, and by how much.

Each drift is listed with its kind, channel or segment, factor and start, and its measured effect:
for a channel's volume, the channel's lead touches in the CRM per simulated month (month ``k``
runs from ``start + k`` months) and their rate before and after the start; for a segment's
conversion, the conversion rate of the segment's leads created before and after the start, of the
other leads, and of the same leads had the drift not happened (every other draw held fixed).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from simulator.config import DAY_NS, Calendar, SimulationConfig
from simulator.conversion import LeadProcess
from simulator.drift import (
    ChannelVolumeDrift,
    PlantedDrift,
    SegmentConversionDrift,
    drift_start,
    in_segment,
    segment_shift,
)

MONTH_DAYS = 30.4375  # touches "per month" are per this many days, for months cut by the period


def drift_truth(
    cfg: SimulationConfig,
    cal: Calendar,
    acc: dict,
    leads: dict,
    planted: PlantedDrift,
    interactions: pd.DataFrame,
) -> dict[str, Any]:
    """Every drift of ``cfg.drift`` with its start and measured effect.

    Args:
        cfg: the configuration, with its drift.
        cal: the calendar.
        acc: the accounts' draws.
        leads: the leads' draws, with ``converted_ns``.
        planted: what :func:`simulator.drift.plant_drift` did.
        interactions: the contract's interactions table.

    Returns:
        ``{"end": ..., "drifts": [...]}``, ready for JSON.
    """
    months = _months(cfg, cal)
    lead_touches = interactions[interactions["lead_id"].notna()]
    occurred = lead_touches["occurred_at"].dt.as_unit("ns").astype(np.int64).to_numpy()
    month_of = np.searchsorted(months["start_ns"], occurred, side="right") - 1
    channel = lead_touches["channel"].to_numpy(dtype=object)
    out = []
    for k, drift in enumerate(cfg.drift):
        start = drift_start(cfg, drift)
        entry: dict[str, Any] = {
            "kind": drift.kind,
            "spec": str(drift),
            "factor": drift.factor,
            "from_month": drift.from_month,
            "start": start.isoformat(),
        }
        if isinstance(drift, ChannelVolumeDrift):
            entry["channel"] = drift.channel
            entry["effect"] = _volume_effect(
                months, month_of, channel == drift.channel, drift.from_month
            )
            entry["effect"]["touches_added"] = planted.touches_added[k]
            entry["effect"]["touches_removed"] = planted.touches_removed[k]
        else:
            entry["segment"] = {"dimension": drift.dimension, "value": drift.value}
            entry["effect"] = _conversion_effect(cfg, cal, acc, leads, planted, drift)
        out.append(entry)
    return {"end": pd.Timestamp(cal.end_ns, tz="UTC").isoformat(), "drifts": out}


def _months(cfg: SimulationConfig, cal: Calendar) -> dict[str, np.ndarray]:
    """Start and days inside the period of each simulated month that has any."""
    start = pd.Timestamp(cfg.start, tz="UTC")
    bounds = np.array(
        [(start + pd.DateOffset(months=k)).value for k in range(cfg.months + 2)], dtype=np.int64
    )
    days = (np.minimum(bounds[1:], cal.end_ns) - bounds[:-1]) / DAY_NS
    keep = days > 0
    return {"start_ns": bounds[:-1][keep], "days": days[keep]}


def _volume_effect(
    months: dict[str, np.ndarray], month_of: np.ndarray, in_channel: np.ndarray, from_month: int
) -> dict[str, Any]:
    """The channel's touches per month, and per month before and after ``from_month``, beside
    the other channels'."""
    n = len(months["days"])
    counts = np.bincount(month_of[in_channel], minlength=n)[:n]
    others = np.bincount(month_of[~in_channel], minlength=n)[:n]
    after = np.arange(n) >= from_month

    def rate(c: np.ndarray, part: np.ndarray) -> float:
        return float(c[part].sum() / months["days"][part].sum() * MONTH_DAYS)

    before_rate, after_rate = rate(counts, ~after), rate(counts, after)
    others_before, others_after = rate(others, ~after), rate(others, after)
    return {
        "monthly_touches": [
            {
                "month": m,
                "start": pd.Timestamp(months["start_ns"][m], tz="UTC").date().isoformat(),
                "days": float(months["days"][m]),
                "touches": int(counts[m]),
            }
            for m in range(n)
        ],
        "touches_per_month_before": before_rate,
        "touches_per_month_after": after_rate,
        "ratio_after_to_before": after_rate / before_rate if before_rate else None,
        "other_channels_per_month_before": others_before,
        "other_channels_per_month_after": others_after,
        "other_channels_ratio_after_to_before": others_after / others_before
        if others_before
        else None,
    }


def _conversion_effect(
    cfg: SimulationConfig,
    cal: Calendar,
    acc: dict,
    leads: dict,
    planted: PlantedDrift,
    drift: SegmentConversionDrift,
) -> dict[str, Any]:
    """Conversion within the period of the segment's leads and the others', created before and
    after the start, and of the drifted leads with this drift removed."""
    start_ns = int(drift_start(cfg, drift).value)
    segment = in_segment(acc, leads, drift)
    after = leads["created_ns"] >= start_ns
    converted = leads["converted_ns"] >= 0
    # the same leads, touches and clocks, without this drift's change of hazard
    shift = segment_shift(acc, leads, drift, start_ns)
    rest = None if planted.fit_shift is None else planted.fit_shift - shift
    without = LeadProcess(cfg, cal, leads, planted.touches, rest).factual

    def rate(mask: np.ndarray, outcome: np.ndarray = converted) -> float | None:
        return float(outcome[mask].mean()) if mask.any() else None

    drifted = segment & after
    return {
        "leads_before": int((segment & ~after).sum()),
        "conversion_rate_before": rate(segment & ~after),
        "leads_after": int(drifted.sum()),
        "conversion_rate_after": rate(drifted),
        "conversion_rate_after_without_drift": rate(drifted, without),
        "conversions_added": int(converted[drifted].sum() - without[drifted].sum()),
        "other_leads_conversion_rate_before": rate(~segment & ~after),
        "other_leads_conversion_rate_after": rate(~segment & after),
    }
