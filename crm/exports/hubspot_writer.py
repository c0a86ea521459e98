"""A contract CRM written the way HubSpot's exports write its objects (:func:`write_hubspot`),
for ``crm-intel simulate --format hubspot``; :func:`crm.exports.hubspot.map_hubspot` reads it
back to the same tables."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from crm.contract import TABLES
from crm.exports.common import (
    COMPANIONS,
    load_mapping,
)
from crm.exports.hubspot_files import ACTIVITIES, FORMAT, TYPE_FIELDS, field_label
from crm.exports.writing import blank_text, head_counts, labels
from crm.io import atomic_dir

# where each Record ID range starts  (one range per object, like a portal's)
ID_BASES = {
    "accounts": 11_000_000_000,
    "leads": 21_000_000_000,
    "opportunities": 31_000_000_000,
    "campaigns": 41_000_000_000,
    "interactions": 51_000_000_000,
    "tickets": 61_000_000_000,
}


def record_ids(tables: Mapping[str, pd.DataFrame]) -> dict[str, dict[str, str]]:
    """The HubSpot Record ID :func:`write_hubspot` gives each contract id: contract table →
    contract id → Record ID, numbered in the table's row order from the table's own range
    (interactions are engagements, one range for every activity object)."""
    key = {name: TABLES[name].primary_key[0] for name in ID_BASES}
    return {
        name: {
            str(value): str(base + number)
            for number, value in enumerate(tables[name][key[name]].astype(str), start=1)
        }
        for name, base in ID_BASES.items()
    }


def _has_label(section: Mapping[str, str], values: pd.Series) -> pd.Series:
    return values.astype(object).isin(set(section.values()))


def _stamps(values: pd.Series, zone: str, shape: str = "%Y-%m-%d %H:%M") -> pd.Series:
    """HubSpot's export text of datetimes (to the minute, in the portal's zone); "" if missing."""
    stamps = pd.to_datetime(values, utc=True).dt.tz_convert(zone)
    return stamps.dt.strftime(shape).where(stamps.notna(), "").astype(object)


def _ids(values: pd.Series, lookup: Mapping[str, str]) -> pd.Series:
    return values.astype(object).map(lambda v: "" if pd.isna(v) else lookup[str(v)])


def _numbers(values: pd.Series) -> pd.Series:
    """Numbers as text that reads back to the same float ("" when missing)."""
    return values.map(lambda v: "" if pd.isna(v) else repr(float(v)))


def write_hubspot(
    tables: Mapping[str, pd.DataFrame], folder: Path, mapping: Mapping[str, Any] | None = None
) -> dict[str, int]:
    """Write a contract CRM as a HubSpot export that :func:`map_hubspot` reads back.

    Record IDs replace the contract's ids (:func:`record_ids`); picklist labels are each mapping
    section's first for the value; custom properties (Lead Source, Interaction Type, Channel)
    are written only where the standard fields would read back otherwise; deals' Close Date is a
    date, like HubSpot's; content, subscriptions and usage go to the companion files. The folder
    is replaced atomically.

    Returns:
        file name → rows written.
    """
    m = dict(mapping or load_mapping(FORMAT))
    zone = str(m.get("time_zone", "UTC"))
    ids = record_ids(tables)
    files = {
        "companies": _write_companies(tables["accounts"], m, ids, zone),
        "contacts": _write_contacts(tables, m, ids, zone),
        "deals": _write_deals(tables["opportunities"], m, ids, zone),
        "campaigns": _write_campaigns(tables["campaigns"], m, ids),
        "tickets": _write_tickets(tables["tickets"], m, ids, zone),
        **_write_activities(tables, m, ids, zone),
    }
    for name in COMPANIONS:
        frame = tables[name].copy()
        if "account_id" in frame.columns and name != "content":
            frame["account_id"] = _ids(frame["account_id"], ids["accounts"])
        for column in frame.columns:
            if pd.api.types.is_datetime64_any_dtype(frame[column]):
                frame[column] = frame[column].map(lambda t: "" if pd.isna(t) else t.isoformat())
        files[name] = frame
    written: dict[str, int] = {}
    with atomic_dir(Path(folder)) as tmp:
        for obj, frame in files.items():
            file = m["files"][obj]
            frame.to_csv(tmp / file, index=False)
            written[file] = len(frame)
    return written


def _columns(m: Mapping[str, Any], obj: str, values: Mapping[str, Any]) -> pd.DataFrame:
    """A file's frame from field keys (``id``) or literal labels (``Pipeline``) → values."""
    return pd.DataFrame({field_label(m, obj, key): value for key, value in values.items()})


