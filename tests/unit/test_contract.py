"""The data contract at the edge where CRM data enters: what it accepts and how it names problems.

Also the import stage's pure functions (reading a folder, mapping a Maven-style export), since
they are the contract's only callers at that edge.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from crm.contract import (
    CHANNELS,
    CONTENT_TYPES,
    DTYPES,
    EMPLOYEE_BANDS,
    SENIORITIES,
    TABLES,
    ContractError,
    Problem,
    validate_tables,
)
from crm.importer import account_id_for, employee_band, load_folder, map_maven

pytestmark = pytest.mark.unit

NOW = pd.Timestamp("2025-06-01", tz="UTC")
SOURCES = {name: f"{name}.csv" for name in TABLES}
BASE = pd.Timestamp("2024-01-01", tz="UTC")


def _when(days: float) -> str:
    """An ISO 8601 UTC timestamp ``days`` after 2024-01-01, as a CSV would carry it."""
    return (BASE + pd.Timedelta(days=float(days))).strftime("%Y-%m-%dT%H:%M:%SZ")


def build_contract_tables(seed: int = 0) -> dict[str, pd.DataFrame]:
    """A consistent, valid set of the nine contract tables, every value a string (blank = missing).

    Keys line up across tables (every foreign key names an existing row), every timestamp lies in
    2023-2025 and every ``not_after`` pair is ordered, so the set passes ``validate_tables`` with
    ``now`` at 2025-06-01 or later. The seed varies names, amounts and categories, not the shape:
    3 accounts, 5 leads (2 converted), 3 opportunities (won, lost, open), 3 content items,
    2 campaigns, 8 interactions, 2 subscriptions, 6 usage weeks and 3 tickets.
    """
    rng = np.random.default_rng(seed)

    def pick(options: tuple[str, ...] | list[str] | str) -> str:
        return str(options[int(rng.integers(len(options)))])

    lead_created = [10, 15, 20, 25, 30]
    converted = [True, True, False, False, False]
    return {
        "accounts": pd.DataFrame(
            {
                "account_id": ["A001", "A002", "A003"],
                "name": [f"Company {pick('XYZW')}{i}" for i in range(3)],
                "industry": [pick(["software", "retail"]), "", pick(["medical", "media"])],
                "employee_band": [pick(EMPLOYEE_BANDS), pick(EMPLOYEE_BANDS), ""],
                "region": ["EMEA", "NA", ""],
                "created_at": [_when(-300), _when(-200), _when(-100)],
            }
        ),
        "leads": pd.DataFrame(
            {
                "lead_id": [f"L00{i}" for i in range(1, 6)],
                "account_id": ["A001", "A002", "A001", "A003", ""],
                "source": [pick(["web", "event", "referral"]) for _ in range(5)],
                "created_at": [_when(d) for d in lead_created],
                "job_title": ["CTO", "Engineer", "", "VP Sales", "Analyst"],
                "seniority": [pick(SENIORITIES) for _ in range(4)] + [""],
                "country": ["DE", "US", "US", "", "FR"],
                "email_hash": [
                    hashlib.sha256(f"lead{i}@example.com".encode()).hexdigest() for i in range(5)
                ],
                "status": ["converted", "converted", "open", "recycled", "disqualified"],
                "converted_at": [
                    _when(d + 20) if c else "" for d, c in zip(lead_created, converted, strict=True)
                ],
            }
        ),
        "opportunities": pd.DataFrame(
            {
                "opportunity_id": ["O001", "O002", "O003"],
                "account_id": ["A001", "A002", "A003"],
                "lead_id": ["L001", "L002", ""],
                "stage": ["closed_won", "closed_lost", "qualification"],
                "amount": [
                    f"{rng.integers(1_000, 50_000)}.50",
                    "0",
                    f"{rng.integers(1_000, 9_000)}",
                ],
                "created_at": [_when(30), _when(35), _when(60)],
                "closed_at": [_when(90), _when(80), ""],
                "won": ["true", "false", ""],
            }
        ),
        "content": pd.DataFrame(
            {
                "content_id": ["C001", "C002", "C003"],
                "title": ["Pricing guide", "Case study: Acme", "Webinar: churn"],
                "type": [pick(CONTENT_TYPES) for _ in range(3)],
                "topic": ["pricing", "retention", "churn"],
                "published_at": [_when(-30), _when(-20), _when(-10)],
            }
        ),
        "campaigns": pd.DataFrame(
            {
                "campaign_id": ["K001", "K002"],
                "name": ["Spring search", "Autumn webinar"],
                "channel": ["paid_search", "webinar"],
                "cost": [f"{rng.integers(500, 5_000)}", "1200.5"],
                "start": [_when(0), _when(40)],
                "end": [_when(60), _when(100)],
            }
        ),
        "interactions": pd.DataFrame(
            {
                "interaction_id": [f"I00{i}" for i in range(1, 9)],
                "occurred_at": [_when(d) for d in (11, 12, 16, 18, 21, 26, 31, 45)],
                "lead_id": ["L001", "L001", "L002", "L002", "L003", "L004", "", "L005"],
                "account_id": ["A001", "A001", "A002", "", "A001", "A003", "A003", ""],
                "channel": [pick(CHANNELS) for _ in range(6)] + ["sales", "email"],
                "type": [
                    "page_view",
                    "pricing_page_view",
                    "email_open",
                    "demo_request",
                    "content_download",
                    "webinar_attend",
                    "meeting",
                    "email_click",
                ],
                "content_id": ["", "C001", "", "", "C002", "C003", "", ""],
                "campaign_id": ["K001", "K001", "", "", "", "K002", "", ""],
            }
        ),
        "subscriptions": pd.DataFrame(
            {
                "subscription_id": ["S001", "S002"],
                "account_id": ["A001", "A002"],
                "plan": ["growth", "starter"],
                "mrr": [f"{rng.integers(100, 2_000)}", "99"],
                "seats": [str(rng.integers(1, 50)), "1"],
                "start": [_when(90), _when(100)],
                "renewal_date": [_when(455), _when(465)],
                "cancelled_at": ["", _when(300)],
            }
        ),
        "usage": pd.DataFrame(
            {
                "account_id": ["A001"] * 3 + ["A002"] * 3,
                "date": [(BASE + pd.Timedelta(weeks=w)).date().isoformat() for w in (14, 15, 16)]
                * 2,
                "active_users": [str(v) for v in rng.integers(0, 20, size=6)],
                "logins": [str(v) for v in rng.integers(0, 200, size=6)],
                "key_feature_events": [str(v) for v in rng.integers(0, 500, size=6)],
            }
        ),
        "tickets": pd.DataFrame(
            {
                "ticket_id": ["T001", "T002", "T003"],
                "account_id": ["A001", "A001", "A002"],
                "opened_at": [_when(120), _when(150), _when(200)],
                "closed_at": [_when(121), "", _when(203)],
                "priority": ["low", "urgent", "medium"],
                "satisfaction": ["4", "", "2.5"],
            }
        ),
    }


@pytest.fixture
def contract_tables() -> dict[str, pd.DataFrame]:
    """A fresh valid set of the nine contract tables (seed 0), safe to modify in a test."""
    return build_contract_tables(seed=0)


def _where(problem: Problem) -> tuple[str, str, int | None, str | None]:
    return problem.table, problem.source, problem.row, problem.column


def _rejected(frames: dict[str, pd.DataFrame]) -> ContractError:
    with pytest.raises(ContractError) as caught:
        validate_tables(frames, SOURCES, now=NOW)
    return caught.value


# --- what the contract accepts ------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_valid_tables_are_accepted_with_the_contract_types(seed):
    # given a consistent set of the nine tables, every value a string as read from CSV
    contract_tables = build_contract_tables(seed)

    # when it is validated
    typed = validate_tables(contract_tables, SOURCES, now=NOW)

    # then every table comes back whole, with exactly the contract's columns and dtypes
    assert list(typed) == list(TABLES)
    for name, spec in TABLES.items():
        assert len(typed[name]) == len(contract_tables[name])
        assert list(typed[name].columns) == spec.names
        for col in spec.columns:
            assert typed[name][col.name].dtype == pd.api.types.pandas_dtype(DTYPES[col.kind]), (
                f"{name}.{col.name}"
            )


def test_values_are_cast_and_blanks_become_missing(contract_tables):
    # given the factory's opportunities and tickets (won/lost/open; a blank satisfaction)
    # when validated
    typed = validate_tables(contract_tables, SOURCES, now=NOW)

    # then text becomes numbers, booleans and UTC timestamps, and blanks become missing
    opportunities = typed["opportunities"]
    assert opportunities["won"].tolist() == [True, False, pd.NA]
    assert opportunities["amount"].iloc[1] == pytest.approx(0.0)
    assert opportunities["closed_at"].iloc[0] == pd.Timestamp("2024-03-31", tz="UTC")
    assert opportunities["closed_at"].isna().tolist() == [False, False, True]
    assert opportunities["lead_id"].isna().tolist() == [False, False, True]
    assert typed["tickets"]["satisfaction"].tolist()[0] == pytest.approx(4.0)
    assert np.isnan(typed["tickets"]["satisfaction"].tolist()[1])
    assert typed["usage"]["date"].iloc[0] == pd.Timestamp("2024-04-08", tz="UTC")


def test_whitespace_is_a_missing_value(contract_tables):
    # given a nullable column holding only spaces and a required one holding spaces
    contract_tables["accounts"].loc[0, "industry"] = "   "
    contract_tables["accounts"].loc[1, "name"] = "  "

    # when validated, then the required one is reported missing at its row and column
    err = _rejected(contract_tables)
    assert [_where(p) for p in err.problems] == [("accounts", "accounts.csv", 2, "name")]
    assert "required but missing" in err.problems[0].message


def test_empty_tables_with_the_contract_columns_are_valid():
    # given every table with its header only, as an export of an empty CRM gives
    frames = {
        name: pd.DataFrame({c: pd.Series([], dtype=object) for c in spec.names})
        for name, spec in TABLES.items()
    }

    # when validated
    typed = validate_tables(frames, SOURCES, now=NOW)

    # then every table is empty with the contract's dtypes
    for name, spec in TABLES.items():
        assert len(typed[name]) == 0
        assert [str(d) for d in typed[name].dtypes] == [
            str(pd.api.types.pandas_dtype(DTYPES[c.kind])) for c in spec.columns
        ]


# --- how it names each class of bad input -------------------------------------------------------


def test_missing_required_column_is_named_with_its_file(contract_tables):
    # given opportunities without their amount column
    contract_tables["opportunities"] = contract_tables["opportunities"].drop(columns="amount")

    # when validated, then the file and column are named (no row: it is the header)
    err = _rejected(contract_tables)
    assert [_where(p) for p in err.problems] == [
        ("opportunities", "opportunities.csv", None, "amount")
    ]
    assert err.problems[0].message == "required column is missing"


def test_a_missing_nullable_column_is_filled_with_missing_values(contract_tables):
    # given leads without the optional job_title column
    contract_tables["leads"] = contract_tables["leads"].drop(columns="job_title")

    # when validated, then it is accepted and the column is all missing
    typed = validate_tables(contract_tables, SOURCES, now=NOW)
    assert typed["leads"]["job_title"].isna().all()


def test_wrong_type_is_named_by_row_and_column(contract_tables):
    # given an amount that is not a number in the second data row
    contract_tables["opportunities"].loc[1, "amount"] = "abc"

    # when validated
    err = _rejected(contract_tables)

    # then row 2 (1-based, after the header) and column amount are named, with the value
    assert [_where(p) for p in err.problems] == [
        ("opportunities", "opportunities.csv", 2, "amount")
    ]
    assert err.problems[0].message == "'abc' is not a number"
    assert (
        str(err.problems[0]) == "opportunities.csv, row 2, column 'amount': 'abc' is not a number"
    )


def test_unreadable_timestamp_is_named_by_row_and_column(contract_tables):
    # given a lead created on a day that does not exist
    contract_tables["leads"].loc[3, "created_at"] = "2024-02-30"

    # when validated, then its row and column are named
    err = _rejected(contract_tables)
    assert [_where(p) for p in err.problems] == [("leads", "leads.csv", 4, "created_at")]


def test_duplicate_id_names_every_row_holding_it(contract_tables):
    # given the third account reusing the first one's id
    contract_tables["accounts"].loc[2, "account_id"] = "A001"

    # when validated
    err = _rejected(contract_tables)

    # then both rows holding the id are named, in the key column
    assert [_where(p) for p in err.problems] == [
        ("accounts", "accounts.csv", 1, "account_id"),
        ("accounts", "accounts.csv", 3, "account_id"),
    ]
    assert err.problems[0].message == "duplicate id 'A001'"


def test_timestamp_in_the_future_is_rejected(contract_tables):
    # given an interaction dated after "now"
    contract_tables["interactions"].loc[4, "occurred_at"] = "2025-06-02T00:00:00Z"

    # when validated with now = 2025-06-01
    err = _rejected(contract_tables)

    # then row 5, column occurred_at is named as in the future
    assert [_where(p) for p in err.problems] == [
        ("interactions", "interactions.csv", 5, "occurred_at")
    ]
    assert "in the future" in err.problems[0].message


def test_renewal_date_may_lie_in_the_future(contract_tables):
    # given a subscription whose current term ends after "now"
    contract_tables["subscriptions"].loc[0, "renewal_date"] = "2025-12-31"

    # when validated, then it is accepted: a renewal date is a schedule, not an event
    typed = validate_tables(contract_tables, SOURCES, now=NOW)
    assert typed["subscriptions"]["renewal_date"].iloc[0] == pd.Timestamp("2025-12-31", tz="UTC")


def test_interaction_naming_an_unknown_lead_is_rejected(contract_tables):
    # given an interaction whose lead is not in leads
    contract_tables["interactions"].loc[3, "lead_id"] = "L999"

    # when validated
    err = _rejected(contract_tables)

    # then its row and the lead_id column are named, with the value and the table it misses
    assert [_where(p) for p in err.problems] == [("interactions", "interactions.csv", 4, "lead_id")]
    assert err.problems[0].message == "'L999' names no row of leads"


def test_interaction_without_lead_or_account_is_rejected(contract_tables):
    # given an interaction with neither a lead nor an account
    contract_tables["interactions"].loc[6, ["lead_id", "account_id"]] = ""

    # when validated, then its row is named
    err = _rejected(contract_tables)
    assert [_where(p) for p in err.problems] == [("interactions", "interactions.csv", 7, "lead_id")]


def test_unknown_channel_value_is_rejected(contract_tables):
    # given a channel the contract does not know
    contract_tables["interactions"].loc[0, "channel"] = "carrier_pigeon"

    # when validated
    err = _rejected(contract_tables)

    # then row 1, column channel is named with the value
    assert [_where(p) for p in err.problems] == [("interactions", "interactions.csv", 1, "channel")]
    assert err.problems[0].message.startswith("'carrier_pigeon' must be one of")


def test_end_before_start_is_rejected(contract_tables):
    # given a campaign that ends before it starts
    contract_tables["campaigns"].loc[1, "end"] = "2024-01-01T00:00:00Z"

    # when validated
    err = _rejected(contract_tables)

    # then row 2, column end is named as before start
    assert [_where(p) for p in err.problems] == [("campaigns", "campaigns.csv", 2, "end")]
    assert "is before start" in err.problems[0].message


def test_negative_amount_is_rejected(contract_tables):
    # given a negative deal amount
    contract_tables["opportunities"].loc[0, "amount"] = "-5"

    # when validated, then its row and column are named
    err = _rejected(contract_tables)
    assert [_where(p) for p in err.problems] == [
        ("opportunities", "opportunities.csv", 1, "amount")
    ]


def test_missing_table_is_named(contract_tables):
    # given no tickets table
    del contract_tables["tickets"]

    # when validated, then the table is named as missing
    err = _rejected(contract_tables)
    assert [(p.table, p.message) for p in err.problems] == [
        ("tickets", "required table is missing")
    ]


# --- reading a folder ---------------------------------------------------------------------------


def _write_csv_folder(folder: Path, frames: dict[str, pd.DataFrame]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, frame in frames.items():
        frame.to_csv(folder / f"{name}.csv", index=False)
    return folder


def test_load_folder_reads_csv_as_text_and_parquet_as_typed(tmp_path, contract_tables):
    # given a folder of CSV files, one of them replaced by Parquet
    folder = _write_csv_folder(tmp_path / "export", contract_tables)
    (folder / "usage.csv").unlink()
    contract_tables["usage"].to_parquet(folder / "usage.parquet")

    # when loaded
    frames, sources = load_folder(folder)

    # then CSV values stay text (blank = "") and each table names its file
    assert (
        frames["opportunities"]["amount"].tolist()
        == contract_tables["opportunities"]["amount"].tolist()
    )
    assert frames["opportunities"]["won"].tolist() == ["true", "false", ""]
    assert sources["usage"] == str(folder / "usage.parquet")
    assert sources["accounts"] == str(folder / "accounts.csv")
    assert validate_tables(frames, sources, now=NOW)["usage"].shape == (6, 5)


def test_load_folder_names_a_missing_file(tmp_path, contract_tables):
    # given a folder without leads
    folder = _write_csv_folder(tmp_path / "export", contract_tables)
    (folder / "leads.csv").unlink()

    # when loaded, then the missing file is named
    with pytest.raises(ContractError) as caught:
        load_folder(folder)
    assert [_where(p) for p in caught.value.problems] == [
        ("leads", str(folder / "leads.csv"), None, None)
    ]
    assert "file is missing" in caught.value.problems[0].message


@pytest.mark.parametrize(
    ("file", "content"),
    [
        ("accounts.parquet", b"PAR1 this is not parquet at all"),
        ("leads.csv", b"lead_id,source\n\xff\xfe\xfa\x00,web\n"),
        ("tickets.csv", b""),
        ("content.csv", b"content_id,title\nC1,one field too many,x\n"),
        ("campaigns.csv", b"campaign_id,name,name\nK1,a,b\n"),
    ],
    ids=[
        "bad-parquet",
        "undecodable-csv",
        "empty-file",
        "row-wider-than-header",
        "repeated-column",
    ],
)
def test_load_folder_names_an_unreadable_file(tmp_path, contract_tables, file, content):
    # given a folder where one table's file cannot be read
    folder = _write_csv_folder(tmp_path / "export", contract_tables)
    table = file.split(".")[0]
    (folder / f"{table}.csv").unlink()
    (folder / file).write_bytes(content)

    # when loaded, then that file is named as unreadable, with the reason
    with pytest.raises(ContractError) as caught:
        load_folder(folder)
    [problem] = caught.value.problems
    assert (problem.table, problem.source) == (table, str(folder / file))
    assert problem.message.startswith("could not be read: ")
    assert len(problem.message) > len("could not be read: ")


# --- mapping a Maven-style export ---------------------------------------------------------------


def test_account_id_is_a_stable_slug_of_the_name():
    # given company names with spaces, punctuation, accents and no ASCII at all
    # when turned into ids, then they are slugs, and hashed when nothing is left of the name
    assert account_id_for("Gekko & Co") == "gekko-co"
    assert account_id_for("  Acme Corporation ") == "acme-corporation"
    assert account_id_for("Société Générale") == "societe-generale"
    assert account_id_for("株式会社") == account_id_for("株式会社")
    assert account_id_for("株式会社").startswith("account-")
    assert len(account_id_for("株式会社")) == len("account-") + 12


def test_employee_band_edges_follow_the_contract():
    # given head counts at each band's edges
    counts = pd.Series([1, 10, 11, 50, 51, 200, 201, 1000, 1001, 5000, 5001, 34288, np.nan])

    # when banded, then upper bounds are inclusive and 5000+ means more than 5000
    assert employee_band(counts).tolist() == [
        "1-10",
        "1-10",
        "11-50",
        "11-50",
        "51-200",
        "51-200",
        "201-1000",
        "201-1000",
        "1001-5000",
        "1001-5000",
        "5000+",
        "5000+",
        pd.NA,
    ]


MAVEN_ACCOUNTS = """account,sector,year_established,revenue,employees,office_location,subsidiary_of
Acme Corporation,technolgy,1996,1100.04,2822,United States,
Gekko & Co,retail,2010,10.5,9,Kenya,Acme Corporation
Blank Co,,2001,1,,,
"""
MAVEN_PIPELINE = """\
opportunity_id,sales_agent,product,account,deal_stage,engage_date,close_date,close_value
W1,Ann,GTX Pro,Acme Corporation,Won,2016-10-20,2017-03-01,1054
L1,Ann,MG Special,Gekko & Co,Lost,2016-11-02,2017-01-05,0
E1,Bob,GTX Basic,Gekko & Co,Engaging,2017-06-01,,
N1,Bob,GTX Basic,,Engaging,2017-07-01,,
P1,Bob,Unknown Product,Acme Corporation,Prospecting,,,
P2,Bob,GTX Basic,,Prospecting,,,
"""


def _maven_export(
    folder: Path, accounts: str = MAVEN_ACCOUNTS, pipeline: str = MAVEN_PIPELINE
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "accounts.csv").write_text(accounts)
    (folder / "sales_pipeline.csv").write_text(pipeline)
    return folder


def test_map_maven_maps_accounts(tmp_path):
    # given a small Maven-style export
    export = map_maven(_maven_export(tmp_path / "maven"))

    # when validated, then accounts carry slug ids, sector, band, location and founding year
    accounts = validate_tables(export.tables, export.sources, now=NOW)["accounts"]
    assert accounts["account_id"].tolist() == ["acme-corporation", "gekko-co", "blank-co"]
    assert accounts["industry"].tolist() == ["technolgy", "retail", pd.NA]
    assert accounts["employee_band"].tolist() == ["1001-5000", "1-10", pd.NA]
    assert accounts["region"].tolist() == ["United States", "Kenya", pd.NA]
    assert accounts["created_at"].tolist() == [
        pd.Timestamp("1996-01-01", tz="UTC"),
        pd.Timestamp("2010-01-01", tz="UTC"),
        pd.Timestamp("2001-01-01", tz="UTC"),
    ]


def test_map_maven_maps_the_pipeline_and_counts_what_it_skips(tmp_path):
    # given a pipeline with won, lost, engaging and prospecting deals, two without an account
    export = map_maven(_maven_export(tmp_path / "maven"))

    # when validated
    typed = validate_tables(export.tables, export.sources, now=NOW)
    opportunities = typed["opportunities"].set_index("opportunity_id")

    # then the rows without an account are skipped and counted, the rest mapped by the rules
    assert export.report == {
        "pipeline_rows": 6,
        "skipped_no_account": 2,
        "dated_by_close_date": 0,
        "dated_at_export": 1,
    }
    assert opportunities.index.tolist() == ["W1", "L1", "E1", "P1"]
    assert opportunities["stage"].tolist() == [
        "closed_won",
        "closed_lost",
        "qualification",
        "prospecting",
    ]
    assert opportunities["won"].tolist() == [True, False, pd.NA, pd.NA]
    assert opportunities["amount"].tolist() == pytest.approx([1054.0, 0.0, 0.0, 0.0])
    assert opportunities["account_id"].tolist() == [
        "acme-corporation",
        "gekko-co",
        "gekko-co",
        "acme-corporation",
    ]
    assert opportunities.loc["W1", "created_at"] == pd.Timestamp("2016-10-20", tz="UTC")
    assert opportunities.loc["W1", "closed_at"] == pd.Timestamp("2017-03-01", tz="UTC")
    assert pd.isna(opportunities.loc["E1", "closed_at"])
    # a deal never engaged is dated at the export's date: its latest engage or close date
    assert opportunities.loc["P1", "created_at"] == pd.Timestamp("2017-07-01", tz="UTC")
    assert export.source_rows["opportunities"].tolist() == [1, 2, 3, 5]


def test_map_maven_logs_one_sales_meeting_per_engaged_deal(tmp_path):
    # given the export above
    export = map_maven(_maven_export(tmp_path / "maven"))

    # when validated
    interactions = validate_tables(export.tables, export.sources, now=NOW)["interactions"]

    # then each engaged deal with an account is one account-level sales meeting at engage_date
    assert interactions["interaction_id"].tolist() == ["W1-engaged", "L1-engaged", "E1-engaged"]
    assert interactions["account_id"].tolist() == ["acme-corporation", "gekko-co", "gekko-co"]
    assert interactions["lead_id"].isna().all()
    assert set(interactions["channel"]) == {"sales"}
    assert set(interactions["type"]) == {"meeting"}
    assert interactions["occurred_at"].tolist() == [
        pd.Timestamp(d, tz="UTC") for d in ("2016-10-20", "2016-11-02", "2017-06-01")
    ]
    for name in ("leads", "content", "campaigns", "subscriptions", "usage", "tickets"):
        assert export.tables[name].empty
        assert list(export.tables[name].columns) == TABLES[name].names


@pytest.mark.parametrize(
    ("accounts", "pipeline", "expected"),
    [
        (
            MAVEN_ACCOUNTS.replace("sector,", "industry,", 1),
            MAVEN_PIPELINE,
            ("accounts", "accounts.csv", None, "sector"),
        ),
        (
            MAVEN_ACCOUNTS,
            MAVEN_PIPELINE.replace("Lost", "Stalled"),
            ("opportunities", "sales_pipeline.csv", 2, "deal_stage"),
        ),
        (
            MAVEN_ACCOUNTS,
            MAVEN_PIPELINE.replace(",Gekko & Co,Lost", ",Gekko Ltd,Lost"),
            ("opportunities", "sales_pipeline.csv", 2, "account"),
        ),
        (
            MAVEN_ACCOUNTS.replace("2010", "twenty ten"),
            MAVEN_PIPELINE,
            ("accounts", "accounts.csv", 2, "year_established"),
        ),
        (
            MAVEN_ACCOUNTS + "ACME corporation,retail,1990,1,5,Peru,\n",
            MAVEN_PIPELINE,
            ("accounts", "accounts.csv", 4, "account"),
        ),
    ],
    ids=["missing-column", "unknown-stage", "unknown-account", "bad-year", "duplicate-account"],
)
def test_map_maven_names_file_row_and_column_of_what_it_cannot_map(
    tmp_path, accounts, pipeline, expected
):
    # given an export with one problem
    folder = _maven_export(tmp_path / "maven", accounts, pipeline)

    # when mapped, then the problem is named in the export's own terms
    with pytest.raises(ContractError) as caught:
        map_maven(folder)
    table, file, row, column = expected
    assert [_where(p) for p in caught.value.problems] == [(table, str(folder / file), row, column)]


def test_the_contract_doc_lists_every_table_column_and_allowed_value():
    # given the contract's documentation
    doc = (Path(__file__).parents[2] / "docs" / "data-contract.md").read_text()

    # when each table's section is read, then it lists every column with its required flag and
    # every allowed value, so the doc cannot drift from contract.py unnoticed
    for name, spec in TABLES.items():
        assert f"### `{name}`" in doc, name
        section = doc.split(f"### `{name}`", 1)[1].split("\n### ", 1)[0].split("\n## ", 1)[0]
        for col in spec.columns:
            row = next(
                line for line in section.splitlines() if line.startswith(f"| `{col.name}` |")
            )
            assert f"| {'no' if col.nullable else 'yes'} |" in row, (name, col.name)
            for value in col.allowed or ():
                assert f"`{value}`" in row, (name, col.name, value)
