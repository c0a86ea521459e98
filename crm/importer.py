"""Importing CRM exports into the contract's raw tables, all or nothing.

Two shapes of export are read:

* a folder holding one file per contract table (``accounts.csv`` or ``accounts.parquet``, ...),
  read by :func:`load_folder` and imported by :func:`import_folder`;
* a Maven-style CRM export (``accounts.csv``, ``sales_pipeline.csv``, ...), mapped onto the
  contract by :func:`map_maven` and imported by :func:`import_maven`.

Both validate every table with :func:`crm.contract.validate_tables` before writing anything,
then write all tables at once with :func:`crm.io.write_tables`: on any problem the raw folder
is left exactly as it was. The mapping rules are documented in ``docs/data-contract.md``.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from crm.contract import (
    DTYPES,
    EMPLOYEE_BANDS,
    IDENTITY_COLUMNS,
    TABLES,
    ContractError,
    Problem,
    validate_tables,
)
from crm.exports import map_export
from crm.exports.common import import_mapped, protected
from crm.io import read_file, write_tables

SUFFIXES: tuple[str, ...] = (".csv", ".parquet")

MAVEN_COLUMNS: dict[str, tuple[str, ...]] = {
    "accounts.csv": ("account", "sector", "year_established", "employees", "office_location"),
    "sales_pipeline.csv": (
        "opportunity_id",
        "account",
        "deal_stage",
        "engage_date",
        "close_date",
        "close_value",
    ),
}
MAVEN_STAGES: dict[str, str] = {
    "prospecting": "prospecting",
    "engaging": "qualification",
    "won": "closed_won",
    "lost": "closed_lost",
}
# Contract column → the Maven column it is mapped from, so errors name the user's own file.
MAVEN_SOURCE_COLUMNS: dict[str, dict[str, str]] = {
    "accounts": {
        "account_id": "account",
        "name": "account",
        "industry": "sector",
        "employee_band": "employees",
        "region": "office_location",
        "created_at": "year_established",
    },
    "opportunities": {
        "opportunity_id": "opportunity_id",
        "account_id": "account",
        "stage": "deal_stage",
        "amount": "close_value",
        "created_at": "engage_date",
        "closed_at": "close_date",
        "won": "deal_stage",
    },
    "interactions": {
        "interaction_id": "opportunity_id",
        "occurred_at": "engage_date",
        "account_id": "account",
    },
}
MAVEN_TABLE_FILES: dict[str, str] = {
    "accounts": "accounts.csv",
    "opportunities": "sales_pipeline.csv",
    "interactions": "sales_pipeline.csv",
}


@dataclass(frozen=True)
class MavenExport:
    """A Maven-style export mapped onto the contract, with where each row came from.

    Attributes:
        tables: contract table name → frame (raw values, not yet validated); every contract table
            is present, the ones the export does not have are empty with the contract's columns.
        sources: contract table name → the export file its rows came from.
        source_rows: contract table name → for each mapped row, its 1-based data row in the
            source file (rows are skipped, so positions differ).
        report: counts of what the mapping did: ``pipeline_rows`` read, ``skipped_no_account``
            (pipeline rows without an account, not imported), ``dated_by_close_date`` and
            ``dated_at_export`` (opportunities whose created_at is not their engage_date).
    """

    tables: dict[str, pd.DataFrame]
    sources: dict[str, str]
    source_rows: dict[str, np.ndarray]
    report: dict[str, int] = field(default_factory=dict)


def load_folder(folder: Path) -> tuple[dict[str, pd.DataFrame], dict[str, str]]:
    """Read every contract table from ``<folder>/<table>.csv`` or ``<folder>/<table>.parquet``.

    CSV files are read as text (blanks stay blank strings) so that the contract's coercion alone
    decides types and missing values. Files that are not contract tables are ignored.

    Args:
        folder: the folder holding the export.

    Returns:
        table name → raw frame, and table name → the file it was read from.

    Raises:
        ContractError: the folder does not exist, or a table's file is missing, ambiguous (both
            CSV and Parquet) or could not be read; naming every such file.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ContractError([Problem("", str(folder), None, None, "is not a folder")])
    frames: dict[str, pd.DataFrame] = {}
    sources: dict[str, str] = {}
    problems: list[Problem] = []
    for name in TABLES:
        found = [folder / f"{name}{suffix}" for suffix in SUFFIXES]
        found = [path for path in found if path.is_file()]
        if not found:
            problems.append(
                Problem(
                    name,
                    str(folder / f"{name}.csv"),
                    None,
                    None,
                    f"file is missing: expected {name}.csv or {name}.parquet",
                )
            )
            continue
        if len(found) > 1:
            problems.append(
                Problem(
                    name,
                    str(found[0]),
                    None,
                    None,
                    f"is ambiguous: both {found[0].name} and {found[1].name} exist; keep one",
                )
            )
            continue
        try:
            frames[name] = read_file(found[0], name)
        except ContractError as err:
            problems.extend(err.problems)
            continue
        sources[name] = str(found[0])
    if problems:
        raise ContractError(problems)
    return frames, sources


