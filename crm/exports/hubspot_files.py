"""A HubSpot export's files: its objects, their field labels and Record IDs, and a :class:`Reader`
that reads them as text, finds each field by its labels and maps picklists and dates strictly,
collecting every problem with its file, row and field. :mod:`crm.exports.hubspot` maps the objects
onto the contract.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from crm.contract import ContractError, Problem
from crm.exports.common import (
    COMPANIONS,
    first_rows,
    map_values,
    parse_times,
    read_object,
    text,
)

FORMAT = "hubspot"
DATETIME_FORMATS = ("%Y-%m-%d %H:%M", "%Y-%m-%d")
SHAPES = "2024-03-01 09:30 or 2024-03-01"
ACTIVITIES = ("calls", "emails", "meetings", "notes", "form_submissions")
OPTIONAL = (*ACTIVITIES, "campaigns", "tickets")
TABLE_OF = {
    "companies": "accounts",
    "contacts": "leads",
    "deals": "opportunities",
    "campaigns": "campaigns",
    "tickets": "tickets",
    **{obj: "interactions" for obj in ACTIVITIES},
}
REQUIRED: dict[str, tuple[str, ...]] = {
    "companies": ("id", "name", "created"),
    "contacts": ("id", "created", "lifecycle_stage", "original_source", "companies"),
    "deals": ("id", "stage", "amount", "created", "closed", "companies", "contacts"),
    "campaigns": ("id", "name", "start", "end"),
    "tickets": ("id", "created", "closed", "priority", "companies"),
    **{obj: ("id", "date", "contacts", "companies") for obj in ACTIVITIES},
}
# activity object → (its own type field, the mapping section that reads it)
TYPE_FIELDS = {
    "calls": ("activity_type", "activity_types"),
    "meetings": ("activity_type", "activity_types"),
    "emails": ("email_direction", "email_directions"),
}
KEYS = {"accounts": "companies", "leads": "contacts", "opportunities": "deals"}
DAY_END = pd.Timedelta(days=1) - pd.Timedelta(seconds=1)
# what the mapping counts (docs/data-contract.md explains each), every one reported
REPORT = (
    *(f"{obj}_file_absent" for obj in (*OPTIONAL, *COMPANIONS)),
    "contacts_skipped",
    "contacts_with_several_companies",
    "leads_source_unknown",
    "leads_status_defaulted_open",
    "leads_converted_at_from_lifecycle_date",
    "leads_converted_without_date",
    "deals_skipped",
    "deals_without_company",
    "deals_company_from_contact",
    "deals_with_several_companies",
    "deals_amount_blank",
    "close_dates_clipped_to_creation",
    "campaigns_cost_from_budget",
    "campaigns_without_cost",
    "activities_skipped",
    "activities_of_skipped_contacts",
    "activities_without_contact_or_company",
    "activities_with_several_contacts",
    "tickets_without_company",
    "tickets_with_several_companies",
)


class Reader:
    """One export folder being mapped: the files read so far and every problem found."""

    def __init__(self, folder: Path, mapping: Mapping[str, Any]):
        self.folder = Path(folder)
        self.mapping = mapping
        self.problems: list[Problem] = []
        self.separator = str(mapping.get("id_separator", ";"))
        self.zone = str(mapping.get("time_zone", "UTC"))
        self.now = pd.Timestamp.now(tz="UTC")
        self.report: dict[str, int] = dict.fromkeys(REPORT, 0)
        self.skipped_contacts = pd.Index([], dtype=object)

    def path(self, obj: str) -> str:
        return str(self.folder / self.mapping["files"][obj])

    def labels(self, obj: str, key: str) -> list[str]:
        value = self.mapping["fields"][obj].get(key)
        if value is None:
            return []
        return [str(v) for v in value] if isinstance(value, list) else [str(value)]

    def label(self, frame: pd.DataFrame, obj: str, key: str) -> str | None:
        """The first of a field's labels the file has (None: the file has none of them)."""
        return next((n for n in self.labels(obj, key) if n in frame.columns), None)

    def read(self, obj: str, optional: bool = False) -> pd.DataFrame | None:
        try:
            frame = read_object(
                self.folder, self.mapping["files"][obj], TABLE_OF[obj], (), optional
            )
        except ContractError as err:
            self.problems.extend(err.problems)
            return None
        if frame is not None:
            for key in REQUIRED.get(obj, ()):
                if self.label(frame, obj, key) is None:
                    name = (self.labels(obj, key) or [key])[0]
                    problem = Problem(
                        TABLE_OF[obj], self.path(obj), None, name, "required field is missing"
                    )
                    self.problems.append(problem)
        return frame

    def text(self, frame: pd.DataFrame, obj: str, key: str) -> pd.Series:
        return text(frame, self.label(frame, obj, key))

    def picklist(self, frame: pd.DataFrame, obj: str, key: str, section: str) -> pd.Series:
        name = self.label(frame, obj, key)
        mapped, problems = map_values(
            text(frame, name),
            self.mapping[section],
            table=TABLE_OF[obj],
            path=self.path(obj),
            field_name=name or key,
            mapping_key=section,
        )
        self.problems.extend(problems)
        return mapped.astype(object)

    def times(
        self, frame: pd.DataFrame, obj: str, key: str, closing: bool = False, day: bool = False
    ) -> tuple[pd.Series, pd.Series]:
        """A field's datetimes in UTC, and which rows held a date only. A date is the start of
        that day in the portal's time zone (UTC midnight for a ``day`` property: HubSpot stores
        date properties so); for a ``closing`` field, the day's end, at most now."""
        name = self.label(frame, obj, key)
        raw = text(frame, name)
        parsed, problems = parse_times(
            raw,
            DATETIME_FORMATS,
            table=TABLE_OF[obj],
            path=self.path(obj),
            field_name=name or key,
            described=SHAPES,
        )
        self.problems.extend(problems)
        date_only = parsed.notna() & (raw.str.len() == 10)
        if self.zone != "UTC":
            wall = parsed.dt.tz_localize(None).dt.tz_localize(
                self.zone, ambiguous=np.zeros(len(parsed), dtype=bool), nonexistent="shift_forward"
            )
            parsed = wall.dt.tz_convert("UTC").where(~(date_only & day), parsed)
        if closing:
            ends = (parsed + DAY_END).where(parsed + DAY_END < self.now, self.now)
            parsed = parsed.where(~date_only, ends)
        return parsed, date_only

    def ids(self, frame: pd.DataFrame, obj: str, key: str) -> pd.Series:
        """Each row's associated Record IDs (a list, empty when blank)."""
        return self.text(frame, obj, key).map(
            lambda cell: [i.strip() for i in cell.split(self.separator) if i.strip()]
        )

    def association(self, frame: pd.DataFrame, obj: str) -> pd.Series:
        """The row's company: the primary association when the export names one, else the
        first listed (rows listing several without a primary are counted)."""
        primary = self.text(frame, obj, "primary_company")
        listed = self.ids(frame, obj, "companies")
        several = (primary == "") & (listed.str.len() > 1)
        self.count(f"{obj}_with_several_companies", several.sum())
        first = listed.str[0]
        return primary.where(primary != "", first).replace("", pd.NA)

    def unknown_ids(
        self, values: pd.Series, known: pd.Index, obj: str, key: str, target: str
    ) -> None:
        """A problem for each of the first rows naming a record ``target`` (a file) lacks."""
        bad = values.notna() & (values != "") & ~values.isin(known)
        target = self.mapping["files"][target]
        for row in first_rows(bad):
            self.problems.append(
                Problem(
                    TABLE_OF[obj],
                    self.path(obj),
                    row,
                    (self.labels(obj, key) or [key])[0],
                    f"{values.iloc[row - 1]!r} names no row of {target}",
                )
            )

    def count(self, name: str, value: int | np.integer) -> None:
        self.report[name] = self.report.get(name, 0) + int(value)


