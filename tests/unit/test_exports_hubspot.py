"""HubSpot exports: a simulated CRM written as HubSpot writes its exports reads back to the same
contract tables, and a broken export is refused naming its file, row and field, writing nothing."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pandas as pd
import pytest

from crm.contract import TABLES, ContractError, validate_tables
from crm.exports.common import MappedExport, import_mapped, load_mapping, read_source
from crm.exports.hubspot import map_hubspot
from crm.exports.hubspot_writer import record_ids, write_hubspot
from simulator import SimulationConfig, simulate

# contract column → the table whose ids it holds (renamed to Record IDs by write_hubspot)
ID_COLUMNS = {
    "account_id": "accounts",
    "lead_id": "leads",
    "opportunity_id": "opportunities",
    "campaign_id": "campaigns",
    "interaction_id": "interactions",
    "ticket_id": "tickets",
}
DAY_END = pd.Timedelta(days=1) - pd.Timedelta(seconds=1)


@pytest.fixture(scope="module")
def crm() -> dict[str, pd.DataFrame]:
    return simulate(SimulationConfig(seed=7, accounts=60, leads=600, months=12)).tables


@pytest.fixture(scope="module")
def export(crm: dict[str, pd.DataFrame], tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("hubspot") / "export"
    write_hubspot(crm, folder)
    return folder


@pytest.fixture(scope="module")
def mapped(export: Path) -> MappedExport:
    return map_hubspot(export)


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A smaller export, for the tests that break one."""
    folder = tmp_path_factory.mktemp("hubspot") / "small"
    write_hubspot(
        simulate(SimulationConfig(seed=3, accounts=20, leads=150, months=4)).tables, folder
    )
    return folder


@pytest.fixture
def broken(small: Path, tmp_path: Path) -> Path:
    """A copy of the export for one test to break."""
    return Path(shutil.copytree(small, tmp_path / "export"))


@pytest.fixture
def raw_dir(tmp_path: Path) -> Path:
    """A raw folder holding an earlier import, which a refused import must leave as it was."""
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "accounts.parquet").write_bytes(b"earlier import")
    return raw


def as_exported(name: str, frame: pd.DataFrame, ids: dict[str, dict[str, str]]) -> pd.DataFrame:
    """What a contract table reads back as: Record IDs for ids, source_id repeating them,
    datetimes to the minute (HubSpot's export precision), a deal's close date the end of its
    day, e-mail hashes of the e-mails written."""
    out = frame.copy()
    for column, table in ID_COLUMNS.items():
        if column in out.columns:
            out[column] = out[column].map(
                lambda v, t=table: pd.NA if pd.isna(v) else ids[t][str(v)]
            )
    if name not in ("content", "subscriptions", "usage"):  # companions keep their own times
        for column in TABLES[name].columns:
            if column.kind == "timestamp":
                out[column.name] = out[column.name].dt.floor("min")
    if name == "opportunities":
        out["closed_at"] = frame["closed_at"].dt.floor("D") + DAY_END
    if name == "leads":
        out["email_hash"] = frame["lead_id"].map(
            lambda lead: hashlib.sha256(f"{lead.lower()}@example.com".encode()).hexdigest()
        )
    if name in ("accounts", "leads", "opportunities"):
        out.insert(1, "source_id", out[TABLES[name].primary_key[0]])
    return out


def sorted_by_key(name: str, frame: pd.DataFrame) -> pd.DataFrame:
    key = list(TABLES[name].primary_key)
    return frame.sort_values(key).reset_index(drop=True).astype(object)


def edit(folder: Path, file: str, row: int, field: str, value: str) -> None:
    """Set one cell of an export file (``row`` is the 1-based data row)."""
    frame = pd.read_csv(folder / file, dtype=str, keep_default_na=False)
    assert 0 < row <= len(frame) and field in frame.columns
    frame.loc[row - 1, field] = value
    frame.to_csv(folder / file, index=False)


