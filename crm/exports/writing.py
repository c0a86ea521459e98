"""What writing a contract CRM in a CRM's own export shape needs, whatever the CRM: the label a
mapping gives each contract value, blanks for missing values, a head count for each band."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

# A head count inside each contract employee band (its upper bound; 10,000 for "5000+"), which
# the importers map back to the same band
HEAD_COUNT = {"1-10": 10, "11-50": 50, "51-200": 200, "201-1000": 1000, "1001-5000": 5000}
LARGEST_HEAD_COUNT = 10_000


def first_label(section: Mapping[str, str], value: object) -> str:
    """The first label of a mapping section that maps to ``value`` ("" for a missing value):
    the one an export written from contract data carries."""
    if value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)):
        return ""
    for label, mapped in section.items():
        if mapped == value:
            return str(label)
    raise ValueError(f"the mapping has no label for {value!r}")


def labels(section: Mapping[str, str], values: pd.Series) -> pd.Series:
    """:func:`first_label` of every value."""
    return values.astype(object).map(lambda v: first_label(section, v))


def blank_text(values: pd.Series) -> pd.Series:
    """Values as text, "" where missing (as a CSV export writes them)."""
    return values.astype(object).where(values.notna(), "").astype(str)


def head_counts(bands: pd.Series) -> pd.Series:
    """A head count for each employee band, as text ("" where missing)."""
    return bands.map(lambda b: "" if pd.isna(b) else str(HEAD_COUNT.get(b, LARGEST_HEAD_COUNT)))
