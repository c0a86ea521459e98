"""The simulation as the CRM contract sees it: its nine tables, a summary, and the files written.

:func:`contract_tables` turns the processes' arrays into the contract tables (ids, names, nulls,
order, dtypes); :func:`write_simulation` writes them and the truth, byte for byte the same for the
same seed.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

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
from simulator.accounts import COUNTRIES, INDUSTRIES, REGIONS
from simulator.config import DAY_NS, Calendar, SimulationConfig, SimulationResult, ids, take
from simulator.conversion import LeadProcess
from simulator.duplicates import TRUTH_FILE as DUPLICATE_TRUTH_FILE
from simulator.leads import FUNCTIONS, SOURCES
from simulator.touches import CH, PAID_CHANNELS, TOPICS, TY


def _ts(ns: np.ndarray, mask: np.ndarray | None = None) -> pa.Array:
    """Nanosecond timestamps as an Arrow UTC timestamp array, null where ``mask``."""
    return pa.array(np.asarray(ns, dtype=np.int64), type=pa.timestamp("ns", tz="UTC"), mask=mask)


def contract_tables(
    cfg: SimulationConfig,
    cal: Calendar,
    acc: dict,
    leads: dict,
    content: dict,
    campaigns: dict,
    touches: dict,
    opps: dict,
    subs: dict,
    churn: dict,
    usage: dict,
    tickets: dict,
    cs_touches: dict,
) -> dict[str, pd.DataFrame]:
    """The nine contract tables, with the contract's dtypes, from the simulated processes.

    Interactions keep a lead's touches up to its conversion, plus customer-success meetings.
    """
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
    acc_ids = ids("A", acc["n"], 6)
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
    lead_ids = ids("L", n, 7)
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
            "account_id": take(acc_ids, np.where(leads["account_missing"], -1, leads["account"])),
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

    content_ids = ids("CT", content["n"], 4)
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

    camp_ids = ids("CMP", len(campaigns["channel"]), 4)
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
            "interaction_id": ids("I", len(order), 9),
            "occurred_at": _ts(occurred[order]),
            "lead_id": take(lead_ids, lead_col[order]),
            "account_id": take(acc_ids, acc_col[order]),
            "channel": pa.array(CHANNELS, pa.large_string()).take(pa.array(channel[order])),
            "type": pa.array(INTERACTION_TYPES, pa.large_string()).take(pa.array(ttype[order])),
            "content_id": take(content_ids, item[order]),
            "campaign_id": take(camp_ids, campaign[order]),
        }
    )
    del occurred, lead_col, acc_col, channel, ttype, item, campaign, order

    opp_open = opps["won"] < 0
    opportunities = pa.table(
        {
            "opportunity_id": ids("O", len(opps["lead"]), 6),
            "account_id": take(acc_ids, opps["account"]),
            "lead_id": take(lead_ids, opps["lead"]),
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
            "subscription_id": ids("S", subs["n"], 6),
            "account_id": take(acc_ids, subs["account"]),
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
            "account_id": take(acc_ids, subs["account"][usage["sub"]][u_order]),
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
            "ticket_id": ids("T", len(t_order), 6),
            "account_id": take(acc_ids, subs["account"][tickets["sub"][t_order]]),
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
    # columns the simulation does not produce (the source CRM's ids) are left out, not written
    # empty: the files for a seed stay byte for byte what they were before those columns existed
    columns = [col for col in TABLES[name].columns if col.name in frame.columns]
    for col in columns:
        if frame[col.name].dtype != DTYPES[col.kind]:
            frame[col.name] = frame[col.name].astype(DTYPES[col.kind])
    return frame[[col.name for col in columns]]


def summarize(
    cfg: SimulationConfig,
    tables: dict[str, pd.DataFrame],
    truth: dict[str, pd.DataFrame],
    attribution: dict,
    conv: LeadProcess,
) -> dict[str, Any]:
    """Sizes, rates and truth means of one simulation, written as ``truth/summary.json``."""
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
    config = asdict(cfg)
    # drift as its command-line form; left out when there is none, so the bytes stay as before
    drift = config.pop("drift")
    if drift:
        config["drift"] = [str(d) for d in cfg.drift]
    if not config["duplicate_leads"]:  # likewise
        config.pop("duplicate_leads")
    return {
        "config": config,
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


def write_simulation(
    result: SimulationResult, data_dir: Path, lifetime: bool = False
) -> dict[str, Path]:
    """Write raw tables to ``<data_dir>/raw`` and truth to ``<data_dir>/truth``, atomically.

    The truth holds ``drift.json`` (:mod:`simulator.drift_truth`) only when drift was planted,
    ``duplicate_leads.parquet`` (:mod:`simulator.duplicates`) only when duplicates were, and
    ``lifetime.parquet`` (:mod:`simulator.lifetime_truth`) only when ``lifetime`` is asked
    for: without either, the bytes of before.
    """
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
        if result.drift is not None:
            (truth_tmp / "drift.json").write_text(
                json.dumps(result.drift, indent=2, sort_keys=True, default=str)
            )
        if lifetime and result.lifetime is not None:
            write_parquet(result.lifetime, truth_tmp / "lifetime.parquet")
        if result.duplicates is not None:
            write_parquet(result.duplicates, truth_tmp / DUPLICATE_TRUTH_FILE)
    return {"raw": raw_dir, "truth": truth_dir}
