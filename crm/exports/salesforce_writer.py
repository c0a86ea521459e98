"""A contract CRM written the way Salesforce's Data Export writes its objects
(:func:`write_salesforce`), for ``crm-intel simulate --format salesforce``;
:func:`crm.exports.salesforce.map_salesforce` reads it back to the same tables."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from crm.exports.common import (
    COMPANIONS,
    SKIP,
    load_mapping,
)
from crm.exports.salesforce_files import FORMAT, NO_COMPANY, PREFIXES, salesforce_id
from crm.exports.writing import blank_text, head_counts, labels
from crm.io import atomic_dir


def _datetimes(values: pd.Series) -> pd.Series:
    """Salesforce's datetime text (milliseconds, UTC), "" where missing."""
    stamps = pd.to_datetime(values, utc=True)
    out = stamps.dt.strftime("%Y-%m-%dT%H:%M:%S.%f").str[:-3] + "Z"
    return out.where(stamps.notna(), "")


def _dates(values: pd.Series) -> pd.Series:
    stamps = pd.to_datetime(values, utc=True)
    return stamps.dt.strftime("%Y-%m-%d").where(stamps.notna(), "")


def _ids(values: pd.Series, obj: str) -> tuple[pd.Series, dict[str, str]]:
    """Salesforce Ids for a table's contract ids, numbered in the table's order."""
    lookup = {
        key: salesforce_id(PREFIXES[obj], number)
        for number, key in enumerate(values.astype(str), start=1)
    }
    return values.astype(str).map(lookup), lookup


def _flags(values: pd.Series) -> pd.Series:
    return values.map(lambda v: "true" if v is True or v == 1 else "false")


