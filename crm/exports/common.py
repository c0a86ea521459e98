"""What every CRM export format shares: its mapping file, reading its objects, mapping picklist
values and dates strictly, and importing the mapped tables all or nothing.

A format module (:mod:`crm.exports.salesforce`, :mod:`crm.exports.hubspot`) turns an export
folder into a :class:`MappedExport`; :func:`import_mapped` validates it against the contract and
writes it, re-addressing any problem to the export's own file, row and field.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from crm.contract import DTYPES, TABLES, ContractError, Problem, validate_tables
from crm.identity import protect_leads
from crm.io import read_file, write_tables
from crm.settings import deep_merged

# contract tables no CRM has a standard object for: companion files in the contract's own columns
COMPANIONS: tuple[str, ...] = ("content", "subscriptions", "usage")
SOURCE_FILE = "source.json"  # beside the raw tables: which CRM they came from
SKIP = "skip"  # a picklist value mapped to this drops its rows (counted in the report)


@dataclass(frozen=True)
class MappedExport:
    """A CRM export mapped onto the contract, with where each row came from.

    Attributes:
        format: the export's format (``salesforce``, ``hubspot``, ``maven``).
        tables: contract table → frame (raw values, not yet validated); every contract table is
            present, those the export lacks are empty with the contract's columns.
        sources: contract table → the export file its rows came from.
        source_rows: contract table → for each mapped row, its 1-based data row in that file.
        source_columns: contract table → contract column → the export field it came from, so
            that a problem found by the contract names the user's own field.
        row_files: contract table → each row's export file, for a table gathered from several
            files (interactions from tasks and events); else ``sources`` names the file.
        report: counts of what the mapping did (rows skipped, matched, ...).
        key_fields: contract table → the export's id field (``Id``, ``Record ID``), the key a
            write-back to that CRM uses.
    """

    format: str
    tables: dict[str, pd.DataFrame]
    sources: dict[str, str]
    source_rows: dict[str, np.ndarray]
    source_columns: dict[str, dict[str, str]] = field(default_factory=dict)
    row_files: dict[str, np.ndarray] = field(default_factory=dict)
    report: dict[str, int] = field(default_factory=dict)
    key_fields: dict[str, str] = field(default_factory=dict)


def load_mapping(format_name: str, override: Path | None = None) -> dict[str, Any]:
    """The format's mapping (``crm/exports/<format>.yaml``), with ``override``'s entries merged
    over it key by key: a user's file needs only what differs (one picklist value, one field).

    Raises:
        ContractError: the override cannot be read or is not a YAML mapping.
    """
    text = resources.files("crm.exports").joinpath(f"{format_name}.yaml").read_text("utf-8")
    mapping = yaml.safe_load(text)
    if override is None:
        return mapping
    try:
        extra = yaml.safe_load(Path(override).read_text("utf-8"))
    except (OSError, yaml.YAMLError) as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ContractError(
            [Problem("", str(override), None, None, f"mapping file could not be read: {reason}")]
        ) from None
    if not isinstance(extra, Mapping):
        raise ContractError(
            [Problem("", str(override), None, None, "mapping file must hold a YAML mapping")]
        )
    return deep_merged(mapping, extra)


def read_object(
    folder: Path, file: str, table: str, required: Iterable[str], optional: bool = False
) -> pd.DataFrame | None:
    """One export file, every value as text ("" when blank), checked for its required fields.

    Returns None for a missing ``optional`` file.

    Raises:
        ContractError: the file is missing (and not optional), unreadable, or lacks a required
            field, naming the file and the field.
    """
    path = Path(folder) / file
    if not path.is_file():
        if optional:
            return None
        raise ContractError([Problem(table, str(path), None, None, "file is missing")])
    frame = read_file(path, table)
    frame.columns = [str(c).strip() for c in frame.columns]
    missing = [name for name in required if name not in frame.columns]
    if missing:
        raise ContractError(
            [Problem(table, str(path), None, name, "required field is missing") for name in missing]
        )
    return frame.reset_index(drop=True).astype(object).fillna("").astype(str)


def text(frame: pd.DataFrame, name: str | None) -> pd.Series:
    """A field's stripped text; an absent (optional) field reads as all blank."""
    if name is None or name not in frame.columns:
        return pd.Series("", index=frame.index, dtype=object)
    return frame[name].astype(str).str.strip()


