"""Leads: who they are, how well they fit, how interested they are, and what they say.

Leads arrive uniformly over the period. Each has a *fit* ``eta`` (firmographics with a bell-shaped
company-size effect, a seniority × size interaction, lead source, and noise), an *interest* class
``z`` and an engagement rate ``r``. The interest shows in a recorded field: the BANT *purchase
timeframe* the lead states on the form (mostly in line with ``z``, ``TIMEFRAME_P``; missing for
some sources, always for list imports). Touches (:mod:`simulator.touches`) and conversion
(:mod:`simulator.conversion`) build on these draws.
"""

from __future__ import annotations

import numpy as np

from simulator.accounts import INDUSTRY_EFFECT
from simulator.config import (
    DAY_NS,
    FIT_BASE,
    Calendar,
    SimulationConfig,
    categorical,
    cumulative,
)

BAND_EFFECT = np.array([-0.6, -0.1, 0.3, 0.4, 0.1, -0.3])  # bell-shaped: mid-size fits best
SENIORITY_P = np.array([0.35, 0.30, 0.18, 0.10, 0.07])
SENIORITY_EFFECT = np.array([-0.4, 0.0, 0.25, 0.35, 0.2])
FUNCTIONS = ("Marketing", "Sales", "IT", "Operations", "Finance", "Engineering")
SOURCES = (
    "paid_search",
    "organic_search",
    "social",
    "referral",
    "event",
    "webinar",
    "partner",
    "direct",
    "list_import",
)
SOURCE_P = np.array([0.18, 0.20, 0.10, 0.06, 0.08, 0.10, 0.06, 0.10, 0.12])
SOURCE_EFFECT = np.array([0.0, 0.1, -0.3, 0.6, 0.3, 0.2, 0.2, 0.2, -0.5])
SOURCE_RATE = np.array([1.0, 1.0, 0.9, 1.0, 1.1, 1.2, 0.9, 0.9, 0.6])
INTEREST_P = np.array([0.55, 0.30, 0.15])
INTEREST_RATE = np.array([0.8, 1.1, 1.5])
# BANT purchase timeframe the lead states on the inbound form (PURCHASE_TIMEFRAMES), by interest
# class (rows z = 0, 1, 2): a self-report, so mostly but not always in line with the interest
TIMEFRAME_P = np.array(
    [
        [0.01, 0.02, 0.07, 0.90],
        [0.03, 0.60, 0.34, 0.03],
        [0.90, 0.07, 0.02, 0.01],
    ]
)
# share of leads with no stated timeframe, by source (a form skipped or not asked; direct adds
# often lack one, list imports never have one)
TIMEFRAME_MISSING = np.array([0.1, 0.1, 0.2, 0.2, 0.1, 0.05, 0.2, 0.3, 1.0])
FIT_NOISE = 0.3


def draw_leads(cfg: SimulationConfig, cal: Calendar, acc: dict, rng: np.random.Generator) -> dict:
    """Every lead's creation, account, firmographics, fit, interest, rate and stated timeframe.

    Leads are numbered in order of creation.
    """
    n = cfg.leads
    created_day = rng.uniform(0, cal.weeks * 7 - 1e-6, n)
    order = np.argsort(created_day, kind="stable")
    created_day = created_day[order]
    created_week = (created_day // 7).astype(np.int64)
    account = rng.choice(acc["n"], size=n, p=acc["lead_weight"])
    source = categorical(rng, cumulative(SOURCE_P)[None, :], np.zeros(n, dtype=int))
    seniority = categorical(rng, cumulative(SENIORITY_P)[None, :], np.zeros(n, dtype=int))
    function = rng.integers(0, len(FUNCTIONS), n)
    interest = categorical(rng, cumulative(INTEREST_P)[None, :], np.zeros(n, dtype=int))
    band = acc["band"][account]
    senior = np.isin(seniority, [3, 4])
    eta = (
        FIT_BASE
        + SENIORITY_EFFECT[seniority]
        + BAND_EFFECT[band]
        + INDUSTRY_EFFECT[acc["industry"][account]]
        + SOURCE_EFFECT[source]
        + 0.5 * (senior & (band >= 4))
        - 0.4 * ((seniority == 0) & (band == 5))
        + rng.normal(0.0, FIT_NOISE, n)
    )
    rate = rng.gamma(2.0, 0.5, n) * SOURCE_RATE[source] * INTEREST_RATE[interest]
    rate = np.where((source == SOURCES.index("list_import")) & (rng.random(n) < 0.4), 0.0, rate)
    return {
        "n": n,
        "created_ns": cal.start_ns + (created_day * DAY_NS).astype(np.int64),
        "created_week": created_week,
        "created_offset": created_day - created_week * 7,
        "account": account,
        "account_missing": rng.random(n) < 0.12,
        "source": source,
        "seniority": seniority,
        "seniority_missing": rng.random(n) < 0.10,
        "function": function,
        "interest": interest,
        "eta": eta,
        "rate": rate,
        "country_u": rng.random(n),
        "status_u": rng.random(n),
        # drawn last, so that adding the field left every earlier draw (and the truth) as it was
        "timeframe": categorical(rng, cumulative(TIMEFRAME_P), interest),
        "timeframe_missing": rng.random(n) < TIMEFRAME_MISSING[source],
    }
