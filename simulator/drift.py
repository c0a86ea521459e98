"""Drift: changes planted in the simulated CRM from a given month on, for monitoring to detect.

Two kinds, both opt-in through :attr:`simulator.config.SimulationConfig.drift`:

* :class:`ChannelVolumeDrift`: a channel's touches multiplied by ``factor`` from
  ``start + from_month`` months. Above 1, an extra Poisson process with ``factor - 1`` times the
  channel's touch rate, on the part of each lead-week from that date, adds touches drawn the way
  the channel's own are (type, content, campaign); below 1, each of the channel's touches from
  that date is kept with probability ``factor``. Either way the touches stay a Poisson process
  whose rate in that channel is ``factor`` times what it was, so the exact conversion truth
  integrates it (:meth:`simulator.conversion.LeadProcess.truth`), and the extra touches raise
  the conversion hazard as real ones do.
* :class:`SegmentConversionDrift`: the weekly conversion hazard of leads in a segment (their
  account's industry or employee band) created from that date on, multiplied by ``factor``; for
  rare conversion, about the segment's conversion rate times ``factor``.

Drift draws come from their own streams, keyed by (seed, "drift", channel), so without drift no
generator is touched and every table keeps its bytes; with it, the rest of the story up to the
touches is the same as without.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from crm.contract import CHANNELS, EMPLOYEE_BANDS
from simulator.accounts import INDUSTRIES
from simulator.config import DAY_NS, WEEK_NS, Calendar, SimulationConfig
from simulator.touches import CH, channel_matrix, describe_touches, touch_rates

# segment dimensions a conversion drift can name: the account column and its values
SEGMENTS: dict[str, tuple[str, ...]] = {"industry": INDUSTRIES, "employee_band": EMPLOYEE_BANDS}
SEGMENT_FIELD = {"industry": "industry", "employee_band": "band"}  # the accounts' array
DRIFT_STREAM = int.from_bytes(b"drift", "big")  # keys the drift streams beside the seed
KEYS = ("channel", "segment", "volume", "conversion", "from_month")


def _check_common(factor: float, from_month: int, name: str, allow_zero: bool) -> None:
    if isinstance(factor, bool) or not isinstance(factor, int | float) or not math.isfinite(factor):
        raise ValueError(f"{name} must be a finite number, got {factor!r}")
    if factor < 0 or (factor == 0 and not allow_zero):
        bound = "at least 0" if allow_zero else "above 0"
        raise ValueError(f"{name} must be {bound}, got {factor:g}")
    if isinstance(from_month, bool) or not isinstance(from_month, int) or from_month < 1:
        raise ValueError(
            f"from_month must be a whole number of months, at least 1, got {from_month!r}"
        )


@dataclass(frozen=True)
class ChannelVolumeDrift:
    """A channel's touch volume multiplied by ``factor`` from ``from_month`` months after the start.

    ``factor`` 0 stops the channel; 1 changes nothing.
    """

    channel: str
    factor: float
    from_month: int

    def __post_init__(self) -> None:
        if self.channel not in CHANNELS:
            raise ValueError(f"channel must be one of {', '.join(CHANNELS)}; got {self.channel!r}")
        _check_common(self.factor, self.from_month, "volume", allow_zero=True)
        object.__setattr__(self, "factor", float(self.factor))

    @property
    def kind(self) -> str:
        return "channel_volume"

    def __str__(self) -> str:
        return f"channel={self.channel},volume={self.factor:g},from_month={self.from_month}"


@dataclass(frozen=True)
class SegmentConversionDrift:
    """The conversion hazard of a segment's leads created from ``from_month`` on, times ``factor``.

    ``dimension`` is an account field (``industry`` or ``employee_band``), ``value`` one of its
    values; a lead belongs to its account's segment even where the CRM leaves the field empty.
    """

    dimension: str
    value: str
    factor: float
    from_month: int

    def __post_init__(self) -> None:
        if self.dimension not in SEGMENTS:
            raise ValueError(
                f"segment dimension must be one of {', '.join(SEGMENTS)}; got {self.dimension!r}"
            )
        if self.value not in SEGMENTS[self.dimension]:
            raise ValueError(
                f"{self.dimension} must be one of {', '.join(SEGMENTS[self.dimension])}; "
                f"got {self.value!r}"
            )
        _check_common(self.factor, self.from_month, "conversion", allow_zero=False)
        object.__setattr__(self, "factor", float(self.factor))

    @property
    def kind(self) -> str:
        return "segment_conversion"

    def __str__(self) -> str:
        return (
            f"segment={self.dimension}:{self.value},conversion={self.factor:g},"
            f"from_month={self.from_month}"
        )


Drift = ChannelVolumeDrift | SegmentConversionDrift


def parse_drift(text: str) -> Drift:
    """A drift from its command-line form, the inverse of ``str(drift)``.

    ``channel=CHANNEL,volume=FACTOR,from_month=M`` or
    ``segment=DIMENSION:VALUE,conversion=FACTOR,from_month=M``.

    Raises:
        ValueError: saying what is wrong, with an example of the form.
    """
    fields: dict[str, str] = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key or not value or "=" in value:
            raise ValueError(f"expected KEY=VALUE pairs separated by commas, got {part.strip()!r}")
        if key not in KEYS:
            raise ValueError(f"unknown key {key!r}; the keys are {', '.join(KEYS)}")
        if key in fields:
            raise ValueError(f"{key} is given twice")
        fields[key] = value
    if ("channel" in fields) == ("segment" in fields):
        raise ValueError("give exactly one of channel=... or segment=...")
    if "from_month" not in fields:
        raise ValueError("from_month=M is missing (months after the start when the drift begins)")
    try:
        from_month = int(fields["from_month"])
    except ValueError:
        raise ValueError(
            f"from_month must be a whole number, got {fields['from_month']!r}"
        ) from None
    want, other = ("volume", "conversion") if "channel" in fields else ("conversion", "volume")
    if other in fields:
        whose = "a channel" if want == "volume" else "a segment"
        raise ValueError(f"{other}= does not apply to {whose}; use {want}=FACTOR")
    if want not in fields:
        raise ValueError(f"{want}=FACTOR is missing")
    try:
        factor = float(fields[want])
    except ValueError:
        raise ValueError(f"{want} must be a number, got {fields[want]!r}") from None
    if "channel" in fields:
        return ChannelVolumeDrift(fields["channel"], factor, from_month)
    dimension, sep, value = fields["segment"].partition(":")
    if not sep:
        raise ValueError(
            f"segment must be DIMENSION:VALUE (e.g. industry:software), got {fields['segment']!r}"
        )
    return SegmentConversionDrift(dimension.strip(), value.strip(), factor, from_month)


def check_drift(drift: object, months: int) -> tuple[Drift, ...]:
    """``drift`` as a tuple, checked: drifts only, each starting inside the period, no channel
    named twice (two volume changes of one channel would not be one rate to integrate).

    Raises:
        ValueError: naming the drift and what is wrong.
    """
    if not isinstance(drift, tuple | list):
        raise ValueError(f"drift must be a tuple of drifts, got {type(drift).__name__}")
    channels: set[str] = set()
    for k, item in enumerate(drift):
        if not isinstance(item, ChannelVolumeDrift | SegmentConversionDrift):
            raise ValueError(f"drift[{k}] must be a ChannelVolumeDrift or a SegmentConversionDrift")
        if item.from_month >= months:
            raise ValueError(
                f"drift '{item}': from_month {item.from_month} is not before the end of the "
                f"{months}-month period"
            )
        if isinstance(item, ChannelVolumeDrift):
            if item.channel in channels:
                raise ValueError(
                    f"drift names channel {item.channel} twice; give one volume factor per channel"
                )
            channels.add(item.channel)
    return tuple(drift)


def drift_start(cfg: SimulationConfig, drift: Drift) -> pd.Timestamp:
    """When ``drift`` begins: ``from_month`` calendar months after the start (UTC midnight)."""
    return pd.Timestamp(cfg.start, tz="UTC") + pd.DateOffset(months=drift.from_month)


@dataclass
class PlantedDrift:
    """The touches with volume drift applied, and what conversion needs to follow the drift."""

    touches: dict
    fit_shift: np.ndarray | None  # added to every lead's log hazard; None without conversion drift
    channel_rate_change: dict[int, np.ndarray]  # channel → relative rate change in each week
    touches_added: list[int]  # per drift, as drawn (before the tables cut touches at conversion)
    touches_removed: list[int]


def plant_drift(
    cfg: SimulationConfig, cal: Calendar, acc: dict, leads: dict, content: dict, touches: dict
) -> PlantedDrift:
    """Apply ``cfg.drift`` to the drawn touches and to the conversion hazard; changes no input."""
    keep = np.ones(len(touches["lead"]), dtype=bool)
    extras: list[dict] = []
    added, removed = [], []
    rate_change: dict[int, np.ndarray] = {}
    fit_shift = None
    for drift in cfg.drift:
        start_ns = int(drift_start(cfg, drift).value)
        n_added = n_removed = 0
        if isinstance(drift, ChannelVolumeDrift):
            c = CH[drift.channel]
            rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, DRIFT_STREAM, c]))
            rate_change[c] = (drift.factor - 1) * week_share_from(cal, start_ns)
            if drift.factor < 1:
                later = np.flatnonzero(
                    (touches["channel"] == c) & (touches["occurred_ns"] >= start_ns)
                )
                gone = later[rng.random(len(later)) >= drift.factor]
                keep[gone] = False
                n_removed = len(gone)
            elif drift.factor > 1:
                extra = _extra_touches(cfg, cal, leads, content, c, drift.factor - 1, start_ns, rng)
                extras.append(extra)
                n_added = len(extra["lead"])
        else:
            shift = segment_shift(acc, leads, drift, start_ns)
            fit_shift = shift if fit_shift is None else fit_shift + shift
        added.append(n_added)
        removed.append(n_removed)
    merged = {k: np.concatenate([v[keep], *(e[k] for e in extras)]) for k, v in touches.items()}
    # back in the order draw_touches gives: by lead, then week of age
    cell = merged["lead"].astype(np.int64) * cfg.lead_lifetime_weeks + merged["age"]
    order = np.argsort(cell, kind="stable")
    return PlantedDrift(
        touches={k: v[order] for k, v in merged.items()},
        fit_shift=fit_shift,
        channel_rate_change=rate_change,
        touches_added=added,
        touches_removed=removed,
    )


def week_share_from(cal: Calendar, start_ns: int) -> np.ndarray:
    """The share of each calendar week (``cal.total`` of them) at or after ``start_ns``."""
    week_end = cal.week_start(np.arange(cal.total)) + WEEK_NS
    return np.clip((week_end - start_ns) / WEEK_NS, 0.0, 1.0)


def segment_shift(
    acc: dict, leads: dict, drift: SegmentConversionDrift, start_ns: int
) -> np.ndarray:
    """The log-hazard change ``drift`` makes for each lead: ``log(factor)`` in the segment from
    ``start_ns`` on, 0 elsewhere."""
    return np.log(drift.factor) * in_segment(acc, leads, drift) * (leads["created_ns"] >= start_ns)


def in_segment(acc: dict, leads: dict, drift: SegmentConversionDrift) -> np.ndarray:
    """Whether each lead's account is in the drift's segment."""
    value = SEGMENTS[drift.dimension].index(drift.value)
    return acc[SEGMENT_FIELD[drift.dimension]][leads["account"]] == value


def _extra_touches(
    cfg: SimulationConfig,
    cal: Calendar,
    leads: dict,
    content: dict,
    channel: int,
    excess: float,
    start_ns: int,
    rng: np.random.Generator,
) -> dict:
    """Touches in ``channel`` at ``excess`` times its rate, on each lead-week's part from
    ``start_ns``: a Poisson process drawn as :func:`simulator.touches.draw_touches` draws."""
    n, life = leads["n"], cfg.lead_lifetime_weeks
    week = leads["created_week"][:, None] + np.arange(life)[None, :]
    # each lead-week spans days [opens, 7) from its week's start: from creation in the first week
    opens = np.zeros(week.shape)
    opens[:, 0] = leads["created_offset"]
    from_day = np.maximum(opens, (start_ns - cal.week_start(week)) / DAY_NS)
    share = np.clip((7 - from_day) / (7 - opens), 0.0, 1.0)
    in_channel = channel_matrix()[leads["source"], channel]
    counts = rng.poisson(touch_rates(cfg, cal, leads) * in_channel[:, None] * excess * share)
    cell = np.repeat(np.arange(n * life, dtype=np.int64), counts.ravel())
    lead = cell // life
    t_age = cell % life
    lo = from_day.ravel()[cell]
    offset = lo + rng.random(len(cell)) * (7 - lo)
    occurred_ns = cal.week_start(leads["created_week"][lead] + t_age) + (offset * DAY_NS).astype(
        np.int64
    )
    channels = np.full(len(cell), channel, dtype=np.int8)
    return describe_touches(cal, leads, content, lead, t_age, occurred_ns, channels, rng)
