"""The simulator's true expected remaining lifetime, against the churn process run forward: its
closed form must be what the process does, and asking for it must leave every other file as it
was."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from scipy.special import ndtr

from simulator import SimulationConfig, simulate, write_simulation
from simulator.churn import (
    BACKGROUND_CHURN,
    CHURN_ALPHA,
    CHURN_BETA,
    CHURN_TENURE,
    HEALTH_PHI,
    HEALTH_SIGMA,
)
from simulator.config import DAY_NS, WEEK_NS, Calendar
from simulator.lifetime_truth import HORIZON_YEARS, WEEKS_PER_MONTH, remaining_lifetime_truth

pytestmark = pytest.mark.unit


def test_the_closed_form_is_what_the_churn_process_does_when_run_forward() -> None:
    # given six live subscriptions of each plan, in good and poor health, of various ages
    cal = Calendar(SimulationConfig(seed=1, accounts=10, leads=10, months=12))
    n = 6
    plan = np.array([0, 0, 1, 1, 2, 2])
    health_mean = np.array([-0.5, 0.4, 0.0, -0.3, 0.6, 0.1])
    health_now = np.array([-1.0, 0.8, 0.2, -0.9, 0.3, 0.0])
    start = cal.end_ns - np.array([40, 200, 400, 700, 1500, 90]) * DAY_NS
    subs = {"start_ns": start, "plan": plan, "health_mean": health_mean, "account": np.arange(n)}
    health = np.zeros((n, cal.weeks))
    health[:, -1] = health_now
    churn = {"churn_ns": np.full(n, -1), "health": health}
    truth = remaining_lifetime_truth(cal, subs, churn, np.array([f"A{i}" for i in range(n)]))
    # when the process runs forward week by week, 4,000 times over
    rng = np.random.default_rng(0)
    paths = 4_000
    weeks = HORIZON_YEARS * 52
    h = np.repeat(health_now[:, None], paths, axis=1)
    alive = np.ones((n, paths), dtype=bool)
    lived = np.zeros((n, paths))
    last = cal.week_start(cal.weeks - 1)
    completed = (cal.end_ns - start) // (365 * DAY_NS)
    next_renewal = start + (completed + 1) * 365 * DAY_NS
    renewals_done = np.zeros(n, dtype=int)
    for w in range(1, weeks + 1):
        h = health_mean[:, None] + HEALTH_PHI * (h - health_mean[:, None])
        h += rng.normal(0.0, HEALTH_SIGMA, h.shape)
        week_end = last + (w + 1) * WEEK_NS
        lived += alive * np.clip((week_end - cal.end_ns) / WEEK_NS - (w - 1), 0, 1)
        background = rng.random((n, paths)) < BACKGROUND_CHURN[plan][:, None]
        renewing = week_end > next_renewal + renewals_done * 365 * DAY_NS
        alpha = CHURN_ALPHA[plan] - CHURN_TENURE * np.minimum(completed + renewals_done, 3)
        p = ndtr(alpha[:, None] - CHURN_BETA * h)
        lost = renewing[:, None] & (rng.random((n, paths)) < p)
        alive &= ~(background | lost)
        renewals_done += renewing
    simulated = lived.mean(axis=1) / WEEKS_PER_MONTH
    error = lived.std(axis=1) / WEEKS_PER_MONTH / np.sqrt(paths)
    # then the closed form is within four standard errors and a week of every simulated mean
    gap = np.abs(truth["expected_remaining_months"].to_numpy() - simulated)
    assert (gap <= 4 * error + 1 / WEEKS_PER_MONTH).all(), (gap, error)


def _digests(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_asking_for_the_lifetime_truth_adds_its_file_and_changes_no_other(tmp_path: Path) -> None:
    result = simulate(SimulationConfig(seed=3, accounts=200, leads=800, months=12))
    write_simulation(result, tmp_path / "plain")
    write_simulation(result, tmp_path / "with", lifetime=True)
    plain, with_truth = _digests(tmp_path / "plain"), _digests(tmp_path / "with")
    assert set(with_truth) - set(plain) == {"truth/lifetime.parquet"}
    assert {k: with_truth[k] for k in plain} == plain
    # one row per subscription live at the end
    subscriptions = result.tables["subscriptions"]
    live = subscriptions["cancelled_at"].isna().sum()
    assert result.lifetime is not None and len(result.lifetime) == live
