"""What every part of the simulator shares: its settings and result, the calendar, the draws.

The size and seed of a run (:class:`SimulationConfig`), what it returns (:class:`SimulationResult`),
the week-indexed :class:`Calendar`, categorical draws, and the Arrow helpers that build id columns.
The lead process (:mod:`simulator.accounts`, :mod:`simulator.leads`, :mod:`simulator.touches`,
:mod:`simulator.conversion`) and the customer process (:mod:`simulator.churn`) both build on these.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa

if TYPE_CHECKING:
    from simulator.conversion import LeadProcess
    from simulator.drift import Drift

DAY_NS = 86_400_000_000_000
WEEK_NS = 7 * DAY_NS

# --- calendar: seasonality by month ---------------------------------------------------------------
MONTH_SEASON = np.array([-0.1, 0.0, 0.2, 0.0, 0.05, 0.2, -0.1, -0.35, 0.2, 0.05, 0.1, -0.15])
MONTH_TOUCHES = np.array([0.95, 1.0, 1.05, 1.0, 1.0, 1.0, 0.85, 0.7, 1.1, 1.1, 1.05, 0.75])

# --- read by more than one module -----------------------------------------------------------------
FIT_BASE = -5.9  # intercept of a lead's fit; opportunities read the fit relative to it
CONTENT_COUNTS = {  # the content library, items per type: sizes the config and draw_content
    "blog": 18,
    "whitepaper": 10,
    "case_study": 10,
    "webinar": 8,
    "video": 8,
    "ebook": 6,
}


@dataclass(frozen=True)
class SimulationConfig:
    """Size and seed of a simulated CRM."""

    seed: int = 7
    accounts: int = 2_000
    leads: int = 20_000
    months: int = 18
    start: str = "2024-01-01"
    lead_lifetime_weeks: int = 26
    window_days: int = 90
    customer_share: float = 0.3
    content_items: int = field(default=sum(CONTENT_COUNTS.values()))
    # changes planted from a month on (simulator.drift); none by default, and then the same seed
    # gives the same bytes as before drift existed
    drift: tuple[Drift, ...] = ()
    # share of leads planted with a duplicate record, and identities for every lead
    # (simulator.duplicates); 0 by default, and then the same seed gives the bytes of before
    duplicate_leads: float = 0.0

    def __post_init__(self) -> None:
        if self.accounts < 10:
            raise ValueError(f"accounts must be at least 10, got {self.accounts}")
        if self.leads < 10:
            raise ValueError(f"leads must be at least 10, got {self.leads}")
        if not 3 <= self.months <= 120:
            raise ValueError(f"months must be between 3 and 120, got {self.months}")
        if pd.Timestamp(self.start).dayofweek != 0:
            raise ValueError(f"start must be a Monday, got {self.start}")
        if not 0.0 <= self.duplicate_leads <= 0.5:
            raise ValueError(
                f"duplicate_leads must be between 0 and 0.5, got {self.duplicate_leads}"
            )
        if self.drift:
            # imported here: drift names industries from simulator.accounts, which imports this
            from simulator.drift import check_drift

            object.__setattr__(self, "drift", check_drift(self.drift, self.months))

    @property
    def weeks(self) -> int:
        return int(round(self.months * 30.4375 / 7))

    @property
    def window_weeks(self) -> int:
        return -(-self.window_days // 7)


@dataclass
class SimulationResult:
    """Contract tables, ground truth and a summary of one simulation."""

    config: SimulationConfig
    tables: dict[str, pd.DataFrame]
    truth: dict[str, pd.DataFrame]
    summary: dict[str, Any]
    lead_process: LeadProcess | None = None  # the conversion process, for counterfactual queries
    drift: dict[str, Any] | None = None  # what the planted drift did (truth/drift.json), if any
    # each live subscription's true expected remaining lifetime at the end (written on request)
    lifetime: pd.DataFrame | None = None
    # which lead records are one person, when duplicates were planted (simulator.duplicates)
    duplicates: pd.DataFrame | None = None


Progress = Callable[[str], None]


def categorical(rng: np.random.Generator, cum: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Draw one category per element from row ``rows[k]`` of a cumulative-probability matrix."""
    u = rng.random(len(rows))
    out = np.zeros(len(rows), dtype=np.int16)
    for j in range(cum.shape[1] - 1):
        out += u >= cum[rows, j]
    return out


def cumulative(p: np.ndarray) -> np.ndarray:
    """Cumulative probabilities along the last axis, normalised, the last exactly above 1."""
    p = p / p.sum(axis=-1, keepdims=True)
    cum = np.cumsum(p, axis=-1)
    cum[..., -1] = 1.0 + 1e-12
    return cum


def ids(prefix: str, n: int, width: int) -> pa.Array:
    """Ids ``prefix`` + 1..n, the number zero-padded to ``width`` digits (``L0000001``)."""
    numbers = pa.array(np.arange(1, n + 1, dtype=np.int64)).cast(pa.string())
    padded = pa.compute.utf8_lpad(numbers, width=width, padding="0")
    return pa.compute.binary_join_element_wise(prefix, padded, "").cast(pa.large_string())


def take(values: pa.Array, index: np.ndarray) -> pa.Array:
    """``values[index]`` with nulls where ``index < 0``."""
    index = np.asarray(index)
    mask = index < 0
    return values.take(pa.array(np.where(mask, 0, index), mask=mask if mask.any() else None))


class Calendar:
    """Week-indexed calendar effects, extended past the end for truth windows."""

    def __init__(self, cfg: SimulationConfig):
        self.start_ns = pd.Timestamp(cfg.start, tz="UTC").value
        self.weeks = cfg.weeks
        self.total = cfg.weeks + cfg.lead_lifetime_weeks + cfg.window_weeks + 2
        mid = pd.to_datetime(self.start_ns + np.arange(self.total) * WEEK_NS + 3 * DAY_NS, utc=True)
        month = mid.month.to_numpy() - 1
        self.season = MONTH_SEASON[month]
        self.exp_season = np.exp(self.season)
        self.touch_season = MONTH_TOUCHES[month]
        self.end_ns = self.start_ns + cfg.weeks * WEEK_NS

    def week_start(self, w: np.ndarray | int) -> np.ndarray:
        """Timestamp (ns since the epoch) at which week ``w`` of the period starts."""
        return self.start_ns + np.asarray(w, dtype=np.int64) * WEEK_NS
