"""HubSpot exports: the CRM objects as HubSpot's "Export" writes them (one CSV per object, headed
by property labels), mapped onto the contract (:func:`map_hubspot`). The inverse, a contract CRM
written in that shape, is :mod:`crm.exports.hubspot_writer` (``crm-intel simulate --format
hubspot``).

The field labels and picklist values live in ``hubspot.yaml`` beside this module (overridable with
``--mapping FILE``); the rules are in ``docs/data-contract.md``. In short:

* companies → accounts; contacts → leads; deals → opportunities; calls, e-mails, meetings, notes
  and form submissions → interactions; campaigns → campaigns; tickets → tickets. Content,
  subscriptions and usage come from optional companion files in the contract's own columns.
* The contract's ids are the HubSpot Record IDs, and ``source_id`` repeats them.
* A lead's account is its contact's company association (the primary one when the export names
  it), never the deal's company: that exists only once the contact converted.
* A deal's lead is the contact it converted from: the custom converting-contact field when set,
  else the earliest-created associated contact that existed when the deal was created.
* ``converted_at`` is the Create Date of the contact's first such deal (the moment the
  opportunity exists, the same instant as ``opportunities.created_at``); "Became an Opportunity
  Date" only for a converted contact with no deal (it is rewritten when a lifecycle stage is set
  back and forth, and skipped when a contact goes straight to customer).
* Datetimes are to the minute; a date-only closing date (deals' Close Date) is the end of that day,
  clipped to now and to the record's creation, so an outcome is never known before it happened.
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
)
from crm.exports.hubspot_files import (
    ACTIVITIES,
    FORMAT,
    KEYS,
    OPTIONAL,
    REQUIRED,
    TYPE_FIELDS,
    Reader,
    field_label,
    source_columns,
)
from crm.identity import phone_hashes
from crm.importer import employee_band


def _or(values: pd.Series, other: pd.Series) -> pd.Series:
    """``values``, with ``other``'s value where it is missing."""
    return values.astype(object).where(values.notna(), other)


def _clip_dates(
    r: Reader, closed: pd.Series, date_only: pd.Series, created: pd.Series
) -> pd.Series:
    """A date-only closing time never before the record's creation: records imported into
    HubSpot with a past close date are created after it (counted)."""
    early = date_only & created.notna() & (closed < created)
    r.count("close_dates_clipped_to_creation", early.sum())
    return closed.where(~early, created)


def _accounts(r: Reader, frame: pd.DataFrame) -> pd.DataFrame:
    employees_text = r.text(frame, "companies", "employees")
    employees = pd.to_numeric(employees_text, errors="coerce")
    bad = (employees_text != "") & (employees.isna() | (employees < 0))
    for row in first_rows(bad):
        r.problems.append(
            Problem(
                "accounts",
                r.path("companies"),
                row,
                r.labels("companies", "employees")[0],
                f"{employees_text.iloc[row - 1]!r} is not a head count",
            )
        )
    ids = r.text(frame, "companies", "id")
    return pd.DataFrame(
        {
            "account_id": ids,
            "source_id": ids,
            "name": r.text(frame, "companies", "name"),
            "industry": r.text(frame, "companies", "industry"),
            "employee_band": employee_band(employees.where(employees >= 0)),
            "region": r.text(frame, "companies", "region"),
            "created_at": r.times(frame, "companies", "created")[0],
        }
    )


def _contacts(
    r: Reader, frame: pd.DataFrame, accounts: pd.DataFrame
) -> tuple[pd.DataFrame, pd.Series, pd.Series]:
    """Contacts as leads before conversion, with their lifecycle stage and lead status mapped
    (status and converted_at come once the deals are read)."""
    ids = r.text(frame, "contacts", "id")
    account_id = r.association(frame, "contacts")
    r.unknown_ids(
        account_id, pd.Index(accounts["account_id"]), "contacts", "companies", "companies"
    )
    original = r.picklist(frame, "contacts", "original_source", "original_sources")
    given = r.picklist(frame, "contacts", "lead_source", "lead_sources")
    source = _or(given, original)
    r.count("leads_source_unknown", source.isna().sum())
    email = r.text(frame, "contacts", "email").str.lower()
    lifecycle = r.picklist(frame, "contacts", "lifecycle_stage", "lifecycle_stages")
    lead_status = r.picklist(frame, "contacts", "lead_status", "lead_statuses")
    skipped = ((lifecycle == SKIP) | (lead_status == SKIP)).to_numpy()
    r.skipped_contacts = pd.Index(ids[skipped])
    contacts = pd.DataFrame(
        {
            "lead_id": ids,
            "source_id": ids,
            "account_id": account_id,
            "source": source.fillna("unknown"),
            "created_at": r.times(frame, "contacts", "created")[0],
            "job_title": r.text(frame, "contacts", "job_title"),
            "seniority": r.picklist(frame, "contacts", "seniority", "seniorities"),
            "country": r.text(frame, "contacts", "country"),
            "purchase_timeframe": r.picklist(
                frame, "contacts", "purchase_timeframe", "purchase_timeframes"
            ),
            "email_hash": email.map(
                lambda e: hashlib.sha256(e.encode()).hexdigest() if e else pd.NA
            ),
            # identity for finding duplicate leads; the privacy setting decides what is kept
            "first_name": r.text(frame, "contacts", "first_name"),
            "last_name": r.text(frame, "contacts", "last_name"),
            "company_name": r.text(frame, "contacts", "company"),
            "phone_hash": phone_hashes(r.text(frame, "contacts", "phone")),
        }
    )
    return contacts, lifecycle, lead_status


