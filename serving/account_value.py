"""Remaining lifetime and lifetime value of every live subscription account, with the churn
champion (:mod:`training.subscription_value`), from the features the batch scores with."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd

from crm.settings import Settings
from features.store import entity_info
from serving.batch import scorable_rows
from training.registry import Champion, load_champion
from training.subscription_value import remaining_lifetime, renewal_persistence

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
    if features.empty:
        empty = pd.DataFrame(columns=["account_id", "expected_remaining_months"])
        return AccountValues(empty, champion, 1.0, 0)
    model = champion.model

    def churn_probability(frame: pd.DataFrame) -> np.ndarray:
        return np.asarray(model.predict_proba(frame)[:, 1], dtype=float)

    persistence, pairs = renewal_persistence(
        feature_history(settings, as_of), churn_probability, window_days=settings.churn_window_days
    )
    values = remaining_lifetime(
        features,
        churn_probability,
        window_days=settings.churn_window_days,
        annual_discount_rate=settings.value_discount_rate,
        gross_margin=settings.value_gross_margin,
        persistence=persistence,
    )
    values["account_id"] = values["account_id"].astype(str)
    for column in ("plan", "rfm_segment"):  # what the CRM already groups accounts by
        values[column] = features[column].astype(str).to_numpy()
    table = values.sort_values("account_id", ignore_index=True)
    return AccountValues(table, champion, persistence, pairs)


def feature_history(settings: Settings, as_of: datetime | None = None) -> pd.DataFrame:
    """Every weekly account feature row up to ``as_of`` (all of them without): the history the
    persistence of an account's standing from one renewal to the next is measured on."""
    _, table, _, _ = entity_info("account")
    history = pd.read_parquet(settings.features_dir / f"{table}.parquet")
    if as_of is not None:
        stamps = pd.to_datetime(history["event_timestamp"], utc=True)
        history = history[stamps <= pd.Timestamp(as_of).tz_convert("UTC")]
    return history.reset_index(drop=True)
