"""Remaining lifetime and lifetime value of every live subscription account, with the churn
champion (:mod:`training.subscription_value`), from the features the batch scores with."""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pandas as pd

from crm.settings import Settings
from serving.batch import scorable_rows
from serving.lifetime import (
    KEY,
    VALUE_COLUMNS,
    LifetimeReference,
    book_values,
    lifetime_reference,
)
from serving.scoring import standing_fields
from serving.status import standing
from training.registry import Champion, load_champion

log = logging.getLogger("crm_intel.serving")

MODEL = "churn_risk"


@dataclass(frozen=True)
class AccountValues:
    """What :func:`account_values` gives: the table, the churn model it came from, and how much
    of an account's standing was taken to carry from one renewal to the next."""

    table: pd.DataFrame
    champion: Champion
    persistence: float
    persistence_pairs: int  # pairs of consecutive renewals it was measured on


def account_values(
    settings: Settings, as_of: datetime | None = None, champion: Champion | None = None
) -> AccountValues:
    """Per live account: the churn model's quiet-window and next-renewal probabilities, expected
    remaining months with their 80 % range, MRR, lifetime value with its range, plan and RFM
    segment; sorted by ``account_id``.

    Args:
        settings: where the features and the registry are; the churn window, discount rate and
            gross margin.
        as_of: value the accounts as they stood then (the feature tables' rows of that time);
            None: now, from the online store.
        champion: the churn model to use (default: the registry's champion).

    Raises:
        training.registry.NoChampion: no churn model is registered.
    """
    champion = champion or load_champion(MODEL, settings.tracking_uri())
    features = scorable_rows(settings, "account", as_of)
    reference, values = book_values(settings, champion.model, features, as_of)
    if features.empty:
        empty = pd.DataFrame(columns=["account_id", "expected_remaining_months"])
        return AccountValues(empty, champion, reference.persistence, reference.persistence_pairs)
    values["account_id"] = values["account_id"].astype(str)
    for column in ("plan", "rfm_segment"):  # what the CRM already groups accounts by
        values[column] = features[column].astype(str).to_numpy()
    table = values.sort_values("account_id", ignore_index=True)
    return AccountValues(table, champion, reference.persistence, reference.persistence_pairs)


class LifetimeReferences:
    """The API's :class:`~serving.lifetime.LifetimeReference` of each churn model version,
    measured on the book (the online store's live accounts) the first time that version values
    an account, then kept: one account asked for alone gets the value the batch gives it."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._by_version: dict[str, LifetimeReference] = {}
        self._lock = threading.Lock()

    def of(self, champion: Champion) -> LifetimeReference:
        """The reference of ``champion``'s version.

        Raises:
            serving.online.OnlineStoreUnavailable: the book could not be read.
        """
        with self._lock:  # one measurement per version, however many requests wait on it
            found = self._by_version.get(champion.version)
            if found is None:
                book = scorable_rows(self._settings, "account")
                found = lifetime_reference(self._settings, champion.model, book)
                self._by_version[champion.version] = found
                log.info(
                    "lifetime reference of churn model v%s: %d live accounts, persistence %.3f "
                    "from %d renewal pairs",
                    champion.version,
                    len(book),
                    found.persistence,
                    found.persistence_pairs,
                )
            return found


def value_items(
    reference: LifetimeReference,
    model: Any,
    records: Sequence[Mapping[str, Any]],
    *,
    ttl: timedelta | None = None,
    allow_stale: bool = False,
    fields: Sequence[str] | None = None,
) -> list[dict[str, Any]]:
    """Remaining lifetime and value of online account rows, for ``POST /value_accounts``: each
    with its status as in scoring (closed, unknown and stale ones reported, not valued).

    Returns:
        one dict per record, in order, in the layout of ``serving.schemas.AccountValue``.
    """
    results: list[dict[str, Any]] = []
    valued: list[int] = []
    for i, record in enumerate(records):
        account_id = str(record[KEY])
        st = standing(
            "account",
            account_id,
            record,
            ttl=ttl,
            allow_stale=allow_stale,
            field=fields[i] if fields else None,
        )
        out: dict[str, Any] = {KEY: account_id, **standing_fields(st)}
        if record.get("found"):
            out["feature_timestamp"] = record.get("event_timestamp")
        results.append(out)
        if st.scorable:
            valued.append(i)
    if not valued:
        return results
    table = reference.of_records(model, [records[i] for i in valued])
    for n, i in enumerate(valued):
        row = table.iloc[n]
        out = results[i]
        out.update(
            churn_probability_next_renewal=float(row["p_next_renewal"]),
            mrr=float(row["mrr"]),
            **{column: float(row[column]) for column in VALUE_COLUMNS},
        )
        for column in ("plan", "rfm_segment"):
            value = records[i].get(column)
            out[column] = None if value is None else str(value)
    return results
