"""Demo CRM simulator: a B2B SaaS CRM whose truth is known because it is planted.

The generative story, in weeks from the start date:

* **Leads** arrive uniformly over the period. Each has a *fit* ``eta`` (firmographics with a
  bell-shaped company-size effect, a seniority × size interaction, lead source, and noise), an
  *interest* class ``z`` and an engagement rate ``r``. The interest shows in a recorded field:
  the BANT *purchase timeframe* the lead states on the form (mostly in line with ``z``,
  ``TIMEFRAME_P``; missing for some sources, always for list imports). Touches arrive as a
  Poisson process whose weekly rate decays with the lead's age; channel depends on the source,
  type on channel and interest, content on type, what is published, and popularity.
* Each touch has an **effect** ``channel weight × type weight × content multiplier``; the content
  multiplier depends on the lead's **stage** (its age: awareness, consideration, decision), so some
  content helps only at some stages, and two channels (``display``, ``social``) have zero effect.
* **Intent** decays weekly (half-life ≈ 2 weeks). The weekly conversion hazard is
  ``exp(eta + season(week)) × (b + intent)`` for ``lead_lifetime_weeks`` after creation; conversion
  happens when the cumulative hazard passes the lead's own exponential clock ``E ~ Exp(1)``.
  Holding every random draw fixed, removing a channel's (or a content item's) touches can only
  lower the hazard, so the **counterfactual removal** truth is computed exactly by re-running the
  clock: conversions lost, and their revenue.
* The **true probability** that a lead converts within ``window_days`` of each weekly snapshot is
  exact: the known part of the hazard is summed in closed form and the future touches are integrated
  out with the Laplace functional of their Poisson process (tabulated per source, interest,
  stage and content epoch).
* **Accounts** that are customers have annual subscriptions. A latent weekly *health* follows an
  AR(1) process; usage, tickets and satisfaction are noisy views of it. At each renewal the account
  churns with probability ``Phi(alpha_plan - tenure - beta × health)``; a small background weekly
  hazard adds mid-term cancellations. The true 90-day churn probability at each snapshot uses the
  Gaussian forecast of health at the next renewal, in closed form.
* Converted leads open opportunities; won opportunities carry revenue and make new customers.

Everything is vectorised numpy; the same seed gives the same bytes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from scipy.special import ndtr

from crm.contract import (
    CHANNELS,
    CONTENT_TYPES,
    DTYPES,
    EMPLOYEE_BANDS,
    INTERACTION_TYPES,
    PLANS,
    PURCHASE_TIMEFRAMES,
    SENIORITIES,
    TABLES,
    TICKET_PRIORITIES,
)
from crm.io import atomic_dir, write_parquet

DAY_NS = 86_400_000_000_000
WEEK_NS = 7 * DAY_NS

# --- leads: firmographics and fit ---------------------------------------------------------------
INDUSTRIES = (
    "software",
    "financial_services",
    "healthcare",
    "manufacturing",
    "retail",
    "education",
    "media",
    "logistics",
)
INDUSTRY_P = np.array([0.22, 0.14, 0.12, 0.14, 0.12, 0.08, 0.08, 0.10])
INDUSTRY_EFFECT = np.array([0.3, 0.2, 0.0, -0.1, -0.2, -0.3, 0.0, -0.1])
BAND_P = np.array([0.12, 0.25, 0.28, 0.20, 0.10, 0.05])
BAND_EFFECT = np.array([-0.6, -0.1, 0.3, 0.4, 0.1, -0.3])  # bell-shaped: mid-size fits best
BAND_ACV = np.array([6_000, 12_000, 25_000, 50_000, 90_000, 150_000])
REGIONS = ("NA", "EMEA", "APAC", "LATAM")
REGION_P = np.array([0.5, 0.3, 0.15, 0.05])
COUNTRIES = {
    "NA": ("US", "CA"),
    "EMEA": ("GB", "DE", "FR", "NL"),
    "APAC": ("AU", "SG", "IN", "JP"),
    "LATAM": ("BR", "MX"),
}
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
FIT_BASE = -5.9
FIT_NOISE = 0.3
BASE_INTENT = 0.3  # hazard with no touches, relative to one unit of intent
INTENT_DECAY = float(np.exp(-7 / 21))  # per week

# --- touches: channels, types, content -----------------------------------------------------------
CH = {c: i for i, c in enumerate(CHANNELS)}
TY = {t: i for i, t in enumerate(INTERACTION_TYPES)}
CHANNEL_WEIGHT = np.array(
    [
        {
            "email": 0.6,
            "paid_search": 1.0,
            "organic_search": 0.8,
            "social": 0.0,
            "display": 0.0,
            "event": 1.4,
            "webinar": 1.2,
            "referral": 1.5,
            "partner": 0.5,
            "direct": 0.7,
            "sales": 1.8,
        }[c]
        for c in CHANNELS
    ]
)
TYPE_WEIGHT = np.array(
    [
        {
            "email_open": 0.15,
            "email_click": 0.5,
            "email_reply": 1.0,
            "page_view": 0.3,
            "pricing_page_view": 2.0,
            "form_submit": 1.0,
            "content_download": 0.8,
            "webinar_attend": 1.2,
            "event_attend": 1.0,
            "call": 0.8,
            "meeting": 1.5,
            "demo_request": 3.0,
        }[t]
        for t in INTERACTION_TYPES
    ]
)
CHANNEL_MIX = np.array(
    [
        {
            "email": 0.30,
            "paid_search": 0.08,
            "organic_search": 0.10,
            "social": 0.07,
            "display": 0.07,
            "event": 0.03,
            "webinar": 0.05,
            "referral": 0.03,
            "partner": 0.03,
            "direct": 0.12,
            "sales": 0.12,
        }[c]
        for c in CHANNELS
    ]
)
SOURCE_CHANNEL = {
    "paid_search": "paid_search",
    "organic_search": "organic_search",
    "social": "social",
    "referral": "referral",
    "event": "event",
    "webinar": "webinar",
    "partner": "partner",
    "direct": "direct",
}
WEB_TYPES = {
    "page_view": 0.55,
    "pricing_page_view": 0.10,
    "form_submit": 0.10,
    "content_download": 0.20,
    "demo_request": 0.05,
}
CHANNEL_TYPES = {
    "email": {"email_open": 0.70, "email_click": 0.25, "email_reply": 0.05},
    "event": {"event_attend": 0.8, "meeting": 0.2},
    "webinar": {"webinar_attend": 1.0},
    "sales": {"call": 0.7, "meeting": 0.3},
}
INTEREST_TYPE_BOOST = {
    "pricing_page_view": (1, 2, 4),
    "demo_request": (1, 2.5, 6),
    "email_click": (1, 1.5, 2),
    "email_reply": (1, 2, 3),
    "meeting": (1, 1.5, 2),
}
# content class per type: (probability the touch carries content, content types it can carry)
CONTENT_CLASS = {
    "content_download": (1.0, ("whitepaper", "ebook", "case_study", "video")),
    "webinar_attend": (1.0, ("webinar",)),
    "email_click": (0.6, ("blog", "whitepaper", "case_study", "ebook", "video")),
    "page_view": (0.3, ("blog", "case_study", "video")),
}
STAGE_MULT = {  # content multiplier by lead stage (awareness, consideration, decision)
    "blog": (1.2, 0.4, 0.0),
    "whitepaper": (0.6, 1.2, 0.4),
    "case_study": (0.0, 0.8, 1.8),
    "webinar": (0.5, 1.2, 0.8),
    "video": (1.0, 0.6, 0.2),
    "ebook": (0.8, 1.0, 0.3),
}
CONTENT_COUNTS = {
    "blog": 18,
    "whitepaper": 10,
    "case_study": 10,
    "webinar": 8,
    "video": 8,
    "ebook": 6,
}
TOPICS = (
    "pipeline_analytics",
    "security",
    "integrations",
    "pricing_roi",
    "customer_stories",
    "product_updates",
)
PAID_CHANNELS = ("email", "paid_search", "social", "display", "event", "webinar")
CAMPAIGN_COST = {
    "email": 5_000,
    "paid_search": 40_000,
    "social": 15_000,
    "display": 20_000,
    "event": 30_000,
    "webinar": 8_000,
}
EPOCH_WEEKS = 13

# --- accounts: subscriptions, health, churn ------------------------------------------------------
SEAT_PRICE = np.array([25.0, 50.0, 90.0])  # per seat per month, by plan
CHURN_ALPHA = np.array([-0.9, -1.2, -1.5])  # probit intercept at renewal, by plan
CHURN_BETA = 0.9
CHURN_TENURE = 0.12  # per completed year, up to 3
BACKGROUND_CHURN = np.array([0.0012, 0.0006, 0.0003])  # weekly, by plan
HEALTH_PHI = 0.9
HEALTH_SIGMA = 0.31
HEALTH_MEAN_SD = 0.6
MONTH_SEASON = np.array([-0.1, 0.0, 0.2, 0.0, 0.05, 0.2, -0.1, -0.35, 0.2, 0.05, 0.1, -0.15])
MONTH_TOUCHES = np.array([0.95, 1.0, 1.05, 1.0, 1.0, 1.0, 0.85, 0.7, 1.1, 1.1, 1.05, 0.75])


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

    def __post_init__(self) -> None:
        if self.accounts < 10:
            raise ValueError(f"accounts must be at least 10, got {self.accounts}")
        if self.leads < 10:
            raise ValueError(f"leads must be at least 10, got {self.leads}")
        if not 3 <= self.months <= 120:
            raise ValueError(f"months must be between 3 and 120, got {self.months}")
        if pd.Timestamp(self.start).dayofweek != 0:
            raise ValueError(f"start must be a Monday, got {self.start}")

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


Progress = Callable[[str], None]


def _noop(_: str) -> None:
    return None


def categorical(rng: np.random.Generator, cum: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Draw one category per element from row ``rows[k]`` of a cumulative-probability matrix."""
    u = rng.random(len(rows))
    out = np.zeros(len(rows), dtype=np.int16)
    for j in range(cum.shape[1] - 1):
        out += u >= cum[rows, j]
    return out


