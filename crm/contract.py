"""The CRM data contract: the tables crm-intel reads, declared once and enforced where data enters.

Each table is a :class:`TableSpec`; :func:`pandera_schema` turns it into a pandera schema and
:func:`validate_tables` coerces raw frames (from CSV or Parquet) to the contract's types, runs the
schemas and the cross-table checks (foreign keys, ordering of timestamps, nothing in the future),
and raises :class:`ContractError` naming file, row and column. See ``docs/data-contract.md``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd
import pandera.pandas as pa

CHANNELS: tuple[str, ...] = (
    "email",
    "paid_search",
    "organic_search",
    "social",
    "display",
    "event",
    "webinar",
    "referral",
    "partner",
    "direct",
    "sales",
)
INTERACTION_TYPES: tuple[str, ...] = (
    "email_open",
    "email_click",
    "email_reply",
    "page_view",
    "pricing_page_view",
    "form_submit",
    "content_download",
    "webinar_attend",
    "event_attend",
    "call",
    "meeting",
    "demo_request",
)
HIGH_INTENT_TYPES: tuple[str, ...] = ("pricing_page_view", "demo_request")
CONTENT_TYPES: tuple[str, ...] = ("blog", "whitepaper", "case_study", "webinar", "video", "ebook")
EMPLOYEE_BANDS: tuple[str, ...] = ("1-10", "11-50", "51-200", "201-1000", "1001-5000", "5000+")
SENIORITIES: tuple[str, ...] = ("individual", "manager", "director", "vp", "c_level")
PURCHASE_TIMEFRAMES: tuple[str, ...] = ("0-3_months", "3-6_months", "6-12_months", "over_12_months")
LEAD_STATUSES: tuple[str, ...] = ("open", "converted", "recycled", "disqualified")
OPPORTUNITY_STAGES: tuple[str, ...] = (
    "prospecting",
    "qualification",
    "proposal",
    "negotiation",
    "closed_won",
    "closed_lost",
)
PLANS: tuple[str, ...] = ("starter", "growth", "enterprise")
TICKET_PRIORITIES: tuple[str, ...] = ("low", "medium", "high", "urgent")

Kind = Literal["id", "str", "category", "int", "float", "bool", "timestamp", "date"]

DTYPES: dict[str, str] = {
    "id": "string[pyarrow]",
    "str": "string[pyarrow]",
    "category": "string[pyarrow]",
    "int": "Int64",
    "float": "float64",
    "bool": "boolean",
    "timestamp": "datetime64[ns, UTC]",
    "date": "datetime64[ns, UTC]",
}


@dataclass(frozen=True)
class Column:
    """One column of a contract table."""

    name: str
    kind: Kind
    nullable: bool = False
    allowed: tuple[str, ...] | None = None
    ge: float | None = None
    le: float | None = None
    doc: str = ""
    future_ok: bool = False  # a scheduled date (renewal, campaign end) may lie in the future


# The record's id in the CRM it was imported from, beside the contract's own id
SOURCE_ID = Column(
    "source_id",
    "id",
    nullable=True,
    doc="the record's id in the CRM it was imported from (Salesforce Id, HubSpot Record ID);"
    " outputs meant for that CRM are keyed by it",
)


# A lead's identity, for finding duplicate leads (features.duplicates); optional, never features.
# What is kept as text and what only as a hash: the privacy setting lead_identity (crm.identity).
IDENTITY_COLUMNS: tuple[Column, ...] = (
    Column("first_name", "str", nullable=True, doc="as text, or its phonetic code (lead_identity)"),
    Column("last_name", "str", nullable=True, doc="as text, or its phonetic code (lead_identity)"),
    Column("company_name", "str", nullable=True, doc="the company the lead gave, as text"),
    Column("phone_hash", "str", nullable=True, doc="SHA-256 of the phone's last 10 digits"),
)


@dataclass(frozen=True)
class TableSpec:
    """One contract table: columns, primary key, foreign keys and the timestamp that orders it."""

    name: str
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...]
    foreign_keys: tuple[tuple[str, str], ...] = ()  # (column, referenced table)
    doc: str = ""
    not_after: tuple[tuple[str, str], ...] = field(default=())  # (earlier, later) pairs

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    def column(self, name: str) -> Column:
        return next(c for c in self.columns if c.name == name)


TABLES: dict[str, TableSpec] = {
    spec.name: spec
    for spec in (
        TableSpec(
            "accounts",
            (
                Column("account_id", "id"),
                SOURCE_ID,
                Column("name", "str"),
                Column("industry", "str", nullable=True),
                Column("employee_band", "category", nullable=True, allowed=EMPLOYEE_BANDS),
                Column("region", "str", nullable=True),
                Column("created_at", "timestamp"),
            ),
            primary_key=("account_id",),
            doc="Companies: prospects and customers.",
        ),
        TableSpec(
            "leads",
            (
                Column("lead_id", "id"),
                SOURCE_ID,
                Column("account_id", "id", nullable=True),
                Column("source", "str"),
                Column("created_at", "timestamp"),
                Column("job_title", "str", nullable=True),
                Column("seniority", "category", nullable=True, allowed=SENIORITIES),
                Column("country", "str", nullable=True),
                Column(
                    "purchase_timeframe",
                    "category",
                    nullable=True,
                    allowed=PURCHASE_TIMEFRAMES,
                    doc="BANT timeframe the lead stated when created; optional",
                ),
                Column(
                    "email_hash", "str", nullable=True, doc="SHA-256 of the e-mail; never a feature"
                ),
                *IDENTITY_COLUMNS,
                Column("status", "category", allowed=LEAD_STATUSES),
                Column("converted_at", "timestamp", nullable=True),
            ),
            primary_key=("lead_id",),
            foreign_keys=(("account_id", "accounts"),),
            not_after=(("created_at", "converted_at"),),
            doc="People the company markets and sells to.",
        ),
        TableSpec(
            "opportunities",
            (
                Column("opportunity_id", "id"),
                SOURCE_ID,
                Column("account_id", "id"),
                Column("lead_id", "id", nullable=True),
                Column("stage", "category", allowed=OPPORTUNITY_STAGES),
                Column("amount", "float", ge=0),
                Column("created_at", "timestamp"),
                Column("closed_at", "timestamp", nullable=True),
                Column("won", "bool", nullable=True, doc="null while open"),
            ),
            primary_key=("opportunity_id",),
            foreign_keys=(("account_id", "accounts"), ("lead_id", "leads")),
            not_after=(("created_at", "closed_at"),),
            doc="Deals; won ones carry the revenue that attribution credits.",
        ),
        TableSpec(
            "content",
            (
                Column("content_id", "id"),
                Column("title", "str"),
                Column("type", "category", allowed=CONTENT_TYPES),
                Column("topic", "str"),
                Column("published_at", "timestamp"),
            ),
            primary_key=("content_id",),
            doc="Marketing content a touch may carry.",
        ),
        TableSpec(
            "campaigns",
            (
                Column("campaign_id", "id"),
                Column("name", "str"),
                Column("channel", "category", allowed=CHANNELS),
                Column("cost", "float", ge=0),
                Column("start", "timestamp"),
                Column("end", "timestamp", future_ok=True),
            ),
            primary_key=("campaign_id",),
            not_after=(("start", "end"),),
            doc="Paid efforts; their cost is the denominator of content and channel ROI.",
        ),
        TableSpec(
            "interactions",
            (
                Column("interaction_id", "id"),
                Column("occurred_at", "timestamp"),
                Column("lead_id", "id", nullable=True),
                Column("account_id", "id", nullable=True),
                Column("channel", "category", allowed=CHANNELS),
                Column("type", "category", allowed=INTERACTION_TYPES),
                Column("content_id", "id", nullable=True),
                Column("campaign_id", "id", nullable=True),
            ),
            primary_key=("interaction_id",),
            foreign_keys=(
                ("lead_id", "leads"),
                ("account_id", "accounts"),
                ("content_id", "content"),
                ("campaign_id", "campaigns"),
            ),
            doc="The event log: every touch, with lead_id and/or account_id.",
        ),
        TableSpec(
            "subscriptions",
            (
                Column("subscription_id", "id"),
                Column("account_id", "id"),
                Column("plan", "category", allowed=PLANS),
                Column("mrr", "float", ge=0),
                Column("seats", "int", ge=1),
                Column("start", "timestamp"),
                Column(
                    "renewal_date",
                    "timestamp",
                    future_ok=True,
                    doc="end of the current annual term",
                ),
                Column("cancelled_at", "timestamp", nullable=True),
            ),
            primary_key=("subscription_id",),
            foreign_keys=(("account_id", "accounts"),),
            not_after=(("start", "renewal_date"), ("start", "cancelled_at")),
            doc="Annual subscriptions, renewing on the anniversary of start until cancelled.",
        ),
        TableSpec(
            "usage",
            (
                Column("account_id", "id"),
                Column("date", "date"),
                Column("active_users", "int", ge=0),
                Column("logins", "int", ge=0),
                Column("key_feature_events", "int", ge=0),
            ),
            primary_key=("account_id", "date"),
            foreign_keys=(("account_id", "accounts"),),
            doc="Weekly product usage per customer account. `date` is when the week's figures"
            " close: the row covers the 7 days before it, so it is usable from `date` on.",
        ),
        TableSpec(
            "tickets",
            (
                Column("ticket_id", "id"),
                Column("account_id", "id"),
                Column("opened_at", "timestamp"),
                Column("closed_at", "timestamp", nullable=True),
                Column("priority", "category", allowed=TICKET_PRIORITIES),
                Column("satisfaction", "float", nullable=True, ge=1, le=5),
            ),
            primary_key=("ticket_id",),
            foreign_keys=(("account_id", "accounts"),),
            not_after=(("opened_at", "closed_at"),),
            doc="Support tickets; satisfaction 1-5 when surveyed.",
        ),
    )
}

TABLE_ORDER: tuple[str, ...] = tuple(TABLES)


class ContractError(ValueError):
    """Input that breaks the data contract, naming where: file, row and column."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        head = problems[0]
        more = f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
        super().__init__(f"{head}{more}")


