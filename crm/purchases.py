"""Purchases of transactional customers: one row per purchase, read from a file and checked.

The lifetime-value models of customers who buy when they like (no subscription) read a purchases
table: ``customer_id``, ``purchased_at`` and ``amount``. It comes as

* a CSV or Parquet file with those three columns (other columns are ignored), or
* the CDNOW layout (``.txt``, columns separated by spaces): the master file's
  ``customer_id date number_of_cds dollar_value`` with its header line, or the 2,357-customer
  sample's five columns ``master_id sample_id date number_of_cds dollar_value`` without one; dates
  are ``YYYYMMDD``.

Bad input raises :class:`crm.contract.ContractError` naming the file, the row and the column.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from crm.contract import Column, ContractError, Problem, TableSpec, validate_table

PURCHASES = TableSpec(
    "purchases",
    (
        Column("customer_id", "id"),
        Column("purchased_at", "timestamp"),
        Column("amount", "float", ge=0, doc="what the purchase was worth"),
    ),
    primary_key=(),
    doc="Purchases of customers who buy when they like (no subscription).",
)
CDNOW_MASTER = ["customer_id", "date", "number_of_cds", "dollar_value"]
CDNOW_SAMPLE = ["master_id", "sample_id", "date", "number_of_cds", "dollar_value"]


def read_purchases(path: Path) -> pd.DataFrame:
    """The purchases in ``path``, typed and checked (see the module's docstring for the layouts).

    Raises:
        ContractError: the file cannot be read, a column is missing or a value is not of its type.
    """
    path = Path(path)
    source = path.name
    if not path.is_file():
        raise ContractError([Problem("purchases", source, None, None, "no such file")])
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            frame = pd.read_parquet(path)
        elif suffix == ".csv":
            frame = pd.read_csv(path, dtype={"customer_id": str})
        elif suffix == ".txt":
            frame = _read_cdnow(path)
        else:
            raise ContractError(
                [
                    Problem(
                        "purchases",
                        source,
                        None,
                        None,
                        f"cannot read a {suffix or 'nameless'} file: give a .csv, .parquet, or "
                        "CDNOW .txt file",
                    )
                ]
            )
    except (ValueError, OSError) as err:
        if isinstance(err, ContractError):
            raise
        raise ContractError(
            [Problem("purchases", source, None, None, f"cannot be read ({err})")]
        ) from None
    return validate_table(frame, PURCHASES, source)


def _read_cdnow(path: Path) -> pd.DataFrame:
    first = path.open(encoding="utf-8").readline().split()
    has_header = bool(first) and not first[0].isdigit()
    names = CDNOW_MASTER if has_header or len(first) == len(CDNOW_MASTER) else CDNOW_SAMPLE
    raw = pd.read_csv(
        path,
        sep=r"\s+",
        header=None,
        skiprows=1 if has_header else 0,
        names=names,
        dtype=str,
    )
    customer = raw["customer_id"] if "customer_id" in raw else raw["master_id"]
    dates = pd.to_datetime(raw["date"], format="%Y%m%d", errors="coerce", utc=True)
    bad = dates.isna() & raw["date"].notna()
    if bad.any():
        row = int(bad.to_numpy().argmax()) + 1
        raise ContractError(
            [
                Problem(
                    "purchases",
                    path.name,
                    row,
                    "date",
                    f"{raw['date'].iloc[row - 1]!r} is not a date as YYYYMMDD",
                )
            ]
        )
    return pd.DataFrame(
        {"customer_id": customer, "purchased_at": dates, "amount": raw["dollar_value"]}
    )


def purchase_days(purchases: pd.DataFrame) -> pd.DataFrame:
    """One row per customer and day with a purchase (``customer_id``, ``day`` as a naive UTC
    date, ``amount`` summed over the day): several purchases on one day count as one."""
    frame = pd.DataFrame(
        {
            "customer_id": purchases["customer_id"].astype(str),
            "day": purchases["purchased_at"].dt.tz_localize(None).dt.normalize(),
            "amount": purchases["amount"].astype(float),
        }
    )
    return frame.groupby(["customer_id", "day"], as_index=False)["amount"].sum()


def calendar_day(when: pd.Timestamp | object) -> pd.Timestamp:
    """The UTC calendar day of ``when``, as a naive timestamp (the ``day`` of
    :func:`purchase_days`)."""
    day = pd.Timestamp(when)
    if day.tzinfo is not None:
        day = day.tz_convert("UTC").tz_localize(None)
    return day.normalize()
