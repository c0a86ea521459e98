"""The deploy-faithful protocol on a small CRM: back-tests, the data-sufficiency verdict and its
fallback, and a leakage test of the protocol itself.

Size: seed 7, 400 accounts, 6,000 leads, 18 months (a purged split needs about 13 months of
labelled snapshots, so 18 months hold four back-test cutoffs); the same CRM at 12 months is too
short to test a model out of time.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from crm.settings import Settings
from simulator import SimulationConfig, simulate, write_simulation
from training.backtest import BacktestResult, backtest
from training.pipeline import SPECS, feature_columns
from training.protocol import Protocol, as_of_parts, cutoffs
from training.selection import candidates, refit_on_closed, select
from training.snapshots import train_time_split

pytestmark = [pytest.mark.model, pytest.mark.slow]

SMALL_CRM = dict(seed=7, accounts=400, leads=6_000)
TRUTH = {"lead_conversion": "lead_conversion", "churn_risk": "churn"}


def _training_sets(path: Path, months: int) -> dict[str, pd.DataFrame]:
    from features import store
    from features.training import training_set

    write_simulation(simulate(SimulationConfig(**SMALL_CRM, months=months)), path)
    settings = Settings(data_dir=path)
    store.build(settings)
    store.apply(settings)
    return {name: training_set(settings, name) for name in TRUTH}


@pytest.fixture(scope="module")
def crm18(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, pd.DataFrame]]:
    path = tmp_path_factory.mktemp("small-crm-18")
    return path, _training_sets(path, 18)


@pytest.fixture(scope="module")
def backtests(crm18: tuple[Path, dict[str, pd.DataFrame]]) -> dict[str, BacktestResult]:
    path, frames = crm18
    return {
        name: backtest(
            frames[name],
            SPECS[name],
            Protocol(),
            4,
            pd.read_parquet(path / "truth" / f"{TRUTH[name]}.parquet"),
        )
        for name in TRUTH
    }


@pytest.mark.parametrize("name", ["lead_conversion", "churn_risk"])
def test_the_champion_is_never_worse_than_the_best_baseline_over_four_cutoffs(
    backtests: dict[str, BacktestResult], name: str
) -> None:
    summary = backtests[name].summary
    # four cutoffs, each trained as of its date and scored on the weeks after it
    assert summary["cutoffs"] >= 4
    # the champion's mean ROC AUC is at least the best baseline's - 0.005
    assert summary["lift_over_best_baseline"] >= -0.005
    assert summary["lift_interval_low"] <= summary["lift_over_best_baseline"]
    assert summary["lift_over_best_baseline"] <= summary["lift_interval_high"]
    # and the gap to the oracle is reported
    assert 0 < summary["gap_to_oracle"] < 0.2


def test_backtest_cutoffs_train_only_on_labels_closed_by_each_cutoff(
    backtests: dict[str, BacktestResult],
) -> None:
    rows = backtests["lead_conversion"].rows
    dates = pd.to_datetime(rows["cutoff"].unique())
    # test periods follow each other without overlap (28 days apart)
    assert (np.diff(np.sort(dates)) == np.timedelta64(28, "D")).all()
    assert set(rows["model"]) >= {"model", "logistic", "rules", "oracle"}
    assert {"ece", "calibration_slope", "calibration_intercept", "log_loss"} <= set(rows.columns)


def test_twelve_months_get_a_plain_verdict_and_the_points_score_serves(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    frames = _training_sets(tmp_path_factory.mktemp("small-crm-12"), 12)
    for name, frame in frames.items():
        result = train_time_split(frame, SPECS[name], Protocol())
        # then the verdict says what is short, in days, and which fallback serves
        assert result.verdict["level"] == "no_test"
        assert "History is short" in result.verdict["text"]
        assert f"needs about {Protocol().history_needed_days()} days" in result.verdict["text"]
        assert "Fallback: the points score" in result.verdict["text"]
        # and the fallback scores every row with a probability
        assert result.family == "points"
        p = result.model.predict_proba(frame[result.features])[:, 1]
        assert ((p > 0) & (p < 1)).all() and p.std() > 0


def test_scrambling_every_outcome_after_the_cutoff_changes_no_trained_parameter(
    crm18: tuple[Path, dict[str, pd.DataFrame]],
) -> None:
    # given the lead snapshots, and a copy whose labels that close after the cutoff are shuffled
    _, frames = crm18
    spec = SPECS["lead_conversion"]
    frame = frames["lead_conversion"].sort_values(["event_timestamp", "lead_id"])
    frame = frame.reset_index(drop=True)
    protocol = Protocol()
    ts = frame["event_timestamp"]
    cutoff = cutoffs(ts, protocol, 1)[-1]
    after = (pd.to_datetime(ts, utc=True) + protocol.window > cutoff).to_numpy()
    scrambled = frame["label"].to_numpy().copy()
    rng = np.random.default_rng(0)
    scrambled[after] = rng.integers(0, 2, int(after.sum()))
    assert (scrambled != frame["label"].to_numpy()).sum() > 1000
    X = frame[feature_columns(frame, spec.entity_key)]
    # one candidate of each fitted family keeps the test short; the protocol is what is tested
    pool = [
        c
        for c in candidates(100_000, spec.rules, list(X.columns))
        if c.params.get("num_leaves") != 12
    ]
    # when the model is selected and trained as of the cutoff on each
    fitted = []
    for labels in (frame["label"].to_numpy(), scrambled):
        chosen = select(X, labels, ts, cutoff, spec.name, spec.rules, protocol, only=pool)
        model = refit_on_closed(chosen.winner, X, labels, ts, protocol)
        fitted.append((chosen, model))
    # then the same candidate wins with the same validation figures, and the models are equal
    (first, model_a), (second, model_b) = fitted
    assert first.scores == second.scores
    assert first.winner.candidate == second.winner.candidate
    np.testing.assert_array_equal(model_a.predict_proba(X)[:, 1], model_b.predict_proba(X)[:, 1])
    parts = as_of_parts(ts, cutoff, protocol)
    assert not (parts.train & after).any() and not (parts.validation & after).any()


def test_segment_models_are_kept_or_dropped_on_labels_closed_by_the_test_cutoff(
    crm18: tuple[Path, dict[str, pd.DataFrame]],
) -> None:
    from training.segment_backtest import decide_segments

    # given the lead snapshots by the account's region, and a copy whose labels that close after
    # the test cutoff are shuffled
    _, frames = crm18
    spec = SPECS["lead_conversion"]
    frame = frames["lead_conversion"]
    protocol = Protocol()
    ts = pd.to_datetime(frame["event_timestamp"], utc=True)
    cutoff = cutoffs(ts, protocol, 1)[-1]
    after = (ts + protocol.window > cutoff).to_numpy()
    scrambled = frame.assign(
        label=np.where(after, np.random.default_rng(1).integers(0, 2, len(frame)), frame["label"])
    )
    assert (scrambled["label"] != frame["label"]).sum() > 1000
    shallow = next(
        c
        for c in candidates(100_000, spec.rules, list(frame.columns))
        if c.name == "lightgbm_monotone" and c.params["num_leaves"] == 4
    )
    # when each region's model is back-tested against the global one as of the cutoff
    decided = [
        decide_segments(f, spec, protocol, cutoff, shallow, "account_region")
        for f in (frame, scrambled)
    ]
    # then the decisions and every fold's figures are the same: no outcome after it was read
    assert decided[0].decisions == decided[1].decisions
    assert decided[0].folds == decided[1].folds
    by = {d.segment: d for d in decided[0].decisions}
    # North America (the largest) is back-tested on three folds, all scored before the cutoff
    # minus a label window; the smallest region has too few conversions and is scored by the
    # global model
    assert by["NA"].folds == 3 and by["NA"].global_log_loss is not None
    last_scored = pd.to_datetime([f["scored_to"] for f in decided[0].folds], utc=True)
    assert len(set(last_scored)) == 3 and (last_scored + protocol.window <= cutoff).all()
    assert by["LATAM"].folds == 0 and by["LATAM"].reason.startswith("too few")
    assert not by["LATAM"].kept