def field_label(mapping: Mapping[str, Any], obj: str, key: str) -> str:
    """A field's label (the first, when the mapping lists several)."""
    value = mapping["fields"][obj].get(key) or key
    return str(value[0] if isinstance(value, list) else value)


def source_columns(mapping: Mapping[str, Any]) -> dict[str, dict[str, str]]:
    """Contract column → the HubSpot field label it came from, per contract table."""
    columns = {
        "accounts": {
            "account_id": ("companies", "id"),
            "source_id": ("companies", "id"),
            "name": ("companies", "name"),
            "industry": ("companies", "industry"),
            "employee_band": ("companies", "employees"),
            "region": ("companies", "region"),
            "created_at": ("companies", "created"),
        },
        "leads": {
            "lead_id": ("contacts", "id"),
            "source_id": ("contacts", "id"),
            "account_id": ("contacts", "companies"),
            "source": ("contacts", "original_source"),
            "created_at": ("contacts", "created"),
            "job_title": ("contacts", "job_title"),
            "seniority": ("contacts", "seniority"),
            "country": ("contacts", "country"),
            "purchase_timeframe": ("contacts", "purchase_timeframe"),
            "email_hash": ("contacts", "email"),
            "first_name": ("contacts", "first_name"),
            "last_name": ("contacts", "last_name"),
            "company_name": ("contacts", "company"),
            "phone_hash": ("contacts", "phone"),
            "status": ("contacts", "lifecycle_stage"),
            "converted_at": ("contacts", "became_opportunity"),
        },
        "opportunities": {
            "opportunity_id": ("deals", "id"),
            "source_id": ("deals", "id"),
            "account_id": ("deals", "companies"),
            "lead_id": ("deals", "contacts"),
            "stage": ("deals", "stage"),
            "amount": ("deals", "amount"),
            "created_at": ("deals", "created"),
            "closed_at": ("deals", "closed"),
            "won": ("deals", "stage"),
        },
        "campaigns": {
            "campaign_id": ("campaigns", "id"),
            "name": ("campaigns", "name"),
            "channel": ("campaigns", "type"),
            "cost": ("campaigns", "spend"),
            "start": ("campaigns", "start"),
            "end": ("campaigns", "end"),
        },
        "interactions": {
            "interaction_id": ("calls", "id"),
            "occurred_at": ("calls", "date"),
            "lead_id": ("calls", "contacts"),
            "account_id": ("calls", "companies"),
            "channel": ("calls", "channel"),
            "type": ("calls", "interaction_type"),
            "content_id": ("calls", "content"),
            "campaign_id": ("calls", "campaign"),
        },
        "tickets": {
            "ticket_id": ("tickets", "id"),
            "account_id": ("tickets", "companies"),
            "opened_at": ("tickets", "created"),
            "closed_at": ("tickets", "closed"),
            "priority": ("tickets", "priority"),
            "satisfaction": ("tickets", "satisfaction"),
        },
    }
    return {
        table: {column: field_label(mapping, *where) for column, where in spec.items()}
        for table, spec in columns.items()
    }
