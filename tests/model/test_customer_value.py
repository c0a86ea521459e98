"""BG/NBD and Gamma-Gamma on CDNOW's 2,357-customer sample, as Fader, Hardie & Lee (2005) fit it:
calibration on the first 39 weeks (1997-01-01 to 1997-09-30), holdout on the next 39 weeks.

Protocol: maximum likelihood on the calibration summary only; the holdout's purchases are read
only to score the forecast.
"""

from __future__ import annotations

import pandas as pd
import pytest

from crm.purchases import read_purchases
from training.customer_value import (
    CustomerValueModel,
    HoldoutCheck,
    fit_customer_value,
    holdout_check,
)

pytestmark = pytest.mark.model

CALIBRATION_END = pd.Timestamp("1997-09-30")
HOLDOUT_END = pd.Timestamp("1998-06-30")
# Fader, Hardie & Lee (2005), table 1; Fader & Hardie (2013), the Gamma-Gamma note
PUBLISHED_PURCHASES = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}
PUBLISHED_SPEND = {"p": 6.25, "q": 3.74, "v": 15.44}


@pytest.fixture(scope="module")
def cdnow(cdnow_sample) -> tuple[pd.DataFrame, CustomerValueModel, HoldoutCheck]:
    purchases = read_purchases(cdnow_sample)
    model = fit_customer_value(purchases, CALIBRATION_END)
    return purchases, model, holdout_check(model, purchases, HOLDOUT_END)


def test_bg_nbd_recovers_the_published_parameters(cdnow) -> None:
    _, model, _ = cdnow
    fitted = model.parameters
    assert len(model.summary) == 2357
    # r and alpha within 3 %, a and b within 5 % (the bars)
    for name, tolerance in (("r", 0.03), ("alpha", 0.03), ("a", 0.05), ("b", 0.05)):
        assert fitted[name] == pytest.approx(PUBLISHED_PURCHASES[name], rel=tolerance), name


def test_gamma_gamma_recovers_the_published_parameters(cdnow) -> None:
    _, model, _ = cdnow
    fitted = model.parameters
    for name, published in PUBLISHED_SPEND.items():
        assert fitted[name] == pytest.approx(published, rel=0.02), name


def test_the_holdout_forecast_beats_the_same_rate_forecast(cdnow) -> None:
    _, model, check = cdnow
    errors = check.mean_absolute_error
    # scored on the 39 holdout weeks the models never saw
    assert check.weeks == pytest.approx(39.0)
    assert errors["model"] < errors["naive"]
    # the cohort's total: what happened, counted here from the raw purchases
    assert (
        check.customers["actual"].sum()
        == check.cumulative["actual"].iloc[-1]
        - (check.cumulative.loc[check.cumulative["date"] <= CALIBRATION_END, "actual"].iloc[-1])
    )


def test_the_cumulative_curve_follows_what_happened(cdnow) -> None:
    purchases, _, check = cdnow
    curve = check.cumulative
    days = purchases.assign(day=purchases["purchased_at"].dt.tz_localize(None).dt.normalize())
    days = days.drop_duplicates(["customer_id", "day"])
    repeat_days = len(days) - days["customer_id"].nunique()
    # 78 weeks; the actual curve ends at every repeat purchase day of the cohort
    assert len(curve) == 78
    assert curve["actual"].iloc[-1] == repeat_days
    assert curve["actual"].is_monotonic_increasing and curve["model"].is_monotonic_increasing
    # BG/NBD tracks the cohort's total within 5 % at the end of the holdout (FHL's figure 2)
    assert curve["model"].iloc[-1] == pytest.approx(curve["actual"].iloc[-1], rel=0.05)