@dataclass(frozen=True)
class Problem:
    """One contract violation. ``row`` is the 1-based data row in the file, None for the header."""

    table: str
    source: str
    row: int | None
    column: str | None
    message: str

    def __str__(self) -> str:
        where = [self.source or self.table]
        if self.row is not None:
            where.append(f"row {self.row}")
        if self.column is not None:
            where.append(f"column '{self.column}'")
        return f"{', '.join(where)}: {self.message}"


MAX_PROBLEMS_PER_CHECK = 5


def _row_problems(
    table: str,
    source: str,
    column: str,
    flagged: np.ndarray,
    template: str,
    value: pd.Series | None = None,
    other: pd.Series | None = None,
) -> list[Problem]:
    """One :class:`Problem` for each of the first flagged rows (positions, 0-based).

    ``template`` is formatted with ``value`` and ``other``: that row's entries of the two series.
    """
    rows = np.flatnonzero(np.asarray(flagged, dtype=bool))[:MAX_PROBLEMS_PER_CHECK]
    return [
        Problem(
            table,
            source,
            int(i) + 1,
            column,
            template.format(
                value=None if value is None else value.iloc[i],
                other=None if other is None else other.iloc[i],
            ),
        )
        for i in rows
    ]


def pandera_schema(spec: TableSpec) -> pa.DataFrameSchema:
    """The pandera schema of a contract table (types, nulls, allowed values, ranges, unique key)."""
    columns = {}
    for col in spec.columns:
        checks = []
        if col.allowed is not None:
            checks.append(pa.Check.isin(list(col.allowed), error=f"must be one of {col.allowed}"))
        if col.ge is not None:
            checks.append(pa.Check.ge(col.ge, error=f"must be >= {col.ge}"))
        if col.le is not None:
            checks.append(pa.Check.le(col.le, error=f"must be <= {col.le}"))
        columns[col.name] = pa.Column(
            DTYPES[col.kind],
            checks=checks,
            nullable=col.nullable,
            unique=spec.primary_key == (col.name,),
        )
    return pa.DataFrameSchema(
        columns,
        strict=False,
        unique=list(spec.primary_key) if len(spec.primary_key) > 1 else None,
        name=spec.name,
    )


