"""The purchase summary BG/NBD and Gamma-Gamma read: frequency, recency, T and spend, in weeks."""

from __future__ import annotations

import pandas as pd
import pytest

from training.customer_value import purchase_summary

pytestmark = pytest.mark.unit


def _purchases(rows: list[tuple[str, str, float]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["customer_id", "purchased_at", "amount"])
    frame["purchased_at"] = pd.to_datetime(frame["purchased_at"], utc=True)
    return frame


def test_repeat_days_weeks_and_spend_of_repeat_purchases() -> None:
    # given one customer who bought twice on their first day, then twice more, then after the
    # calibration period, and one who bought once
    purchases = _purchases(
        [
            ("a", "2024-01-01 09:00", 10.0),
            ("a", "2024-01-01 17:00", 5.0),
            ("a", "2024-01-15 12:00", 20.0),
            ("a", "2024-02-05 08:00", 30.0),
            ("a", "2024-03-11 08:00", 99.0),
            ("b", "2024-02-19 10:00", 7.0),
        ]
    )
    # when
    summary = purchase_summary(purchases, pd.Timestamp("2024-03-04")).set_index("customer_id")
    # then repeat purchase days are counted after the first day, in weeks of 7 days
    assert summary.loc["a"].to_dict() == pytest.approx(
        {"frequency": 2, "recency": 5.0, "T": 9.0, "monetary_value": 25.0}
    )
    assert summary.loc["b"].to_dict() == pytest.approx(
        {"frequency": 0, "recency": 0.0, "T": 2.0, "monetary_value": 0.0}
    )


def test_a_customer_whose_first_purchase_is_after_the_calibration_period_is_left_out() -> None:
    purchases = _purchases([("a", "2024-01-01", 1.0), ("late", "2024-04-01", 1.0)])
    summary = purchase_summary(purchases, pd.Timestamp("2024-03-01"))
    assert list(summary["customer_id"]) == ["a"]