def _converting_contact(
    r: Reader, frame: pd.DataFrame, created: pd.Series, leads: pd.DataFrame
) -> pd.Series:
    """Each deal's lead: the custom converting-contact field when set, else the earliest-created
    associated contact that existed when the deal was created (skipped contacts are none)."""
    everyone = set(leads["lead_id"])
    listed = r.ids(frame, "deals", "contacts")
    unknown = listed.map(lambda ids: next((i for i in ids if i not in everyone), ""))
    r.unknown_ids(unknown, pd.Index(leads["lead_id"]), "deals", "contacts", "contacts")
    given = r.text(frame, "deals", "lead")
    r.unknown_ids(given, pd.Index(leads["lead_id"]), "deals", "lead", "contacts")
    flat = listed.explode().dropna()
    contact_created = pd.Series(leads["created_at"].to_numpy(), index=leads["lead_id"].to_numpy())
    pairs = pd.DataFrame(
        {
            "deal": flat.index.to_numpy(),
            "contact": flat.to_numpy(),
            "order": np.arange(len(flat)),
            "since": flat.map(contact_created).to_numpy(),
            "deal_created": created.reindex(flat.index).to_numpy(),
        }
    )
    existed = pairs["since"].notna() & (pairs["since"] <= pairs["deal_created"])
    pairs = pairs[existed & ~pairs["contact"].isin(r.skipped_contacts)]
    chosen = pairs.sort_values(["deal", "since", "order"]).drop_duplicates("deal")
    lead_id = pd.Series(chosen["contact"].to_numpy(), index=chosen["deal"].to_numpy())
    lead_id = lead_id.reindex(frame.index).astype(object)
    lead_id = given.where(given != "", lead_id).replace("", pd.NA)
    return lead_id.where(~lead_id.isin(r.skipped_contacts), pd.NA)


