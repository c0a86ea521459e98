"""Salesforce exports: the standard objects as the Data Export Service and Data Loader write
them, mapped onto the contract (:func:`map_salesforce`). The inverse, a contract CRM written in
that shape, is :mod:`crm.exports.salesforce_writer` (``crm-intel simulate --format salesforce``).

The mapping's field names and picklist values live in ``salesforce.yaml`` beside this module
(overridable with ``--mapping FILE``); the rules are in ``docs/data-contract.md``. In short:

* Account → accounts; Lead → leads; Opportunity → opportunities; Campaign → campaigns;
  Task and Event → interactions; responded CampaignMembers without a touch → one touch each;
  Case → tickets. Content, subscriptions and usage come from optional companion files in the
  contract's own columns. Contacts and OpportunityContactRoles are read to follow people.
* The contract's ids are the Salesforce Ids, and ``source_id`` repeats them.
* A lead's account is what was known when it was created: a lookup field if the org has one
  (``custom_fields.lead_account``), else the Account whose Name equals the lead's Company.
  ``ConvertedAccountId`` is never used: it exists only once the lead has converted, and reading
  it would put the outcome into the lead's features.
* Activities of a converted lead sit on the Contact it became; they are the lead's touches.
* ``converted_at``: Salesforce keeps only the day (ConvertedDate); the opportunity conversion
  created carries the time (its CreatedDate), used when it falls on that day, else the day's
  end (so the outcome is never known before it happened), never before the lead's creation.
  Opportunities' CloseDate and campaign members' FirstRespondedDate are read the same way.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd

from crm.contract import TABLES, ContractError, Problem
from crm.exports.common import (
    COMPANIONS,
    SKIP,
    MappedExport,
    attach_companions,
    empty_table,
    first_rows,
    load_mapping,
    read_companions,
    text,
)
from crm.exports.salesforce_files import (
    FORMAT,
    KEY_FIELDS,
    REQUIRED,
    SOURCE_COLUMNS,
    Reader,
)
from crm.identity import phone_hashes
from crm.importer import employee_band


def _day_end(days: pd.Series, not_before: pd.Series) -> pd.Series:
    """When something that Salesforce dates by the day (a conversion, a close, a response) is
    known for sure: the end of that UTC day, never after now and never before ``not_before``
    (the record's creation). The end, not the start: an outcome of 16:00 must not be known at
    midnight, where every as-of feature of that day would see it."""
    end = days + pd.Timedelta(days=1) - pd.Timedelta(milliseconds=1)
    end = end.where(end <= pd.Timestamp.now(tz="UTC"), pd.Timestamp.now(tz="UTC").floor("ms"))
    end = end.where(days.notna())
    later = not_before.notna() & end.notna() & (not_before > end)
    return end.where(~later, not_before)


def _accounts(reader: Reader, frame: pd.DataFrame) -> pd.DataFrame:
    employees_text = text(frame, "NumberOfEmployees")
    employees = pd.to_numeric(employees_text, errors="coerce")
    bad = (employees_text != "") & (employees.isna() | (employees < 0))
    for row in first_rows(bad):
        reader.problems.append(
            Problem(
                "accounts",
                reader.path("Account"),
                row,
                "NumberOfEmployees",
                f"{employees_text.iloc[row - 1]!r} is not a head count",
            )
        )
    ids = text(frame, "Id")
    return pd.DataFrame(
        {
            "account_id": ids,
            "source_id": ids,
            "name": text(frame, "Name"),
            "industry": text(frame, "Industry"),
            "employee_band": employee_band(employees.where(employees >= 0)),
            "region": text(frame, reader.custom("account_region")),
            "created_at": reader.times(frame, "Account", "CreatedDate"),
        }
    )


def _lead_accounts(
    reader: Reader, leads: pd.DataFrame, accounts: pd.DataFrame
) -> tuple[pd.Series, int]:
    """Each lead's account as known at its creation; also how many were matched by name."""
    lookup = reader.custom("lead_account")
    if lookup and lookup in leads.columns:
        ids = text(leads, lookup)
        reader.unknown_ids(ids, accounts["account_id"], "Lead", lookup, "Account.csv")
        return ids.where(ids != "", pd.NA), 0
    names = accounts["name"].str.strip().str.lower()
    unique = names[~names.duplicated(keep=False)]
    by_name = pd.Series(accounts["account_id"][unique.index].to_numpy(), index=unique.to_numpy())
    company = text(leads, "Company").str.lower()
    matched = company.map(by_name)
    return matched, int(matched.notna().sum())


def _leads(
    reader: Reader,
    frame: pd.DataFrame,
    accounts: pd.DataFrame,
    opportunity_created: pd.Series,
) -> tuple[pd.DataFrame, int]:
    ids = text(frame, "Id")
    created = reader.times(frame, "Lead", "CreatedDate")
    status = reader.picklist(frame, "Lead", "Status", "lead_statuses")
    converted = reader.flag(frame, "IsConverted")
    says_converted = (status == "converted").fillna(False) & ~converted
    for row in first_rows(says_converted):
        reader.problems.append(
            Problem(
                "leads",
                reader.path("Lead"),
                row,
                "IsConverted",
                "Status says converted but IsConverted is false",
            )
        )
    status = status.where(~converted, "converted")
    converted_day = reader.times(frame, "Lead", "ConvertedDate", date=True)
    for row in first_rows(converted & converted_day.isna()):
        reader.problems.append(
            Problem(
                "leads", reader.path("Lead"), row, "ConvertedDate", "a converted lead needs one"
            )
        )
    opportunity = text(frame, "ConvertedOpportunityId")
    opened = opportunity.map(opportunity_created)
    same_day = opened.notna() & (opened.dt.normalize() == converted_day)
    converted_at = _day_end(converted_day, created).where(~same_day, opened)
    converted_at = converted_at.where(converted)
    source = reader.picklist(
        frame.assign(LeadSource=text(frame, "LeadSource").replace("", "Other")),
        "Lead",
        "LeadSource",
        "lead_sources",
    )
    email = text(frame, "Email").str.lower()
    email_hash = email.map(lambda e: hashlib.sha256(e.encode()).hexdigest() if e else pd.NA)
    # identity for finding duplicate leads; the privacy setting decides what of it is kept
    account_id, matched = _lead_accounts(reader, frame, accounts)
    out = pd.DataFrame(
        {
            "lead_id": ids,
            "source_id": ids,
            "account_id": account_id,
            "source": source,
            "created_at": created,
            "job_title": text(frame, "Title"),
            "seniority": text(frame, reader.custom("lead_seniority")),
            "country": text(frame, "Country"),
            "purchase_timeframe": text(frame, reader.custom("lead_purchase_timeframe")),
            "email_hash": email_hash,
            "status": status,
            "converted_at": converted_at,
            "first_name": text(frame, "FirstName"),
            "last_name": text(frame, "LastName"),
            "company_name": text(frame, "Company"),
            "phone_hash": phone_hashes(text(frame, "Phone")),
        }
    )
    return out, matched


def _opportunities(
    reader: Reader,
    frame: pd.DataFrame,
    leads: pd.DataFrame,
    lead_of_contact: pd.Series,
    roles: pd.DataFrame | None,
) -> pd.DataFrame:
    ids = text(frame, "Id")
    created = reader.times(frame, "Opportunity", "CreatedDate")
    stage = reader.picklist(frame, "Opportunity", "StageName", "opportunity_stages")
    closed = reader.flag(frame, "IsClosed") | stage.isin(["closed_won", "closed_lost"]).fillna(
        False
    )
    close_day = reader.times(frame, "Opportunity", "CloseDate", date=True)
    lead_of_opportunity = pd.Series(
        leads["lead_id"].to_numpy(), index=leads["converted_from"].to_numpy()
    )
    lead_of_opportunity = lead_of_opportunity[lead_of_opportunity.index != ""]
    lead_id = ids.map(lead_of_opportunity)
    if roles is not None and len(roles):
        primary = roles[reader.flag(roles, "IsPrimary")]
        contact_of = pd.Series(
            text(primary, "ContactId").to_numpy(), index=text(primary, "OpportunityId").to_numpy()
        )
        contact_of = contact_of[~contact_of.index.duplicated()]
        lead_id = lead_id.fillna(ids.map(contact_of).map(lead_of_contact))
    amount = text(frame, "Amount")
    return pd.DataFrame(
        {
            "opportunity_id": ids,
            "source_id": ids,
            "account_id": text(frame, "AccountId"),
            "lead_id": lead_id,
            "stage": stage,
            "amount": amount.where(amount != "", "0"),
            "created_at": created,
            "closed_at": _day_end(close_day, created).where(closed),
            "won": reader.flag(frame, "IsWon").astype("boolean").where(closed, pd.NA),
        }
    )


def _campaigns(reader: Reader, frame: pd.DataFrame) -> pd.DataFrame:
    actual, budgeted = text(frame, "ActualCost"), text(frame, "BudgetedCost")
    cost = actual.where(actual != "", budgeted)
    return pd.DataFrame(
        {
            "campaign_id": text(frame, "Id"),
            "name": text(frame, "Name"),
            "channel": reader.picklist(frame, "Campaign", "Type", "campaign_types"),
            "cost": cost.where(cost != "", "0"),
            "start": reader.times(frame, "Campaign", "StartDate", date=True),
            "end": reader.times(frame, "Campaign", "EndDate", date=True),
        }
    )


def _activities(
    reader: Reader,
    obj: str,
    frame: pd.DataFrame,
    people: _People,
    campaigns: pd.DataFrame,
) -> pd.DataFrame:
    """Task or Event rows as interactions (rows of skipped types dropped at the end)."""
    section = "task_types" if obj == "Task" else "event_types"
    kind = reader.picklist(frame, obj, "Type", section)
    if obj == "Task":
        occurred = reader.times(frame, obj, "CompletedDateTime")
        occurred = occurred.fillna(reader.times(frame, obj, "CreatedDate"))
    else:
        occurred = reader.times(frame, obj, "StartDateTime")
    who, what = text(frame, "WhoId"), text(frame, "WhatId")
    reader.unknown_ids(who, people.known, obj, "WhoId", "Lead.csv or Contact.csv")
    lead_id = who.map(people.lead_of)
    account_id = lead_id.map(people.account_of_lead)
    no_lead = lead_id.isna()
    given_account = text(frame, "AccountId")
    fallback = given_account.where(given_account != "", what.where(what.isin(people.accounts)))
    fallback = fallback.where(fallback != "", who.map(people.account_of_contact))
    account_id = account_id.where(~no_lead, fallback.replace("", pd.NA))
    campaign_id = what.where(what.isin(campaigns["campaign_id"]), pd.NA)
    channel = _channels(reader, frame, obj, kind, campaign_id, campaigns)
    return pd.DataFrame(
        {
            "interaction_id": text(frame, "Id"),
            "occurred_at": occurred,
            "lead_id": lead_id,
            "account_id": account_id,
            "channel": channel,
            "type": kind,
            "content_id": text(frame, reader.custom("activity_content")).replace("", pd.NA),
            "campaign_id": campaign_id,
        }
    )


def _channels(
    reader: Reader,
    frame: pd.DataFrame,
    obj: str,
    kind: pd.Series,
    campaign_id: pd.Series,
    campaigns: pd.DataFrame,
) -> pd.Series:
    """The custom channel field, else the campaign's channel, else the type's default."""
    name = reader.custom("activity_channel")
    given = (
        reader.picklist(frame, obj, name, "channels")
        if name and name in frame.columns
        else pd.Series(pd.NA, index=frame.index, dtype=object)
    )
    by_campaign = campaign_id.map(
        pd.Series(campaigns["channel"].to_numpy(), index=campaigns["campaign_id"].to_numpy())
    )
    default = kind.map(reader.mapping["default_channels"])
    return given.fillna(by_campaign).fillna(default)


class _People:
    """Who a WhoId or a campaign member is: a lead (directly, or the contact it became)."""

    def __init__(self, leads: pd.DataFrame, contacts: pd.DataFrame | None, accounts: pd.Series):
        contacts = contacts if contacts is not None else pd.DataFrame({"Id": [], "AccountId": []})
        contact_ids = text(contacts, "Id")
        became = leads[leads["converted_into"] != ""]
        self.lead_of_contact = pd.Series(
            became["lead_id"].to_numpy(), index=became["converted_into"].to_numpy()
        )
        self.lead_of = pd.concat(
            [
                pd.Series(leads["lead_id"].to_numpy(), index=leads["lead_id"].to_numpy()),
                self.lead_of_contact,
            ]
        )
        self.lead_of = self.lead_of[~self.lead_of.index.duplicated()]
        self.account_of_lead = pd.Series(
            leads["account_id"].to_numpy(), index=leads["lead_id"].to_numpy()
        )
        self.account_of_contact = pd.Series(
            text(contacts, "AccountId").to_numpy(), index=contact_ids.to_numpy()
        )
        self.known = pd.Index(leads["lead_id"]).append(pd.Index(contact_ids))
        self.accounts = accounts


def _responses(
    reader: Reader,
    members: pd.DataFrame,
    people: _People,
    campaigns: pd.DataFrame,
    touches: pd.DataFrame,
    lead_created: pd.Series,
) -> tuple[pd.DataFrame, np.ndarray]:
    """Responded campaign members with no task or event of that campaign, one touch each."""
    lead_id = text(members, "LeadId").map(people.lead_of)
    lead_id = lead_id.fillna(text(members, "ContactId").map(people.lead_of))
    campaign_id = text(members, "CampaignId")
    reader.unknown_ids(
        campaign_id, campaigns["campaign_id"], "CampaignMember", "CampaignId", "Campaign.csv"
    )
    responded = reader.flag(members, "HasResponded") & lead_id.notna()
    touched = pd.MultiIndex.from_frame(
        touches.loc[touches["campaign_id"].notna(), ["lead_id", "campaign_id"]].astype(str)
    )
    pairs = pd.MultiIndex.from_arrays([lead_id.fillna("").astype(str), campaign_id])
    new = responded & ~pd.Series(pairs.isin(touched), index=members.index)
    day = reader.times(members, "CampaignMember", "FirstRespondedDate", date=True)
    at = _day_end(day, lead_id.map(lead_created))
    channel = campaign_id.map(
        pd.Series(campaigns["channel"].to_numpy(), index=campaigns["campaign_id"].to_numpy())
    )
    out = pd.DataFrame(
        {
            "interaction_id": text(members, "Id"),
            "occurred_at": at,
            "lead_id": lead_id,
            "account_id": lead_id.map(people.account_of_lead),
            "channel": channel,
            "type": reader.mapping["campaign_response_type"],
            "content_id": pd.NA,
            "campaign_id": campaign_id,
        }
    )
    keep = (new & at.notna()).to_numpy()
    return out[keep], np.flatnonzero(keep) + 1


def _tickets(reader: Reader, frame: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "ticket_id": text(frame, "Id"),
            "account_id": text(frame, "AccountId"),
            "opened_at": reader.times(frame, "Case", "CreatedDate"),
            "closed_at": reader.times(frame, "Case", "ClosedDate"),
            "priority": reader.picklist(frame, "Case", "Priority", "case_priorities"),
            "satisfaction": text(frame, reader.custom("case_satisfaction")),
        }
    )