def write_salesforce(
    tables: Mapping[str, pd.DataFrame], folder: Path, mapping: Mapping[str, Any] | None = None
) -> dict[str, int]:
    """Write a contract CRM as a Salesforce export that :func:`map_salesforce` reads back.

    Salesforce Ids replace the contract's ids (deterministically, in each table's order);
    labels are each mapping section's first for the value; a converted lead becomes a Contact
    (its activities with it) with an OpportunityContactRole on its opportunity; each lead ×
    campaign touched is a responded CampaignMember; content, subscriptions and usage go to the
    companion files. The folder is replaced atomically.

    Returns:
        file name → rows written.
    """
    m = dict(mapping or load_mapping(FORMAT))
    custom = m["custom_fields"]
    accounts, leads = tables["accounts"], tables["leads"]
    opportunities, campaigns = tables["opportunities"], tables["campaigns"]
    interactions = tables["interactions"]
    account_ids, account_of = _ids(accounts["account_id"], "Account")
    lead_ids, lead_of = _ids(leads["lead_id"], "Lead")
    opportunity_ids, opportunity_of = _ids(opportunities["opportunity_id"], "Opportunity")
    campaign_ids, campaign_of = _ids(campaigns["campaign_id"], "Campaign")
    converted = leads["status"].eq("converted").fillna(False)
    opportunity_of_lead = dict(
        zip(
            opportunities["lead_id"].dropna().astype(str),
            opportunities.loc[opportunities["lead_id"].notna(), "opportunity_id"].astype(str),
            strict=True,
        )
    )
    account_of_opportunity = dict(
        zip(
            opportunities["opportunity_id"].astype(str),
            opportunities["account_id"].astype(str),
            strict=True,
        )
    )
    converted_leads = leads[converted]
    contact_ids, contact_of = _ids(converted_leads["lead_id"], "Contact")
    name_of_account = dict(zip(accounts["account_id"], accounts["name"], strict=True))
    person = leads["lead_id"].astype(str)
    first, last = pd.Series("Lead", index=leads.index), person.str.lstrip("L").str.lstrip("0")
    if "first_name" in leads and "last_name" in leads:  # simulated with --duplicate-leads
        first, last = blank_text(leads["first_name"]), blank_text(leads["last_name"])
    email = person.str.lower() + "@example.com"
    files: dict[str, pd.DataFrame] = {}

    files["Account"] = pd.DataFrame(
        {
            "Id": account_ids,
            "Name": blank_text(accounts["name"]),
            "Industry": blank_text(accounts["industry"]),
            "NumberOfEmployees": head_counts(accounts["employee_band"]),
            "CreatedDate": _datetimes(accounts["created_at"]),
            custom["account_region"]: blank_text(accounts["region"]),
        }
    )
    lead_opportunity = person.map(opportunity_of_lead)
    lead_contact = person.map(contact_of)
    files["Lead"] = pd.DataFrame(
        {
            "Id": lead_ids,
            "FirstName": first,
            "LastName": last,
            "Company": leads["account_id"].map(name_of_account).fillna(NO_COMPANY),
            "Title": blank_text(leads["job_title"]),
            "Email": email,
            "Country": blank_text(leads["country"]),
            "LeadSource": labels(m["lead_sources"], leads["source"]),
            "Status": labels(m["lead_statuses"], leads["status"]),
            "IsConverted": _flags(converted),
            "ConvertedDate": _dates(leads["converted_at"]),
            "ConvertedAccountId": lead_opportunity.map(account_of_opportunity)
            .map(account_of)
            .fillna(""),
            "ConvertedContactId": lead_contact.fillna(""),
            "ConvertedOpportunityId": lead_opportunity.map(opportunity_of).fillna(""),
            "CreatedDate": _datetimes(leads["created_at"]),
            custom["lead_seniority"]: blank_text(leads["seniority"]),
            custom["lead_purchase_timeframe"]: blank_text(leads["purchase_timeframe"]),
        }
    )
    contact_opportunity = converted_leads["lead_id"].astype(str).map(opportunity_of_lead)
    files["Contact"] = pd.DataFrame(
        {
            "Id": contact_ids,
            "AccountId": contact_opportunity.map(account_of_opportunity).map(account_of),
            "FirstName": first[converted],
            "LastName": last[converted],
            "Email": email[converted],
            "Title": blank_text(converted_leads["job_title"]),
            "CreatedDate": _datetimes(converted_leads["converted_at"]),
        }
    )
    closed = opportunities["closed_at"].notna()
    expected_close = pd.to_datetime(opportunities["created_at"], utc=True) + pd.Timedelta(days=30)
    files["Opportunity"] = pd.DataFrame(
        {
            "Id": opportunity_ids,
            "AccountId": opportunities["account_id"].astype(str).map(account_of),
            "Name": "Opportunity " + opportunity_ids.str[-6:],
            "StageName": labels(m["opportunity_stages"], opportunities["stage"]),
            "Amount": opportunities["amount"].map(lambda a: f"{a:.2f}"),
            "CreatedDate": _datetimes(opportunities["created_at"]),
            "CloseDate": _dates(opportunities["closed_at"].where(closed, expected_close)),
            "IsClosed": _flags(closed),
            "IsWon": _flags(opportunities["won"].fillna(False)),
        }
    )
    with_lead = opportunities["lead_id"].notna()
    role_contacts = opportunities.loc[with_lead, "lead_id"].astype(str).map(contact_of)
    files["OpportunityContactRole"] = pd.DataFrame(
        {
            "Id": [
                salesforce_id(PREFIXES["OpportunityContactRole"], n)
                for n in range(1, int(with_lead.sum()) + 1)
            ],
            "OpportunityId": opportunity_ids[with_lead].to_numpy(),
            "ContactId": role_contacts.fillna("").to_numpy(),
            "Role": "Decision Maker",
            "IsPrimary": "true",
        }
    )
    files["Campaign"] = pd.DataFrame(
        {
            "Id": campaign_ids,
            "Name": blank_text(campaigns["name"]),
            "Type": labels(m["campaign_types"], campaigns["channel"]),
            "Status": "Completed",
            "StartDate": _dates(campaigns["start"]),
            "EndDate": _dates(campaigns["end"]),
            "ActualCost": campaigns["cost"].map(lambda c: f"{c:.2f}"),
            "BudgetedCost": campaigns["cost"].map(lambda c: f"{c:.2f}"),
        }
    )
    channel_of_campaign = dict(
        zip(campaigns["campaign_id"].astype(str), campaigns["channel"].astype(str), strict=True)
    )
    files.update(
        _write_activities(
            interactions, m, lead_of, contact_of, account_of, campaign_of, channel_of_campaign
        )
    )
    files["CampaignMember"] = _write_members(interactions, lead_of, contact_of, campaign_of)
    tickets = tables["tickets"]
    files["Case"] = pd.DataFrame(
        {
            "Id": [salesforce_id(PREFIXES["Case"], n) for n in range(1, len(tickets) + 1)],
            "AccountId": tickets["account_id"].astype(str).map(account_of),
            "CreatedDate": _datetimes(tickets["opened_at"]),
            "ClosedDate": _datetimes(tickets["closed_at"]),
            "Priority": labels(m["case_priorities"], tickets["priority"]),
            "Status": tickets["closed_at"].notna().map({True: "Closed", False: "New"}),
            custom["case_satisfaction"]: tickets["satisfaction"].map(
                lambda v: "" if pd.isna(v) else f"{v:g}"
            ),
        }
    )
    companions = {name: tables[name].copy() for name in COMPANIONS}
    for name in ("subscriptions", "usage"):
        companions[name]["account_id"] = companions[name]["account_id"].astype(str).map(account_of)
    written: dict[str, int] = {}
    with atomic_dir(Path(folder)) as tmp:
        for obj, frame in {**files, **companions}.items():
            file = m["files"][obj]
            if obj in companions:
                frame = frame.copy()
                for column in frame.columns:
                    if pd.api.types.is_datetime64_any_dtype(frame[column]):
                        frame[column] = _datetimes(frame[column])
            frame.to_csv(tmp / file, index=False)
            written[file] = len(frame)
    return written