def _write_companies(
    accounts: pd.DataFrame, m: Mapping[str, Any], ids: Mapping[str, dict[str, str]], zone: str
) -> pd.DataFrame:
    return _columns(
        m,
        "companies",
        {
            "id": _ids(accounts["account_id"], ids["accounts"]),
            "name": blank_text(accounts["name"]),
            "industry": blank_text(accounts["industry"]),
            "employees": head_counts(accounts["employee_band"]),
            "region": blank_text(accounts["region"]),
            "created": _stamps(accounts["created_at"], zone),
        },
    )


def _write_contacts(
    tables: Mapping[str, pd.DataFrame],
    m: Mapping[str, Any],
    ids: Mapping[str, dict[str, str]],
    zone: str,
) -> pd.DataFrame:
    leads, opportunities = tables["leads"], tables["opportunities"]
    converted = leads["status"].eq("converted").fillna(False)
    stage = leads["status"].where(converted, "open")
    by_original = _has_label(m["original_sources"], leads["source"])
    original = leads["source"].where(by_original, "offline")
    deals_of = (
        opportunities.dropna(subset=["lead_id"])
        .assign(deal=_ids(opportunities["opportunity_id"], ids["opportunities"]))
        .groupby("lead_id", observed=True)["deal"]
        .agg(str(m.get("id_separator", ";")).join)
    )
    company = _ids(leads["account_id"], ids["accounts"])
    person = leads["lead_id"].astype(str)
    return _columns(
        m,
        "contacts",
        {
            "id": _ids(leads["lead_id"], ids["leads"]),
            "First Name": "Lead",
            "Last Name": person.str.lstrip("L").str.lstrip("0"),
            "email": person.str.lower() + "@example.com",
            "job_title": blank_text(leads["job_title"]),
            "country": blank_text(leads["country"]),
            "seniority": labels(m["seniorities"], leads["seniority"]),
            "purchase_timeframe": labels(m["purchase_timeframes"], leads["purchase_timeframe"]),
            "lifecycle_stage": labels(m["lifecycle_stages"], stage),
            "lead_status": labels(m["lead_statuses"], leads["status"]),
            "original_source": labels(m["original_sources"], original),
            "lead_source": labels(m["lead_sources"], leads["source"].where(~by_original)),
            "primary_company": company,
            "companies": company,
            "Associated Deal IDs": person.map(deals_of).fillna(""),
            "became_opportunity": _stamps(leads["converted_at"], zone),
            "created": _stamps(leads["created_at"], zone),
        },
    )


def _write_deals(
    deals: pd.DataFrame, m: Mapping[str, Any], ids: Mapping[str, dict[str, str]], zone: str
) -> pd.DataFrame:
    closed = deals["closed_at"].notna()
    expected = pd.to_datetime(deals["created_at"], utc=True) + pd.Timedelta(days=30)
    company = _ids(deals["account_id"], ids["accounts"])
    return _columns(
        m,
        "deals",
        {
            "id": _ids(deals["opportunity_id"], ids["opportunities"]),
            "name": "Deal " + deals["opportunity_id"].astype(str),
            "Pipeline": "Sales Pipeline",
            "stage": labels(m["deal_stages"], deals["stage"]),
            "amount": _numbers(deals["amount"]),
            "created": _stamps(deals["created_at"], zone),
            # HubSpot shows and exports the close date as a day; open deals hold the expected one
            "closed": _stamps(deals["closed_at"].where(closed, expected), zone, "%Y-%m-%d"),
            "primary_company": company,
            "companies": company,
            "contacts": _ids(deals["lead_id"], ids["leads"]),
        },
    )


