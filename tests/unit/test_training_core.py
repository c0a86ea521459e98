"""Training building blocks on small seeded frames: metrics, scores, calibration, splits, checks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.metrics import roc_auc_score

from training.baselines import CHURN_RULES, LEAD_RULES, RulePointsScore, applicable_rules, points
from training.data import (
    Minimums,
    NotEnoughData,
    check_counts,
    fingerprint,
    split_counts,
    time_split,
)
from training.metrics import (
    binary_metrics,
    calibration_slope_intercept,
    expected_calibration_error,
    top_decile,
)
from training.model import CalibratedBoostingClassifier, choose_calibrator, fit_calibrator
from training.scoring import grade_from_score, score_frame, score_from_probability

pytestmark = pytest.mark.unit


def snapshot_frame(seed: int = 0, entities: int = 400, weeks: int = 10) -> pd.DataFrame:
    """Weekly snapshots of ``entities`` leads; the label depends on two features."""
    rng = np.random.default_rng(seed)
    n = entities * weeks
    x = rng.normal(size=n)
    tier = rng.choice(["gold", "silver", "bronze"], size=n)
    logit = -1.5 + 1.5 * x + np.where(tier == "gold", 1.0, 0.0)
    return pd.DataFrame(
        {
            "lead_id": [f"L{i % entities:04d}" for i in range(n)],
            "event_timestamp": pd.Timestamp("2024-01-01", tz="UTC")
            + pd.to_timedelta(7 * (np.arange(n) // entities), unit="D"),
            "label": (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int),
            "x": x,
            "noise": rng.normal(size=n),
            "tier": pd.Series(tier, dtype="string"),
        }
    )


def test_ece_uses_quantile_bins_so_a_constant_base_rate_predictor_is_not_perfect() -> None:
    # given ten rows predicted at 0.2 of which two are positive, and ten at 0.9 with all positive
    p = np.array([0.2] * 10 + [0.9] * 10)
    y = np.array([1, 1] + [0] * 8 + [1] * 10)
    # then ties share a bin: the first is exact, the second is off by 0.1 and weighs half
    assert expected_calibration_error(y, p) == pytest.approx(0.05)
    # given a predictor that says the base rate for everyone while the outcome is predictable
    rng = np.random.default_rng(0)
    risk = rng.uniform(size=5000)
    outcome = (rng.uniform(size=5000) < risk).astype(int)
    constant = np.full(5000, outcome.mean())
    # then one tied bin holds every row and its gap is 0, but a near-constant one is caught
    jittered = constant + 1e-9 * np.argsort(np.argsort(-risk))
    assert expected_calibration_error(outcome, jittered) > 0.2


def test_calibration_slope_and_intercept_recover_a_known_miscalibration() -> None:
    # given outcomes drawn from q, and predictions p with logit(p) = 2 * logit(q) - 0.5
    rng = np.random.default_rng(1)
    z = rng.normal(0, 1, 200_000)
    y = (rng.uniform(size=len(z)) < 1 / (1 + np.exp(-z))).astype(int)
    p = 1 / (1 + np.exp(-(2 * z - 0.5)))
    slope, intercept = calibration_slope_intercept(y, p)
    # then the slope is 1/2 (predictions twice too extreme)
    assert slope == pytest.approx(0.5, abs=0.01)
    # and a perfectly calibrated predictor has slope 1 and intercept 0
    slope_q, intercept_q = calibration_slope_intercept(y, 1 / (1 + np.exp(-z)))
    assert slope_q == pytest.approx(1.0, abs=0.02)
    assert intercept_q == pytest.approx(0.0, abs=0.02)
    assert intercept != pytest.approx(0.0, abs=0.05)


def test_top_decile_precision_and_lift() -> None:
    # given 100 rows, the 10 highest-scored of which hold 5 of the 20 positives
    y = np.zeros(100, dtype=int)
    y[:5] = 1
    y[50:65] = 1
    p = np.linspace(1, 0, 100)
    precision, lift = top_decile(y, p)
    assert precision == pytest.approx(0.5)
    assert lift == pytest.approx(0.5 / 0.2)


def test_binary_metrics_of_a_perfect_ranking() -> None:
    m = binary_metrics(np.array([0, 0, 1, 1]), np.array([0.1, 0.2, 0.8, 0.9]))
    assert m["roc_auc"] == pytest.approx(1.0)
    assert m["pr_auc"] == pytest.approx(1.0)
    assert m["brier"] == pytest.approx((0.01 + 0.04 + 0.04 + 0.01) / 4)
    assert m["base_rate"] == pytest.approx(0.5)


def test_score_is_percent_clipped_to_1_99_and_grades_follow_documented_cuts() -> None:
    p = np.array([0.0, 0.004, 0.094, 0.10, 0.249, 0.25, 0.5, 0.999])
    score = score_from_probability(p)
    assert score.tolist() == [1, 1, 9, 10, 25, 25, 50, 99]
    assert grade_from_score(score).tolist() == ["D", "D", "D", "C", "B", "B", "A", "A"]


def test_revenue_at_risk_is_probability_times_annualised_mrr() -> None:
    out = score_frame(np.array([0.1, 0.5]), mrr=np.array([1000.0, np.nan]))
    assert out["revenue_at_risk"].tolist() == pytest.approx([1200.0, 0.0])
    assert out["grade"].tolist() == ["C", "A"]


def test_sigmoid_calibrator_recovers_a_known_platt_map() -> None:
    # given raw scores whose true probability is sigmoid(2 * logit(raw) - 1)
    rng = np.random.default_rng(1)
    raw = rng.uniform(0.02, 0.98, 20_000)
    true = 1 / (1 + np.exp(-(2 * np.log(raw / (1 - raw)) - 1)))
    y = (rng.random(raw.size) < true).astype(int)
    cal = fit_calibrator(raw, y, "sigmoid")
    assert cal.a == pytest.approx(2.0, abs=0.1)
    assert cal.b == pytest.approx(-1.0, abs=0.1)


def test_sigmoid_calibrator_never_turns_a_ranking_upside_down() -> None:
    # given validation rows on which higher raw scores go with fewer positives (a small,
    # noisy validation part)
    rng = np.random.default_rng(3)
    raw = rng.uniform(0.02, 0.98, 2_000)
    y = (rng.random(raw.size) < 1 - raw).astype(int)
    # when a Platt map is fitted
    cal = fit_calibrator(raw, y, "sigmoid")
    # then it is flat at the validation rate instead of falling
    assert cal.a == 0.0
    assert cal(np.array([0.1, 0.9])) == pytest.approx([y.mean(), y.mean()])


def test_auto_calibration_picks_the_lower_cross_fitted_log_loss() -> None:
    # given raw scores whose true map is a step (isotonic can fit it, a sigmoid cannot)
    rng = np.random.default_rng(2)
    raw = rng.uniform(0, 1, 20_000)
    y = (rng.random(raw.size) < np.where(raw > 0.5, 0.9, 0.1)).astype(int)
    cal, losses = choose_calibrator(raw, y, "auto")
    assert cal.method == "isotonic"
    assert losses["isotonic"] < losses["sigmoid"]


def test_time_split_keeps_later_snapshots_for_validation_and_test() -> None:
    frame = snapshot_frame(weeks=10)
    split = time_split(frame, validation_fraction=0.2, test_fraction=0.2)
    ts = frame["event_timestamp"]
    assert ts[split.train].max() < ts[split.validation].min()
    assert ts[split.validation].max() < ts[split.test].min()
    assert (split.train.sum(), split.validation.sum(), split.test.sum()) == (2400, 800, 800)


def test_time_split_gap_drops_training_snapshots_whose_label_window_is_open() -> None:
    frame = snapshot_frame(weeks=10)
    split = time_split(frame, gap_days=14)
    # weeks 0-5 train without a gap; 14 days drop weeks 4 and 5
    assert split.train.sum() == 4 * 400
    assert (
        frame["event_timestamp"][split.validation].min()
        - frame["event_timestamp"][split.train].max()
    ) == pd.Timedelta(days=21)


def test_data_check_names_every_split_short_of_its_minimum() -> None:
    counts = [
        split_counts("train", pd.Series([1] * 50 + [0] * 2000)),
        split_counts("test", pd.Series([1] * 40 + [0] * 10)),
    ]
    check = check_counts(counts, Minimums())
    assert not check.ok
    assert check.problems == (
        "train has 50 positives, needs at least 120",
        "test has 10 negatives, needs at least 30",
    )
    with pytest.raises(NotEnoughData, match="train has 50 positives"):
        check.raise_if_failed()


def test_fingerprint_changes_with_any_value_and_not_otherwise() -> None:
    frame = snapshot_frame(entities=50, weeks=3)
    same = snapshot_frame(entities=50, weeks=3)
    changed = frame.copy()
    changed.loc[0, "x"] += 1e-9
    assert fingerprint(frame) == fingerprint(same)
    assert fingerprint(frame) != fingerprint(changed)


def test_estimator_follows_sklearn_contract_and_learns_the_signal() -> None:
    frame = snapshot_frame(entities=600, weeks=10)
    X, y = frame[["x", "noise", "tier"]], frame["label"].to_numpy()
    model = CalibratedBoostingClassifier(n_estimators=300, num_leaves=4, min_child_samples=50)
    assert clone(model).get_params() == model.get_params()
    fitted = model.fit(X.iloc[:4800], y[:4800])
    assert fitted is model
    p = model.predict_proba(X.iloc[4800:])
    assert p.shape == (1200, 2)
    assert p.sum(axis=1) == pytest.approx(np.ones(1200))
    assert roc_auc_score(y[4800:], p[:, 1]) > 0.75
    # TreeSHAP contributions add up to the raw log-odds
    contrib = model.contributions(X.iloc[4800:4810])
    raw = model.raw_proba(X.iloc[4800:4810])
    assert contrib.sum(axis=1).to_numpy() == pytest.approx(np.log(raw / (1 - raw)), abs=1e-6)


def test_model_is_rebuilt_from_booster_and_metadata_with_identical_probabilities() -> None:
    frame = snapshot_frame(entities=300, weeks=8)
    X, y = frame[["x", "tier"]], frame["label"].to_numpy()
    model = CalibratedBoostingClassifier(n_estimators=100).fit(X, y)
    again = CalibratedBoostingClassifier.from_parts(model.booster_, model.metadata())
    assert again.predict_proba(X) == pytest.approx(model.predict_proba(X))


def test_unknown_category_and_missing_column_score_without_error() -> None:
    frame = snapshot_frame(entities=300, weeks=8)
    X, y = frame[["x", "tier"]], frame["label"].to_numpy()
    model = CalibratedBoostingClassifier(n_estimators=50).fit(X, y)
    odd = pd.DataFrame({"x": [0.0, 0.0], "tier": ["platinum", None]})
    assert model.predict_proba(odd).shape == (2, 2)
    assert model.predict_proba(odd[["x"]]).shape == (2, 2)


def test_rules_apply_only_where_their_features_exist() -> None:
    lead = pd.DataFrame(
        {
            "touches_demo_request_90d": [1.0, 0.0],
            "days_since_last_touch": [3.0, 45.0],
            "seniority": ["vp", "individual"],
        }
    )
    rules = applicable_rules(LEAD_RULES, list(lead.columns))
    assert {r.name for r in rules} == {
        "demo request (90 d)",
        "active last 7 d",
        "quiet over 30 d",
        "director or above",
    }
    assert points(lead, rules).tolist() == [30 + 10 + 10, -10]
    assert applicable_rules(CHURN_RULES, list(lead.columns)) == ()
    with pytest.raises(ValueError, match="no scoring rule"):
        RulePointsScore(CHURN_RULES).fit(lead, np.array([1, 0]))