def _write_activities(
    interactions: pd.DataFrame,
    m: Mapping[str, Any],
    lead_of: Mapping[str, str],
    contact_of: Mapping[str, str],
    account_of: Mapping[str, str],
    campaign_of: Mapping[str, str],
    channel_of_campaign: Mapping[str, str],
) -> dict[str, pd.DataFrame]:
    """Touches as Tasks, and meetings, webinars and events as Events. The custom channel field
    is written only where the campaign or the type's default would not give the channel."""
    custom = m["custom_fields"]
    event_types = set(m["event_types"].values()) - {"call", SKIP}
    is_event = interactions["type"].isin(event_types).to_numpy()
    lead = interactions["lead_id"].astype(object)
    who = lead.map(lambda v: "" if pd.isna(v) else contact_of.get(v) or lead_of[v])
    account = (
        interactions["account_id"].astype(object).map(lambda v: "" if pd.isna(v) else account_of[v])
    )
    campaign = (
        interactions["campaign_id"]
        .astype(object)
        .map(lambda v: "" if pd.isna(v) else campaign_of[v])
    )
    what = campaign.where(campaign != "", account.where(who == "", ""))
    default = interactions["type"].map(m["default_channels"])
    by_campaign = interactions["campaign_id"].astype(object).map(channel_of_campaign)
    implied = default.where(interactions["campaign_id"].isna(), by_campaign)
    channel = interactions["channel"].where(interactions["channel"] != implied, pd.NA)
    when = _datetimes(interactions["occurred_at"])
    out = {}
    for obj, rows, section in (
        ("Task", ~is_event, "task_types"),
        ("Event", is_event, "event_types"),
    ):
        ids = [salesforce_id(PREFIXES[obj], n) for n in range(1, int(rows.sum()) + 1)]
        frame = pd.DataFrame(
            {
                "Id": ids,
                "WhoId": who[rows].to_numpy(),
                "WhatId": what[rows].to_numpy(),
                "AccountId": account[rows].to_numpy(),
                "Type": labels(m[section], interactions["type"][rows]).to_numpy(),
                "Subject": interactions["type"][rows].astype(str).str.replace("_", " ").to_numpy(),
                "CreatedDate": when[rows].to_numpy(),
                ("CompletedDateTime" if obj == "Task" else "StartDateTime"): when[rows].to_numpy(),
                custom["activity_channel"]: labels(m["channels"], channel[rows]).to_numpy(),
                custom["activity_content"]: blank_text(interactions["content_id"][rows]).to_numpy(),
            }
        )
        out[obj] = frame
    return out


def _write_members(
    interactions: pd.DataFrame,
    lead_of: Mapping[str, str],
    contact_of: Mapping[str, str],
    campaign_of: Mapping[str, str],
) -> pd.DataFrame:
    """One responded CampaignMember per lead and campaign touched, first response that day."""
    touched = interactions[interactions["campaign_id"].notna() & interactions["lead_id"].notna()]
    first = (
        touched.groupby(["lead_id", "campaign_id"], observed=True)["occurred_at"]
        .min()
        .reset_index()
    )
    lead = first["lead_id"].astype(str)
    return pd.DataFrame(
        {
            "Id": [salesforce_id(PREFIXES["CampaignMember"], n) for n in range(1, len(first) + 1)],
            "CampaignId": first["campaign_id"].astype(str).map(campaign_of),
            "LeadId": lead.map(lead_of),
            "ContactId": lead.map(contact_of).fillna(""),
            "Status": "Responded",
            "HasResponded": "true",
            "FirstRespondedDate": _dates(first["occurred_at"]),
            "CreatedDate": _datetimes(first["occurred_at"]),
        }
    )