def _deals(r: Reader, frame: pd.DataFrame, leads: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    """Deals as opportunities, and the data rows kept (stages mapped to skip, and deals with no
    company of their own nor through their lead, are dropped and counted)."""
    ids = r.text(frame, "deals", "id")
    created = r.times(frame, "deals", "created")[0]
    stage = r.picklist(frame, "deals", "stage", "deal_stages")
    closed, date_only = r.times(frame, "deals", "closed", closing=True)
    closed = _clip_dates(r, closed, date_only, created)
    is_closed = stage.isin(["closed_won", "closed_lost"])
    lead_id = _converting_contact(r, frame, created, leads)
    account_id = r.association(frame, "deals")
    lead_account = lead_id.map(
        pd.Series(leads["account_id"].to_numpy(), index=leads["lead_id"].to_numpy())
    )
    from_lead = account_id.isna() & lead_account.notna()
    r.count("deals_company_from_contact", from_lead.sum())
    account_id = _or(account_id, lead_account)
    amount = r.text(frame, "deals", "amount")
    r.count("deals_amount_blank", (amount == "").sum())
    out = pd.DataFrame(
        {
            "opportunity_id": ids,
            "source_id": ids,
            "account_id": account_id,
            "lead_id": lead_id,
            "stage": stage,
            "amount": amount.where(amount != "", "0"),
            "created_at": created,
            "closed_at": closed.where(is_closed),
            "won": (stage == "closed_won").astype("boolean").where(is_closed, pd.NA),
        }
    )
    skipped = (stage == SKIP).to_numpy()
    no_account = account_id.isna().to_numpy() & ~skipped
    r.count("deals_skipped", skipped.sum())
    r.count("deals_without_company", no_account.sum())
    keep = ~skipped & ~no_account
    return out[keep].reset_index(drop=True), np.flatnonzero(keep) + 1


def _leads(
    r: Reader,
    frame: pd.DataFrame,
    contacts: pd.DataFrame,
    lifecycle: pd.Series,
    lead_status: pd.Series,
    deals: pd.DataFrame,
) -> pd.DataFrame:
    """Status and converted_at: converted from the first deal a contact converted into, else
    by the lifecycle stage; otherwise Lead Status, then the lifecycle stage, then open. Skipped
    contacts keep status ``skip`` (dropped by the caller)."""
    first_deal = deals.dropna(subset=["lead_id"]).groupby("lead_id")["created_at"].min()
    converted_at = contacts["lead_id"].map(first_deal)
    says_converted = ((lifecycle == "converted") | (lead_status == "converted")).fillna(False)
    became = r.times(frame, "contacts", "became_opportunity")[0]
    by_stage = converted_at.isna() & says_converted & became.notna()
    r.count("leads_converted_at_from_lifecycle_date", by_stage.sum())
    converted_at = converted_at.where(~by_stage, became)
    converted = converted_at.notna() | says_converted
    r.count("leads_converted_without_date", (converted & converted_at.isna()).sum())
    status = _or(lead_status, lifecycle)
    r.count("leads_status_defaulted_open", status.isna().sum())
    status = status.where(status.notna(), "open").where(~converted, "converted")
    status = status.where(~contacts["lead_id"].isin(r.skipped_contacts), SKIP)
    return contacts.assign(status=status.to_numpy(), converted_at=converted_at.to_numpy())


def _campaigns(r: Reader, frame: pd.DataFrame) -> pd.DataFrame:
    spend, budget = r.text(frame, "campaigns", "spend"), r.text(frame, "campaigns", "budget")
    r.count("campaigns_cost_from_budget", ((spend == "") & (budget != "")).sum())
    cost = spend.where(spend != "", budget)
    r.count("campaigns_without_cost", (cost == "").sum())
    return pd.DataFrame(
        {
            "campaign_id": r.text(frame, "campaigns", "id"),
            "name": r.text(frame, "campaigns", "name"),
            "channel": r.picklist(frame, "campaigns", "type", "campaign_types"),
            "cost": cost.where(cost != "", "0"),
            "start": r.times(frame, "campaigns", "start", day=True)[0],
            "end": r.times(frame, "campaigns", "end", day=True)[0],
        }
    )


def _activities(
    r: Reader, obj: str, frame: pd.DataFrame, leads: pd.DataFrame, campaigns: pd.DataFrame
) -> tuple[pd.DataFrame, np.ndarray]:
    """One activity file as interactions, and the data rows kept (rows of skipped types, of
    skipped contacts and with neither contact nor company are dropped and counted)."""
    contacts = r.ids(frame, obj, "contacts")
    r.count("activities_with_several_contacts", (contacts.str.len() > 1).sum())
    lead_id = contacts.str[0].astype(object)
    companies = r.ids(frame, obj, "companies")
    account_of_lead = pd.Series(leads["account_id"].to_numpy(), index=leads["lead_id"].to_numpy())
    account_id = _or(companies.str[0].astype(object), lead_id.map(account_of_lead))
    kind = pd.Series(pd.NA, index=frame.index, dtype=object)
    if r.label(frame, obj, "interaction_type") is not None:
        kind = r.picklist(frame, obj, "interaction_type", "interaction_types")
    if obj in TYPE_FIELDS and r.label(frame, obj, TYPE_FIELDS[obj][0]) is not None:
        kind = _or(kind, r.picklist(frame, obj, *TYPE_FIELDS[obj]))
    kind = kind.where(kind.notna(), r.mapping["activity_defaults"][obj])
    campaign_id = r.text(frame, obj, "campaign").replace("", pd.NA)
    channel = pd.Series(pd.NA, index=frame.index, dtype=object)
    if r.label(frame, obj, "channel") is not None:
        channel = r.picklist(frame, obj, "channel", "channels")
    by_campaign = campaign_id.map(
        pd.Series(campaigns["channel"].to_numpy(), index=campaigns["campaign_id"].to_numpy())
    )
    channel = _or(_or(channel, by_campaign), kind.map(r.mapping["default_channels"]))
    out = pd.DataFrame(
        {
            "interaction_id": r.text(frame, obj, "id"),
            "occurred_at": r.times(frame, obj, "date")[0],
            "lead_id": lead_id,
            "account_id": account_id,
            "channel": channel,
            "type": kind,
            "content_id": r.text(frame, obj, "content").replace("", pd.NA),
            "campaign_id": campaign_id,
        }
    )
    skipped = (kind == SKIP).to_numpy()
    of_skipped = lead_id.isin(r.skipped_contacts).to_numpy() & ~skipped
    orphan = (lead_id.isna() & account_id.isna()).to_numpy() & ~skipped & ~of_skipped
    r.count("activities_skipped", skipped.sum())
    r.count("activities_of_skipped_contacts", of_skipped.sum())
    r.count("activities_without_contact_or_company", orphan.sum())
    keep = ~skipped & ~of_skipped & ~orphan
    return out[keep].reset_index(drop=True), np.flatnonzero(keep) + 1


def _tickets(
    r: Reader, frame: pd.DataFrame, leads: pd.DataFrame
) -> tuple[pd.DataFrame, np.ndarray]:
    opened = r.times(frame, "tickets", "created")[0]
    closed, date_only = r.times(frame, "tickets", "closed", closing=True)
    account_id = r.association(frame, "tickets")
    contact = r.ids(frame, "tickets", "contacts").str[0]
    account_of_lead = pd.Series(leads["account_id"].to_numpy(), index=leads["lead_id"].to_numpy())
    account_id = _or(account_id, contact.map(account_of_lead))
    out = pd.DataFrame(
        {
            "ticket_id": r.text(frame, "tickets", "id"),
            "account_id": account_id,
            "opened_at": opened,
            "closed_at": _clip_dates(r, closed, date_only, opened),
            "priority": r.picklist(frame, "tickets", "priority", "ticket_priorities"),
            "satisfaction": r.text(frame, "tickets", "satisfaction"),
        }
    )
    keep = account_id.notna().to_numpy()
    r.count("tickets_without_company", (~keep).sum())
    return out[keep].reset_index(drop=True), np.flatnonzero(keep) + 1


def map_hubspot(folder: Path, mapping_file: Path | None = None) -> MappedExport:
    """Map a HubSpot export folder onto the contract's tables (module docstring: the rules).

    Raises:
        ContractError: a file or field is missing, a picklist value is not in the mapping, a
            date is not in HubSpot's export format, or an association names no record; naming
            file, row and field. Every problem found is listed, not just the first.
    """
    mapping = load_mapping(FORMAT, mapping_file)
    r = Reader(folder, mapping)
    read = {obj: r.read(obj, optional=obj in OPTIONAL) for obj in REQUIRED}
    companions = read_companions(r.folder, mapping["files"], r.problems)
    if r.problems:
        raise ContractError(r.problems)
    frames = {obj: frame for obj, frame in read.items() if frame is not None}
    for obj in (*OPTIONAL, *COMPANIONS):
        r.count(f"{obj}_file_absent", read.get(obj, companions.get(obj)) is None)

    accounts = _accounts(r, frames["companies"])
    contacts, lifecycle, lead_status = _contacts(r, frames["contacts"], accounts)
    deals, deal_rows = _deals(r, frames["deals"], contacts)
    leads = _leads(r, frames["contacts"], contacts, lifecycle, lead_status, deals)
    if r.problems:
        raise ContractError(r.problems)

    kept_leads = (leads["status"] != SKIP).to_numpy()
    r.count("contacts_skipped", (~kept_leads).sum())
    tables = {name: empty_table(name) for name in TABLES}
    tables.update(
        accounts=accounts, leads=leads[kept_leads].reset_index(drop=True), opportunities=deals
    )
    sources = {
        "accounts": r.path("companies"),
        "leads": r.path("contacts"),
        "opportunities": r.path("deals"),
    }
    source_rows: dict[str, np.ndarray] = {
        "accounts": np.arange(1, len(accounts) + 1),
        "leads": np.flatnonzero(kept_leads) + 1,
        "opportunities": deal_rows,
    }
    campaigns = tables["campaigns"]
    if "campaigns" in frames:
        campaigns = _campaigns(r, frames["campaigns"])
        tables["campaigns"] = campaigns
        sources["campaigns"] = r.path("campaigns")
        source_rows["campaigns"] = np.arange(1, len(campaigns) + 1)
    touches, rows, files = [], [], []
    for obj in ACTIVITIES:
        if obj in frames:
            frame, kept = _activities(r, obj, frames[obj], leads, campaigns)
            touches.append(frame)
            rows.append(kept)
            files.append(np.full(len(frame), r.path(obj)))
    row_files: dict[str, np.ndarray] = {}
    if touches:
        tables["interactions"] = pd.concat(touches, ignore_index=True)
        source_rows["interactions"] = np.concatenate(rows)
        row_files["interactions"] = np.concatenate(files)
        sources["interactions"] = r.path(next(obj for obj in ACTIVITIES if obj in frames))
    if "tickets" in frames:
        tables["tickets"], source_rows["tickets"] = _tickets(r, frames["tickets"], leads)
        sources["tickets"] = r.path("tickets")
    attach_companions(companions, r.folder, mapping["files"], tables, sources, source_rows)
    if r.problems:
        raise ContractError(r.problems)
    return MappedExport(
        format=FORMAT,
        tables=tables,
        sources=sources,
        source_rows=source_rows,
        source_columns=source_columns(mapping),
        row_files=row_files,
        report=dict(r.report),
        key_fields={table: field_label(mapping, obj, "id") for table, obj in KEYS.items()},
    )