def _write_campaigns(
    campaigns: pd.DataFrame, m: Mapping[str, Any], ids: Mapping[str, dict[str, str]]
) -> pd.DataFrame:
    return _columns(
        m,
        "campaigns",
        {
            "id": _ids(campaigns["campaign_id"], ids["campaigns"]),
            "name": blank_text(campaigns["name"]),
            "type": labels(m["campaign_types"], campaigns["channel"]),
            # date properties: calendar days, held as UTC midnight
            "start": _stamps(campaigns["start"], "UTC", "%Y-%m-%d"),
            "end": _stamps(campaigns["end"], "UTC", "%Y-%m-%d"),
            "spend": _numbers(campaigns["cost"]),
            "budget": _numbers(campaigns["cost"]),
        },
    )


def _write_tickets(
    tickets: pd.DataFrame, m: Mapping[str, Any], ids: Mapping[str, dict[str, str]], zone: str
) -> pd.DataFrame:
    company = _ids(tickets["account_id"], ids["accounts"])
    return _columns(
        m,
        "tickets",
        {
            "id": _ids(tickets["ticket_id"], ids["tickets"]),
            "Ticket name": "Ticket " + tickets["ticket_id"].astype(str),
            "Ticket status": tickets["closed_at"].notna().map({True: "Closed", False: "New"}),
            "created": _stamps(tickets["opened_at"], zone),
            "closed": _stamps(tickets["closed_at"], zone),
            "priority": labels(m["ticket_priorities"], tickets["priority"]),
            "primary_company": company,
            "companies": company,
            "satisfaction": tickets["satisfaction"].map(lambda v: "" if pd.isna(v) else f"{v:g}"),
        },
    )


def _write_activities(
    tables: Mapping[str, pd.DataFrame],
    m: Mapping[str, Any],
    ids: Mapping[str, dict[str, str]],
    zone: str,
) -> dict[str, pd.DataFrame]:
    """Touches as the activity object ``activity_objects`` names for their type. Interaction
    Type is written where the object's own type field and default would read another type,
    Channel where the campaign or the type's default would give another channel."""
    touches, campaigns = tables["interactions"], tables["campaigns"]
    kind = touches["type"].astype(object)
    obj_of = kind.map(m["activity_objects"])
    if obj_of.isna().any():
        missing = sorted(set(kind[obj_of.isna()]))
        raise ValueError(f"the mapping's activity_objects has no object for {missing}")
    channel_of_campaign = pd.Series(
        campaigns["channel"].astype(object).to_numpy(),
        index=campaigns["campaign_id"].astype(str).to_numpy(),
    )
    implied_channel = (
        touches["campaign_id"]
        .astype(object)
        .map(channel_of_campaign)
        .fillna(kind.map(m["default_channels"]))
    )
    channel = touches["channel"].astype(object).where(touches["channel"] != implied_channel)
    out = {}
    for obj in ACTIVITIES:
        rows = (obj_of == obj).to_numpy()
        own = pd.Series("", index=touches.index[rows], dtype=object)
        read_as = pd.Series(m["activity_defaults"][obj], index=own.index, dtype=object)
        if obj in TYPE_FIELDS:
            section = m[TYPE_FIELDS[obj][1]]
            labelled = _has_label(section, kind[rows])
            own = labels(section, kind[rows].where(labelled))
            read_as = kind[rows].where(labelled, read_as)
        values: dict[str, Any] = {
            "id": _ids(touches["interaction_id"][rows], ids["interactions"]),
            "date": _stamps(touches["occurred_at"][rows], zone),
            "contacts": _ids(touches["lead_id"][rows], ids["leads"]),
            "companies": _ids(touches["account_id"][rows], ids["accounts"]),
        }
        if obj in TYPE_FIELDS:
            values[TYPE_FIELDS[obj][0]] = own
        values.update(
            interaction_type=labels(
                m["interaction_types"], kind[rows].where(read_as != kind[rows])
            ),
            channel=labels(m["channels"], channel[rows]),
            content=blank_text(touches["content_id"][rows]),
            campaign=_ids(touches["campaign_id"][rows], ids["campaigns"]),
        )
        out[obj] = _columns(m, obj, values).reset_index(drop=True)
    return out
