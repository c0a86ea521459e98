"""A Salesforce export's files: its objects, their fields and Ids, and a :class:`Reader` that reads
them as text and maps picklists and dates strictly, collecting every problem with its file, row
and field. :mod:`crm.exports.salesforce` maps the objects onto the contract.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from crm.contract import ContractError, Problem
from crm.exports.common import (
    first_rows,
    map_values,
    parse_times,
    read_object,
    text,
)

FORMAT = "salesforce"
DATETIME_FORMATS = ("%Y-%m-%dT%H:%M:%S.%f%z", "%Y-%m-%dT%H:%M:%S%z")
DATE_FORMATS = ("%Y-%m-%d",)
DATETIME_SHAPE = "2024-03-01T09:30:00.000Z"
DATE_SHAPE = "2024-03-01"
NO_COMPANY = "[not provided]"  # Salesforce's placeholder for a lead's required Company
KEY_FIELDS = {"accounts": "Id", "leads": "Id", "opportunities": "Id"}
# Object key prefixes (the first three characters of every Id of that object)
PREFIXES = {
    "Account": "001",
    "Contact": "003",
    "Lead": "00Q",
    "Opportunity": "006",
    "OpportunityContactRole": "00K",
    "Task": "00T",
    "Event": "00U",
    "Campaign": "701",
    "CampaignMember": "00v",
    "Case": "500",
}
REQUIRED: dict[str, tuple[str, ...]] = {
    "Account": ("Id", "Name", "CreatedDate"),
    "Contact": ("Id", "AccountId"),
    "Lead": (
        "Id",
        "Company",
        "LeadSource",
        "Status",
        "IsConverted",
        "ConvertedDate",
        "ConvertedContactId",
        "ConvertedOpportunityId",
        "CreatedDate",
    ),
    "Opportunity": (
        "Id",
        "AccountId",
        "StageName",
        "Amount",
        "CreatedDate",
        "CloseDate",
        "IsClosed",
        "IsWon",
    ),
    "OpportunityContactRole": ("OpportunityId", "ContactId", "IsPrimary"),
    "Task": ("Id", "WhoId", "WhatId", "AccountId", "Type", "CreatedDate"),
    "Event": ("Id", "WhoId", "WhatId", "AccountId", "Type", "StartDateTime"),
    "Campaign": ("Id", "Name", "Type", "StartDate", "EndDate", "ActualCost"),
    "CampaignMember": ("Id", "CampaignId", "LeadId", "ContactId", "HasResponded"),
    "Case": ("Id", "AccountId", "CreatedDate", "ClosedDate", "Priority"),
}
# Objects crm-intel reads → the contract table their problems are filed under
TABLE_OF = {
    "Account": "accounts",
    "Contact": "leads",
    "Lead": "leads",
    "Opportunity": "opportunities",
    "OpportunityContactRole": "opportunities",
    "Task": "interactions",
    "Event": "interactions",
    "Campaign": "campaigns",
    "CampaignMember": "interactions",
    "Case": "tickets",
}
TRUE = {"true", "1", "yes"}


def salesforce_id(prefix: str, number: int) -> str:
    """An 18-character Salesforce Id: the object's prefix, a 15-character case-sensitive body
    and the 3-character suffix Salesforce computes from the body's capital letters."""
    body = f"{prefix}Dn0{number:09d}"
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
    suffix = ""
    for start in range(0, 15, 5):
        chunk = body[start : start + 5]
        suffix += alphabet[sum(1 << i for i, char in enumerate(chunk) if char.isupper())]
    return body + suffix


class Reader:
    """One export folder being mapped: the files read so far and every problem found."""

    def __init__(self, folder: Path, mapping: Mapping[str, Any]):
        self.folder = Path(folder)
        self.mapping = mapping
        self.problems: list[Problem] = []

    def path(self, obj: str) -> str:
        return str(self.folder / self.mapping["files"][obj])

    def read(self, obj: str, optional: bool = False) -> pd.DataFrame | None:
        try:
            return read_object(
                self.folder, self.mapping["files"][obj], TABLE_OF[obj], REQUIRED[obj], optional
            )
        except ContractError as err:
            self.problems.extend(err.problems)
            return None

    def picklist(self, frame: pd.DataFrame, obj: str, name: str, section: str) -> pd.Series:
        mapped, problems = map_values(
            text(frame, name),
            self.mapping[section],
            table=TABLE_OF[obj],
            path=self.path(obj),
            field_name=name,
            mapping_key=section,
        )
        self.problems.extend(problems)
        return mapped

    def times(self, frame: pd.DataFrame, obj: str, name: str, date: bool = False) -> pd.Series:
        values, problems = parse_times(
            text(frame, name),
            DATE_FORMATS if date else DATETIME_FORMATS,
            table=TABLE_OF[obj],
            path=self.path(obj),
            field_name=name,
            described=DATE_SHAPE if date else DATETIME_SHAPE,
        )
        self.problems.extend(problems)
        return values

    def flag(self, frame: pd.DataFrame, name: str) -> pd.Series:
        return text(frame, name).str.lower().isin(TRUE)

    def custom(self, key: str) -> str | None:
        return self.mapping["custom_fields"].get(key)

    def unknown_ids(
        self, values: pd.Series, known: pd.Index | pd.Series, obj: str, name: str, target: str
    ) -> None:
        bad = (values != "") & ~values.isin(known)
        for row in first_rows(bad):
            self.problems.append(
                Problem(
                    TABLE_OF[obj],
                    self.path(obj),
                    row,
                    name,
                    f"{values.iloc[row - 1]!r} names no row of {target}",
                )
            )


# Contract column → the Salesforce field it came from, so a contract problem names the user's own
SOURCE_COLUMNS: dict[str, dict[str, str]] = {
    "accounts": {
        "account_id": "Id",
        "name": "Name",
        "employee_band": "NumberOfEmployees",
        "created_at": "CreatedDate",
        "source_id": "Id",
    },
    "leads": {
        "lead_id": "Id",
        "source": "LeadSource",
        "created_at": "CreatedDate",
        "job_title": "Title",
        "first_name": "FirstName",
        "last_name": "LastName",
        "company_name": "Company",
        "phone_hash": "Phone",
        "status": "Status",
        "converted_at": "ConvertedDate",
        "source_id": "Id",
    },
    "opportunities": {
        "opportunity_id": "Id",
        "account_id": "AccountId",
        "stage": "StageName",
        "amount": "Amount",
        "created_at": "CreatedDate",
        "closed_at": "CloseDate",
        "won": "IsWon",
        "source_id": "Id",
    },
    "campaigns": {
        "campaign_id": "Id",
        "name": "Name",
        "channel": "Type",
        "cost": "ActualCost",
        "start": "StartDate",
        "end": "EndDate",
    },
    "interactions": {
        "interaction_id": "Id",
        "occurred_at": "CompletedDateTime",
        "lead_id": "WhoId",
        "account_id": "AccountId",
        "type": "Type",
        "campaign_id": "WhatId",
    },
    "tickets": {
        "ticket_id": "Id",
        "account_id": "AccountId",
        "opened_at": "CreatedDate",
        "closed_at": "ClosedDate",
        "priority": "Priority",
    },
}