def _coerce_column(values: pd.Series, col: Column) -> tuple[pd.Series, pd.Series]:
    """Cast one raw column; returns the cast column and a mask of values that could not be cast."""
    blank = values.isna()
    if values.dtype == object or pd.api.types.is_string_dtype(values.dtype):
        stripped = values.astype("string").str.strip()
        blank = blank | (stripped == "").fillna(True)
        values = stripped.mask(blank)
    if col.kind in ("id", "str", "category"):
        out = values.astype(DTYPES[col.kind])
        return out, pd.Series(False, index=values.index)
    if col.kind in ("timestamp", "date"):
        if pd.api.types.is_numeric_dtype(values.dtype) and not pd.api.types.is_bool_dtype(
            values.dtype
        ):
            # a bare number has no unit; refusing it beats silently reading 1970 dates
            bad = values.notna()
            return pd.Series(pd.NaT, index=values.index, dtype=DTYPES[col.kind]), bad
        if isinstance(values.dtype, pd.DatetimeTZDtype):
            out = values.dt.tz_convert("UTC")
        elif pd.api.types.is_datetime64_dtype(values.dtype):
            out = values.dt.tz_localize("UTC")
        else:
            out = pd.to_datetime(values, utc=True, errors="coerce", format="mixed")
        out = out.astype("datetime64[ns, UTC]")
        return out, out.isna() & ~blank
    if col.kind == "bool":
        if pd.api.types.is_bool_dtype(values.dtype):
            return values.astype("boolean"), pd.Series(False, index=values.index)
        text = values.astype("string").str.lower()
        mapping = {
            "true": True,
            "false": False,
            "1": True,
            "0": False,
            "yes": True,
            "no": False,
            "1.0": True,
            "0.0": False,
        }
        out = text.map(mapping).astype("boolean")
        return out, out.isna() & ~blank
    numeric = pd.to_numeric(values, errors="coerce")
    bad = numeric.isna() & ~blank
    if col.kind == "int":
        fractional = numeric.notna() & (numeric != np.floor(numeric))
        bad = bad | fractional
        numeric = numeric.mask(fractional)
        return numeric.astype("Int64"), bad
    return numeric.astype("float64"), bad


