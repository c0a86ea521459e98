"""Lifetime value of subscription accounts: the churn model's hazard over the next renewals.

The churn model gives the probability that an account churns within the churn window (90 days)
from what is known about it now. Asked the same question about the account as it would stand in
the window of each of its next renewals (its ``days_to_renewal`` half a window away, its
``tenure_days`` grown by the years between; every other feature as it is now), and in a window
with no renewal, it gives

* ``p_quiet``: churn in a window without renewal, the background hazard, spread evenly over the
  weeks;
* ``p_renewal[j]``: churn in the window of renewal ``j``; beyond the background, the chance of not
  renewing then.

Survival from now is the background decay times, at each renewal, the chance of renewing; the
expected remaining lifetime is its integral up to :data:`HORIZON_YEARS`, the 10th and 90th
percentiles of the lifetime come from the same curve (an 80 % range for an account like this
one), and lifetime value is the gross margin × MRR of every month the account is expected to
stay, discounted to today's money. Values are in months and the CRM's currency.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import pandas as pd

HORIZON_YEARS = 20
TERM_DAYS = 365  # annual subscriptions (features.account_features.ANNUAL_TERM_DAYS)
DAYS_PER_MONTH = 30.4375
GRID_DAYS = 7  # survival is evaluated week by week
CHUNK = 5_000  # accounts per block of the survival grid


def renewal_scenarios(features: pd.DataFrame, window_days: int) -> pd.DataFrame:
    """Each account's feature row as it would stand in a window with no renewal (``scenario``
    -1), then in the window of each of its next renewals (``scenario`` 0, 1, …), for
    ``HORIZON_YEARS`` years; every feature but ``days_to_renewal`` and ``tenure_days`` as now."""
    to_renewal = features["days_to_renewal"].to_numpy(dtype=float)
    tenure = features["tenure_days"].to_numpy(dtype=float)
    parts = []
    for scenario, days, tenure_then in scenario_days(to_renewal, tenure, window_days):
        part = features.copy()
        part["days_to_renewal"] = days
        part["tenure_days"] = tenure_then
        part["scenario"] = scenario
        parts.append(part)
    return pd.concat(parts, ignore_index=True)


def scenario_days(
    to_renewal: np.ndarray, tenure: np.ndarray, window_days: int
) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """Per scenario of :func:`renewal_scenarios` (-1 first): its number, and every account's
    ``days_to_renewal`` and ``tenure_days`` in it."""
    quiet_days = float(TERM_DAYS - window_days // 2)  # a renewal well outside the window
    in_window = float(window_days // 2)  # the renewal half a window away
    for scenario in range(-1, HORIZON_YEARS):
        if scenario < 0:
            days = np.full(len(to_renewal), quiet_days)
            yield scenario, days, tenure + np.maximum(to_renewal - quiet_days, 0.0)
        else:
            days = np.full(len(to_renewal), in_window)
            yield scenario, days, tenure + to_renewal - in_window + scenario * TERM_DAYS


def remaining_lifetime(
    features: pd.DataFrame,
    churn_probability: Callable[[pd.DataFrame], np.ndarray],
    *,
    key: str = "account_id",
    window_days: int = 90,
    annual_discount_rate: float = 0.10,
    gross_margin: float = 0.80,
    persistence: float = 1.0,
    segment: str = "plan",
    segment_means: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Per account: ``p_quiet``, ``p_next_renewal``, ``expected_remaining_months``, its 80 %
    range (``remaining_months_low``, ``remaining_months_high``), ``mrr``, ``lifetime_value`` and
    its range (``lifetime_value_low``, ``lifetime_value_high``: the value of the lifetimes at the
    range's ends).

    Args:
        features: one row per live account with the churn model's features (``mrr``,
            ``days_to_renewal`` and ``tenure_days`` among them).
        churn_probability: the churn model's probability of churn within the window, per row.
        key: the id column.
        window_days: the churn model's window.
        annual_discount_rate: what a unit of revenue a year from now is worth less today.
        gross_margin: the share of MRR that is margin.
        persistence: how much of an account's standing now carries to each next year (see
            :func:`renewal_persistence`): year ``j``'s probabilities are pulled toward the
            segment's, on the log-odds scale, keeping ``persistence ** j`` of the account's own
            difference. 1 keeps today's standing for ever.
        segment: the column whose groups the probabilities are pulled toward.
        segment_means: the segments' mean log-odds per scenario (:func:`segment_log_odds` of
            the whole book); None: those of ``features`` themselves. Given, an account's value
            does not depend on which other accounts are valued with it (one account asked for
            through the API gets what the batch gives it); an account of a segment the table
            lacks keeps its own standing.
    """
    rows = features.reset_index(drop=True)
    return lifetime_from_scenarios(
        rows,
        scenario_probabilities(rows, churn_probability, window_days),
        key=key,
        window_days=window_days,
        annual_discount_rate=annual_discount_rate,
        gross_margin=gross_margin,
        persistence=persistence,
        segment=segment,
        segment_means=segment_means,
    )


