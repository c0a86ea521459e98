"""Touches: the content library, paid campaigns, and the touches each lead receives.

Touches arrive as a Poisson process whose weekly rate decays with the lead's age; channel depends
on the source, type on channel and interest, content on type, what is published, and popularity.
Each touch has an **effect** ``channel weight × type weight × content multiplier``; the content
multiplier depends on the lead's **stage** (its age: awareness, consideration, decision), so some
content helps only at some stages, and two channels (``display``, ``social``) have zero effect.
"""

from __future__ import annotations

import numpy as np

from crm.contract import CHANNELS, CONTENT_TYPES, INTERACTION_TYPES
from simulator.config import (
    CONTENT_COUNTS,
    DAY_NS,
    Calendar,
    SimulationConfig,
    categorical,
    cumulative,
)
from simulator.leads import SOURCES

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


def arrival_shape(age: np.ndarray) -> np.ndarray:
    """Relative weekly touch rate at each week of a lead's age: high at first, then a floor."""
    return 0.2 + 1.2 * np.exp(-np.asarray(age, dtype=np.float64) / 5.0)


def lead_stage(age: np.ndarray) -> np.ndarray:
    """A lead's stage at each week of age: 0 awareness, 1 consideration (4+), 2 decision (12+)."""
    age = np.asarray(age)
    return (age >= 4).astype(np.int8) + (age >= 12).astype(np.int8)


def draw_content(cfg: SimulationConfig, cal: Calendar, rng: np.random.Generator) -> dict:
    """The content library: type, publication epoch and date, quality, popularity, topic."""
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


def draw_campaigns(cfg: SimulationConfig, cal: Calendar, rng: np.random.Generator) -> dict:
    """One campaign per paid channel and quarter, with its cost and dates."""
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


def channel_matrix() -> np.ndarray:
    """P(channel | source), shape (sources, channels)."""
    mix = np.tile(CHANNEL_MIX, (len(SOURCES), 1))
    for s, source in enumerate(SOURCES):
        if source in SOURCE_CHANNEL:
            mix[s, CH[SOURCE_CHANNEL[source]]] *= 3.0
    return mix / mix.sum(axis=1, keepdims=True)


def type_matrix() -> np.ndarray:
    """P(type | channel, interest), shape (channels, 3, types)."""
    out = np.zeros((len(CHANNELS), 3, len(INTERACTION_TYPES)))
    for c, channel in enumerate(CHANNELS):
        base = CHANNEL_TYPES.get(channel, WEB_TYPES)
        for z in range(3):
            for t, p in base.items():
                out[c, z, TY[t]] = p * INTEREST_TYPE_BOOST.get(t, (1, 1, 1))[z]
            out[c, z] /= out[c, z].sum()
    return out


def content_choice(content: dict, type_name: str, epoch: int) -> tuple[float, np.ndarray]:
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


def touch_rates(cfg: SimulationConfig, cal: Calendar, leads: dict) -> np.ndarray:
    """Expected touches of each lead (rows) in each week of its age (columns), all channels.

    The first week counts only from the lead's creation; weeks past the period have none.
    """
    age = np.arange(cfg.lead_lifetime_weeks)
    week = leads["created_week"][:, None] + age[None, :]
    rho = (
        leads["rate"][:, None]
        * arrival_shape(age)[None, :]
        * cal.touch_season[np.minimum(week, cal.total - 1)]
    )
    rho[:, 0] *= (7 - leads["created_offset"]) / 7
    rho[week >= cal.weeks] = 0.0
    return rho


def draw_touches(
    cfg: SimulationConfig, cal: Calendar, leads: dict, content: dict, rng: np.random.Generator
) -> dict:
    """Every touch each lead receives in its lifetime within the period, with its effect.

    Touches are drawn before conversion is known, so they include those after a lead converts (a
    counterfactual without some touches may convert later); the contract tables keep only the
    touches before a conversion.
    """
    n, life = leads["n"], cfg.lead_lifetime_weeks
    counts = rng.poisson(touch_rates(cfg, cal, leads))
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
    channel = categorical(rng, cumulative(channel_matrix()), leads["source"][lead])
    return describe_touches(cal, leads, content, lead, t_age, occurred_ns, channel, rng)


def describe_touches(
    cal: Calendar,
    leads: dict,
    content: dict,
    lead: np.ndarray,
    t_age: np.ndarray,
    occurred_ns: np.ndarray,
    channel: np.ndarray,
    rng: np.random.Generator,
) -> dict:
    """Touches of known lead, age, time and channel, completed: type, content, effect, campaign.

    Type depends on channel and the lead's interest, content on type, what is published, and
    popularity; the draws come from ``rng`` in a fixed order.
    """
    t_week = leads["created_week"][lead] + t_age
    type_cum = cumulative(type_matrix()).reshape(len(CHANNELS) * 3, -1)
    ttype = categorical(rng, type_cum, channel.astype(np.int64) * 3 + leads["interest"][lead])
    epoch = np.minimum(t_week // EPOCH_WEEKS, content["n_epochs"] - 1)
    item = np.full(len(lead), -1, dtype=np.int64)
    u_has = rng.random(len(lead))
    u_item = rng.random(len(lead))
    for type_name in CONTENT_CLASS:
        for e in range(content["n_epochs"]):
            sel = np.flatnonzero((ttype == TY[type_name]) & (epoch == e))
            p_content, weights = content_choice(content, type_name, e)
            if len(sel) == 0 or p_content == 0:
                continue
            cum = np.cumsum(weights)
            cum[-1] = 1.0 + 1e-12
            chosen = np.searchsorted(cum, u_item[sel], side="right")
            item[sel] = np.where(u_has[sel] < p_content, chosen, -1)
    stage = lead_stage(t_age)
    mult = np.where(
        item >= 0,
        content["quality"][np.maximum(item, 0)] * content["stage_mult"][np.maximum(item, 0), stage],
        1.0,
    )
    effect = CHANNEL_WEIGHT[channel] * TYPE_WEIGHT[ttype] * mult
    paid = np.array([CHANNELS[c] in PAID_CHANNELS for c in range(len(CHANNELS))])
    paid_index = np.array([PAID_CHANNELS.index(c) if c in PAID_CHANNELS else -1 for c in CHANNELS])
    quarter = t_week // EPOCH_WEEKS
    has_campaign = paid[channel] & (rng.random(len(lead)) < 0.9)
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
