"""Bring your own table: a one-row-per-entity CRM export made ready to train on.

Reads CSV, Parquet or Excel; turns blanks and placeholder values (``"Select"``, ``" "``) into
missing values; infers which columns are numbers (also numbers stored as text, such as Telco's
``TotalCharges``) and which are categories; drops empty and identifier-like text columns and says
so. Numeric columns unique per row (such as a CRM's record number) are kept as features.

:func:`feature_frame` cleans a file to be scored exactly as its training table was cleaned.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from training.data import LABEL, TIMESTAMP

# Values CRMs write for "nothing chosen"; matched after stripping whitespace, case-insensitively.
PLACEHOLDERS: tuple[str, ...] = ("", "select", "-- select --", "n/a", "#n/a", "null", "nan")
NUMERIC_SHARE = 0.95  # a text column is numeric when this share of its non-missing values parse
POSITIVE_WORDS = ("1", "yes", "true", "y", "t", "converted", "churned", "won")


@dataclass(frozen=True)
class Table:
    """A training frame (id, optional ``event_timestamp``, ``label``, features) and its story."""

    frame: pd.DataFrame
    id_column: str
    numeric: tuple[str, ...]
    categorical: tuple[str, ...]
    positive: str
    dropped: dict[str, str] = field(default_factory=dict)
    has_timestamp: bool = False

    @property
    def features(self) -> list[str]:
        return [*self.numeric, *self.categorical]


def read_any(path: Path) -> pd.DataFrame:
    """Read a CSV (separator sniffed), Parquet or Excel file, every value as written."""
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return pd.read_parquet(path)
    if suffix in (".xlsx", ".xls"):
        return pd.read_excel(path)
    return pd.read_csv(path, sep=None, engine="python", keep_default_na=True)


def clean_placeholders(column: pd.Series) -> pd.Series:
    """Text column with blanks and placeholder values as missing; other columns unchanged."""
    if not (column.dtype == object or pd.api.types.is_string_dtype(column.dtype)):
        return column
    text = column.astype("string").str.strip()
    return text.mask(text.str.lower().isin(PLACEHOLDERS))


def _numeric_or_none(column: pd.Series) -> pd.Series | None:
    if pd.api.types.is_bool_dtype(column.dtype):
        return None
    if pd.api.types.is_numeric_dtype(column.dtype):
        return column.astype("float64")
    present = column.dropna()
    if present.empty:
        return None
    parsed = pd.to_numeric(present, errors="coerce")
    if parsed.notna().mean() >= NUMERIC_SHARE:
        return pd.to_numeric(column, errors="coerce").astype("float64")
    return None


def feature_frame(
    raw: pd.DataFrame, features: list[str], categorical: set[str] | None = None
) -> pd.DataFrame:
    """The ``features`` of a raw export cleaned as :func:`prepare_table` cleans them (placeholders
    as missing, numbers stored as text as numbers), for scoring with a model trained on such a
    table; ``raw`` is not modified.

    Args:
        raw: The export (column names are matched after stripping whitespace).
        features: The model's features, in its order.
        categorical: The features the model treats as categories; ``None`` to infer each kind
            from the values as training did.

    Raises:
        ValueError: a feature is not a column of ``raw``.
    """
    columns = {str(c).strip(): c for c in raw.columns}
    missing = [f for f in features if f not in columns]
    if missing:
        raise ValueError(
            f"the table lacks {len(missing)} feature(s) the model was trained on: "
            f"{', '.join(missing[:10])}"
        )
    out: dict[str, pd.Series] = {}
    for name in features:
        clean = clean_placeholders(raw[columns[name]])
        if categorical is None:
            number = _numeric_or_none(clean)
        elif name in categorical:
            number = None
        else:
            number = pd.to_numeric(clean, errors="coerce").astype("float64")
        out[name] = clean.astype("string") if number is None else number
    return pd.DataFrame(out, index=raw.index)


def label_values(column: pd.Series, positive: str | None) -> tuple[np.ndarray, str]:
    """0/1 labels and the positive value used (given, or inferred from yes/true/1)."""
    text = column.astype("string").str.strip()
    if text.isna().any():
        raise ValueError(f"label column {column.name!r} has {int(text.isna().sum())} blank values")
    values = sorted(text.unique())
    if positive is None:
        matches = [v for v in values if v.lower() in POSITIVE_WORDS]
        if len(values) != 2 or len(matches) != 1:
            raise ValueError(
                f"cannot tell which value of {column.name!r} is positive "
                f"among {values[:10]}; pass --positive"
            )
        positive = matches[0]
    if positive not in values:
        # allow 1 vs 1.0 style mismatches
        as_num = pd.to_numeric(pd.Series(values), errors="coerce")
        target = pd.to_numeric(pd.Series([positive]), errors="coerce")[0]
        hits = [v for v, n in zip(values, as_num, strict=True) if pd.notna(n) and n == target]
        if not hits:
            raise ValueError(
                f"positive value {positive!r} not found in {column.name!r}; "
                f"values are {values[:10]}"
            )
        positive = hits[0]
    y = (text == positive).to_numpy(dtype=int)
    if y.min() == y.max():
        raise ValueError(f"label column {column.name!r} has only one class")
    return y, str(positive)


def prepare_table(
    raw: pd.DataFrame,
    id_column: str,
    label: str,
    positive: str | None = None,
    timestamp: str | None = None,
    drop: tuple[str, ...] = (),
) -> Table:
    """Turn a raw export into a training frame; ``raw`` is not modified.

    Raises:
        ValueError: a named column is missing, the label is not binary, or no feature is left.
    """
    raw = raw.copy()
    raw.columns = [str(c).strip() for c in raw.columns]
    for name in (id_column, label, *(t for t in [timestamp] if t), *drop):
        if name not in raw.columns:
            raise ValueError(f"column {name!r} not in the table; columns are {list(raw.columns)}")
    y, positive_value = label_values(raw[label], positive)
    dropped: dict[str, str] = {c: "dropped on request" for c in drop}
    numeric: list[str] = []
    categorical: list[str] = []
    features: dict[str, pd.Series] = {}
    reserved = {id_column, label, *(t for t in [timestamp] if t), *drop}
    for col in raw.columns:
        if col in reserved:
            continue
        clean = clean_placeholders(raw[col])
        present = clean.dropna()
        if present.empty:
            dropped[col] = "empty"
            continue
        if present.nunique() == 1 and clean.notna().all():
            dropped[col] = "constant"
            continue
        as_number = _numeric_or_none(clean)
        # Text unique to every row (UUIDs, e-mails) identifies rather than describes. Unique
        # numbers are kept: CRMs number records in creation order, which carries time.
        if as_number is None and present.nunique() == len(raw):
            dropped[col] = "identifier-like (unique per row)"
            continue
        if as_number is not None:
            features[col] = as_number
            numeric.append(col)
        else:
            features[col] = clean.astype("string")
            categorical.append(col)
    if not features:
        raise ValueError("no feature columns left after cleaning")
    parts: dict[str, pd.Series | np.ndarray] = {id_column: raw[id_column].astype("string")}
    if timestamp:
        parts[TIMESTAMP] = pd.to_datetime(raw[timestamp], utc=True, errors="coerce")
        if parts[TIMESTAMP].isna().any():  # type: ignore[union-attr]
            raise ValueError(f"timestamp column {timestamp!r} has unparseable or blank values")
    parts[LABEL] = y
    frame = pd.DataFrame(parts, index=raw.index)
    frame = pd.concat([frame, pd.DataFrame(features, index=raw.index)], axis=1)
    return Table(
        frame.reset_index(drop=True),
        id_column,
        tuple(numeric),
        tuple(categorical),
        positive_value,
        dropped,
        timestamp is not None,
    )