def first_rows(mask: pd.Series | np.ndarray, limit: int = 5) -> list[int]:
    """1-based rows where ``mask`` holds, the first ``limit`` only (as the contract reports)."""
    return [int(i) + 1 for i in np.flatnonzero(np.asarray(mask, dtype=bool))[:limit]]


def map_values(
    values: pd.Series,
    mapping: Mapping[str, str],
    *,
    table: str,
    path: str,
    field_name: str,
    mapping_key: str,
) -> tuple[pd.Series, list[Problem]]:
    """Picklist values → contract values by the mapping file's ``mapping_key`` section.

    Matching ignores case and surrounding spaces; a contract value itself is accepted as-is.
    Blank stays blank (NA). An unknown value is a problem naming the row, the field and the
    section of the mapping file to add it to.
    """
    lookup = {str(k).strip().lower(): str(v) for k, v in mapping.items()}
    lookup.update({str(v).strip().lower(): str(v) for v in mapping.values() if v != SKIP})
    cleaned = values.astype(str).str.strip()
    mapped = cleaned.str.lower().map(lookup)
    unknown = (cleaned != "") & mapped.isna()
    problems = []
    for row in first_rows(unknown):
        problems.append(
            Problem(
                table,
                path,
                row,
                field_name,
                f"{cleaned.iloc[row - 1]!r} is not a known value; map it to one of the contract's"
                f" values under '{mapping_key}' in a mapping file (--mapping FILE)",
            )
        )
    return mapped.where(cleaned != "", pd.NA), problems


def parse_times(
    values: pd.Series,
    formats: Iterable[str],
    *,
    table: str,
    path: str,
    field_name: str,
    described: str,
) -> tuple[pd.Series, list[Problem]]:
    """Text → UTC timestamps, accepting only the export's own ``formats`` (strptime codes).

    A value in any other format is a problem naming the row and field: a date read by guessing
    (``01/02/2024``: January or February?) would be silently wrong.
    """
    cleaned = values.astype(str).str.strip()
    out = pd.Series(pd.NaT, index=values.index, dtype="datetime64[ns, UTC]")
    for fmt in formats:
        todo = out.isna() & (cleaned != "")
        if not todo.any():
            break
        parsed = pd.to_datetime(cleaned[todo], format=fmt, utc=True, errors="coerce")
        out[todo] = parsed
    bad = out.isna() & (cleaned != "")
    problems = [
        Problem(
            table,
            path,
            row,
            field_name,
            f"{cleaned.iloc[row - 1]!r} is not a date in the export's format ({described})",
        )
        for row in first_rows(bad)
    ]
    return out, problems


def read_companions(
    folder: Path, files: Mapping[str, str], problems: list[Problem]
) -> dict[str, pd.DataFrame | None]:
    """The optional companion files (:data:`COMPANIONS`), None for each one absent; problems
    reading them are added to ``problems``."""
    companions: dict[str, pd.DataFrame | None] = {}
    for name in COMPANIONS:
        try:
            companions[name] = read_object(folder, files[name], name, (), optional=True)
        except ContractError as err:
            problems.extend(err.problems)
    return companions


def attach_companions(
    companions: Mapping[str, pd.DataFrame | None],
    folder: Path,
    files: Mapping[str, str],
    tables: dict[str, pd.DataFrame],
    sources: dict[str, str],
    source_rows: dict[str, np.ndarray],
) -> None:
    """Put the companion files read into a mapped export's tables, with where they came from."""
    for name, frame in companions.items():
        if frame is not None:
            tables[name] = frame
            sources[name] = str(Path(folder) / files[name])
            source_rows[name] = np.arange(1, len(frame) + 1)


def empty_table(name: str) -> pd.DataFrame:
    """A contract table with no rows."""
    return pd.DataFrame({c.name: pd.Series([], dtype=DTYPES[c.kind]) for c in TABLES[name].columns})


def in_source_terms(problem: Problem, export: MappedExport) -> Problem:
    """Re-address a problem found in a mapped table to the export's file, row and field."""
    table = problem.table
    if table not in export.source_rows:
        return problem
    row = problem.row
    rows = export.source_rows[table]
    source = export.sources.get(table, table)
    if row is not None and 0 < row <= len(rows):
        if table in export.row_files:
            source = str(export.row_files[table][row - 1])
        row = int(rows[row - 1])
    column = problem.column
    message = problem.message
    if column is not None:
        message = f"{message} (as {table}.{column})"
        column = export.source_columns.get(table, {}).get(column, column)
    return Problem(table, source, row, column, message)


