"""Lifecycle tables: where each lead and account stands in the CRM, as of the data's as-of time.

The scoring service needs to know which entities can be scored at all: a converted or
disqualified lead and a cancelled account are closed, a lead created since the last weekly
snapshot is new. These tables give it that, the way a feature store holds any per-entity fact:
built by ``crm-intel features build`` from the raw tables into ``<data_dir>/features/``, declared
as their own Feast feature views (``lead_status``, ``account_status``; no feature service names
them, so no model is trained on them) and materialised into the online store beside the features.

Point in time: each table has one row per entity stamped with the **as-of time** of the data
(:func:`features.pipeline.as_of_time`), since ``leads.status`` is the export's value and the
export is what is known then. A point-in-time join at an earlier time finds no row, so nothing
known at the export reaches an earlier snapshot; online, the row is the entity's latest status,
and its timestamp tells the service the time the CRM data describes (what staleness is measured
against). Timestamps inside the rows are ISO 8601 strings, to the second, UTC.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from features.schema import ACCOUNT_STATUS_FIELDS, LEAD_STATUS_FIELDS

ISO_SECONDS = "%Y-%m-%dT%H:%M:%SZ"


def read_lead_status(raw_dir: Path) -> pd.DataFrame | None:
    """``lead_id`` and the CRM's ``status`` from ``raw/leads.parquet``; None when the table has
    no ``status`` column (then conversion alone decides)."""
    path = Path(raw_dir) / "leads.parquet"  # a file, or a folder of Parquet parts
    if "status" not in ds.dataset(path, format="parquet").schema.names:
        return None
    frame = pq.read_table(path, columns=["lead_id", "status"]).to_pandas()
    return frame.astype({"lead_id": "string[pyarrow]", "status": "string[pyarrow]"})


def _iso(values: pd.Series, keep: np.ndarray | None = None) -> pd.api.extensions.ExtensionArray:
    """ISO strings (to the second, UTC) of timestamps; missing where NaT or where not ``keep``."""
    stamps = pd.to_datetime(values, utc=True)
    text = stamps.dt.strftime(ISO_SECONDS).to_numpy(dtype=object, na_value=None)
    if keep is not None:
        text[~keep] = None
    return pd.array(text, dtype="string[pyarrow]")


def _frame(key: str, ids: pd.Series, as_of: pd.Timestamp) -> pd.DataFrame:
    return pd.DataFrame(
        {
            key: ids.astype("string[pyarrow]").to_numpy(),
            "event_timestamp": pd.DatetimeIndex(
                np.full(len(ids), pd.Timestamp(as_of).value), tz="UTC"
            ).astype("datetime64[ns, UTC]"),
        }
    )


def lead_status_table(
    leads: pd.DataFrame, as_of: pd.Timestamp, status: pd.DataFrame | None = None
) -> pd.DataFrame:
    """One row per lead: its status as of ``as_of``.

    Args:
        leads: ``lead_id``, ``created_at``, ``converted_at`` (contract dtypes).
        as_of: the data's as-of time (every row's ``event_timestamp``).
        status: ``lead_id`` and the CRM's ``status`` (:func:`read_lead_status`); None to derive
            open / converted from ``converted_at`` alone.

    Returns:
        ``lead_id``, ``event_timestamp`` and :data:`features.schema.LEAD_STATUS_FIELDS`:
        ``status`` is the CRM's (open, recycled, converted, disqualified), ``converted`` whenever
        ``converted_at`` is set; ``created_at`` and ``converted_at`` as ISO strings.
    """
    out = _frame("lead_id", leads["lead_id"], as_of)
    given = pd.Series(pd.NA, index=leads.index, dtype="string[pyarrow]")
    if status is not None:
        by_id = status.drop_duplicates("lead_id", keep="last").set_index("lead_id")["status"]
        given = leads["lead_id"].map(by_id).astype("string[pyarrow]")
    converted = leads["converted_at"].notna().to_numpy()
    values = given.fillna("open").to_numpy(dtype=object)
    values[converted] = "converted"
    out["status"] = pd.array(values, dtype="string[pyarrow]")
    out["created_at"] = _iso(leads["created_at"])
    out["converted_at"] = _iso(leads["converted_at"])
    assert tuple(out.columns[2:]) == LEAD_STATUS_FIELDS
    return out


def account_status_table(
    accounts: pd.DataFrame, subscriptions: pd.DataFrame, as_of: pd.Timestamp
) -> pd.DataFrame:
    """One row per account: customer, cancelled or prospect as of ``as_of``.

    A subscription is live when ``start <= as_of`` and it is not cancelled at or before
    ``as_of``. ``customer_since`` is the first subscription's start; ``cancelled_at`` the last
    cancellation, set only when no subscription is live.

    Returns:
        ``account_id``, ``event_timestamp`` and :data:`features.schema.ACCOUNT_STATUS_FIELDS`.
    """
    out = _frame("account_id", accounts["account_id"], as_of)
    subs = subscriptions[["account_id", "start", "cancelled_at"]]
    as_of = pd.Timestamp(as_of)
    live = (subs["start"] <= as_of) & (subs["cancelled_at"].isna() | (subs["cancelled_at"] > as_of))
    per = (
        subs.assign(live=live.to_numpy())
        .groupby("account_id", observed=True)
        .agg(
            first_start=("start", "min"), last_cancel=("cancelled_at", "max"), live=("live", "any")
        )
    )
    per.index = per.index.astype(str)
    ids = accounts["account_id"].astype(str)
    has = ids.isin(per.index).to_numpy()
    is_live = ids.isin(per.index[per["live"].to_numpy(dtype=bool)]).to_numpy()
    status = np.where(is_live, "customer", np.where(has, "cancelled", "prospect"))
    out["status"] = pd.array(status, dtype="string[pyarrow]")
    out["customer_since"] = _iso(ids.map(per["first_start"]))
    out["cancelled_at"] = _iso(ids.map(per["last_cancel"]), keep=status == "cancelled")
    assert tuple(out.columns[2:]) == ACCOUNT_STATUS_FIELDS
    return out