def _describe_kind(col: Column) -> str:
    return {
        "timestamp": "a timestamp (ISO 8601)",
        "date": "a date",
        "int": "an integer",
        "float": "a number",
        "bool": "true or false",
    }.get(col.kind, "text")


def coerce_table(frame: pd.DataFrame, spec: TableSpec, source: str = "") -> pd.DataFrame:
    """Cast a raw frame to the contract's column types, keeping only contract columns.

    Raises:
        ContractError: a required column is missing or a value cannot be read as its type.
    """
    source = source or spec.name
    missing = [c.name for c in spec.columns if c.name not in frame.columns and not c.nullable]
    if missing:
        raise ContractError(
            [Problem(spec.name, source, None, m, "required column is missing") for m in missing]
        )
    frame = frame.reset_index(drop=True)
    out: dict[str, pd.Series] = {}
    problems: list[Problem] = []
    for col in spec.columns:
        if col.name not in frame.columns:
            out[col.name] = pd.Series(pd.NA, index=frame.index, dtype=DTYPES[col.kind])
            continue
        cast, bad = _coerce_column(frame[col.name], col)
        raw = frame[col.name]
        problems += _row_problems(
            spec.name,
            source,
            col.name,
            bad.to_numpy(),
            f"{{value!r}} is not {_describe_kind(col)}",
            raw,
        )
        out[col.name] = cast
    if problems:
        raise ContractError(problems)
    return pd.DataFrame(out)