def map_salesforce(folder: Path, mapping_file: Path | None = None) -> MappedExport:
    """Map a Salesforce export folder onto the contract's tables (module docstring: the rules).

    Raises:
        ContractError: a file or field is missing, a picklist value is not in the mapping, a
            date is not in Salesforce's format, or an id names no record; naming file, row and
            field. Every problem found is listed, not just the first.
    """
    mapping = load_mapping(FORMAT, mapping_file)
    reader = Reader(folder, mapping)
    read = {obj: reader.read(obj, optional=obj == "Case") for obj in REQUIRED}
    companions = read_companions(reader.folder, mapping["files"], reader.problems)
    if reader.problems:
        raise ContractError(reader.problems)
    frames: dict[str, pd.DataFrame] = {k: v for k, v in read.items() if v is not None}

    accounts = _accounts(reader, frames["Account"])
    opportunity_created = pd.Series(
        reader.times(frames["Opportunity"], "Opportunity", "CreatedDate").to_numpy(),
        index=text(frames["Opportunity"], "Id").to_numpy(),
    )
    leads, matched = _leads(reader, frames["Lead"], accounts, opportunity_created)
    leads["converted_into"] = text(frames["Lead"], "ConvertedContactId").to_numpy()
    leads["converted_from"] = text(frames["Lead"], "ConvertedOpportunityId").to_numpy()
    people = _People(leads, frames["Contact"], accounts["account_id"])
    opportunities = _opportunities(
        reader,
        frames["Opportunity"],
        leads,
        people.lead_of_contact,
        frames["OpportunityContactRole"],
    )
    campaigns = _campaigns(reader, frames["Campaign"])
    tasks = _activities(reader, "Task", frames["Task"], people, campaigns)
    events = _activities(reader, "Event", frames["Event"], people, campaigns)
    touches = pd.concat([tasks, events], ignore_index=True)
    responses, response_rows = _responses(
        reader,
        frames["CampaignMember"],
        people,
        campaigns,
        touches,
        pd.Series(leads["created_at"].to_numpy(), index=leads["lead_id"].to_numpy()),
    )
    if reader.problems:
        raise ContractError(reader.problems)

    row_files = {
        "interactions": np.concatenate(
            [
                np.full(len(tasks), reader.path("Task")),
                np.full(len(events), reader.path("Event")),
                np.full(len(responses), reader.path("CampaignMember")),
            ]
        )
    }
    interactions = pd.concat([tasks, events, responses], ignore_index=True)
    interaction_rows = np.concatenate(
        [np.arange(1, len(tasks) + 1), np.arange(1, len(events) + 1), response_rows]
    )
    kept = (interactions["type"] != SKIP).fillna(True).to_numpy()
    tables = {name: empty_table(name) for name in TABLES}
    tables.update(
        accounts=accounts,
        leads=leads.drop(columns=["converted_into", "converted_from"]),
        opportunities=opportunities,
        campaigns=campaigns,
        interactions=interactions[kept].reset_index(drop=True),
    )
    sources = {
        "accounts": reader.path("Account"),
        "leads": reader.path("Lead"),
        "opportunities": reader.path("Opportunity"),
        "campaigns": reader.path("Campaign"),
        "interactions": reader.path("Task"),
    }
    source_rows: dict[str, np.ndarray] = {
        name: np.arange(1, len(tables[name]) + 1)
        for name in ("accounts", "leads", "opportunities", "campaigns")
    }
    source_rows["interactions"] = interaction_rows[kept]
    row_files["interactions"] = row_files["interactions"][kept]
    if frames.get("Case") is not None:
        tables["tickets"] = _tickets(reader, frames["Case"])
        sources["tickets"] = reader.path("Case")
        source_rows["tickets"] = np.arange(1, len(tables["tickets"]) + 1)
    attach_companions(companions, reader.folder, mapping["files"], tables, sources, source_rows)
    if reader.problems:
        raise ContractError(reader.problems)
    return MappedExport(
        format=FORMAT,
        tables=tables,
        sources=sources,
        source_rows=source_rows,
        row_files=row_files,
        source_columns=SOURCE_COLUMNS,
        report={
            "leads_matched_to_accounts_by_company": matched,
            "campaign_responses_added": len(responses),
            "activities_skipped": int((~kept).sum()),
            **{f"{name}_file_absent": int(companions[name] is None) for name in COMPANIONS},
        },
        key_fields=dict(KEY_FIELDS),
    )
