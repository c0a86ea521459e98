"""Remaining lifetime from churn-window probabilities: the survival arithmetic and the
persistence of an account's standing from one renewal to the next."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from training.subscription_value import (
    DAYS_PER_MONTH,
    HORIZON_YEARS,
    TERM_DAYS,
    remaining_lifetime,
    renewal_persistence,
)

pytestmark = pytest.mark.unit


def _accounts(days_to_renewal: float, plans: list[str]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "account_id": [f"A{i}" for i in range(len(plans))],
            "plan": plans,
            "mrr": 1000.0,
            "days_to_renewal": days_to_renewal,
            "tenure_days": 400.0,
        }
    )


def test_a_constant_hazard_gives_the_exponential_lifetime() -> None:
    # given a model that says 10 % in any 90-day window, renewal or not
    values = remaining_lifetime(
        _accounts(100.0, ["starter"]), lambda f: np.full(len(f), 0.10), annual_discount_rate=0.0
    )
    # then the lifetime is exponential: integral of 0.9^(t / 90 days), up to the horizon
    rate = -np.log(0.9) / 90
    horizon = HORIZON_YEARS * TERM_DAYS // 7 * 7
    expected_days = (1 - np.exp(-rate * horizon)) / rate
    assert values["expected_remaining_months"].iloc[0] == pytest.approx(
        expected_days / DAYS_PER_MONTH, rel=2e-3
    )
    # the undiscounted value is margin × MRR × months
    assert values["lifetime_value"].iloc[0] == pytest.approx(
        0.8 * 1000 * values["expected_remaining_months"].iloc[0], rel=1e-9
    )


def test_churn_only_at_renewals_halves_the_accounts_at_each() -> None:
    # given no churn between renewals and an even chance at each renewal window
    def probability(frame: pd.DataFrame) -> np.ndarray:
        return np.where(frame["days_to_renewal"] < 90, 0.5, 1e-9)

    values = remaining_lifetime(_accounts(100.0, ["starter"]), probability)
    # then: 100 days to the first renewal, then a year more for each renewal passed (1 on average)
    assert values["expected_remaining_months"].iloc[0] == pytest.approx(
        (100 + TERM_DAYS) / DAYS_PER_MONTH, rel=0.01
    )
    # half the accounts are gone at the first renewal: the 80 % range starts there
    assert values["remaining_months_low"].iloc[0] == pytest.approx(100 / DAYS_PER_MONTH, abs=0.3)


def test_without_persistence_the_years_after_the_next_renewal_are_the_segments() -> None:
    # given two accounts of one plan, one far riskier at its renewals than the other
    def probability(frame: pd.DataFrame) -> np.ndarray:
        risky = frame["account_id"] == "A0"
        at_renewal = frame["days_to_renewal"] < 90
        return np.where(at_renewal, np.where(risky, 0.6, 0.05), 1e-6)

    accounts = _accounts(100.0, ["starter", "starter"])
    kept = remaining_lifetime(accounts, probability, persistence=1.0)
    pulled = remaining_lifetime(accounts, probability, persistence=0.0)
    # then with its standing kept for ever the gap is widest; pulled to the plan after the next
    # renewal, the two differ only by the next renewal
    gap_kept = np.ptp(kept["expected_remaining_months"])
    gap_pulled = np.ptp(pulled["expected_remaining_months"])
    assert gap_pulled < gap_kept
    after_next = pulled["expected_remaining_months"] - 100 / DAYS_PER_MONTH
    survived_next = np.array([0.4, 0.95])
    assert (after_next / survived_next).to_numpy() == pytest.approx(
        np.full(2, (after_next / survived_next).iloc[0]), rel=0.02
    )


def test_persistence_is_the_slope_from_one_renewal_to_the_next() -> None:
    # given 400 accounts whose renewal-window log-odds keep half their difference a year later
    rng = np.random.default_rng(0)
    now = rng.normal(0.0, 1.0, 400)
    later = 0.5 * now + rng.normal(0.0, 0.3, 400)
    rows = []
    for i, (a, b) in enumerate(zip(now, later, strict=True)):
        for year, logit in ((1, a), (2, b)):
            rows.append(
                {
                    "account_id": f"A{i}",
                    "plan": "starter",
                    "days_to_renewal": 45.0,
                    "tenure_days": year * TERM_DAYS - 45.0,
                    "logit": logit,
                }
            )
    history = pd.DataFrame(rows)
    persistence, pairs = renewal_persistence(
        history, lambda f: 1 / (1 + np.exp(-f["logit"].to_numpy()))
    )
    assert pairs == 400
    assert persistence == pytest.approx(0.5, abs=0.05)
