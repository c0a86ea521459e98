"""Remaining lifetime value beside every churn score: what an account is worth while it stays,
and so what its churn puts at risk (``revenue_at_risk`` = churn probability × remaining
lifetime value).

An account's value (:func:`training.subscription_value.remaining_lifetime`) depends on two
things measured on the whole book rather than on the account: how much of its standing carries
from one renewal to the next (the *persistence*, from the CRM's history) and the standing of its
plan that later years drift toward (each plan's mean log-odds). :class:`LifetimeReference` holds
both, measured once for a churn model; an account then gets the same value whether it is asked
for alone through the API, in a batch of thousands or in ``crm-intel value accounts``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from crm.settings import Settings
from features.store import entity_info
from serving.explain import encode_records, is_tree_model, records_frame
from training.subscription_value import (
    GRID_DAYS,
    HORIZON_YEARS,
    lifetime_from_scenarios,
    renewal_persistence,
    scenario_days,
    scenario_probabilities,
    segment_log_odds,
)

KEY = "account_id"
VALUE_COLUMNS = (
    "expected_remaining_months",
    "remaining_months_low",
    "remaining_months_high",
    "lifetime_value",
    "lifetime_value_low",
    "lifetime_value_high",
)
# what the lifetime needs beyond the model's features (they are usually among them)
LIFETIME_COLUMNS = (KEY, "mrr", "days_to_renewal", "tenure_days", "plan")


def churn_probability_of(model: Any) -> Callable[[pd.DataFrame], np.ndarray]:
    """The churn model's probability of churn within its window, per row of a frame."""

    def churn_probability(frame: pd.DataFrame) -> np.ndarray:
        return np.asarray(model.predict_proba(frame)[:, 1], dtype=float)

    return churn_probability


@dataclass(frozen=True)
class LifetimeReference:
    """What one churn model's lifetime values are measured against (see the module's doc)."""

    persistence: float
    persistence_pairs: int  # pairs of consecutive renewals the persistence was measured on
    segment_means: pd.DataFrame  # per plan, mean log-odds of churn per renewal scenario
    window_days: int
    annual_discount_rate: float
    gross_margin: float

    def values(self, model: Any, features: pd.DataFrame) -> pd.DataFrame:
        """:func:`~training.subscription_value.remaining_lifetime` of ``features`` (one row per
        account), in their order."""
        if features.empty:
            return pd.DataFrame(columns=[KEY, "mrr", *VALUE_COLUMNS])
        rows = features.reset_index(drop=True)
        by_scenario = scenario_probabilities(rows, churn_probability_of(model), self.window_days)
        return self.from_scenarios(rows, by_scenario)

    def from_scenarios(self, rows: pd.DataFrame, by_scenario: np.ndarray) -> pd.DataFrame:
        """:meth:`values` from the churn probabilities of the accounts' renewal scenarios
        (:func:`~training.subscription_value.scenario_probabilities`)."""
        return lifetime_from_scenarios(
            rows,
            by_scenario,
            window_days=self.window_days,
            annual_discount_rate=self.annual_discount_rate,
            gross_margin=self.gross_margin,
            persistence=self.persistence,
            segment_means=self.segment_means,
        )

    def of_records(self, model: Any, records: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
        """:meth:`values` of online feature dicts (the API's rows). Trees skip pandas, as
        scoring does (the 21 scenarios of one account cost ~70 ms through frames, ~2 ms
        through the encoded matrix of :func:`serving.explain.encode_records`), with the same
        numbers."""
        if not records:
            return self.values(model, pd.DataFrame())
        if not is_tree_model(model):
            names = list(dict.fromkeys([*model.feature_names_in_, *LIFETIME_COLUMNS]))
            return self.values(model, records_frame(names, records))
        rows = records_frame(list(LIFETIME_COLUMNS), records)
        matrix = encode_records(model, records)
        names = list(model.feature_names_in_)
        fill = model.fill
        n = len(records)
        scenarios = np.tile(matrix, (HORIZON_YEARS + 1, 1))
        to_renewal = rows["days_to_renewal"].to_numpy(dtype=float)
        tenure = rows["tenure_days"].to_numpy(dtype=float)
        for k, (_, days, tenure_then) in enumerate(
            scenario_days(to_renewal, tenure, self.window_days)
        ):
            for column, values in (("days_to_renewal", days), ("tenure_days", tenure_then)):
                if column in names:  # as encode_records would encode the changed value
                    if column in fill:
                        values = np.where(np.isnan(values), fill[column], values)
                    scenarios[k * n : (k + 1) * n, names.index(column)] = values
        raw = model.booster_.predict(scenarios, num_iteration=model.best_iteration_, num_threads=1)
        return self.from_scenarios(
            rows, np.asarray(model.calibrator_(raw), dtype=float).reshape(-1, n)
        )


def lifetime_reference(
    settings: Settings,
    model: Any,
    population: pd.DataFrame,
    as_of: datetime | None = None,
) -> LifetimeReference:
    """Measure the reference of ``model`` on the book.

    Args:
        settings: where the feature history is; the churn window, discount rate and margin.
        model: the churn model.
        population: the feature rows of every live account (the rows the batch scores).
        as_of: measure the persistence on the history up to then (None: all of it).
    """
    return book_values(settings, model, population, as_of)[0]


def book_values(
    settings: Settings,
    model: Any,
    population: pd.DataFrame,
    as_of: datetime | None = None,
) -> tuple[LifetimeReference, pd.DataFrame]:
    """:func:`lifetime_reference` and the book's own values (:meth:`LifetimeReference.values`
    of ``population``), its renewal scenarios predicted once for both."""
    churn_probability = churn_probability_of(model)
    window = settings.churn_window_days
    persistence, pairs = renewal_persistence(
        renewal_history(settings, window, as_of), churn_probability, window_days=window
    )
    rows = population.reset_index(drop=True)
    by_scenario = scenario_probabilities(rows, churn_probability, window) if len(rows) else None
    if by_scenario is None:
        means = pd.DataFrame(columns=list(range(-1, HORIZON_YEARS)), dtype=float)
    else:
        means = segment_log_odds(rows, by_scenario)
    reference = LifetimeReference(
        persistence,
        pairs,
        means,
        window,
        settings.value_discount_rate,
        settings.value_gross_margin,
    )
    if by_scenario is None:
        return reference, reference.values(model, rows)
    return reference, reference.from_scenarios(rows, by_scenario)


def renewal_history(
    settings: Settings, window_days: int, as_of: datetime | None = None
) -> pd.DataFrame:
    """The weekly account feature rows near the middle of a renewal's churn window (those
    :func:`~training.subscription_value.renewal_persistence` reads), up to ``as_of``; read with
    a filter, so the rest of the history stays on disk. Empty when there is no history (a
    replica that only reads the online store): the persistence is then 1."""
    _, table, _, _ = entity_info("account")
    path = settings.features_dir / f"{table}.parquet"
    if not path.exists():
        return pd.DataFrame()
    half = window_days / 2
    near = [
        ("days_to_renewal", ">=", half - GRID_DAYS / 2),
        ("days_to_renewal", "<=", half + GRID_DAYS / 2),
    ]
    history = pd.read_parquet(path, filters=near)
    if as_of is not None and len(history):
        stamps = pd.to_datetime(history["event_timestamp"], utc=True)
        history = history[stamps <= pd.Timestamp(as_of).tz_convert("UTC")]
    return history.reset_index(drop=True)