def lifetime_from_scenarios(
    rows: pd.DataFrame,
    by_scenario: np.ndarray,
    *,
    key: str = "account_id",
    window_days: int = 90,
    annual_discount_rate: float = 0.10,
    gross_margin: float = 0.80,
    persistence: float = 1.0,
    segment: str = "plan",
    segment_means: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """:func:`remaining_lifetime` from the churn probabilities of its scenarios already worked
    out (``by_scenario``: scenarios of :func:`renewal_scenarios` as rows, -1 first; accounts as
    columns, in the order of ``rows``, which need only ``key``, ``mrr``, ``days_to_renewal`` and
    ``segment``)."""
    n = len(rows)
    by_scenario = np.clip(np.asarray(by_scenario, dtype=float), 1e-9, 1.0 - 1e-9)
    years = np.arange(HORIZON_YEARS + 1)
    groups = _groups(rows, segment)
    if segment_means is None:
        segment_means = _mean_log_odds(by_scenario, groups)
    means = _means_of(segment_means, groups, by_scenario)
    weights = float(np.clip(persistence, 0.0, 1.0)) ** years
    # the background of each year (before the first renewal, then after each), and each renewal
    p_quiet = _toward(
        np.repeat(by_scenario[:1].T, len(years), axis=1),
        np.repeat(means[:, :1], len(years), axis=1),
        weights,
    )
    p_renewal = _toward(by_scenario[1:].T, means[:, 1:], weights[:-1])
    # a renewal window holds the background too: the renewal's own part is what exceeds it
    renews = np.clip((1 - p_renewal) / (1 - p_quiet[:, :-1]), 1e-12, 1.0)
    weekly_stay = (1 - p_quiet) ** (GRID_DAYS / window_days)
    first_renewal_days = rows["days_to_renewal"].to_numpy(dtype=float)
    out = {
        "expected": np.empty(n),
        "low": np.empty(n),
        "high": np.empty(n),
        "value": np.empty(n),
        "value_low": np.empty(n),
        "value_high": np.empty(n),
    }
    mrr = np.nan_to_num(rows["mrr"].to_numpy(dtype=float))
    for lo in range(0, n, CHUNK):
        block = slice(lo, min(lo + CHUNK, n))
        curve = _survival(weekly_stay[block], renews[block], first_renewal_days[block])
        for name, values in _summaries(curve, mrr[block], annual_discount_rate, gross_margin):
            out[name][block] = values
    return pd.DataFrame(
        {
            key: rows[key].to_numpy(),
            "mrr": mrr,
            "p_quiet": by_scenario[0],
            "p_next_renewal": by_scenario[1],
            "expected_remaining_months": out["expected"],
            "remaining_months_low": out["low"],
            "remaining_months_high": out["high"],
            "lifetime_value": out["value"],
            "lifetime_value_low": out["value_low"],
            "lifetime_value_high": out["value_high"],
        }
    )


def renewal_persistence(
    history: pd.DataFrame,
    churn_probability: Callable[[pd.DataFrame], np.ndarray],
    *,
    key: str = "account_id",
    window_days: int = 90,
    segment: str = "plan",
    min_pairs: int = 30,
) -> tuple[float, int]:
    """How much of an account's standing at one renewal carries to its next, from the CRM's own
    history: the churn model's log-odds in the window of a renewal (the weekly snapshot nearest
    half a window before it), regressed on the same account's a year before, both centred on
    their segment's mean. The slope is what one year keeps; noise in today's standing and real
    change both pull it below 1.

    Returns:
        The slope clipped to [0, 1], and the pairs of consecutive renewals it rests on; (1.0, n)
        with fewer than ``min_pairs`` pairs: without history, today's standing is kept.
    """
    half = window_days / 2
    near = history[(history["days_to_renewal"] - half).abs() <= GRID_DAYS / 2].copy()
    if near.empty:
        return 1.0, 0
    near["renewal"] = np.round(
        (near["tenure_days"].to_numpy(float) + near["days_to_renewal"].to_numpy(float)) / TERM_DAYS
    ).astype(int)
    near["gap"] = (near["days_to_renewal"] - half).abs()
    near = near.sort_values("gap").drop_duplicates([key, "renewal"]).reset_index(drop=True)
    p = np.clip(np.asarray(churn_probability(near), dtype=float), 1e-6, 1 - 1e-6)
    near["logit"] = np.log(p / (1 - p))
    groups = near[segment].astype(str) if segment in near else pd.Series("", index=near.index)
    near["centred"] = near["logit"] - near.groupby(groups)["logit"].transform("mean")
    later = near[[key, "renewal", "centred"]].assign(renewal=lambda d: d["renewal"] - 1)
    pairs = near.merge(later, on=[key, "renewal"], suffixes=("", "_next"))
    if len(pairs) < min_pairs:
        return 1.0, len(pairs)
    x, y = pairs["centred"].to_numpy(), pairs["centred_next"].to_numpy()
    slope = float(x @ y / max(x @ x, 1e-12))
    return float(np.clip(slope, 0.0, 1.0)), len(pairs)


def segment_log_odds(
    features: pd.DataFrame, by_scenario: np.ndarray, *, segment: str = "plan"
) -> pd.DataFrame:
    """Per segment (the index), the mean log-odds of churn of its accounts in each scenario of
    :func:`renewal_scenarios` (columns -1, 0, 1, …): what each account's later years are pulled
    toward in :func:`remaining_lifetime`.

    Args:
        features: the accounts (their ``segment``).
        by_scenario: :func:`scenario_probabilities` of the same accounts.
    """
    return _mean_log_odds(by_scenario, _groups(features.reset_index(drop=True), segment))


def scenario_probabilities(
    rows: pd.DataFrame, churn_probability: Callable[[pd.DataFrame], np.ndarray], window_days: int
) -> np.ndarray:
    """Churn probability of every account (columns) in every scenario (rows, -1 first)."""
    scenarios = renewal_scenarios(rows, window_days)
    p = np.clip(np.asarray(churn_probability(scenarios), dtype=float), 1e-9, 1.0 - 1e-9)
    return p.reshape(HORIZON_YEARS + 1, len(rows))


def _groups(rows: pd.DataFrame, segment: str) -> np.ndarray:
    if segment in rows:
        return rows[segment].astype(str).to_numpy()
    return np.full(len(rows), "", dtype=object)


def _mean_log_odds(by_scenario: np.ndarray, groups: np.ndarray) -> pd.DataFrame:
    logit = pd.DataFrame(np.log(by_scenario / (1 - by_scenario)).T)
    means = logit.groupby(groups).mean()
    means.columns = list(range(-1, HORIZON_YEARS))
    return means


def _means_of(means: pd.DataFrame, groups: np.ndarray, by_scenario: np.ndarray) -> np.ndarray:
    """Each account's segment means (accounts × scenarios); its own log-odds where its segment
    is not in ``means``."""
    own = np.log(by_scenario / (1 - by_scenario)).T
    found = means.reindex(pd.Index(groups)).to_numpy(dtype=float)
    return np.where(np.isnan(found), own, found)


def _toward(p: np.ndarray, means: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Probabilities (accounts × years) pulled toward the mean log-odds of the same year,
    keeping ``weights[j]`` of each account's own difference in year ``j``."""
    logit = np.log(p / (1 - p))
    pulled = means + weights[None, :] * (logit - means)
    return 1 / (1 + np.exp(-pulled))


def _survival(
    weekly_stay: np.ndarray, renews: np.ndarray, first_renewal_days: np.ndarray
) -> np.ndarray:
    """Survival at the end of each week of the horizon: rows accounts, columns weeks.

    ``weekly_stay[:, k]`` holds in year ``k`` (before the first renewal, then after each);
    ``renews[:, j]`` is the chance of renewing at renewal ``j``."""
    weeks = np.arange(1, HORIZON_YEARS * TERM_DAYS // GRID_DAYS + 1, dtype=float)
    passed = np.floor((weeks[None, :] * GRID_DAYS - first_renewal_days[:, None]) / TERM_DAYS) + 1
    year = np.clip(passed, 0, renews.shape[1]).astype(int)  # renewals behind at each week
    rows = np.arange(len(weekly_stay))[:, None]
    log_stay = np.cumsum(np.log(weekly_stay)[rows, year], axis=1)
    log_renewed = np.hstack([np.zeros((len(renews), 1)), np.cumsum(np.log(renews), axis=1)])[
        rows, year
    ]
    return np.exp(log_stay + log_renewed)


def _summaries(
    curve: np.ndarray, mrr: np.ndarray, annual_discount_rate: float, gross_margin: float
) -> list[tuple[str, np.ndarray]]:
    week_months = GRID_DAYS / DAYS_PER_MONTH
    # survival is 1 at the start: the expectation integrates it week by week
    starts = np.hstack([np.ones((len(curve), 1)), curve[:, :-1]])
    staying = (starts + curve) / 2  # each week's share of the account still there (trapezoids)
    expected = staying.sum(axis=1) * week_months
    low = _first_week_below(curve, 0.9) * week_months
    high = _first_week_below(curve, 0.1) * week_months
    weeks = np.arange(curve.shape[1])
    discount = (1 + annual_discount_rate) ** (-weeks * GRID_DAYS / 365.0)
    monthly_margin = gross_margin * mrr
    # revenue accrues week by week while the account stays
    value = (staying * discount[None, :]).sum(axis=1) * week_months * monthly_margin
    cumulative = np.cumsum(discount) * week_months  # value of a lifetime that ends at each week

    def value_until(months: np.ndarray) -> np.ndarray:
        index = np.clip(np.round(months / week_months).astype(int) - 1, 0, len(weeks) - 1)
        return np.where(months > 0, cumulative[index], 0.0) * monthly_margin

    return [
        ("expected", expected),
        ("low", low),
        ("high", high),
        ("value", value),
        ("value_low", value_until(low)),
        ("value_high", value_until(high)),
    ]


def _first_week_below(curve: np.ndarray, level: float) -> np.ndarray:
    """Weeks until survival first falls to ``level`` (the horizon when it never does)."""
    below = curve <= level
    return np.where(below.any(axis=1), below.argmax(axis=1) + 1, curve.shape[1]).astype(float)


def segment_mean_lifetime(
    subscriptions: pd.DataFrame, as_of: pd.Timestamp, segment: str = "plan"
) -> pd.Series:
    """The peer's lifetime: per segment, the mean lifetime in months of an exponential fitted to
    every subscription's time at risk and churns up to ``as_of`` (months at risk ÷ churns);
    every account of the segment is given it, whatever its own history."""
    start = subscriptions["start"]
    end = subscriptions["cancelled_at"].where(subscriptions["cancelled_at"] <= as_of)
    churned = end.notna()
    months = ((end.fillna(as_of) - start).dt.total_seconds() / 86_400 / DAYS_PER_MONTH).clip(
        lower=0
    )
    frame = pd.DataFrame({"segment": subscriptions[segment], "months": months, "churned": churned})
    frame = frame[start <= as_of]
    totals = frame.groupby("segment")[["months", "churned"]].sum()
    return (totals["months"] / totals["churned"].clip(lower=1)).rename("mean_lifetime_months")


def lifetime_check(
    values: pd.DataFrame, truth: pd.DataFrame, peer_months: pd.Series, bins: int = 10
) -> tuple[dict[str, float | int], pd.DataFrame]:
    """Expected remaining lifetime against the truth (simulated data), beside the peer that gives
    every account its segment's mean lifetime.

    Args:
        values: :func:`remaining_lifetime` rows (``account_id``, ``mrr``,
            ``expected_remaining_months``).
        truth: ``account_id`` and the true ``expected_remaining_months``.
        peer_months: the peer's months, by account id.
        bins: groups of accounts, by our expected lifetime, for the calibration table.

    Returns:
        Spearman rank correlations with the truth of the lifetime and of MRR × lifetime (ours and
        the peer's), mean absolute errors in months, the accounts compared; and the calibration
        table: per group, our mean expected lifetime, the truth's and the peer's.
    """
    from scipy.stats import spearmanr

    merged = values.merge(
        truth[["account_id", "expected_remaining_months"]].astype({"account_id": str}),
        on="account_id",
        suffixes=("", "_true"),
    )
    merged["peer"] = merged["account_id"].map(peer_months).astype(float)
    merged = merged.dropna(subset=["peer"])
    ours, true, peer = (
        merged["expected_remaining_months"],
        merged["expected_remaining_months_true"],
        merged["peer"],
    )
    mrr = merged["mrr"]
    figures: dict[str, float | int] = {
        "accounts": len(merged),
        "spearman_lifetime": float(spearmanr(true, ours).statistic),
        "spearman_lifetime_peer": float(spearmanr(true, peer).statistic),
        "spearman_value": float(spearmanr(true * mrr, ours * mrr).statistic),
        "spearman_value_peer": float(spearmanr(true * mrr, peer * mrr).statistic),
        "mean_absolute_error_months": float((ours - true).abs().mean()),
        "mean_absolute_error_months_peer": float((peer - true).abs().mean()),
    }
    group = pd.qcut(ours.rank(method="first"), min(bins, len(merged)), labels=False)
    calibration = (
        merged.assign(group=group)
        .groupby("group")
        .agg(
            accounts=("account_id", "size"),
            expected=("expected_remaining_months", "mean"),
            true=("expected_remaining_months_true", "mean"),
            peer=("peer", "mean"),
        )
        .reset_index(drop=True)
    )
    return figures, calibration


def peer_months_by_account(
    subscriptions: pd.DataFrame, as_of: pd.Timestamp, segment: str = "plan"
) -> pd.Series:
    """The peer's months for each account: its live subscription's segment's mean lifetime."""
    means = segment_mean_lifetime(subscriptions, as_of, segment)
    live = subscriptions[
        (subscriptions["start"] <= as_of)
        & ~(subscriptions["cancelled_at"] <= as_of).fillna(False).astype(bool)
    ]
    latest = live.sort_values("start").drop_duplicates("account_id", keep="last")
    return pd.Series(
        latest[segment].map(means).to_numpy(dtype=float),
        index=latest["account_id"].astype(str).to_numpy(),
    )
