"""``crm-intel import`` through the real CLI: all or nothing, and every refusal names where."""

from __future__ import annotations

import csv
import json
import shutil
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner, Result

from crm.contract import TABLES
from crm.io import read_tables
from crm_intel.cli import app

pytestmark = pytest.mark.integration

MAVEN = Path(__file__).parents[2].parent / "shared" / "datasets" / "maven_crm"


def _import(data_dir: Path, *args: str) -> Result:
    return CliRunner().invoke(app, ["import", *args], env={"CRM_INTEL_DATA_DIR": str(data_dir)})


def _last_json(result: Result) -> dict:
    return json.loads(result.stdout.strip().splitlines()[-1])


def _files(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (hidden ones too) → its bytes."""
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


@pytest.fixture(scope="module")
def sim_tables(small_data_dir: Path) -> dict[str, pd.DataFrame]:
    """The small simulated CRM's contract tables, as typed frames."""
    return read_tables(small_data_dir / "raw")


@pytest.fixture
def export(tmp_path: Path, small_data_dir: Path) -> Callable[..., Path]:
    """Build an export folder: the simulated Parquet tables, with chosen tables as edited CSV."""

    def build(name: str = "export", csv_tables: dict[str, pd.DataFrame] | None = None) -> Path:
        folder = tmp_path / name
        folder.mkdir()
        for table, frame in (csv_tables or {}).items():
            frame.to_csv(folder / f"{table}.csv", index=False)
        for table in TABLES:
            if not (folder / f"{table}.csv").exists():
                shutil.copy(small_data_dir / "raw" / f"{table}.parquet", folder)
        return folder

    return build


@pytest.fixture
def imported(tmp_path: Path, small_data_dir: Path) -> tuple[Path, dict[str, bytes]]:
    """A data dir holding a successful import, and the snapshot of its files."""
    data_dir = tmp_path / "data"
    result = _import(data_dir, "--from", str(small_data_dir / "raw"))
    assert result.exit_code == 0, result.output
    snapshot = _files(data_dir)
    assert {f"raw/{t}.parquet" for t in TABLES} == set(snapshot)
    return data_dir, snapshot


def test_a_valid_csv_folder_imports_and_reads_back_equal(tmp_path, sim_tables, export):
    # given the simulated CRM exported as one CSV per table
    folder = export("csv", dict(sim_tables))
    data_dir = tmp_path / "data"

    # when imported with --json
    result = _import(data_dir, "--from", str(folder), "--json")

    # then it succeeds, the last line is the JSON summary, and the raw tables equal the source
    assert result.exit_code == 0, result.output
    summary = _last_json(result)
    assert summary["tables"] == {name: len(frame) for name, frame in sim_tables.items()}
    assert summary["raw_dir"] == str(data_dir.resolve() / "raw")
    assert summary["format"] == "contract"
    assert summary["report"] == {}
    assert "interactions" in result.stderr and f"{len(sim_tables['interactions']):,}" in (
        result.stderr
    )
    written = read_tables(data_dir / "raw")
    for name, frame in sim_tables.items():
        pd.testing.assert_frame_equal(written[name], frame, check_exact=True, obj=name)


def _edited(
    sim_tables: dict[str, pd.DataFrame], table: str, edit: Callable[[pd.DataFrame], pd.DataFrame]
) -> dict[str, pd.DataFrame]:
    return {table: edit(sim_tables[table].astype(object).copy())}


def _first_with(frame: pd.DataFrame, column: str) -> int:
    """Position of the first row with a value in ``column``."""
    return int(frame[column].notna().to_numpy().argmax())


def _set(frame: pd.DataFrame, row: int, column: str, value: object) -> pd.DataFrame:
    frame.iloc[row, frame.columns.get_loc(column)] = value
    return frame


BAD_INPUTS: dict[str, tuple[str, Callable[[pd.DataFrame], pd.DataFrame], list[str]]] = {
    "missing-required-column": (
        "opportunities",
        lambda f: f.drop(columns="amount"),
        ["opportunities.csv, column 'amount': required column is missing"],
    ),
    "wrong-type": (
        "opportunities",
        lambda f: _set(f, 2, "amount", "abc"),
        ["opportunities.csv, row 3, column 'amount': 'abc' is not a number"],
    ),
    "duplicate-id": (
        "accounts",
        lambda f: _set(f, 4, "account_id", f["account_id"].iloc[1]),
        [
            "accounts.csv, row 2, column 'account_id': duplicate id",
            "accounts.csv, row 5, column 'account_id': duplicate id",
        ],
    ),
    "timestamp-in-the-future": (
        "interactions",
        lambda f: _set(f, 9, "occurred_at", "2099-01-01T00:00:00Z"),
        [
            "interactions.csv, row 10, column 'occurred_at': 2099-01-01 00:00:00+00:00 is in the "
            "future"
        ],
    ),
    "interaction-naming-an-unknown-lead": (
        "interactions",
        lambda f: _set(f, _first_with(f, "lead_id"), "lead_id", "no-such-lead"),
        ["column 'lead_id': 'no-such-lead' names no row of leads"],
    ),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_refused_naming_row_and_column_and_writes_nothing(
    case, sim_tables, export, imported
):
    # given a data dir holding an earlier import, and an export with one class of problem
    data_dir, before = imported
    table, edit, expected = BAD_INPUTS[case]
    folder = export(case, _edited(sim_tables, table, edit))

    # when imported
    result = _import(data_dir, "--from", str(folder), "--json")

    # then it is refused with exit code 2, naming file, row and column on stderr
    assert result.exit_code == 2, result.output
    for message in expected:
        assert f"{folder / table}.csv, " in result.stderr
        assert message in result.stderr, result.stderr
    assert "nothing was written" in result.stderr
    assert result.stdout == ""
    # and the data dir is byte for byte as it was (no temporary folder left behind either)
    assert _files(data_dir) == before
    assert sorted(p.name for p in data_dir.iterdir()) == ["raw"]


def test_the_unknown_lead_is_named_at_its_row(sim_tables, export, imported):
    # given an interaction naming an unknown lead at a known row
    data_dir, before = imported
    row = _first_with(sim_tables["interactions"], "lead_id")
    folder = export(
        "orphan",
        _edited(sim_tables, "interactions", lambda f: _set(f, row, "lead_id", "no-such-lead")),
    )

    # when imported, then that row is named
    result = _import(data_dir, "--from", str(folder))
    assert result.exit_code == 2
    assert f"interactions.csv, row {row + 1}, column 'lead_id'" in result.stderr
    assert _files(data_dir) == before


@pytest.mark.parametrize(
    ("file", "content"),
    [
        ("leads.parquet", b"PAR1\x00\x01 garbage, not parquet"),
        ("content.csv", b"content_id,title\n\xff\xfe\x81\x00,bad bytes\n"),
    ],
    ids=["garbage-parquet", "undecodable-csv"],
)
def test_an_unreadable_file_is_refused_naming_it_and_writes_nothing(
    file, content, export, imported
):
    # given a data dir holding an earlier import, and an export with one unreadable file
    data_dir, before = imported
    folder = export("unreadable")
    for suffix in (".csv", ".parquet"):
        (folder / file).with_suffix(suffix).unlink(missing_ok=True)
    (folder / file).write_bytes(content)

    # when imported
    result = _import(data_dir, "--from", str(folder))

    # then the file is named as unreadable, and nothing changed
    assert result.exit_code == 2, result.output
    assert f"{folder / file}: could not be read: " in result.stderr
    assert _files(data_dir) == before


def test_a_missing_file_is_refused_naming_it(export, imported):
    # given an export without its tickets
    data_dir, before = imported
    folder = export("no-tickets")
    (folder / "tickets.parquet").unlink()

    # when imported, then the missing file is named and nothing changed
    result = _import(data_dir, "--from", str(folder))
    assert result.exit_code == 2
    assert "tickets.csv: file is missing: expected tickets.csv or tickets.parquet" in (
        result.stderr
    )
    assert _files(data_dir) == before


@pytest.mark.parametrize("args", [[], ["--from", ".", "--maven", "."]], ids=["none", "both"])
def test_exactly_one_source_is_required(tmp_path, args):
    # given neither or both of --from and --maven
    # when run, then it is a usage error naming the options
    result = _import(tmp_path / "data", *args)
    assert result.exit_code == 2
    assert "give exactly one of --from FOLDER or --maven FOLDER" in result.stderr
    assert not (tmp_path / "data").exists()


# --- the Maven CRM export -----------------------------------------------------------------------


def _csv_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.skipif(not MAVEN.is_dir(), reason="the Maven CRM dataset is not present")
def test_the_maven_export_imports_with_its_counts_and_stages(tmp_path):
    # given the Maven CRM export, and its own counts read straight from the CSV files
    accounts = _csv_rows(MAVEN / "accounts.csv")
    pipeline = _csv_rows(MAVEN / "sales_pipeline.csv")
    with_account = [row for row in pipeline if row["account"].strip()]
    stages = {
        "Won": "closed_won",
        "Lost": "closed_lost",
        "Engaging": "qualification",
        "Prospecting": "prospecting",
    }

    # when imported
    data_dir = tmp_path / "data"
    result = _import(data_dir, "--maven", str(MAVEN), "--json")

    # then every account and every pipeline row with an account is imported; the rest counted
    assert result.exit_code == 0, result.output
    summary = _last_json(result)
    assert summary["format"] == "maven"
    assert summary["tables"]["accounts"] == len(accounts) == 85
    assert summary["tables"]["opportunities"] == len(with_account)
    assert summary["report"]["pipeline_rows"] == len(pipeline)
    assert summary["report"]["skipped_no_account"] == len(pipeline) - len(with_account)
    assert summary["tables"]["interactions"] == sum(1 for r in with_account if r["engage_date"])
    assert {
        summary["tables"][t]
        for t in ("leads", "content", "campaigns", "subscriptions", "usage", "tickets")
    } == {0}

    # and stages are mapped one for one, with the won rate of closed deals kept (~63 %)
    raw = read_tables(data_dir / "raw")
    opportunities = raw["opportunities"]
    assert Counter(opportunities["stage"]) == Counter(stages[r["deal_stage"]] for r in with_account)
    closed = opportunities[opportunities["stage"].isin(["closed_won", "closed_lost"])]
    assert closed["won"].astype(bool).mean() == pytest.approx(0.63, abs=0.01)
    assert closed["won"].notna().all()
    assert opportunities.loc[~opportunities.index.isin(closed.index), "won"].isna().all()
    assert closed["amount"][closed["won"].astype(bool)].sum() == pytest.approx(
        sum(float(r["close_value"]) for r in with_account if r["deal_stage"] == "Won")
    )
    assert set(opportunities["account_id"]) <= set(raw["accounts"]["account_id"])


@pytest.mark.skipif(not MAVEN.is_dir(), reason="the Maven CRM dataset is not present")
def test_a_maven_export_missing_a_column_is_refused_naming_file_and_column(tmp_path, imported):
    # given a data dir holding an earlier import and a Maven export without the deal_stage column
    data_dir, before = imported
    folder = tmp_path / "maven"
    folder.mkdir()
    shutil.copy(MAVEN / "accounts.csv", folder)
    pd.read_csv(MAVEN / "sales_pipeline.csv", dtype=str).drop(columns="deal_stage").to_csv(
        folder / "sales_pipeline.csv", index=False
    )

    # when imported, then the file and column are named and nothing changed
    result = _import(data_dir, "--maven", str(folder))
    assert result.exit_code == 2
    assert f"{folder / 'sales_pipeline.csv'}, column 'deal_stage': required column is missing" in (
        result.stderr
    )
    assert _files(data_dir) == before


@pytest.mark.skipif(not MAVEN.is_dir(), reason="the Maven CRM dataset is not present")
def test_a_maven_value_problem_is_named_in_the_export_terms(tmp_path):
    # given a Maven export whose third pipeline row closes before it was engaged
    folder = tmp_path / "maven"
    folder.mkdir()
    shutil.copy(MAVEN / "accounts.csv", folder)
    pipeline = pd.read_csv(MAVEN / "sales_pipeline.csv", dtype=str, keep_default_na=False)
    pipeline.loc[2, "close_date"] = "2015-01-01"
    pipeline.to_csv(folder / "sales_pipeline.csv", index=False)

    # when imported, then the problem names the export's file, row and column
    result = _import(tmp_path / "data", "--maven", str(folder))
    assert result.exit_code == 2
    assert (
        f"{folder / 'sales_pipeline.csv'}, row 3, column 'close_date': "
        "2015-01-01 00:00:00+00:00 is before created_at"
    ) in result.stderr
    assert "(as opportunities.closed_at)" in result.stderr


def test_a_data_directory_given_as_the_export_is_pointed_at_its_raw_folder(tmp_path, imported):
    # given the data directory `simulate --out X` writes (X/raw, X/truth), given as the export
    data_dir, _ = imported

    # when it is imported as if it were the export
    result = _import(tmp_path / "elsewhere", "--from", str(data_dir))

    # then the refusal points at X/raw instead of listing nine missing files alone
    assert result.exit_code == 2
    assert f"import --from {data_dir / 'raw'}" in result.stderr


@pytest.mark.parametrize(
    ("marker", "expected"),
    [("Lead.csv", "salesforce"), ("contacts.csv", "hubspot"), ("sales_pipeline.csv", "maven")],
)
def test_another_crms_export_given_as_the_contracts_gets_the_format_to_use(
    tmp_path, marker, expected
):
    # given a folder holding another CRM's export, imported in the contract's format
    folder = tmp_path / "export"
    folder.mkdir()
    (folder / marker).write_text("Id\n1\n")

    # when it is imported
    result = _import(tmp_path / "data", "--from", str(folder))

    # then the refusal names the format to add
    assert result.exit_code == 2
    assert f"add --format {expected}" in result.stderr


def test_an_unknown_format_is_refused_naming_the_formats(tmp_path, imported):
    data_dir, _ = imported
    result = _import(tmp_path / "data", "--from", str(data_dir / "raw"), "--format", "pipedrive")
    assert result.exit_code == 2
    assert "use one of contract, salesforce, hubspot, maven" in result.stderr


def test_a_salesforce_export_with_a_date_in_another_format_names_file_row_and_field(
    tmp_path, sim_tables
):
    # given a Salesforce export of the small CRM with one task dated the US way
    from crm.exports.salesforce_writer import write_salesforce

    export = tmp_path / "salesforce"
    write_salesforce(sim_tables, export)
    tasks = pd.read_csv(export / "Task.csv", dtype=str, keep_default_na=False)
    tasks.loc[6, "CreatedDate"] = "03/01/2024 09:30"
    tasks.to_csv(export / "Task.csv", index=False)

    # when it is imported through the CLI
    data_dir = tmp_path / "data"
    result = _import(data_dir, "--from", str(export), "--format", "salesforce")

    # then the problem names Task.csv, its row and field, and nothing was written
    assert result.exit_code == 2
    assert f"{export / 'Task.csv'}, row 7, column 'CreatedDate': '03/01/2024 09:30'" in (
        result.stderr
    )
    assert not data_dir.exists()

    # and the good export imports, recording where it came from
    tasks.loc[6, "CreatedDate"] = tasks.loc[5, "CreatedDate"]
    tasks.to_csv(export / "Task.csv", index=False)
    result = _import(data_dir, "--from", str(export), "--format", "salesforce", "--json")
    assert result.exit_code == 0, result.output
    assert _last_json(result)["format"] == "salesforce"
    assert (data_dir / "raw" / "source.json").is_file()


@pytest.mark.skipif(not MAVEN.is_dir(), reason="the Maven CRM data set is not on this machine")
def test_quickstart_stops_at_the_stage_that_fails_naming_it(tmp_path):
    # given an export that imports but has no leads (Maven's: accounts and deals only)
    data_dir = tmp_path / "data"

    # when quickstart runs on it
    result = CliRunner().invoke(
        app,
        ["quickstart", "--from", str(MAVEN), "--format", "maven", "--no-serve"],
        env={
            "CRM_INTEL_DATA_DIR": str(data_dir),
            "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/m.db",
        },
    )

    # then it imported, stopped at the features with their reason, and never said it was done
    assert result.exit_code == 2
    assert "── 1/8: import" in result.stderr and "table 'leads' is empty" in result.stderr
    assert "quickstart stopped at features" in result.stderr
    assert "done" not in result.stderr.split("stopped at features")[-1]
    assert (data_dir / "raw" / "accounts.parquet").is_file()