def _write_validated(
    frames: Mapping[str, pd.DataFrame],
    sources: Mapping[str, str],
    raw_dir: Path,
    now: pd.Timestamp | None,
    lead_identity: str = "names",
) -> dict[str, int]:
    typed = validate_tables(protected(frames, lead_identity), sources, now=now)
    # an export with no source CRM ids (or no lead identities) is written as the simulator
    # writes its tables: without the columns, rather than with empty ones
    absent_when_empty = ("source_id", *(c.name for c in IDENTITY_COLUMNS))
    typed = {
        name: frame.drop(
            columns=[c for c in absent_when_empty if c in frame and frame[c].isna().all()]
        )
        for name, frame in typed.items()
    }
    write_tables(typed, Path(raw_dir))
    return {name: len(frame) for name, frame in typed.items()}


def import_folder(
    folder: Path, raw_dir: Path, now: pd.Timestamp | None = None, lead_identity: str = "names"
) -> dict[str, int]:
    """Validate a folder of contract tables and write them to ``raw_dir``, all or nothing.

    Args:
        folder: the folder holding one CSV or Parquet file per contract table.
        raw_dir: where the contract's Parquet tables live (``settings.raw_dir``).
        now: timestamps after this are rejected (defaults to the current time).
        lead_identity: the privacy setting for leads' names, e-mails and phones
            (:func:`crm.identity.protect_leads`; a leads file may give ``email`` and ``phone``,
            which are stored only as their hashes).

    Returns:
        table name → number of rows imported.

    Raises:
        ContractError: naming file, row and column; ``raw_dir`` is then left as it was.
    """
    frames, sources = load_folder(folder)
    return _write_validated(frames, sources, raw_dir, now, lead_identity)


def account_id_for(name: str) -> str:
    """A stable account id from a company name: its ASCII slug (``"Gekko & Co"`` → ``gekko-co``).

    Names with no ASCII letter or digit get ``account-`` and the first 12 hex digits of the
    SHA-256 of the stripped name.
    """
    text = unicodedata.normalize("NFKD", name.strip()).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    if slug:
        return slug
    return "account-" + hashlib.sha256(name.strip().encode()).hexdigest()[:12]


def _band_uppers() -> list[float]:
    """Upper bound (inclusive) of each employee band: ``"11-50"`` → 50, ``"5000+"`` → inf."""
    return [
        float("inf") if band.endswith("+") else float(band.split("-")[1]) for band in EMPLOYEE_BANDS
    ]


def employee_band(employees: pd.Series) -> pd.Series:
    """The contract's employee band for each head count (NA stays NA)."""
    uppers = _band_uppers()
    out = pd.Series(pd.NA, index=employees.index, dtype="string")
    known = employees.notna()
    codes = np.searchsorted(uppers, employees[known].to_numpy(dtype=float), side="left")
    out[known] = np.asarray(EMPLOYEE_BANDS, dtype=object)[codes]
    return out