def _schema_problems(err: pa.errors.SchemaErrors, spec: TableSpec, source: str) -> list[Problem]:
    problems = []
    cases = err.failure_cases
    for _, case in cases.head(20).iterrows():
        index = case.get("index")
        row = int(index) + 1 if index is not None and not pd.isna(index) else None
        column = case.get("column")
        check = str(case.get("check"))
        value = case.get("failure_case")
        if check == "field_uniqueness" or "unique" in check:
            message = f"duplicate id {value!r}"
        elif check == "not_nullable":
            message = "value is required but missing"
        elif check == "column_in_dataframe":
            message = "required column is missing"
        elif check.startswith("dtype"):
            message = f"wrong type: {check}"
        else:
            message = f"{value!r} {check}"
        problems.append(
            Problem(spec.name, source, row, None if pd.isna(column) else str(column), message)
        )
    return problems


def validate_table(
    frame: pd.DataFrame, spec: TableSpec, source: str = "", now: pd.Timestamp | None = None
) -> pd.DataFrame:
    """Coerce and validate one table on its own (no foreign keys); returns the typed frame."""
    source = source or spec.name
    typed = coerce_table(frame, spec, source)
    try:
        pandera_schema(spec).validate(typed, lazy=True)
    except pa.errors.SchemaErrors as err:
        raise ContractError(_schema_problems(err, spec, source)) from None
    problems: list[Problem] = []
    for earlier, later in spec.not_after:
        bad = (typed[later] < typed[earlier]).fillna(False).to_numpy()
        problems += _row_problems(
            spec.name,
            source,
            later,
            bad,
            f"{{value}} is before {earlier} {{other}}",
            typed[later],
            typed[earlier],
        )
    if now is not None:
        for col in spec.columns:
            if col.kind in ("timestamp", "date") and not col.future_ok:
                bad = (typed[col.name] > now).fillna(False).to_numpy()
                problems += _row_problems(
                    spec.name,
                    source,
                    col.name,
                    bad,
                    f"{{value}} is in the future (after {now})",
                    typed[col.name],
                )
    if spec.name == "interactions":
        orphan = (typed["lead_id"].isna() & typed["account_id"].isna()).to_numpy()
        problems += _row_problems(
            spec.name,
            source,
            "lead_id",
            orphan,
            "an interaction needs a lead_id or an account_id",
        )
    if problems:
        raise ContractError(problems)
    return typed


def validate_tables(
    frames: Mapping[str, pd.DataFrame],
    sources: Mapping[str, str] | None = None,
    now: pd.Timestamp | None = None,
) -> dict[str, pd.DataFrame]:
    """Validate a set of contract tables, each on its own and then against each other.

    Args:
        frames: table name → raw frame. Every table of the contract is required.
        sources: table name → file it came from, for error messages.
        now: timestamps after this are rejected (defaults to the current time).

    Returns:
        table name → frame with the contract's types.

    Raises:
        ContractError: naming file, row and column of the first problems found.
    """
    sources = dict(sources or {})
    now = pd.Timestamp.now(tz="UTC") if now is None else now
    unknown = sorted(set(frames) - set(TABLES))
    missing = [t for t in TABLES if t not in frames]
    if unknown or missing:
        absent = [Problem(t, sources.get(t, t), None, None, "unknown table") for t in unknown]
        absent += [Problem(t, t, None, None, "required table is missing") for t in missing]
        raise ContractError(absent)
    typed = {
        name: validate_table(frames[name], TABLES[name], sources.get(name, name), now)
        for name in TABLES
    }
    problems: list[Problem] = []
    for name, spec in TABLES.items():
        for column, ref in spec.foreign_keys:
            key = TABLES[ref].primary_key[0]
            values = typed[name][column]
            bad = (values.notna() & ~values.isin(typed[ref][key])).to_numpy()
            problems += _row_problems(
                name,
                sources.get(name, name),
                column,
                bad,
                f"{{value!r}} names no row of {ref}",
                values,
            )
    if problems:
        raise ContractError(problems)
    return typed
