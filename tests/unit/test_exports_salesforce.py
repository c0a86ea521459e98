"""Salesforce exports: a contract CRM written as Salesforce's Data Export writes it reads back the
same, and a bad export is refused naming the file, row and field, with nothing written."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd
import pytest

from crm.contract import ContractError, validate_tables
from crm.exports.common import import_mapped, read_source
from crm.exports.salesforce import map_salesforce
from crm.exports.salesforce_files import salesforce_id
from crm.exports.salesforce_writer import write_salesforce
from simulator import SimulationConfig, simulate

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def crm_tables() -> dict[str, pd.DataFrame]:
    return simulate(SimulationConfig(seed=7, accounts=60, leads=600, months=12)).tables


@pytest.fixture()
def export(tmp_path: Path, crm_tables: dict[str, pd.DataFrame]) -> Path:
    folder = tmp_path / "salesforce"
    write_salesforce(crm_tables, folder)
    return folder


def _where(problem: object) -> tuple[str, int | None, str | None]:
    return (Path(problem.source).name, problem.row, problem.column)  # type: ignore[attr-defined]


def _ids_back(typed: dict[str, pd.DataFrame], original: dict[str, pd.DataFrame]) -> dict:
    """Salesforce Id → the contract id it was written for (tables keep their order)."""
    back = {}
    for table, key in (
        ("accounts", "account_id"),
        ("leads", "lead_id"),
        ("opportunities", "opportunity_id"),
        ("campaigns", "campaign_id"),
    ):
        back.update(dict(zip(typed[table][key], original[table][key], strict=True)))
    return back


def test_salesforce_ids_carry_the_checksum_salesforce_computes():
    # given a known 15-character Id and its 18-character form from Salesforce's documentation
    # pattern (capital letters of each 5-character chunk, as bits, index the suffix alphabet)
    made = salesforce_id("00Q", 1)

    # then the body is 15 characters and the suffix is computed, not constant
    assert len(made) == 18 and made.startswith("00QDn0")
    assert made[15:] == "MAA"  # chunk "00QDn": Q and D are capitals 2 and 3 -> 0b01100 = 12 -> M
    assert salesforce_id("001", 1)[15:] == "IAA"  # "001Dn": D is capital 3 -> 0b01000 = 8 -> I


def test_a_crm_written_as_a_salesforce_export_reads_back_the_same(export, crm_tables):
    # when the export is mapped and validated
    mapped = map_salesforce(export)
    typed = validate_tables(mapped.tables, mapped.sources)

    # then every table has its rows back, ids are Salesforce Ids kept as source ids too
    for name, frame in crm_tables.items():
        assert len(typed[name]) == len(frame), name
    for table, key in (("accounts", "account_id"), ("leads", "lead_id")):
        assert typed[table][key].str.len().eq(18).all()
        assert typed[table][key].equals(typed[table]["source_id"])
    back = _ids_back(typed, crm_tables)
    leads, original = typed["leads"], crm_tables["leads"]
    for column in ("source", "status", "job_title", "seniority", "purchase_timeframe", "country"):
        assert list(leads[column].fillna("-")) == list(original[column].fillna("-")), column
    assert list(leads["account_id"].map(back).fillna("-")) == list(
        original["account_id"].astype(object).fillna("-")
    )
    for column in ("created_at", "converted_at"):  # Salesforce keeps milliseconds
        assert leads[column].equals(original[column].dt.floor("ms")), column
    opportunities = typed["opportunities"]
    assert list(opportunities["lead_id"].map(back)) == list(crm_tables["opportunities"]["lead_id"])
    assert opportunities["won"].equals(crm_tables["opportunities"]["won"])

    # and interactions are the same touches (tasks and events, so in another order)
    columns = ["occurred_at", "lead_id", "account_id", "channel", "type", "content_id"]
    got = typed["interactions"].assign(
        lead_id=lambda f: f["lead_id"].map(back),
        account_id=lambda f: f["account_id"].map(back),
        campaign_id=lambda f: f["campaign_id"].map(back),
    )
    want = crm_tables["interactions"].assign(occurred_at=lambda f: f["occurred_at"].dt.floor("ms"))

    def canonical(frame: pd.DataFrame) -> pd.DataFrame:
        cols = [*columns, "campaign_id"]
        out = frame[cols].astype(object).where(frame[cols].notna(), "-").astype(str)
        return out.sort_values(cols).reset_index(drop=True)

    pd.testing.assert_frame_equal(canonical(got), canonical(want))


def test_the_import_records_the_source_and_its_key_fields(export, tmp_path):
    # when the export is imported
    raw = tmp_path / "raw"
    counts = import_mapped(map_salesforce(export), raw, now=pd.Timestamp("2030-01-01", tz="UTC"))

    # then source.json names the format and the key field of leads and accounts
    assert counts["leads"] == 600
    assert read_source(raw) == {
        "format": "salesforce",
        "key_fields": {"accounts": "Id", "leads": "Id", "opportunities": "Id"},
    }


def _edit(folder: Path, file: str, change) -> None:
    path = folder / file
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    change(frame)
    frame.to_csv(path, index=False)


def _set(column: str, row: int, value: str):
    def change(frame: pd.DataFrame) -> None:
        frame.loc[row - 1, column] = value

    return change


@pytest.mark.parametrize(
    ("file", "change", "expected"),
    [
        pytest.param("Opportunity.csv", None, ("Opportunity.csv", None, None), id="missing-file"),
        pytest.param(
            "Lead.csv",
            lambda f: f.rename(columns={"LeadSource": "Lead_Source"}, inplace=True),
            ("Lead.csv", None, "LeadSource"),
            id="renamed-field",
        ),
        pytest.param(
            "Lead.csv",
            _set("LeadSource", 3, "Podcast"),
            ("Lead.csv", 3, "LeadSource"),
            id="unknown-picklist-value",
        ),
        pytest.param(
            "Task.csv",
            _set("CreatedDate", 5, "03/01/2024 09:30"),
            ("Task.csv", 5, "CreatedDate"),
            id="date-in-another-format",
        ),
        pytest.param(
            "Opportunity.csv",
            _set("Amount", 2, "lots"),
            ("Opportunity.csv", 2, "Amount"),
            id="contract-problem-in-salesforce-terms",
        ),
    ],
)
def test_a_bad_export_is_refused_naming_file_row_and_field(
    export, tmp_path, file, change, expected
):
    # given a raw folder holding an earlier import, and an export with one problem
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "leads.parquet").write_bytes(b"earlier")
    if change is None:
        (export / file).unlink()
    else:
        _edit(export, file, change)

    # when it is imported
    with pytest.raises(ContractError) as caught:
        import_mapped(map_salesforce(export), raw)

    # then the problem names the export's file, row and field, and nothing was written
    assert expected in [_where(p) for p in caught.value.problems]
    assert [p.name for p in raw.iterdir()] == ["leads.parquet"]
    assert (raw / "leads.parquet").read_bytes() == b"earlier"


def test_an_unknown_picklist_value_imports_once_mapped_in_a_mapping_file(export, tmp_path):
    # given a lead source the default mapping does not know, and a mapping file that maps it
    _edit(export, "Lead.csv", _set("LeadSource", 3, "Podcast"))
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text("lead_sources:\n  Podcast: organic_search\n")

    # when it is imported with the mapping
    mapped = map_salesforce(export, mapping)
    typed = validate_tables(mapped.tables, mapped.sources)

    # then the lead has the mapped source, and the default mapping still applies to the rest
    assert typed["leads"]["source"].iloc[2] == "organic_search"
    assert (
        typed["leads"]["source"]
        .isin(
            [
                "paid_search",
                "organic_search",
                "list_import",
                "direct",
                "social",
                "webinar",
                "event",
                "partner",
                "referral",
            ]
        )
        .all()
    )


def test_a_lead_account_is_what_was_known_at_creation_never_the_converted_account(export):
    # given a converted lead whose company names no account but whose conversion created one
    lead = pd.read_csv(export / "Lead.csv", dtype=str, keep_default_na=False)
    converted = lead.index[(lead["IsConverted"] == "true") & (lead["Company"] == "[not provided]")]
    assert len(converted), "the simulation has converted leads with no account at creation"

    # when the export is mapped
    leads = map_salesforce(export).tables["leads"]

    # then that lead has no account: ConvertedAccountId exists only after the conversion
    assert leads["account_id"].iloc[converted].isna().all()
    assert lead["ConvertedAccountId"].iloc[converted].ne("").all()


def test_a_responded_campaign_member_without_a_touch_becomes_one(export):
    # given a responded member of a campaign for a lead with no task of that campaign
    members = pd.read_csv(export / "CampaignMember.csv", dtype=str, keep_default_na=False)
    tasks = pd.read_csv(export / "Task.csv", dtype=str, keep_default_na=False)
    events = pd.read_csv(export / "Event.csv", dtype=str, keep_default_na=False)
    member = members.iloc[0]
    people = [member["LeadId"], member["ContactId"]]

    def drop(frame: pd.DataFrame) -> pd.DataFrame:
        same = (frame["WhatId"] == member["CampaignId"]) & frame["WhoId"].isin(people)
        return frame[~same]

    drop(tasks).to_csv(export / "Task.csv", index=False)
    drop(events).to_csv(export / "Event.csv", index=False)

    # when the export is mapped
    mapped = map_salesforce(export)

    # then the response is one form submission of that campaign on its first response day
    assert mapped.report["campaign_responses_added"] == 1
    added = mapped.tables["interactions"].iloc[-1]
    assert added["interaction_id"] == member["Id"] and added["type"] == "form_submit"
    assert added["campaign_id"] == member["CampaignId"]
    assert str(added["occurred_at"].date()) >= member["FirstRespondedDate"]


@pytest.mark.parametrize(("mode", "first"), [("names", "Katherine"), ("phonetic", "K0RN")])
def test_a_leads_identity_is_imported_as_the_privacy_setting_keeps_it(
    export, tmp_path, mode, first
):
    # given a Lead with a name, company and phone
    def identity(frame: pd.DataFrame) -> None:
        frame.loc[0, ["FirstName", "LastName", "Company"]] = ["Katherine", "Smith", "Apex Inc."]
        frame["Phone"] = ""
        frame.loc[0, "Phone"] = "+1 (415) 555-0100"

    _edit(export, "Lead.csv", identity)

    # when imported under the privacy setting
    raw = tmp_path / "raw"
    import_mapped(map_salesforce(export), raw, pd.Timestamp("2030-01-01", tz="UTC"), mode)

    # then the name is text or its phonetic code, the phone only its hash
    leads = pd.read_parquet(raw / "leads.parquet")
    row = leads.iloc[0]
    assert (row["first_name"], row["company_name"]) == (first, "Apex Inc.")
    assert row["phone_hash"] == hashlib.sha256(b"4155550100").hexdigest()
    assert leads["phone_hash"].iloc[1:].isna().all()
    assert "Phone" not in leads.columns and "phone" not in leads.columns