def _empty(name: str) -> pd.DataFrame:
    spec = TABLES[name]
    return pd.DataFrame({c.name: pd.Series([], dtype=DTYPES[c.kind]) for c in spec.columns})


def _read_maven_file(folder: Path, file: str) -> pd.DataFrame:
    path = folder / file
    table = file.removesuffix(".csv")
    if not path.is_file():
        raise ContractError(
            [Problem(table, str(path), None, None, "file is missing from the Maven export")]
        )
    frame = read_file(path, table)
    frame.columns = [str(c).strip() for c in frame.columns]
    missing = [c for c in MAVEN_COLUMNS[file] if c not in frame.columns]
    if missing:
        raise ContractError(
            [
                Problem(table, str(path), None, column, "required column is missing")
                for column in missing
            ]
        )
    return frame.reset_index(drop=True)


def _rows(mask: pd.Series, limit: int = 5) -> list[int]:
    """1-based rows where ``mask`` holds, the first ``limit`` only (as the contract reports)."""
    return [int(i) + 1 for i in np.flatnonzero(mask.to_numpy())[:limit]]


def _map_accounts(frame: pd.DataFrame, path: str) -> pd.DataFrame:
    problems: list[Problem] = []
    name = frame["account"].str.strip()
    for row in _rows(name == ""):
        problems.append(Problem("accounts", path, row, "account", "value is required but missing"))
    account_id = name.map(account_id_for)
    first_row: dict[str, int] = {}
    for row, (company, key) in enumerate(zip(name, account_id, strict=True), start=1):
        if company == "":
            continue
        if key in first_row:
            problems.append(
                Problem(
                    "accounts",
                    path,
                    row,
                    "account",
                    f"duplicate account {company!r}: its id {key!r} is also row {first_row[key]}'s",
                )
            )
        else:
            first_row[key] = row

    year_text = frame["year_established"].str.strip()
    year = pd.to_numeric(year_text, errors="coerce")
    bad_year = (year_text != "") & (year.isna() | (year != np.floor(year)) | (year < 1))
    for row in _rows(year_text == ""):
        problems.append(
            Problem("accounts", path, row, "year_established", "value is required but missing")
        )
    for row in _rows(bad_year):
        problems.append(
            Problem(
                "accounts",
                path,
                row,
                "year_established",
                f"{year_text.iloc[row - 1]!r} is not a year",
            )
        )

    employees_text = frame["employees"].str.strip()
    employees = pd.to_numeric(employees_text, errors="coerce")
    bad_employees = (employees_text != "") & (employees.isna() | (employees < 1))
    for row in _rows(bad_employees):
        problems.append(
            Problem(
                "accounts",
                path,
                row,
                "employees",
                f"{employees_text.iloc[row - 1]!r} is not a head count (>= 1)",
            )
        )
    if problems:
        raise ContractError(problems)

    created_at = year.map(lambda y: f"{int(y):04d}-01-01T00:00:00Z", na_action="ignore")
    return pd.DataFrame(
        {
            "account_id": account_id,
            "name": name,
            "industry": frame["sector"],
            "employee_band": employee_band(employees),
            "region": frame["office_location"],
            "created_at": created_at,
        }
    )


