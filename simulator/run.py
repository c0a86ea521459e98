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

:func:`simulate` runs the steps in that order, each with its own random stream: accounts
(:mod:`simulator.accounts`), leads (:mod:`simulator.leads`), content, campaigns and touches
(:mod:`simulator.touches`), conversion and its truth (:mod:`simulator.conversion`,
:mod:`simulator.attribution_truth`), then opportunities, subscriptions, churn, usage and tickets
(:mod:`simulator.churn`); :mod:`simulator.tables` turns the result into the contract tables.

**Drift** (opt-in, ``cfg.drift``, :mod:`simulator.drift`) changes a channel's touch volume or a
segment's conversion hazard from a given month; it is planted between the touches and conversion,
from its own random streams, and :mod:`simulator.drift_truth` measures what it did.

**Duplicate leads** (opt-in, ``cfg.duplicate_leads``, :mod:`simulator.duplicates`) give every lead
an identity and add more records of some people, with part of their touches, after the tables
are built, from their own random stream; the truth says which records are one person.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

from crm.contract import DTYPES
from simulator.accounts import draw_accounts
from simulator.churn import (
    draw_churn,
    draw_opportunities,
    draw_subscriptions,
    draw_usage_and_tickets,
)
from simulator.config import (
    WEEK_NS,
    Calendar,
    Progress,
    SimulationConfig,
    SimulationResult,
    ids,
    take,
)
from simulator.conversion import LeadProcess
from simulator.drift import plant_drift
from simulator.drift_truth import drift_truth
from simulator.duplicates import plant_duplicate_leads
from simulator.leads import draw_leads
from simulator.lifetime_truth import remaining_lifetime_truth
from simulator.tables import contract_tables, summarize
from simulator.touches import draw_campaigns, draw_content, draw_touches


def _noop(_: str) -> None:
    return None


def _strings(values: pa.Array) -> pd.Series:
    """An Arrow string array as a pandas column of the contract's string dtype, without copies."""
    return pd.Series(pd.arrays.ArrowStringArray(values), dtype=DTYPES["id"])


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
    cal = Calendar(cfg)

    progress("accounts")
    acc = draw_accounts(cfg, cal, rng[0])
    progress("content and campaigns")
    content = draw_content(cfg, cal, rng[1])
    campaigns = draw_campaigns(cfg, cal, rng[2])
    progress("leads")
    leads = draw_leads(cfg, cal, acc, rng[3])
    progress("touches")
    touches = draw_touches(cfg, cal, leads, content, rng[4])
    # drift is opt-in and draws from its own streams: without it, not one draw changes
    planted = plant_drift(cfg, cal, acc, leads, content, touches) if cfg.drift else None
    if planted is not None:
        touches = planted.touches
    progress("conversions")
    conv = LeadProcess(
        cfg,
        cal,
        leads,
        touches,
        fit_shift=planted.fit_shift if planted else None,
        channel_rate_change=planted.channel_rate_change if planted else None,
    )
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
    opps = draw_opportunities(cfg, cal, leads, acc, rng[6])
    progress("counterfactual attribution")
    lead_value = np.zeros(cfg.leads)
    won = opps["won"] == 1
    np.add.at(lead_value, opps["lead"][won], opps["amount"][won])
    attribution = conv.counterfactual_truth(converted_age > 0, lead_value, content, progress)
    progress("lead truth")
    lead_truth = conv.truth(converted_age, content)
    conv.release()
    progress("subscriptions and churn")
    subs = draw_subscriptions(cfg, cal, acc, opps, rng[7])
    churn = draw_churn(cfg, cal, subs, rng[8])
    progress("usage and tickets")
    usage, tickets, cs_touches = draw_usage_and_tickets(cfg, cal, subs, churn, rng[9])

    progress("tables")
    tables = contract_tables(
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
    duplicates = None
    if cfg.duplicate_leads:  # opt-in, from its own random stream
        progress("duplicate leads")
        tables, duplicates = plant_duplicate_leads(
            tables,
            cfg.duplicate_leads,
            cfg.seed,
            pd.Timestamp(cal.end_ns, tz="UTC"),
            cfg.lead_lifetime_weeks,
        )
    snapshot_ns = cal.week_start(leads["created_week"][lead_truth["lead"]] + lead_truth["age"])
    truth = {
        "lead_conversion": pd.DataFrame(
            {
                "lead_id": _strings(take(ids("L", cfg.leads, 7), lead_truth.pop("lead"))),
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
    summary = summarize(cfg, tables, truth, attribution, conv)
    drift = (
        drift_truth(cfg, cal, acc, leads, planted, tables["interactions"])
        if planted is not None
        else None
    )
    lifetime = remaining_lifetime_truth(
        cal, subs, churn, tables["accounts"]["account_id"].to_numpy()
    ).astype({"account_id": DTYPES["id"]})
    return SimulationResult(cfg, tables, truth, summary, conv, drift, lifetime, duplicates)