def problem_of(err: pytest.ExceptionInfo[ContractError]) -> tuple[str, int | None, str | None]:
    head = err.value.problems[0]
    return Path(head.source).name, head.row, head.column


def assert_untouched(raw: Path) -> None:
    assert sorted(p.name for p in raw.iterdir()) == ["accounts.parquet"]
    assert (raw / "accounts.parquet").read_bytes() == b"earlier import"


def test_round_trip_gives_back_the_simulated_crm(
    crm: dict[str, pd.DataFrame], mapped: MappedExport
):
    # Given a simulated CRM written as a HubSpot export (fixture `export`)
    ids = record_ids(crm)

    # When it is mapped back and validated against the contract
    typed = validate_tables(mapped.tables, mapped.sources)

    # Then every table holds the same rows, ids renamed and times to the export's precision
    for name in TABLES:
        expected = as_exported(name, crm[name], ids)
        got = typed[name][expected.columns.tolist()]
        pd.testing.assert_frame_equal(
            sorted_by_key(name, got), sorted_by_key(name, expected), check_dtype=False
        )
    assert mapped.key_fields == {
        "accounts": "Record ID",
        "leads": "Record ID",
        "opportunities": "Record ID",
    }
    assert mapped.report["activities_skipped"] == 0
    assert mapped.report["tickets_file_absent"] == 0


def test_write_hubspot_writes_every_file_with_its_rows(crm: dict[str, pd.DataFrame], tmp_path):
    written = write_hubspot(crm, tmp_path / "export")

    assert written["companies.csv"] == len(crm["accounts"])
    assert written["contacts.csv"] == len(crm["leads"])
    assert written["deals.csv"] == len(crm["opportunities"])
    activities = ("calls", "emails", "meetings", "notes", "form_submissions")
    assert sum(written[f"{obj}.csv"] for obj in activities) == len(crm["interactions"])
    header = (tmp_path / "export" / "contacts.csv").read_text().splitlines()[0].split(",")
    assert {"Record ID", "Lifecycle Stage", "Original Source", "Associated Company IDs"} <= set(
        header
    )


def test_record_ids_are_numeric_and_one_range_per_object(crm: dict[str, pd.DataFrame]):
    ids = record_ids(crm)

    firsts = {name: int(min(lookup.values())) for name, lookup in ids.items() if lookup}
    assert len(set(str(v)[:2] for v in firsts.values())) == len(firsts)
    assert ids == record_ids(crm)  # deterministic
    assert all(v.isdigit() for v in ids["interactions"].values())


def test_import_writes_the_tables_and_names_hubspot_as_their_source(
    mapped: MappedExport, raw_dir: Path
):
    counts = import_mapped(mapped, raw_dir)

    assert counts["leads"] == 600
    assert read_source(raw_dir) == {
        "format": "hubspot",
        "key_fields": {
            "accounts": "Record ID",
            "leads": "Record ID",
            "opportunities": "Record ID",
        },
    }


def test_missing_file_is_named_and_nothing_is_written(broken: Path, raw_dir: Path):
    (broken / "deals.csv").unlink()

    with pytest.raises(ContractError) as err:
        import_mapped(map_hubspot(broken), raw_dir)

    assert problem_of(err) == ("deals.csv", None, None)
    assert "missing" in err.value.problems[0].message
    assert_untouched(raw_dir)


def test_renamed_field_is_named_and_nothing_is_written(broken: Path, raw_dir: Path):
    deals = pd.read_csv(broken / "deals.csv", dtype=str, keep_default_na=False)
    deals.rename(columns={"Deal Stage": "Stage"}).to_csv(broken / "deals.csv", index=False)

    with pytest.raises(ContractError) as err:
        import_mapped(map_hubspot(broken), raw_dir)

    assert problem_of(err) == ("deals.csv", None, "Deal Stage")
    assert_untouched(raw_dir)