def map_maven(folder: Path) -> MavenExport:
    """Map a Maven-style CRM export onto the contract's tables.

    Reads ``accounts.csv`` and ``sales_pipeline.csv`` (``products.csv`` and ``sales_teams.csv``
    describe products and agents, which the contract does not hold, and are not needed). The
    rules, documented in ``docs/data-contract.md``:

    * accounts: ``account_id`` is the slug of the company name (:func:`account_id_for`),
      ``industry`` = sector, ``employee_band`` from employees, ``region`` = office_location,
      ``created_at`` = 1 January of year_established, UTC.
    * opportunities, one per pipeline row: stage Prospecting → prospecting, Engaging →
      qualification, Won → closed_won, Lost → closed_lost; ``amount`` = close_value (blank → 0
      for open deals); ``created_at`` = engage_date, else close_date, else the export's date (the
      latest engage or close date in the file: a deal never engaged existed by then);
      ``closed_at`` = close_date for closed deals; ``won`` true/false when closed, null while open.
      Rows without an account are skipped and counted in ``report["skipped_no_account"]``.
    * interactions: one account-level ``sales``/``meeting`` touch per engaged opportunity, at its
      engage_date, id ``<opportunity_id>-engaged``, with no lead.
    * leads, content, campaigns, subscriptions, usage and tickets: empty.

    Args:
        folder: the folder holding the export.

    Returns:
        the mapped tables, where their rows came from and counts of what the mapping did.

    Raises:
        ContractError: a file or column is missing, or a value cannot be mapped (unknown stage,
            an account that names no row of accounts.csv, ...), naming file, row and column.
    """
    folder = Path(folder)
    accounts_path = str(folder / "accounts.csv")
    pipeline_path = str(folder / "sales_pipeline.csv")
    read: dict[str, pd.DataFrame] = {}
    problems: list[Problem] = []
    for file in MAVEN_COLUMNS:
        try:
            read[file] = _read_maven_file(folder, file)
        except ContractError as err:
            problems.extend(err.problems)
    if problems:
        raise ContractError(problems)
    accounts = _map_accounts(read["accounts.csv"], accounts_path)
    pipeline = read["sales_pipeline.csv"]

    deal_stage = pipeline["deal_stage"].str.strip()
    stage = deal_stage.str.lower().map(MAVEN_STAGES)
    for row in _rows(stage.isna()):
        problems.append(
            Problem(
                "opportunities",
                pipeline_path,
                row,
                "deal_stage",
                f"{deal_stage.iloc[row - 1]!r} is not one of Prospecting, Engaging, Won, Lost",
            )
        )
    account_name = pipeline["account"].str.strip()
    no_account = account_name == ""
    account_id = account_name.map(account_id_for).where(~no_account)
    unknown = ~no_account & ~account_id.isin(accounts["account_id"])
    for row in _rows(unknown):
        problems.append(
            Problem(
                "opportunities",
                pipeline_path,
                row,
                "account",
                f"{account_name.iloc[row - 1]!r} names no row of accounts.csv",
            )
        )

    engage = pipeline["engage_date"].str.strip()
    close = pipeline["close_date"].str.strip()
    dates = pd.to_datetime(
        pd.concat([engage, close]).replace("", None), utc=True, errors="coerce", format="mixed"
    )
    undated = (engage == "") & (close == "")
    export_date = dates.max()
    if undated.any() and pd.isna(export_date):
        for row in _rows(undated & ~no_account):
            problems.append(
                Problem(
                    "opportunities",
                    pipeline_path,
                    row,
                    "engage_date",
                    "no engage_date or close_date anywhere in the file to date this deal by",
                )
            )
    if problems:
        raise ContractError(problems)

    keep = ~no_account
    rows = np.flatnonzero(keep.to_numpy()) + 1
    closed = stage.isin(["closed_won", "closed_lost"])
    close_value = pipeline["close_value"].str.strip()
    created_at = engage.where(engage != "", close)
    if undated.any():
        created_at = created_at.where(~undated, export_date.isoformat())
    opportunities = pd.DataFrame(
        {
            "opportunity_id": pipeline["opportunity_id"],
            "account_id": account_id,
            "lead_id": pd.Series(pd.NA, index=pipeline.index, dtype="string"),
            "stage": stage,
            "amount": close_value.where((close_value != "") | closed, "0"),
            "created_at": created_at,
            "closed_at": close.where(closed, ""),
            "won": (stage == "closed_won").astype("boolean").where(closed, pd.NA),
        }
    )[keep].reset_index(drop=True)

    engaged = keep & (engage != "")
    interactions = pd.DataFrame(
        {
            "interaction_id": pipeline["opportunity_id"].str.strip() + "-engaged",
            "occurred_at": engage,
            "lead_id": pd.Series(pd.NA, index=pipeline.index, dtype="string"),
            "account_id": account_id,
            "channel": "sales",
            "type": "meeting",
            "content_id": pd.Series(pd.NA, index=pipeline.index, dtype="string"),
            "campaign_id": pd.Series(pd.NA, index=pipeline.index, dtype="string"),
        }
    )[engaged].reset_index(drop=True)

    tables = {name: _empty(name) for name in TABLES}
    tables.update(accounts=accounts, opportunities=opportunities, interactions=interactions)
    return MavenExport(
        tables=tables,
        sources={
            "accounts": accounts_path,
            "opportunities": pipeline_path,
            "interactions": pipeline_path,
        },
        source_rows={
            "accounts": np.arange(1, len(accounts) + 1),
            "opportunities": rows,
            "interactions": np.flatnonzero(engaged.to_numpy()) + 1,
        },
        report={
            "pipeline_rows": len(pipeline),
            "skipped_no_account": int(no_account.sum()),
            "dated_by_close_date": int((keep & (engage == "") & (close != "")).sum()),
            "dated_at_export": int((keep & undated).sum()),
        },
    )