def source_manifest(export: MappedExport) -> dict[str, Any]:
    """What the raw folder records of its origin: the format and each table's key field."""
    return {"format": export.format, "key_fields": dict(export.key_fields)}


def protected(frames: Mapping[str, pd.DataFrame], lead_identity: str) -> dict[str, pd.DataFrame]:
    """The tables with the leads' identities as the privacy setting keeps them
    (:func:`crm.identity.protect_leads`), before they are validated and written."""
    out = dict(frames)
    if "leads" in out:
        out["leads"] = protect_leads(out["leads"], lead_identity)
    return out


def import_mapped(
    export: MappedExport,
    raw_dir: Path,
    now: pd.Timestamp | None = None,
    lead_identity: str = "names",
) -> dict[str, int]:
    """Validate a mapped export against the contract and write it to ``raw_dir``, all or nothing,
    with ``source.json`` (:func:`source_manifest`) beside the tables.

    Returns:
        table name → rows imported, followed by the mapping's report.

    Raises:
        ContractError: naming the export's file, row and field; ``raw_dir`` is left as it was.
    """
    try:
        typed = validate_tables(protected(export.tables, lead_identity), export.sources, now=now)
    except ContractError as err:
        raise ContractError([in_source_terms(p, export) for p in err.problems]) from None
    manifest = json.dumps(source_manifest(export), indent=1, sort_keys=True)
    write_tables(typed, Path(raw_dir), extra_files={SOURCE_FILE: manifest})
    return {**{name: len(frame) for name, frame in typed.items()}, **export.report}


def read_source(raw_dir: Path) -> dict[str, Any]:
    """The raw folder's ``source.json``; data simulated or imported in the contract's own shape
    has none and reads as ``{"format": "contract", "key_fields": {}}``."""
    path = Path(raw_dir) / SOURCE_FILE
    if not path.is_file():
        return {"format": "contract", "key_fields": {}}
    return json.loads(path.read_text("utf-8"))


ENTITY_TABLES: dict[str, tuple[str, str]] = {
    "lead": ("leads", "lead_id"),
    "account": ("accounts", "account_id"),
}


class SourceIds:
    """The source CRM's id of each lead and account, for outputs meant for that CRM.

    Read from the raw folder (``source.json`` and the ``source_id`` columns), again whenever
    ``source.json`` changes (a new import). Data with no source CRM (simulated, or imported in
    the contract's shape) has no key field: :meth:`key_field` is None.
    """

    def __init__(self, raw_dir: Path):
        self.raw_dir = Path(raw_dir)
        self._loaded = False
        self._stamp: float | None = None
        self._fields: dict[str, str] = {}
        self._ids: dict[str, pd.Series] = {}

    def _fresh(self) -> None:
        path = self.raw_dir / SOURCE_FILE
        stamp = path.stat().st_mtime if path.is_file() else None
        if self._loaded and stamp == self._stamp:
            return
        self._loaded, self._stamp, self._fields, self._ids = True, stamp, {}, {}
        if stamp is None:
            return
        keys = read_source(self.raw_dir).get("key_fields", {})
        for entity, (table, key) in ENTITY_TABLES.items():
            if table not in keys:
                continue
            frame = pd.read_parquet(self.raw_dir / f"{table}.parquet", columns=[key, "source_id"])
            self._fields[entity] = keys[table]
            self._ids[entity] = pd.Series(
                frame["source_id"].astype(object).to_numpy(), index=frame[key].astype(str)
            )

    def key_field(self, entity: str) -> str | None:
        """The source CRM's id field for the entity's records (``Id``, ``Record ID``), if any."""
        self._fresh()
        return self._fields.get(entity)

    def of(self, entity: str, ids: Iterable[str]) -> list[str | None]:
        """Each id's source CRM id (None when it has none)."""
        self._fresh()
        lookup = self._ids.get(entity)
        ids = list(ids)
        if lookup is None:
            return [None] * len(ids)
        found = pd.Series(ids, dtype=object).map(lookup)
        return [None if pd.isna(v) else str(v) for v in found]
