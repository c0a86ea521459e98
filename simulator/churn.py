"""Customers: won deals, subscriptions, health, churn, usage and tickets, and the churn truth.

Converted leads open opportunities; won opportunities carry revenue and make new customers.
**Accounts** that are customers have annual subscriptions. A latent weekly *health* follows an
AR(1) process; usage, tickets and satisfaction are noisy views of it. At each renewal the account
churns with probability ``Phi(alpha_plan - tenure - beta × health)``; a small background weekly
hazard adds mid-term cancellations. The true 90-day churn probability at each snapshot uses the
Gaussian forecast of health at the next renewal, in closed form.
"""

from __future__ import annotations

import numpy as np
from scipy.special import ndtr

from simulator.accounts import INDUSTRY_EFFECT
from simulator.config import DAY_NS, FIT_BASE, WEEK_NS, Calendar, SimulationConfig

BAND_ACV = np.array([6_000, 12_000, 25_000, 50_000, 90_000, 150_000])  # by employee band
SEAT_PRICE = np.array([25.0, 50.0, 90.0])  # per seat per month, by plan
CHURN_ALPHA = np.array([-0.9, -1.2, -1.5])  # probit intercept at renewal, by plan
CHURN_BETA = 0.9
CHURN_TENURE = 0.12  # per completed year, up to 3
BACKGROUND_CHURN = np.array([0.0012, 0.0006, 0.0003])  # weekly, by plan
HEALTH_PHI = 0.9
HEALTH_SIGMA = 0.31
HEALTH_MEAN_SD = 0.6


def draw_opportunities(
    cfg: SimulationConfig, cal: Calendar, leads: dict, acc: dict, rng: np.random.Generator
) -> dict:
    """One opportunity per converted lead: amount, sales cycle, outcome, stage if still open."""
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


def draw_subscriptions(
    cfg: SimulationConfig, cal: Calendar, acc: dict, opps: dict, rng: np.random.Generator
) -> dict:
    """Subscriptions of the initial customers and of the accounts won in the period.

    Each has its start, plan, MRR, seats and the mean its health reverts to.
    """
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


def draw_churn(cfg: SimulationConfig, cal: Calendar, subs: dict, rng: np.random.Generator) -> dict:
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


def draw_usage_and_tickets(
    cfg: SimulationConfig, cal: Calendar, subs: dict, churn: dict, rng: np.random.Generator
) -> tuple[dict, dict, dict]:
    """Weekly usage, support tickets and customer-success meetings: noisy views of health."""
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