def _in_source_terms(problem: Problem, export: MavenExport) -> Problem:
    """Re-address a problem found in a mapped table to the export file, row and column."""
    table = problem.table
    if table not in export.source_rows:
        return problem
    row = problem.row
    if row is not None and 0 < row <= len(export.source_rows[table]):
        row = int(export.source_rows[table][row - 1])
    column = problem.column
    message = problem.message
    if column is not None:
        message = f"{message} (as {table}.{column})"
        column = MAVEN_SOURCE_COLUMNS[table].get(column, column)
    return Problem(table, export.sources[table], row, column, message)


def import_maven(folder: Path, raw_dir: Path, now: pd.Timestamp | None = None) -> dict[str, int]:
    """Map a Maven-style export onto the contract, validate it and write it, all or nothing.

    Args:
        folder: the folder holding ``accounts.csv`` and ``sales_pipeline.csv``.
        raw_dir: where the contract's Parquet tables live (``settings.raw_dir``).
        now: timestamps after this are rejected (defaults to the current time).

    Returns:
        table name → number of rows imported, followed by the mapping's report
        (``pipeline_rows``, ``skipped_no_account``, ``dated_by_close_date``, ``dated_at_export``).

    Raises:
        ContractError: naming the export's file, row and column; ``raw_dir`` is then left as it
            was.
    """
    export = map_maven(folder)
    try:
        counts = _write_validated(export.tables, export.sources, raw_dir, now)
    except ContractError as err:
        raise ContractError([_in_source_terms(p, export) for p in err.problems]) from None
    return {**counts, **export.report}


def import_export(
    folder: Path,
    raw_dir: Path,
    format_name: str = "contract",
    mapping_file: Path | None = None,
    now: pd.Timestamp | None = None,
    lead_identity: str = "names",
) -> dict[str, int]:
    """Import an export of any format (:data:`crm.exports.FORMATS`) into ``raw_dir``, all or
    nothing.

    ``contract``: one file per contract table (:func:`import_folder`); ``maven``: a Maven-style
    export (:func:`import_maven`); ``salesforce`` and ``hubspot``: the CRM's own export, mapped
    by ``crm/exports/<format>.yaml`` with ``mapping_file`` merged over it. ``lead_identity`` is
    the privacy setting applied to leads' identities (:func:`crm.identity.protect_leads`).

    Raises:
        ContractError: naming the export's file, row and field; ``raw_dir`` is left as it was.
    """
    if format_name == "contract":
        return import_folder(folder, raw_dir, now, lead_identity)
    if format_name == "maven":
        return import_maven(folder, raw_dir, now)
    return import_mapped(map_export(format_name, folder, mapping_file), raw_dir, now, lead_identity)