def test_unknown_picklist_value_is_named_then_imports_once_mapped(
    broken: Path, raw_dir: Path, tmp_path: Path
):
    edit(broken, "deals.csv", 2, "Deal Stage", "Verbal Commit")

    with pytest.raises(ContractError) as err:
        import_mapped(map_hubspot(broken), raw_dir)

    assert problem_of(err) == ("deals.csv", 2, "Deal Stage")
    assert "'Verbal Commit'" in err.value.problems[0].message
    assert "deal_stages" in err.value.problems[0].message
    assert_untouched(raw_dir)

    # Given the value mapped in the user's own mapping file
    override = tmp_path / "mapping.yaml"
    override.write_text("deal_stages:\n  Verbal Commit: negotiation\n")
    mapped = map_hubspot(broken, override)
    import_mapped(mapped, raw_dir)

    deal = pd.read_csv(broken / "deals.csv", dtype=str)["Record ID"].iloc[1]
    opportunities = pd.read_parquet(raw_dir / "opportunities.parquet")
    assert opportunities.set_index("opportunity_id").loc[deal, "stage"] == "negotiation"
    assert load_mapping("hubspot", override)["deal_stages"]["Closed Won"] == "closed_won"


def test_date_in_another_format_is_named_and_nothing_is_written(broken: Path, raw_dir: Path):
    edit(broken, "contacts.csv", 3, "Create Date", "01/02/2024 09:30")

    with pytest.raises(ContractError) as err:
        import_mapped(map_hubspot(broken), raw_dir)

    assert problem_of(err) == ("contacts.csv", 3, "Create Date")
    assert "2024-03-01 09:30" in err.value.problems[0].message
    assert_untouched(raw_dir)


def test_contract_problem_is_told_in_hubspot_terms(broken: Path, raw_dir: Path):
    # Given an e-mail naming a contact the export does not hold (found by the contract's
    # foreign-key check, after mapping) and a negative deal amount
    edit(broken, "emails.csv", 4, "Associated Contact IDs", "999")
    edit(broken, "deals.csv", 3, "Amount", "-5")

    with pytest.raises(ContractError) as err:
        import_mapped(map_hubspot(broken), raw_dir)

    where = {(Path(p.source).name, p.row, p.column) for p in err.value.problems}
    assert ("deals.csv", 3, "Amount") in where
    assert_untouched(raw_dir)
    edit(broken, "deals.csv", 3, "Amount", "5")

    with pytest.raises(ContractError) as err:
        import_mapped(map_hubspot(broken), raw_dir)

    assert problem_of(err) == ("emails.csv", 4, "Associated Contact IDs")
    assert "'999'" in err.value.problems[0].message


def test_missing_optional_files_give_empty_tables_and_counts(broken: Path):
    for file in ("tickets.csv", "notes.csv", "usage.csv"):
        (broken / file).unlink()

    mapped = map_hubspot(broken)

    assert len(mapped.tables["tickets"]) == 0
    assert len(mapped.tables["usage"]) == 0
    assert mapped.report["tickets_file_absent"] == 1
    assert mapped.report["notes_file_absent"] == 1
    assert mapped.report["calls_file_absent"] == 0
    validate_tables(mapped.tables, mapped.sources)


def small_export(folder: Path, contacts: list[dict[str, str]], deals: list[dict[str, str]]) -> Path:
    """A HubSpot export of two companies, the given contacts and deals, and no activities."""
    folder.mkdir()
    pd.DataFrame(
        {
            "Record ID": ["101", "102"],
            "Company name": ["Acme", "Globex"],
            "Create Date": ["2023-01-01 09:00", "2023-01-01 09:00"],
        }
    ).to_csv(folder / "companies.csv", index=False)
    contact_fields = {
        "Lifecycle Stage": "Lead",
        "Original Source": "Organic Search",
        "Associated Company IDs": "",
    }
    pd.DataFrame([{**contact_fields, **c} for c in contacts]).to_csv(
        folder / "contacts.csv", index=False
    )
    deal_fields = {"Deal Stage": "Closed Won", "Amount": "1000", "Associated Contact IDs": ""}
    pd.DataFrame([{**deal_fields, **d} for d in deals]).to_csv(folder / "deals.csv", index=False)
    return folder


