"""The true expected remaining lifetime of every live subscription at the end of the simulation.

Computed from the churn process itself (:mod:`simulator.churn`), in closed form, with no draw
from any random stream, so the rest of the simulation is unchanged: from the end of the period a
subscription survives

* each week, the background hazard of its plan;
* each renewal ``j`` (the next one first, then one a year), with probability
  ``1 - Phi((alpha_j - beta × mean_j) / sqrt(1 + beta² × var_j))``, where ``mean_j`` and ``var_j``
  are the Gaussian forecast of its health at that renewal from its last weekly health (AR(1)),
  and ``alpha_j`` the plan's intercept less the tenure effect of the completed years.

Renewals are taken as independent given the forecast: exact for the next renewal; health a year
apart is correlated by ``phi^52`` (0.004), so later ones are independent to that precision. The
expectation is the integral of that survival up to :data:`HORIZON_YEARS`; lifetimes beyond it
count as that horizon.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.special import ndtr

from simulator.churn import (
    BACKGROUND_CHURN,
    CHURN_ALPHA,
    CHURN_BETA,
    CHURN_TENURE,
    HEALTH_PHI,
    HEALTH_SIGMA,
)
from simulator.config import DAY_NS, WEEK_NS, Calendar

HORIZON_YEARS = 20
WEEKS_PER_MONTH = 30.4375 / 7


def remaining_lifetime_truth(
    cal: Calendar, subs: dict, churn: dict, account_ids: np.ndarray
) -> pd.DataFrame:
    """``account_id``, ``as_of`` (the end of the period) and ``expected_remaining_months`` of
    every subscription live at the end of the period.

    Args:
        cal: the simulation's calendar.
        subs: :func:`simulator.churn.draw_subscriptions`' subscriptions.
        churn: :func:`simulator.churn.draw_churn`'s health and churn times.
        account_ids: the accounts table's ids, by account index.
    """
    live = np.flatnonzero(churn["churn_ns"] < 0)
    as_of = cal.end_ns
    last_week = cal.weeks - 1
    year_ns = 365 * DAY_NS
    start = subs["start_ns"][live]
    plan = subs["plan"][live]
    mu = subs["health_mean"][live]
    health = churn["health"][live, last_week]
    completed = (as_of - start) // year_ns  # whole years behind each subscription
    horizon = HORIZON_YEARS * 52.0
    stay = 1 - BACKGROUND_CHURN[plan]  # weekly
    # E[lifetime] = integral of survival over [0, horizon]: between renewals survival decays by
    # the background hazard (integral of stay^t in closed form); each renewal multiplies it by
    # the chance of renewing
    alive = np.ones(len(live))
    since = np.zeros(len(live))
    expected_weeks = np.zeros(len(live))
    for j in range(HORIZON_YEARS + 1):
        renewal_ns = start + (completed + 1 + j) * year_ns
        until = np.minimum((renewal_ns - as_of) / WEEK_NS, horizon)
        expected_weeks += alive * (stay**since - stay**until) / -np.log(stay)
        steps = np.maximum((renewal_ns - cal.week_start(last_week)) // WEEK_NS, 0)
        mean = mu + HEALTH_PHI**steps * (health - mu)
        var = HEALTH_SIGMA**2 * (1 - HEALTH_PHI ** (2 * steps)) / (1 - HEALTH_PHI**2)
        alpha = CHURN_ALPHA[plan] - CHURN_TENURE * np.minimum(completed + j, 3)
        p_churn = ndtr((alpha - CHURN_BETA * mean) / np.sqrt(1 + CHURN_BETA**2 * var))
        alive = alive * (1 - p_churn)
        since = until
    return pd.DataFrame(
        {
            "account_id": account_ids[subs["account"][live]],
            "as_of": pd.Timestamp(as_of, tz="UTC"),
            "expected_remaining_months": expected_weeks / WEEKS_PER_MONTH,
        }
    ).sort_values("account_id", ignore_index=True)
