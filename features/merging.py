"""Merging duplicate leads' engagement onto their surviving lead before features are built.

One person's history is often split over several lead records (:mod:`features.duplicates`);
scored apart, each record looks less engaged than the person is, and the duplicates are scored
as people of their own. With a dedupe output given (``features build --merge-duplicates FILE``,
setting ``merge_duplicate_leads``), :func:`merge_duplicate_leads` makes the features per person:

* every touch (``interactions``) and deal (``opportunities``) of a duplicate moves to its
  surviving lead, **at its own timestamp**: a duplicate created later adds its touches only from
  when they happened, so a snapshot before them sees none of them (point in time holds);
* the duplicate records leave the lead table (they are not people of their own);
* the surviving lead converts when the first of its records converted.

The surviving lead is the cluster's oldest record, so its ``created_at`` is the person's first.
A duplicate whose survivor is not among the leads (the data changed since the dedupe run) is
left as it is.
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

LEAD_KEYED = ("interactions", "opportunities")


def survivor_map(duplicates: pd.DataFrame, lead_ids: pd.Series) -> pd.Series:
    """Duplicate ``lead_id`` → its surviving ``lead_id``, for survivors among ``lead_ids``."""
    linked = duplicates[duplicates["lead_id"] != duplicates["survivor_lead_id"]]
    linked = linked[linked["survivor_lead_id"].isin(lead_ids) & linked["lead_id"].isin(lead_ids)]
    return pd.Series(
        linked["survivor_lead_id"].astype(str).to_numpy(), index=linked["lead_id"].astype(str)
    )


def merge_duplicate_leads(
    tables: Mapping[str, pd.DataFrame], duplicates: pd.DataFrame
) -> dict[str, pd.DataFrame]:
    """The tables with each duplicate lead's engagement on its surviving lead (module
    docstring). The input tables are not changed.

    Args:
        tables: contract tables (as :func:`features.pipeline.read_raw_frames` reads them).
        duplicates: ``lead_id`` and ``survivor_lead_id`` (``crm-intel dedupe leads``' output).
    """
    leads = tables["leads"]
    survivor_of = survivor_map(duplicates, leads["lead_id"])
    out = dict(tables)
    if survivor_of.empty:
        return out
    ids = leads["lead_id"].astype(str)
    person = ids.map(survivor_of).fillna(ids)
    first_conversion = leads["converted_at"].groupby(person.to_numpy()).min()
    kept = leads[~ids.isin(survivor_of.index).to_numpy()].copy()
    kept["converted_at"] = (
        kept["lead_id"].astype(str).map(first_conversion).astype(leads["converted_at"].dtype)
    )
    out["leads"] = kept.reset_index(drop=True)
    for name in LEAD_KEYED:
        if name in tables and "lead_id" in tables[name].columns:
            frame = tables[name]
            lead = frame["lead_id"]
            moved = lead.astype(str).map(survivor_of)
            out[name] = frame.assign(lead_id=moved.where(moved.notna(), lead).astype(lead.dtype))
    return out