def _cumulative(p: np.ndarray) -> np.ndarray:
    p = p / p.sum(axis=-1, keepdims=True)
    cum = np.cumsum(p, axis=-1)
    cum[..., -1] = 1.0 + 1e-12
    return cum


def _ids(prefix: str, n: int, width: int) -> pa.Array:
    numbers = pa.array(np.arange(1, n + 1, dtype=np.int64)).cast(pa.string())
    padded = pa.compute.utf8_lpad(numbers, width=width, padding="0")
    return pa.compute.binary_join_element_wise(prefix, padded, "").cast(pa.large_string())


def _take(values: pa.Array, index: np.ndarray) -> pa.Array:
    """``values[index]`` with nulls where ``index < 0``."""
    index = np.asarray(index)
    mask = index < 0
    return values.take(pa.array(np.where(mask, 0, index), mask=mask if mask.any() else None))


def _strings(values: pa.Array) -> pd.Series:
    """An Arrow string array as a pandas column of the contract's string dtype, without copies."""
    return pd.Series(pd.arrays.ArrowStringArray(values), dtype=DTYPES["id"])


def _ts(ns: np.ndarray, mask: np.ndarray | None = None) -> pa.Array:
    return pa.array(np.asarray(ns, dtype=np.int64), type=pa.timestamp("ns", tz="UTC"), mask=mask)


class _Calendar:
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
        return self.start_ns + np.asarray(w, dtype=np.int64) * WEEK_NS


def _arrival_shape(age: np.ndarray) -> np.ndarray:
    return 0.2 + 1.2 * np.exp(-np.asarray(age, dtype=np.float64) / 5.0)


def _stage(age: np.ndarray) -> np.ndarray:
    age = np.asarray(age)
    return (age >= 4).astype(np.int8) + (age >= 12).astype(np.int8)


# ================================================================================================
def simulate(cfg: SimulationConfig, progress: Progress = _noop) -> SimulationResult:
    """Simulate a CRM with planted ground truth.

    Args:
        cfg: sizes and seed.
        progress: called with the name of each step as it starts.

    Returns:
        The nine contract tables (contract dtypes), the ground truth and a summary.
    """
    streams = np.random.SeedSequence(cfg.seed).spawn(10)
    rng = [np.random.default_rng(s) for s in streams]
    cal = _Calendar(cfg)

    progress("accounts")
    acc = _accounts(cfg, cal, rng[0])
    progress("content and campaigns")
    content = _content(cfg, cal, rng[1])
    campaigns = _campaigns(cfg, cal, rng[2])
    progress("leads")
    leads = _leads(cfg, cal, acc, rng[3])
    progress("touches")
    touches = _touches(cfg, cal, leads, content, rng[4])
    progress("conversions")
    conv = LeadProcess(cfg, cal, leads, touches)
    converted_age = conv.conversion_age(conv.effect_sum)
    leads["converted_age"] = converted_age
    u_day = rng[5].random(cfg.leads)
    conv_ns = np.where(
        converted_age > 0,
        cal.week_start(leads["created_week"] + converted_age) + (u_day * WEEK_NS).astype(np.int64),
        -1,
    )
    leads["converted_ns"] = conv_ns
    progress("opportunities")
    opps = _opportunities(cfg, cal, leads, acc, rng[6])
    progress("counterfactual attribution")
    lead_value = np.zeros(cfg.leads)
    won = opps["won"] == 1
    np.add.at(lead_value, opps["lead"][won], opps["amount"][won])
    attribution = conv.counterfactual_truth(converted_age > 0, lead_value, content, progress)
    progress("lead truth")
    lead_truth = conv.truth(converted_age, content)
    conv.release()
    progress("subscriptions and churn")
    subs = _subscriptions(cfg, cal, acc, opps, rng[7])
    churn = _churn(cfg, cal, subs, rng[8])
    progress("usage and tickets")
    usage, tickets, cs_touches = _usage_and_tickets(cfg, cal, subs, churn, rng[9])

    progress("tables")
    tables = _assemble(
        cfg,
        cal,
        acc,
        leads,
        content,
        campaigns,
        touches,
        opps,
        subs,
        churn,
        usage,
        tickets,
        cs_touches,
    )
    snapshot_ns = cal.week_start(leads["created_week"][lead_truth["lead"]] + lead_truth["age"])
    truth = {
        "lead_conversion": pd.DataFrame(
            {
                "lead_id": _strings(_take(_ids("L", cfg.leads, 7), lead_truth.pop("lead"))),
                "snapshot_at": pd.to_datetime(snapshot_ns, utc=True),
                "p_convert": lead_truth.pop("p"),
            }
        ),
        "churn": pd.DataFrame(
            {
                "account_id": tables["accounts"]["account_id"].to_numpy()[churn["truth_account"]],
                "snapshot_at": pd.to_datetime(churn["truth_snapshot_ns"], utc=True),
                "p_churn": churn["truth_p"],
            }
        ).astype({"account_id": DTYPES["id"]}),
        "attribution_channels": attribution["channels"],
        "attribution_content": attribution["content"].assign(
            content_id=lambda d: d["content_id"].astype(DTYPES["id"])
        ),
    }
    del lead_truth
    summary = _summary(cfg, tables, truth, attribution, conv)
    return SimulationResult(cfg, tables, truth, summary, conv)