def test_deal_converts_its_earliest_contact_that_existed_and_leads_keep_their_own_company(
    tmp_path: Path,
):
    # Given a deal with three contacts: one created after the deal, one without a company
    export = small_export(
        tmp_path / "export",
        contacts=[
            {"Record ID": "1", "Create Date": "2024-01-05 10:00", "Associated Company IDs": ""},
            {"Record ID": "2", "Create Date": "2024-01-02 10:00", "Associated Company IDs": "101"},
            {"Record ID": "3", "Create Date": "2024-02-01 10:00", "Associated Company IDs": "101"},
        ],
        deals=[
            {
                "Record ID": "900",
                "Create Date": "2024-01-20 15:30",
                "Close Date": "2024-01-20",
                "Associated Company IDs": "102",
                "Associated Contact IDs": "3;1;2",
            }
        ],
    )

    mapped = map_hubspot(export)
    typed = validate_tables(mapped.tables, mapped.sources)

    leads = typed["leads"].set_index("lead_id")
    deal = typed["opportunities"].iloc[0]
    # the earliest contact existing when the deal was created converted into it, at its creation
    assert deal["lead_id"] == "2"
    assert leads.loc["2", "status"] == "converted"
    assert leads.loc["2", "converted_at"] == pd.Timestamp("2024-01-20 15:30", tz="UTC")
    assert leads.loc["1", "status"] == "open"
    assert pd.isna(leads.loc["1", "converted_at"])
    # a lead's account is its own company association, never the deal's
    assert leads.loc["2", "account_id"] == "101"
    assert deal["account_id"] == "102"
    # a close date with no time is the end of that day, never before the deal's creation
    assert deal["closed_at"] == pd.Timestamp("2024-01-20 23:59:59", tz="UTC")
    assert mapped.report["activities_skipped"] == 0
    assert mapped.report["calls_file_absent"] == 1


def test_close_date_of_today_is_never_after_now(tmp_path: Path):
    today = pd.Timestamp.now(tz="UTC").strftime("%Y-%m-%d")
    export = small_export(
        tmp_path / "export",
        contacts=[{"Record ID": "1", "Create Date": "2024-01-05 10:00"}],
        deals=[
            {
                "Record ID": "900",
                "Create Date": "2024-01-20 15:30",
                "Close Date": today,
                "Associated Company IDs": "101",
                "Associated Contact IDs": "1",
            }
        ],
    )

    closed = map_hubspot(export).tables["opportunities"]["closed_at"].iloc[0]

    assert closed <= pd.Timestamp.now(tz="UTC")
    assert closed.strftime("%Y-%m-%d") == today


def test_a_contacts_name_company_and_phone_are_imported_for_finding_duplicates(
    broken: Path, raw_dir: Path
):
    # Given contacts with HubSpot's name, company and phone properties
    path = broken / "contacts.csv"
    contacts = pd.read_csv(path, dtype=str, keep_default_na=False)
    contacts["First Name"] = "Ann"
    contacts["Last Name"] = "Lee"
    contacts["Company Name"] = "Apex"
    contacts["Phone Number"] = "415.555.0100"
    contacts.to_csv(path, index=False)

    # When imported under the default privacy setting
    import_mapped(map_hubspot(broken), raw_dir)

    # Then names and company are text and the phone only its hash
    leads = pd.read_parquet(raw_dir / "leads.parquet")
    assert set(leads["first_name"]) == {"Ann"} and set(leads["company_name"]) == {"Apex"}
    assert set(leads["phone_hash"]) == {hashlib.sha256(b"4155550100").hexdigest()}
