"""Lifetime value of customers who buy when they like: BG/NBD for how often they buy (and whether
they still do), Gamma-Gamma for how much.

The models are PyMC-Marketing's (``BetaGeoModel``, ``GammaGammaModel``), fitted at their
maximum-likelihood point: every parameter has a flat prior and ``fit(method="map")`` maximises the
posterior, which is then the likelihood (PyMC's ``find_MAP`` optimises without the Jacobian of
its transforms). On CDNOW's 2,357-customer sample this gives Fader, Hardie & Lee's published
parameters to the third digit.

**The summary of each customer**, in weeks (days / 7), over the calibration period:

* ``frequency``: purchase days after the first one (several purchases on one day are one);
* ``recency``: weeks from the first purchase day to the last;
* ``T``: weeks from the first purchase day to the end of the calibration period;
* ``monetary_value``: the mean amount of a repeat purchase day (0 without repeats), which is
  what Gamma-Gamma models; first purchases are left out, as in Fader & Hardie (2013).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from crm.purchases import calendar_day, purchase_days

DAYS_PER_WEEK = 7
PURCHASE_PARAMETERS = ("r", "alpha", "a", "b")
SPEND_PARAMETERS = ("p", "q", "v")


@dataclass(frozen=True)
class CustomerValueModel:
    """The fitted models and the calibration summary they were fitted on."""

    purchases: Any  # pymc_marketing.clv.BetaGeoModel
    spend: Any | None  # pymc_marketing.clv.GammaGammaModel; None without a repeat purchase
    summary: pd.DataFrame
    calibration_end: pd.Timestamp

    @property
    def parameters(self) -> dict[str, float]:
        """BG/NBD's ``r``, ``alpha``, ``a``, ``b`` and Gamma-Gamma's ``p``, ``q``, ``v``."""
        fitted = _point(self.purchases, PURCHASE_PARAMETERS)
        if self.spend is not None:
            fitted |= _point(self.spend, SPEND_PARAMETERS)
        return fitted


@dataclass(frozen=True)
class HoldoutCheck:
    """Repeat purchases forecast for the holdout period against what customers did."""

    weeks: float
    customers: pd.DataFrame  # customer_id, actual, model, naive
    cumulative: pd.DataFrame  # week, date, actual, model, naive (naive in the holdout only)

    @property
    def mean_absolute_error(self) -> dict[str, float]:
        """Per customer, of the BG/NBD forecast and of the naive one (same rate as before)."""
        actual = self.customers["actual"]
        return {
            name: float((self.customers[name] - actual).abs().mean()) for name in ("model", "naive")
        }


def purchase_summary(purchases: pd.DataFrame, calibration_end: pd.Timestamp) -> pd.DataFrame:
    """Each customer's ``frequency``, ``recency``, ``T`` and ``monetary_value`` (module docstring)
    from the purchases made on or before ``calibration_end``; sorted by ``customer_id``."""
    from pymc_marketing.clv import rfm_summary

    end = calendar_day(calibration_end)
    days = purchase_days(purchases)
    summary = rfm_summary(
        days[days["day"] <= end],
        "customer_id",
        "day",
        monetary_value_col="amount",
        observation_period_end=end,
        time_unit="D",
        time_scaler=DAYS_PER_WEEK,
    )
    return summary.sort_values("customer_id", ignore_index=True)


def fit_customer_value(
    purchases: pd.DataFrame, calibration_end: pd.Timestamp | None = None
) -> CustomerValueModel:
    """Fit BG/NBD on every customer's summary and Gamma-Gamma on those with a repeat purchase.

    Args:
        purchases: :data:`crm.purchases.PURCHASES` rows.
        calibration_end: the last day the models learn from; the last purchase day by default.

    Raises:
        ValueError: no purchase on or before ``calibration_end``, or no customer came back.
    """
    from pymc_extras.prior import Prior
    from pymc_marketing.clv import BetaGeoModel, GammaGammaModel

    end = calendar_day(calibration_end) if calibration_end is not None else _last_day(purchases)
    summary = purchase_summary(purchases, end)
    if summary.empty:
        raise ValueError(f"no purchase on or before {end:%Y-%m-%d}")
    if not (summary["frequency"] > 0).any():
        raise ValueError("no customer bought twice: repeat purchases cannot be modelled")
    flat = {name: Prior("HalfFlat") for name in PURCHASE_PARAMETERS}
    purchase_model = BetaGeoModel(model_config=flat)
    _fit_at_maximum_likelihood(
        purchase_model, summary[["customer_id", "frequency", "recency", "T"]]
    )
    # Gamma-Gamma's spend is a Gamma variable: a repeat buyer whose purchases were all free
    # (amount 0; CDNOW's master file has some) has no spend to model and is left out of its fit
    repeat = summary[(summary["frequency"] > 0) & (summary["monetary_value"] > 0)]
    spend_model = None
    if len(repeat) >= 2:
        spend_model = GammaGammaModel(
            model_config={name: Prior("HalfFlat") for name in SPEND_PARAMETERS}
        )
        _fit_at_maximum_likelihood(
            spend_model, repeat[["customer_id", "frequency", "monetary_value"]]
        )
    return CustomerValueModel(purchase_model, spend_model, summary, end)


def customer_values(
    model: CustomerValueModel, horizon_weeks: int = 52, annual_discount_rate: float = 0.10
) -> pd.DataFrame:
    """Per customer: chance of still being a customer, expected purchases and spend over
    ``horizon_weeks`` after the calibration period, and lifetime value over that horizon.

    Lifetime value is PyMC-Marketing's discounted sum: expected purchases each month × expected
    spend per purchase (Gamma-Gamma; the customer's mean when Gamma-Gamma could not be fitted),
    discounted monthly at the rate equal to ``annual_discount_rate`` a year.
    """
    from pymc_marketing.clv import customer_lifetime_value

    summary = model.summary
    purchases = model.purchases
    p_alive = _values(purchases.expected_probability_alive(data=summary))
    expected = _values(purchases.expected_purchases(data=summary, future_t=horizon_weeks))
    if model.spend is not None:
        spend = _values(model.spend.expected_customer_spend(data=summary))
    else:
        spend = summary["monetary_value"].to_numpy()
    monthly_rate = (1 + annual_discount_rate) ** (1 / 12) - 1
    months = max(1, round(horizon_weeks * DAYS_PER_WEEK / 30.4375))
    value = _values(
        customer_lifetime_value(
            purchases,
            summary.assign(future_spend=spend),
            future_t=months,
            discount_rate=monthly_rate,
            time_unit="W",
        )
    )
    return summary.assign(
        p_alive=p_alive,
        expected_purchases=expected,
        expected_spend=spend,
        lifetime_value=value,
    )


def holdout_check(
    model: CustomerValueModel, purchases: pd.DataFrame, holdout_end: pd.Timestamp
) -> HoldoutCheck:
    """Forecast the repeat purchases of the calibration customers from the day after the
    calibration period to ``holdout_end`` and compare with what they did, beside a naive
    forecast that each customer keeps buying at their calibration rate (``frequency / T``).

    Also the cohort's cumulative repeat purchases week by week, from the first purchase to
    ``holdout_end``: what happened, what BG/NBD expects (each customer from their first
    purchase, as Fader, Hardie & Lee's figure 2) and, in the holdout, the naive forecast.
    """
    end = calendar_day(holdout_end)
    start = model.calibration_end
    if end <= start:
        raise ValueError(f"the holdout must end after {start:%Y-%m-%d}")
    weeks = (end - start).days / DAYS_PER_WEEK
    summary = model.summary
    days = purchase_days(purchases)
    days = days[days["customer_id"].isin(summary["customer_id"]) & (days["day"] <= end)]
    in_holdout = days[days["day"] > start].groupby("customer_id").size()
    actual = in_holdout.reindex(summary["customer_id"], fill_value=0).to_numpy(dtype=float)
    forecast = _values(model.purchases.expected_purchases(data=summary, future_t=weeks))
    naive = (summary["frequency"] / summary["T"].where(summary["T"] > 0)).fillna(0) * weeks
    customers = pd.DataFrame(
        {
            "customer_id": summary["customer_id"],
            "actual": actual,
            "model": forecast,
            "naive": naive.to_numpy(),
        }
    )
    return HoldoutCheck(weeks, customers, _cumulative(model, days, end, naive.sum()))


def _cumulative(
    model: CustomerValueModel, days: pd.DataFrame, end: pd.Timestamp, naive_total: float
) -> pd.DataFrame:
    first = days.groupby("customer_id")["day"].min()
    origin = first.min()
    week_ends = pd.date_range(origin + pd.Timedelta(days=DAYS_PER_WEEK - 1), end, freq="7D")
    if len(week_ends) == 0 or week_ends[-1] < end:
        week_ends = week_ends.append(pd.DatetimeIndex([end]))
    after_first = days.merge(first.rename("first"), on="customer_id")
    repeat_days = np.sort(
        after_first.loc[after_first["day"] > after_first["first"], "day"].to_numpy()
    )
    actual = np.searchsorted(repeat_days, week_ends.to_numpy(), side="right")
    # customers by the day of their first purchase: E[X(t)] is the same for each day's cohort
    cohorts = first.value_counts().sort_index()
    ages = (
        (week_ends.to_numpy()[:, None] - cohorts.index.to_numpy()[None, :])
        / np.timedelta64(1, "D")
        / DAYS_PER_WEEK
    )
    alive = ages > 0
    grid = pd.DataFrame({"customer_id": np.arange(alive.sum()), "t": ages[alive]})
    per_customer = _values(model.purchases.expected_purchases_new_customer(data=grid))
    expected = np.zeros(ages.shape)
    expected[alive] = per_customer
    model_curve = expected @ cohorts.to_numpy(dtype=float)
    calibration_end = model.calibration_end
    at_calibration_end = float(
        np.searchsorted(repeat_days, calibration_end.to_datetime64(), side="right")
    )
    holdout_weeks = (end - calibration_end).days / DAYS_PER_WEEK
    elapsed = (week_ends - calibration_end).days / DAYS_PER_WEEK
    naive = np.where(
        week_ends > calibration_end,
        at_calibration_end + naive_total * elapsed / holdout_weeks,
        np.nan,
    )
    return pd.DataFrame(
        {
            "week": np.arange(1, len(week_ends) + 1),
            "date": week_ends,
            "actual": actual.astype(float),
            "model": model_curve,
            "naive": naive,
        }
    )


def _fit_at_maximum_likelihood(model: Any, data: pd.DataFrame) -> None:
    from pymc.exceptions import SamplingError

    with warnings.catch_warnings():
        # PyMC-Marketing warns that a MAP fit gives no uncertainty: known, and the point is wanted
        warnings.simplefilter("ignore", UserWarning)
        try:
            model.fit(data=data, method="map", progressbar=False)
        except SamplingError:
            raise ValueError(
                f"the {'spend' if 'monetary_value' in data else 'purchase'} model cannot be "
                f"fitted: its likelihood is not finite on these {len(data):,} customers"
            ) from None


def _point(model: Any, names: tuple[str, ...]) -> dict[str, float]:
    posterior = model.fit_result
    return {name: float(np.asarray(posterior[name]).mean()) for name in names}


def _values(array: Any) -> np.ndarray:
    """A per-customer prediction of a MAP fit (one chain, one draw) as a flat array."""
    return np.asarray(array.mean(dim=[d for d in ("chain", "draw") if d in array.dims]))


def _last_day(purchases: pd.DataFrame) -> pd.Timestamp:
    if purchases.empty:
        raise ValueError("no purchase to learn from")
    return calendar_day(purchases["purchased_at"].max())