# ------------------------------------------------------------------------------------------------
def _accounts(cfg: SimulationConfig, cal: _Calendar, rng: np.random.Generator) -> dict:
    n = cfg.accounts
    industry = categorical(rng, _cumulative(INDUSTRY_P)[None, :], np.zeros(n, dtype=int))
    band = categorical(rng, _cumulative(BAND_P)[None, :], np.zeros(n, dtype=int))
    region = categorical(rng, _cumulative(REGION_P)[None, :], np.zeros(n, dtype=int))
    created_ns = cal.start_ns - (rng.uniform(30, 1500, n) * DAY_NS).astype(np.int64)
    lead_weight = rng.lognormal(0.0, 0.8, n)
    customer = rng.random(n) < cfg.customer_share
    return {
        "n": n,
        "industry": industry,
        "band": band,
        "region": region,
        "created_ns": created_ns,
        "lead_weight": lead_weight / lead_weight.sum(),
        "customer": customer,
        "industry_missing": rng.random(n) < 0.04,
        "band_missing": rng.random(n) < 0.08,
        "region_missing": rng.random(n) < 0.02,
        "name_a": rng.integers(0, 40, n),
        "name_b": rng.integers(0, 12, n),
        "country_u": rng.random(n),
    }


def _content(cfg: SimulationConfig, cal: _Calendar, rng: np.random.Generator) -> dict:
    types = np.array([CONTENT_TYPES.index(t) for t, k in CONTENT_COUNTS.items() for _ in range(k)])
    n = len(types)
    n_epochs = -(-cal.weeks // EPOCH_WEEKS)
    # two of each type in the launch library, the rest published over the period
    epoch = np.where(rng.random(n) < 0.5, 0, rng.integers(1, max(n_epochs, 2), n))
    for t in range(len(CONTENT_TYPES)):
        epoch[np.flatnonzero(types == t)[:2]] = 0
    quality = np.where(rng.random(n) < 0.15, 0.0, rng.lognormal(0.0, 0.4, n))
    popularity = rng.lognormal(0.0, 0.6, n)
    topic = rng.integers(0, len(TOPICS), n)
    published_ns = np.where(
        epoch == 0,
        cal.start_ns - (rng.uniform(10, 400, n) * DAY_NS).astype(np.int64),
        cal.week_start(epoch * EPOCH_WEEKS) - (rng.uniform(1, 28, n) * DAY_NS).astype(np.int64),
    )
    stage_mult = np.array([STAGE_MULT[CONTENT_TYPES[t]] for t in types])  # (n, 3)
    return {
        "n": n,
        "type": types,
        "epoch": epoch,
        "quality": quality,
        "popularity": popularity,
        "topic": topic,
        "published_ns": published_ns,
        "stage_mult": stage_mult,
        "n_epochs": max(n_epochs, 1),
    }


def _campaigns(cfg: SimulationConfig, cal: _Calendar, rng: np.random.Generator) -> dict:
    quarters = -(-cal.weeks // EPOCH_WEEKS)
    channel = np.repeat(np.arange(len(PAID_CHANNELS)), quarters)
    quarter = np.tile(np.arange(quarters), len(PAID_CHANNELS))
    scale = cfg.leads / 20_000
    cost = np.array([CAMPAIGN_COST[PAID_CHANNELS[c]] for c in channel]) * scale
    cost = np.round(cost * rng.lognormal(0.0, 0.25, len(channel)), 2)
    start_ns = cal.week_start(quarter * EPOCH_WEEKS)
    end_ns = cal.week_start(np.minimum((quarter + 1) * EPOCH_WEEKS, cal.weeks)) - DAY_NS
    return {
        "channel": channel,
        "quarter": quarter,
        "cost": cost,
        "start_ns": start_ns,
        "end_ns": end_ns,
        "quarters": quarters,
    }


def _leads(cfg: SimulationConfig, cal: _Calendar, acc: dict, rng: np.random.Generator) -> dict:
    n = cfg.leads
    created_day = rng.uniform(0, cal.weeks * 7 - 1e-6, n)
    order = np.argsort(created_day, kind="stable")
    created_day = created_day[order]
    created_week = (created_day // 7).astype(np.int64)
    account = rng.choice(acc["n"], size=n, p=acc["lead_weight"])
    source = categorical(rng, _cumulative(SOURCE_P)[None, :], np.zeros(n, dtype=int))
    seniority = categorical(rng, _cumulative(SENIORITY_P)[None, :], np.zeros(n, dtype=int))
    function = rng.integers(0, len(FUNCTIONS), n)
    interest = categorical(rng, _cumulative(INTEREST_P)[None, :], np.zeros(n, dtype=int))
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
        "timeframe": categorical(rng, _cumulative(TIMEFRAME_P), interest),
        "timeframe_missing": rng.random(n) < TIMEFRAME_MISSING[source],
    }


def _channel_matrix() -> np.ndarray:
    """P(channel | source), shape (sources, channels)."""
    mix = np.tile(CHANNEL_MIX, (len(SOURCES), 1))
    for s, source in enumerate(SOURCES):
        if source in SOURCE_CHANNEL:
            mix[s, CH[SOURCE_CHANNEL[source]]] *= 3.0
    return mix / mix.sum(axis=1, keepdims=True)


def _type_matrix() -> np.ndarray:
    """P(type | channel, interest), shape (channels, 3, types)."""
    out = np.zeros((len(CHANNELS), 3, len(INTERACTION_TYPES)))
    for c, channel in enumerate(CHANNELS):
        base = CHANNEL_TYPES.get(channel, WEB_TYPES)
        for z in range(3):
            for t, p in base.items():
                out[c, z, TY[t]] = p * INTEREST_TYPE_BOOST.get(t, (1, 1, 1))[z]
            out[c, z] /= out[c, z].sum()
    return out


def _content_choice(content: dict, type_name: str, epoch: int) -> tuple[float, np.ndarray]:
    """Probability a touch of this type carries content, and P(item) among published ones."""
    p_content, allowed = CONTENT_CLASS.get(type_name, (0.0, ()))
    weights = np.zeros(content["n"])
    if p_content > 0:
        ok = np.isin(content["type"], [CONTENT_TYPES.index(t) for t in allowed])
        ok &= content["epoch"] <= epoch
        weights = np.where(ok, content["popularity"], 0.0)
        if weights.sum() == 0:
            return 0.0, weights
        weights = weights / weights.sum()
    return p_content, weights


def _touches(
    cfg: SimulationConfig, cal: _Calendar, leads: dict, content: dict, rng: np.random.Generator
) -> dict:
    n, life = leads["n"], cfg.lead_lifetime_weeks
    age = np.arange(life)
    week = leads["created_week"][:, None] + age[None, :]
    rho = (
        leads["rate"][:, None]
        * _arrival_shape(age)[None, :]
        * cal.touch_season[np.minimum(week, cal.total - 1)]
    )
    rho[:, 0] *= (7 - leads["created_offset"]) / 7
    rho[week >= cal.weeks] = 0.0
    counts = rng.poisson(rho)
    cell = np.repeat(np.arange(n * life, dtype=np.int64), counts.ravel())
    lead = (cell // life).astype(np.int64)
    t_age = (cell % life).astype(np.int64)
    t_week = leads["created_week"][lead] + t_age
    first = t_age == 0
    offset = rng.random(len(cell))
    offset = np.where(
        first,
        leads["created_offset"][lead] + offset * (7 - leads["created_offset"][lead]),
        offset * 7,
    )
    occurred_ns = cal.week_start(t_week) + (offset * DAY_NS).astype(np.int64)
    channel = categorical(rng, _cumulative(_channel_matrix()), leads["source"][lead])
    type_cum = _cumulative(_type_matrix()).reshape(len(CHANNELS) * 3, -1)
    ttype = categorical(rng, type_cum, channel.astype(np.int64) * 3 + leads["interest"][lead])
    epoch = np.minimum(t_week // EPOCH_WEEKS, content["n_epochs"] - 1)
    item = np.full(len(cell), -1, dtype=np.int64)
    u_has = rng.random(len(cell))
    u_item = rng.random(len(cell))
    for type_name in CONTENT_CLASS:
        for e in range(content["n_epochs"]):
            sel = np.flatnonzero((ttype == TY[type_name]) & (epoch == e))
            p_content, weights = _content_choice(content, type_name, e)
            if len(sel) == 0 or p_content == 0:
                continue
            cum = np.cumsum(weights)
            cum[-1] = 1.0 + 1e-12
            chosen = np.searchsorted(cum, u_item[sel], side="right")
            item[sel] = np.where(u_has[sel] < p_content, chosen, -1)
    stage = _stage(t_age)
    mult = np.where(
        item >= 0,
        content["quality"][np.maximum(item, 0)] * content["stage_mult"][np.maximum(item, 0), stage],
        1.0,
    )
    effect = CHANNEL_WEIGHT[channel] * TYPE_WEIGHT[ttype] * mult
    paid = np.array([CHANNELS[c] in PAID_CHANNELS for c in range(len(CHANNELS))])
    paid_index = np.array([PAID_CHANNELS.index(c) if c in PAID_CHANNELS else -1 for c in CHANNELS])
    quarter = t_week // EPOCH_WEEKS
    has_campaign = paid[channel] & (rng.random(len(cell)) < 0.9)
    campaign = np.where(
        has_campaign, paid_index[channel] * (-(-cal.weeks // EPOCH_WEEKS)) + quarter, -1
    )
    return {
        "lead": lead.astype(np.int32),
        "age": t_age.astype(np.int16),
        "week": t_week.astype(np.int16),
        "occurred_ns": occurred_ns,
        "channel": channel.astype(np.int8),
        "type": ttype.astype(np.int8),
        "content": item.astype(np.int16),
        "campaign": campaign.astype(np.int16),
        "effect": effect,
    }


def _intent(effect_sum: np.ndarray) -> np.ndarray:
    """Intent at the start of each week of age (columns 0..lifetime) from the touches before it:
    each week's effects, decayed by ``INTENT_DECAY`` per week."""
    intent = np.zeros((effect_sum.shape[0], effect_sum.shape[1] + 1))
    running = np.zeros(effect_sum.shape[0])
    for age in range(effect_sum.shape[1]):
        running = running * INTENT_DECAY + np.maximum(effect_sum[:, age], 0.0)
        intent[:, age + 1] = running
    return intent


class LeadProcess:
    """The lead conversion process: hazards, clocks, counterfactuals and exact truth."""

    def __init__(self, cfg: SimulationConfig, cal: _Calendar, leads: dict, touches: dict):
        self.cfg, self.cal, self.leads, self.touches = cfg, cal, leads, touches
        self.life = cfg.lead_lifetime_weeks
        rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, 99]))
        self.clock = rng.exponential(1.0, leads["n"])
        self._effect_sum: np.ndarray | None = None
        self.factual = self.conversion_age(self.effect_sum) > 0
        # removing touches only lowers the hazard, so only factual conversions can be lost
        self._of_converted = self.factual[touches["lead"]]

    @property
    def effect_sum(self) -> np.ndarray:
        """Sum of touch effects per lead (rows) and week of age (columns); built on demand."""
        if self._effect_sum is None:
            cell = self.touches["lead"].astype(np.int64) * self.life + self.touches["age"]
            self._effect_sum = np.bincount(
                cell, weights=self.touches["effect"], minlength=self.leads["n"] * self.life
            ).reshape(-1, self.life)
        return self._effect_sum

    def release(self) -> None:
        """Drop the cached effect sums (rebuilt on the next use) to keep peak memory low."""
        self._effect_sum = None

    def conversion_age(self, effect_sum: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
        """Age in weeks (1..lifetime) at which each lead converts within the period, 0 if never."""
        rows = np.arange(self.leads["n"]) if rows is None else rows
        created = self.leads["created_week"][rows]
        ages = np.arange(1, self.life + 1)
        week = created[:, None] + ages[None, :]
        hazard = np.exp(self.leads["eta"][rows][:, None] + self.cal.season[week]) * (
            BASE_INTENT + _intent(effect_sum)[:, 1:]
        )
        hazard[week >= self.cal.weeks] = 0.0
        passed = np.cumsum(hazard, axis=1) >= self.clock[rows][:, None]
        hit = passed.any(axis=1)
        return np.where(hit, passed.argmax(axis=1) + 1, 0)

    def converted_without(self, remove: np.ndarray) -> np.ndarray:
        """Whether each lead converts within the period with the touches in ``remove`` removed.

        ``remove`` is a boolean mask over :attr:`touches` (all pre-drawn touches, including the
        ones after a factual conversion); every other random draw is held fixed.
        """
        converted = self.factual.copy()
        rows, still = self._without(remove)
        converted[rows] = still
        return converted

    def _without(self, remove: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Converted leads affected by removing the touches in ``remove``, and whether they still
        convert."""
        remove = remove & self._of_converted
        rows, inverse = np.unique(self.touches["lead"][remove], return_inverse=True)
        if len(rows) == 0:
            return rows, np.zeros(0, dtype=bool)
        removed = np.bincount(
            inverse * self.life + self.touches["age"][remove],
            weights=self.touches["effect"][remove],
            minlength=len(rows) * self.life,
        ).reshape(-1, self.life)
        return rows, self.conversion_age(self.effect_sum[rows] - removed, rows) > 0

    def counterfactual_truth(
        self, converted: np.ndarray, value: np.ndarray, content: dict, progress: Progress
    ) -> dict:
        def lost(remove: np.ndarray) -> tuple[int, float]:
            rows, still = self._without(remove)
            gone = converted[rows] & ~still
            return int(gone.sum()), float(value[rows][gone].sum())

        ch_rows = []
        for c, name in enumerate(CHANNELS):
            n_lost, v_lost = lost(self.touches["channel"] == c)
            ch_rows.append((name, float(CHANNEL_WEIGHT[c]), n_lost, v_lost))
        ct_rows = []
        order = np.argsort(self.touches["content"], kind="stable")
        bounds = np.searchsorted(self.touches["content"][order], np.arange(content["n"] + 1))
        for k in range(content["n"]):
            mask = np.zeros(len(order), dtype=bool)
            mask[order[bounds[k] : bounds[k + 1]]] = True
            n_lost, v_lost = lost(mask)
            ct_rows.append((f"CT{k + 1:04d}", n_lost, v_lost))
        all_rows, still = self._without(np.ones(len(self.touches["lead"]), dtype=bool))
        lost_all = converted[all_rows] & ~still
        self.touch_attributed = int(lost_all.sum())
        self.touch_attributed_value = float(value[all_rows][lost_all].sum())
        self.conversions = int(converted.sum())
        channels = pd.DataFrame(
            ch_rows, columns=["channel", "effect_weight", "conversions_lost", "value_lost"]
        )
        items = pd.DataFrame(ct_rows, columns=["content_id", "conversions_lost", "value_lost"])
        for frame in (channels, items):
            total, total_value = frame["conversions_lost"].sum(), frame["value_lost"].sum()
            frame["share"] = frame["conversions_lost"] / total if total else 0.0
            frame["value_share"] = frame["value_lost"] / total_value if total_value else 0.0
            # the conversions (revenue) that touches cause, split by the removal shares
            frame["credited_conversions"] = frame["share"] * self.touch_attributed
            frame["credited_value"] = frame["value_share"] * self.touch_attributed_value
        return {"channels": channels, "content": items}

    def _future_tables(self, content: dict) -> tuple[np.ndarray, np.ndarray]:
        """1 - E[exp(-e x)] over one future touch's effect, per (source, interest, stage, epoch).

        Tabulated on the grid ``2**e * (1 + j/16)``, so a lookup reads the float's bits.
        """
        grid = np.ldexp(
            1.0 + (np.arange(GRID_LEN) % 16) / 16, GRID_EXP_MIN + np.arange(GRID_LEN) // 16
        )
        n_src, n_ep = len(SOURCES), content["n_epochs"]
        tables = np.zeros((n_src, 3, 3, n_ep, len(grid)))
        p_ch = _channel_matrix()
        p_ty = _type_matrix()
        for stage in range(3):
            for ep in range(n_ep):
                effects, weights = [], []  # atoms: effect and P(atom | source, interest)
                for c in range(len(CHANNELS)):
                    for t, type_name in enumerate(INTERACTION_TYPES):
                        p_t = p_ty[c, :, t]
                        if not p_t.any():
                            continue
                        base = CHANNEL_WEIGHT[c] * TYPE_WEIGHT[t]
                        p_content, item_p = _content_choice(content, type_name, ep)
                        w = p_ch[:, c][:, None] * p_t[None, :]
                        if p_content < 1:
                            effects.append(np.array([base]))
                            weights.append((w * (1 - p_content))[..., None])
                        if p_content > 0:
                            items = np.flatnonzero(item_p > 0)
                            effects.append(
                                base
                                * content["quality"][items]
                                * content["stage_mult"][items, stage]
                            )
                            weights.append((w * p_content)[..., None] * item_p[items])
                e = np.concatenate(effects)
                wt = np.concatenate(weights, axis=-1)  # (src, z, atoms)
                g = -np.expm1(-e[:, None] * grid[None, :])
                tables[:, :, stage, ep, :] = wt @ g
        return grid, tables.reshape(-1, len(grid))

    def _calendar_tables(self, n_ep: int, horizon: int) -> dict[str, np.ndarray]:
        """Everything in the truth that depends only on (snapshot week, lead age)."""
        life, cal = self.life, self.cal
        n_w = cal.total - horizon - 1
        w = np.repeat(np.arange(n_w), life + 1)
        a = np.tile(np.arange(life + 1), n_w)
        js = np.arange(horizon + 1)
        alive = (a[:, None] + js[None, :]) <= life
        exp_s = cal.exp_season[w[:, None] + js[None, :]] * alive
        decay = INTENT_DECAY**js
        ms = np.arange(horizon)
        touch_age = a[:, None] + ms[None, :]
        out: dict[str, np.ndarray] = {
            "arrival": _arrival_shape(touch_age)
            * cal.touch_season[w[:, None] + ms[None, :]]
            * (touch_age <= life - 1),
            "group": (
                _stage(touch_age).astype(np.int64) * n_ep
                + np.minimum((w[:, None] + ms[None, :]) // EPOCH_WEEKS, n_ep - 1)
            ),
        }
        for last in (horizon - 1, horizon):
            out[f"s0_{last}"] = exp_s[:, : last + 1].sum(axis=1)
            out[f"s1_{last}"] = (exp_s[:, : last + 1] * decay[: last + 1]).sum(axis=1)
            k = np.zeros((len(w), horizon))
            k_next = np.zeros(len(w))
            for m in range(last - 1, -1, -1):
                k_next = exp_s[:, m + 1] + INTENT_DECAY * k_next
                k[:, m] = k_next
            out[f"k_{last}"] = k
        return out

    def truth(self, converted_age: np.ndarray, content: dict, chunk: int = 250_000) -> dict:
        """Exact P(convert within window_days) at every weekly snapshot a lead is open."""
        cfg, cal, leads, life = self.cfg, self.cal, self.leads, self.life
        ages = np.arange(1, life + 1)
        week = leads["created_week"][:, None] + ages[None, :]
        conv = np.where(converted_age > 0, converted_age, life + 1)
        open_ = (week < cal.weeks) & (ages[None, :] <= conv[:, None])
        lead_idx, a_idx = np.nonzero(open_)
        lead_idx = lead_idx.astype(np.int32)
        a_idx = (a_idx + 1).astype(np.int16)
        del week, open_
        intent = _intent(self.effect_sum)
        _, tables = self._future_tables(content)
        flat = tables.ravel()
        horizon = cfg.window_weeks - 1  # whole weeks fully inside the window: 0..horizon-1
        tail_frac = (cfg.window_days - 7 * horizon) / 7
        n_ep = content["n_epochs"]
        cal_t = self._calendar_tables(n_ep, horizon)

        out = np.empty(len(lead_idx))
        for lo in range(0, len(lead_idx), chunk):
            i = lead_idx[lo : lo + chunk].astype(np.int64)
            a = a_idx[lo : lo + chunk].astype(np.int64)
            wa = (leads["created_week"][i] + a) * (life + 1) + a
            eta = np.exp(leads["eta"][i])
            cur = intent[i, a]
            base = (leads["source"][i] * 3 + leads["interest"][i]) * 3 * n_ep
            rho = leads["rate"][i][:, None] * cal_t["arrival"][wa]
            group = (base[:, None] + cal_t["group"][wa]) * GRID_LEN
            log_surv = []
            for last in (horizon - 1, horizon):
                known = eta * (
                    BASE_INTENT * cal_t[f"s0_{last}"][wa] + cur * cal_t[f"s1_{last}"][wa]
                )
                x = eta[:, None] * cal_t[f"k_{last}"][wa]
                future = (rho * _lookup(flat, group, x)).sum(axis=1)
                log_surv.append(-known - future)
            s_whole, s_tail = np.exp(log_surv[0]), np.exp(log_surv[1])
            out[lo : lo + chunk] = (1 - s_whole) + tail_frac * (s_whole - s_tail)
        del intent
        return {"lead": lead_idx, "age": a_idx, "p": out}


GRID_EXP_MIN, GRID_EXP_MAX = -30, 12
GRID_LEN = (GRID_EXP_MAX - GRID_EXP_MIN) * 16 + 1


def _lookup(flat: np.ndarray, offset: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Linear interpolation of tables on the grid ``2**e * (1 + j/16)``, read off float bits."""
    bits = np.ascontiguousarray(x, dtype=np.float64).view(np.int64)
    pos = (bits >> 48) - ((1023 + GRID_EXP_MIN) << 4)
    frac = (bits & ((1 << 48) - 1)) * (1.0 / (1 << 48))
    inside = np.clip(pos, 0, GRID_LEN - 2)
    lo = flat[offset + inside]
    val = lo + frac * (flat[offset + inside + 1] - lo)
    below = pos < 0  # tiny x (including 0): the table is linear there
    val = np.where(below, flat[offset] * x * 2.0**-GRID_EXP_MIN, val)
    return np.where(pos > GRID_LEN - 2, flat[offset + GRID_LEN - 1], val)


def _opportunities(
    cfg: SimulationConfig, cal: _Calendar, leads: dict, acc: dict, rng: np.random.Generator
) -> dict:
    lead = np.flatnonzero(leads["converted_ns"] >= 0)
    n = len(lead)
    account = leads["account"][lead]
    band = acc["band"][account]
    amount = np.round(BAND_ACV[band] * rng.lognormal(0.0, 0.35, n), -2)
    created = leads["converted_ns"][lead]
    cycle = (rng.gamma(3.0, 15.0, n) * DAY_NS).astype(np.int64)
    closed = created + cycle
    fit = leads["eta"][lead] - FIT_BASE
    p_win = 1 / (1 + np.exp(-(-0.7 + 0.6 * (fit - fit.mean() if n else fit))))
    won = (rng.random(n) < p_win).astype(np.int8)
    is_open = closed > cal.end_ns
    progress_frac = np.clip((cal.end_ns - created) / np.maximum(cycle, 1), 0, 0.999)
    open_stage = np.floor(progress_frac * 4).astype(np.int8)  # prospecting..negotiation
    stage = np.where(is_open, open_stage, np.where(won == 1, 4, 5))
    won = np.where(is_open, -1, won)
    order = np.argsort(created, kind="stable")
    return {
        k: v[order]
        for k, v in {
            "lead": lead,
            "account": account,
            "amount": amount,
            "created_ns": created,
            "closed_ns": np.where(is_open, -1, closed),
            "won": won,
            "stage": stage,
        }.items()
    }


def _subscriptions(
    cfg: SimulationConfig, cal: _Calendar, acc: dict, opps: dict, rng: np.random.Generator
) -> dict:
    initial = np.flatnonzero(acc["customer"])
    start_initial = np.maximum(
        cal.start_ns - (rng.uniform(7, 1000, len(initial)) * DAY_NS).astype(np.int64),
        acc["created_ns"][initial] + 7 * DAY_NS,
    )
    acv_initial = np.round(
        BAND_ACV[acc["band"][initial]] * rng.lognormal(0.0, 0.35, len(initial)), -2
    )
    won = opps["won"] == 1
    new_acc, first = np.unique(opps["account"][won], return_index=True)
    keep = ~acc["customer"][new_acc]
    new_acc = new_acc[keep]
    won_idx = np.flatnonzero(won)[first[keep]]
    account = np.concatenate([initial, new_acc])
    start = np.concatenate([start_initial, opps["closed_ns"][won_idx]])
    acv = np.concatenate([acv_initial, opps["amount"][won_idx]])
    order = np.lexsort((account, start))
    account, start, acv = account[order], start[order], acv[order]
    plan = (acv >= 15_000).astype(np.int8) + (acv >= 60_000).astype(np.int8)
    mrr = np.round(acv / 12, 2)
    seats = np.maximum(1, np.round(mrr / SEAT_PRICE[plan])).astype(np.int64)
    health_mean = (
        rng.normal(0.0, HEALTH_MEAN_SD, len(account))
        + 0.15 * (plan - 1)
        + 0.1 * (INDUSTRY_EFFECT[acc["industry"][account]] > 0)
    )
    return {
        "n": len(account),
        "account": account,
        "start_ns": start,
        "plan": plan,
        "mrr": mrr,
        "seats": seats,
        "health_mean": health_mean,
    }


def _churn(cfg: SimulationConfig, cal: _Calendar, subs: dict, rng: np.random.Generator) -> dict:
    """Weekly health, renewal and background churn; exact truth at each snapshot."""
    n, weeks = subs["n"], cal.weeks
    stationary_sd = HEALTH_SIGMA / np.sqrt(1 - HEALTH_PHI**2)
    health = np.zeros((n, weeks))
    h = subs["health_mean"] + rng.normal(0.0, stationary_sd, n)
    shocks = rng.normal(0.0, HEALTH_SIGMA, (n, weeks))
    for w in range(weeks):
        h = subs["health_mean"] + HEALTH_PHI * (h - subs["health_mean"]) + shocks[:, w]
        health[:, w] = h
    start_week = np.floor((subs["start_ns"] - cal.start_ns) / WEEK_NS).astype(np.int64)
    year_ns = 365 * DAY_NS
    # renewal churn: anniversaries inside the period
    renew_u = rng.random((n, 12))
    churn_ns = np.full(n, np.iinfo(np.int64).max)
    for k in range(1, 12):
        r_ns = subs["start_ns"] + k * year_ns
        r_week = (r_ns - cal.start_ns) // WEEK_NS
        inside = (r_ns > cal.start_ns) & (r_ns <= cal.end_ns) & (r_week < weeks)
        idx = np.flatnonzero(inside)
        p = ndtr(
            CHURN_ALPHA[subs["plan"][idx]]
            - CHURN_TENURE * min(k - 1, 3)
            - CHURN_BETA * health[idx, r_week[idx]]
        )
        hit = idx[renew_u[idx, k] < p]
        churn_ns[hit] = np.minimum(churn_ns[hit], r_ns[hit])
    # background churn: weekly, uniform within the week
    bg_u = rng.random((n, weeks))
    bg_day = rng.random((n, weeks))
    weeks_idx = np.arange(weeks)
    live = weeks_idx[None, :] > start_week[:, None]
    bg = (bg_u < BACKGROUND_CHURN[subs["plan"]][:, None]) & live
    has_bg = bg.any(axis=1)
    first_bg = bg.argmax(axis=1)
    bg_ns = cal.week_start(first_bg) + (bg_day[np.arange(n), first_bg] * WEEK_NS).astype(np.int64)
    churn_ns = np.where(has_bg, np.minimum(churn_ns, bg_ns), churn_ns)
    churned = churn_ns <= cal.end_ns
    churn_ns = np.where(churned, churn_ns, -1)

    # truth at each weekly snapshot the account is a live customer
    snap_live = (weeks_idx[None, :] > start_week[:, None]) & (
        ~churned[:, None] | (cal.week_start(weeks_idx)[None, :] < churn_ns[:, None])
    )
    s_idx, w_idx = np.nonzero(snap_live)
    t_ns = cal.week_start(w_idx)
    elapsed = t_ns - subs["start_ns"][s_idx]
    k_next = elapsed // year_ns + 1
    renewal_ns = subs["start_ns"][s_idx] + k_next * year_ns
    in_window = renewal_ns <= t_ns + cfg.window_days * DAY_NS
    steps = (renewal_ns - cal.start_ns) // WEEK_NS - w_idx
    mu = subs["health_mean"][s_idx]
    mean = mu + HEALTH_PHI**steps * (health[s_idx, w_idx] - mu)
    var = HEALTH_SIGMA**2 * (1 - HEALTH_PHI ** (2 * steps)) / (1 - HEALTH_PHI**2)
    alpha = CHURN_ALPHA[subs["plan"][s_idx]] - CHURN_TENURE * np.minimum(k_next - 1, 3)
    p_renew = ndtr((alpha - CHURN_BETA * mean) / np.sqrt(1 + CHURN_BETA**2 * var)) * in_window
    eps = BACKGROUND_CHURN[subs["plan"][s_idx]]
    whole = cfg.window_weeks - 1
    tail = (cfg.window_days - 7 * whole) / 7
    p_no_bg = (1 - eps) ** whole * (1 - tail * eps)
    p_churn = 1 - p_no_bg * (1 - p_renew)
    return {
        "health": health,
        "churn_ns": churn_ns,
        "start_week": start_week,
        "truth_account": subs["account"][s_idx],
        "truth_snapshot_ns": t_ns,
        "truth_p": p_churn,
        "truth_sub": s_idx,
    }


def _usage_and_tickets(
    cfg: SimulationConfig, cal: _Calendar, subs: dict, churn: dict, rng: np.random.Generator
) -> tuple[dict, dict, dict]:
    n, weeks = subs["n"], cal.weeks
    weeks_idx = np.arange(weeks)
    week_end = cal.week_start(weeks_idx + 1)
    active = (weeks_idx[None, :] >= churn["start_week"][:, None]) & (
        (churn["churn_ns"][:, None] < 0) | (week_end[None, :] <= churn["churn_ns"][:, None])
    )
    active &= week_end[None, :] <= cal.end_ns
    active &= week_end[None, :] > subs["start_ns"][:, None]
    reported = active & (rng.random((n, weeks)) >= 0.03)  # a few weeks never reported
    s_idx, w_idx = np.nonzero(reported)
    h = churn["health"][s_idx, w_idx]
    seats = subs["seats"][s_idx]
    share = 1 / (1 + np.exp(-(0.5 + 1.2 * h + rng.normal(0, 0.25, len(h)))))
    active_users = rng.binomial(seats, share)
    logins = rng.poisson(active_users * 3.5 * cal.touch_season[w_idx])
    key_events = rng.poisson(active_users * 0.8 * np.exp(0.6 * h))
    usage = {
        "sub": s_idx,
        "date_ns": week_end[w_idx],
        "active_users": active_users,
        "logins": logins,
        "key_feature_events": key_events,
    }

    a_idx = np.nonzero(active)
    ha = churn["health"][a_idx]
    rate = 0.04 * np.sqrt(subs["seats"][a_idx[0]]) * np.exp(-0.7 * ha)
    counts = rng.poisson(rate)
    sub = np.repeat(a_idx[0], counts)
    week = np.repeat(a_idx[1], counts)
    ht = np.repeat(ha, counts)
    opened = cal.week_start(week) + (rng.random(len(sub)) * WEEK_NS).astype(np.int64)
    p_urgent = 1 / (1 + np.exp(-(-2.5 - 0.8 * ht)))
    p_high = 1 / (1 + np.exp(-(-1.5 - 0.6 * ht)))
    u = rng.random(len(sub))
    priority = np.where(
        u < p_urgent, 3, np.where(u < p_urgent + p_high, 2, np.where(u < 0.6, 1, 0))
    )
    sat = np.clip(np.round(3.6 + 0.7 * ht + rng.normal(0, 0.7, len(sub))), 1, 5)
    surveyed = rng.random(len(sub)) >= 0.35
    closed = opened + (rng.gamma(2.0, 1.5, len(sub)) * (1 + 2 * (priority >= 2)) * DAY_NS).astype(
        np.int64
    )
    ok = opened <= cal.end_ns
    still_open = closed > cal.end_ns
    tickets = {
        "sub": sub[ok],
        "opened_ns": opened[ok],
        "closed_ns": np.where(still_open, -1, closed)[ok],
        "priority": priority[ok],
        "satisfaction": np.where(surveyed, sat, np.nan)[ok],
    }

    cs_counts = rng.poisson(0.06 * active)
    c_idx = np.nonzero(cs_counts)
    c_rep = cs_counts[c_idx]
    cs_sub = np.repeat(c_idx[0], c_rep)
    cs_ns = cal.week_start(np.repeat(c_idx[1], c_rep)) + (rng.random(len(cs_sub)) * WEEK_NS).astype(
        np.int64
    )
    keep = cs_ns <= cal.end_ns
    cs_touches = {"account": subs["account"][cs_sub[keep]], "occurred_ns": cs_ns[keep]}
    return usage, tickets, cs_touches


def _assemble(
    cfg, cal, acc, leads, content, campaigns, touches, opps, subs, churn, usage, tickets, cs_touches
) -> dict[str, pd.DataFrame]:
    name_a = np.array(
        [
            "Apex",
            "Blue",
            "Cedar",
            "Delta",
            "Ember",
            "Falcon",
            "Granite",
            "Harbor",
            "Iris",
            "Juniper",
            "Kestrel",
            "Lumen",
            "Maple",
            "Nova",
            "Onyx",
            "Pioneer",
            "Quartz",
            "River",
            "Summit",
            "Tidal",
            "Umbra",
            "Vertex",
            "Willow",
            "Xenon",
            "Yarrow",
            "Zenith",
            "Atlas",
            "Beacon",
            "Cobalt",
            "Drift",
            "Echo",
            "Fjord",
            "Glacier",
            "Helix",
            "Indigo",
            "Jade",
            "Keystone",
            "Lattice",
            "Meridian",
            "Northwind",
        ]
    )
    name_b = np.array(
        [
            "Analytics",
            "Systems",
            "Labs",
            "Health",
            "Logistics",
            "Capital",
            "Media",
            "Works",
            "Foods",
            "Energy",
            "Robotics",
            "Learning",
        ]
    )
    acc_ids = _ids("A", acc["n"], 6)
    names = [
        f"{a} {b} {i + 1}"
        for i, (a, b) in enumerate(zip(name_a[acc["name_a"]], name_b[acc["name_b"]], strict=True))
    ]
    regions = np.array(REGIONS)[acc["region"]]
    accounts = pa.table(
        {
            "account_id": acc_ids,
            "name": pa.array(names),
            "industry": pa.array(
                np.array(INDUSTRIES)[acc["industry"]], mask=acc["industry_missing"]
            ),
            "employee_band": pa.array(
                np.array(EMPLOYEE_BANDS)[acc["band"]], mask=acc["band_missing"]
            ),
            "region": pa.array(regions, mask=acc["region_missing"]),
            "created_at": _ts(acc["created_ns"]),
        }
    )

    n = leads["n"]
    lead_ids = _ids("L", n, 7)
    region_of = acc["region"][leads["account"]]
    country = np.empty(n, dtype=object)
    for r, name in enumerate(REGIONS):
        sel = region_of == r
        options = np.array(COUNTRIES[name])
        country[sel] = options[(leads["country_u"][sel] * len(options)).astype(int)]
    titles = {
        0: "{f} Specialist",
        1: "{f} Manager",
        2: "Director of {f}",
        3: "VP of {f}",
        4: "Chief {f} Officer",
    }
    title_table = np.array([[titles[s].format(f=f) for f in FUNCTIONS] for s in range(5)])
    job_title = title_table[leads["seniority"], leads["function"]]
    conv_ns = leads["converted_ns"]
    converted = conv_ns >= 0
    ended = leads["created_week"] + cfg.lead_lifetime_weeks + 1 <= cal.weeks
    status = np.where(
        converted,
        "converted",
        np.where(ended, np.where(leads["status_u"] < 0.3, "disqualified", "recycled"), "open"),
    )
    email_hash = [hashlib.sha256(f"lead{i + 1}@example.com".encode()).hexdigest() for i in range(n)]
    leads_t = pa.table(
        {
            "lead_id": lead_ids,
            "account_id": _take(acc_ids, np.where(leads["account_missing"], -1, leads["account"])),
            "source": pa.array(np.array(SOURCES)[leads["source"]]),
            "created_at": _ts(leads["created_ns"]),
            "job_title": pa.array(job_title, mask=leads["seniority_missing"]),
            "seniority": pa.array(
                np.array(SENIORITIES)[leads["seniority"]], mask=leads["seniority_missing"]
            ),
            "country": pa.array(country.astype(str)),
            "purchase_timeframe": pa.array(
                np.array(PURCHASE_TIMEFRAMES)[leads["timeframe"]], mask=leads["timeframe_missing"]
            ),
            "email_hash": pa.array(email_hash),
            "status": pa.array(status),
            "converted_at": _ts(np.where(converted, conv_ns, 0), mask=~converted),
        }
    )

    content_ids = _ids("CT", content["n"], 4)
    content_t = pa.table(
        {
            "content_id": content_ids,
            "title": pa.array(
                [
                    f"{CONTENT_TYPES[t].replace('_', ' ').title()}: "
                    f"{TOPICS[p].replace('_', ' ')} #{k + 1}"
                    for k, (t, p) in enumerate(zip(content["type"], content["topic"], strict=True))
                ]
            ),
            "type": pa.array(np.array(CONTENT_TYPES)[content["type"]]),
            "topic": pa.array(np.array(TOPICS)[content["topic"]]),
            "published_at": _ts(content["published_ns"]),
        }
    )

    camp_ids = _ids("CMP", len(campaigns["channel"]), 4)
    start_year = pd.Timestamp(cfg.start).year
    campaigns_t = pa.table(
        {
            "campaign_id": camp_ids,
            "name": pa.array(
                [
                    f"{PAID_CHANNELS[c].replace('_', ' ').title()} — quarter {q + 1} "
                    f"from {start_year}"
                    for c, q in zip(campaigns["channel"], campaigns["quarter"], strict=True)
                ]
            ),
            "channel": pa.array(np.array(PAID_CHANNELS)[campaigns["channel"]]),
            "cost": pa.array(campaigns["cost"]),
            "start": _ts(campaigns["start_ns"]),
            "end": _ts(campaigns["end_ns"]),
        }
    )

    # lead touches up to conversion, plus account-level customer-success meetings
    keep = ~converted[touches["lead"]] | (touches["occurred_ns"] < conv_ns[touches["lead"]])
    t_lead = touches["lead"][keep]
    n_cs = len(cs_touches["account"])
    occurred = np.concatenate([touches["occurred_ns"][keep], cs_touches["occurred_ns"]])
    lead_col = np.concatenate([t_lead, np.full(n_cs, -1, np.int32)])
    acc_col = np.concatenate(
        [
            np.where(leads["account_missing"][t_lead], -1, leads["account"][t_lead]).astype(
                np.int32
            ),
            cs_touches["account"].astype(np.int32),
        ]
    )
    channel = np.concatenate([touches["channel"][keep], np.full(n_cs, CH["sales"], np.int8)])
    ttype = np.concatenate([touches["type"][keep], np.full(n_cs, TY["meeting"], np.int8)])
    item = np.concatenate([touches["content"][keep], np.full(n_cs, -1, np.int16)])
    campaign = np.concatenate([touches["campaign"][keep], np.full(n_cs, -1, np.int16)])
    del keep, t_lead
    order = np.lexsort((lead_col, occurred))
    interactions = pa.table(
        {
            "interaction_id": _ids("I", len(order), 9),
            "occurred_at": _ts(occurred[order]),
            "lead_id": _take(lead_ids, lead_col[order]),
            "account_id": _take(acc_ids, acc_col[order]),
            "channel": pa.array(CHANNELS, pa.large_string()).take(pa.array(channel[order])),
            "type": pa.array(INTERACTION_TYPES, pa.large_string()).take(pa.array(ttype[order])),
            "content_id": _take(content_ids, item[order]),
            "campaign_id": _take(camp_ids, campaign[order]),
        }
    )
    del occurred, lead_col, acc_col, channel, ttype, item, campaign, order

    opp_open = opps["won"] < 0
    opportunities = pa.table(
        {
            "opportunity_id": _ids("O", len(opps["lead"]), 6),
            "account_id": _take(acc_ids, opps["account"]),
            "lead_id": _take(lead_ids, opps["lead"]),
            "stage": pa.array(
                np.array(
                    [
                        "prospecting",
                        "qualification",
                        "proposal",
                        "negotiation",
                        "closed_won",
                        "closed_lost",
                    ]
                )[opps["stage"]]
            ),
            "amount": pa.array(opps["amount"].astype(np.float64)),
            "created_at": _ts(opps["created_ns"]),
            "closed_at": _ts(np.where(opp_open, 0, opps["closed_ns"]), mask=opp_open),
            "won": pa.array(opps["won"] == 1, mask=opp_open),
        }
    )

    year_ns = 365 * DAY_NS
    churned = churn["churn_ns"] >= 0
    as_of = np.where(churned, churn["churn_ns"], cal.end_ns)
    renewal = (
        subs["start_ns"] + (np.maximum(as_of - subs["start_ns"] - 1, 0) // year_ns + 1) * year_ns
    )
    subscriptions = pa.table(
        {
            "subscription_id": _ids("S", subs["n"], 6),
            "account_id": _take(acc_ids, subs["account"]),
            "plan": pa.array(np.array(PLANS)[subs["plan"]]),
            "mrr": pa.array(subs["mrr"].astype(np.float64)),
            "seats": pa.array(subs["seats"].astype(np.int64)),
            "start": _ts(subs["start_ns"]),
            "renewal_date": _ts(renewal),
            "cancelled_at": _ts(np.where(churned, churn["churn_ns"], 0), mask=~churned),
        }
    )
    u_order = np.lexsort((subs["account"][usage["sub"]], usage["date_ns"]))
    usage_t = pa.table(
        {
            "account_id": _take(acc_ids, subs["account"][usage["sub"]][u_order]),
            "date": _ts(usage["date_ns"][u_order]),
            "active_users": pa.array(usage["active_users"][u_order].astype(np.int64)),
            "logins": pa.array(usage["logins"][u_order].astype(np.int64)),
            "key_feature_events": pa.array(usage["key_feature_events"][u_order].astype(np.int64)),
        }
    )
    t_order = np.argsort(tickets["opened_ns"], kind="stable")
    t_open = tickets["closed_ns"][t_order] < 0
    tickets_t = pa.table(
        {
            "ticket_id": _ids("T", len(t_order), 6),
            "account_id": _take(acc_ids, subs["account"][tickets["sub"][t_order]]),
            "opened_at": _ts(tickets["opened_ns"][t_order]),
            "closed_at": _ts(np.where(t_open, 0, tickets["closed_ns"][t_order]), mask=t_open),
            "priority": pa.array(np.array(TICKET_PRIORITIES)[tickets["priority"][t_order]]),
            "satisfaction": pa.array(tickets["satisfaction"][t_order], from_pandas=True),
        }
    )
    arrow = {
        "accounts": accounts,
        "leads": leads_t,
        "opportunities": opportunities,
        "content": content_t,
        "campaigns": campaigns_t,
        "interactions": interactions,
        "subscriptions": subscriptions,
        "usage": usage_t,
        "tickets": tickets_t,
    }
    return {name: _to_contract_frame(arrow.pop(name), name) for name in TABLES}


def _to_contract_frame(table: pa.Table, name: str) -> pd.DataFrame:
    strings = pd.StringDtype("pyarrow")
    frame = table.to_pandas(types_mapper={pa.string(): strings, pa.large_string(): strings}.get)
    for col in TABLES[name].columns:
        if frame[col.name].dtype != DTYPES[col.kind]:
            frame[col.name] = frame[col.name].astype(DTYPES[col.kind])
    return frame[TABLES[name].names]


def _summary(cfg, tables, truth, attribution, conv) -> dict[str, Any]:
    leads = tables["leads"]
    touches = tables["interactions"]
    per_lead = touches["lead_id"].value_counts()
    per_lead = per_lead.reindex(leads["lead_id"], fill_value=0)
    subs = tables["subscriptions"]
    end = pd.Timestamp(cfg.start, tz="UTC") + pd.Timedelta(weeks=cfg.weeks)
    exposure_years = (
        subs["cancelled_at"].fillna(end)
        - subs["start"].clip(lower=pd.Timestamp(cfg.start, tz="UTC"))
    ).dt.days.clip(lower=0).sum() / 365.0
    return {
        "config": asdict(cfg),
        "end": end.isoformat(),
        "rows": {name: int(len(frame)) for name, frame in tables.items()},
        "lead_conversion_rate": float(leads["converted_at"].notna().mean()),
        "touches_per_lead": {
            "mean": float(per_lead.mean()),
            "p50": float(per_lead.median()),
            "p95": float(per_lead.quantile(0.95)),
            "no_touches": float((per_lead == 0).mean()),
        },
        "annual_logo_churn": float(subs["cancelled_at"].notna().sum() / max(exposure_years, 1e-9)),
        "conversions": conv.conversions,
        "touch_attributed_conversions": conv.touch_attributed,
        "mean_true_p_convert": float(truth["lead_conversion"]["p_convert"].mean()),
        "mean_true_p_churn": float(truth["churn"]["p_churn"].mean()),
    }


def write_simulation(result: SimulationResult, data_dir: Path) -> dict[str, Path]:
    """Write raw tables to ``<data_dir>/raw`` and truth to ``<data_dir>/truth``, atomically."""
    data_dir = Path(data_dir)
    raw_dir, truth_dir = data_dir / "raw", data_dir / "truth"
    with atomic_dir(raw_dir) as raw_tmp, atomic_dir(truth_dir) as truth_tmp:
        for name, frame in result.tables.items():
            write_parquet(frame, raw_tmp / f"{name}.parquet")
        for name, frame in result.truth.items():
            write_parquet(frame, truth_tmp / f"{name}.parquet")
        (truth_tmp / "summary.json").write_text(
            json.dumps(result.summary, indent=2, sort_keys=True, default=str)
        )
    return {"raw": raw_dir, "truth": truth_dir}
