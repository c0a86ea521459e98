"""serving.scoring: the fast encoder equals the model's own path; scores, reasons, CRM fields."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from serving import explain, scoring
from serving.status import Standing
from training.model import CalibratedBoostingClassifier

pytestmark = pytest.mark.unit


def _leads(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "lead_id": [f"L{i:05d}" for i in range(n)],
            "touches_pricing_page_view_30d": rng.poisson(1.0, n).astype(float),
            "touches_7d": rng.poisson(2.0, n).astype(float),
            "days_since_last_touch": np.where(rng.random(n) < 0.2, np.nan, rng.exponential(20, n)),
            "seniority": pd.array(
                rng.choice(["manager", "director", "vp", None], n), dtype="string"
            ),
            "source": pd.array(
                rng.choice(["webinar", "list_import", "organic"], n), dtype="string"
            ),
        }
    )
    logit = (
        -2
        + 0.8 * frame["touches_pricing_page_view_30d"]
        + 0.2 * frame["touches_7d"]
        + (frame["seniority"] == "vp").fillna(False).astype(float)
    )
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return frame, y


FEATURES = [
    "touches_pricing_page_view_30d",
    "touches_7d",
    "days_since_last_touch",
    "seniority",
    "source",
]


@pytest.fixture(scope="module")
def model() -> CalibratedBoostingClassifier:
    frame, y = _leads(1500, seed=3)
    return CalibratedBoostingClassifier(
        n_estimators=60, num_leaves=7, min_child_samples=20, early_stopping_rounds=20
    ).fit(frame[FEATURES], y)


@pytest.fixture()
def rows() -> pd.DataFrame:
    frame, _ = _leads(40, seed=9)
    frame.loc[0, "seniority"] = "never-seen-level"  # unseen category
    frame.loc[1, "seniority"] = pd.NA
    frame.loc[2, "touches_7d"] = np.nan
    return frame


def test_encoder_matches_the_models_pandas_path_exactly(model, rows):
    # Given rows with a missing value, an unseen category and an id column the model ignores
    # When contributions come through the fast encoder
    fast = explain.contributions(model, rows)
    # Then they equal the model's own contributions bit for bit
    np.testing.assert_array_equal(fast, model.contributions(rows).to_numpy())


def test_records_and_frames_encode_identically(model, rows):
    # Given the same values as a DataFrame (batch) and as dicts (API: None for missing)
    records = [
        {
            k: (None if v is pd.NA or (isinstance(v, float) and np.isnan(v)) else v)
            for k, v in r.items()
        }
        for r in rows.to_dict("records")
    ]
    # Then both encoders give the same matrix, NaN where they should
    np.testing.assert_array_equal(
        explain.encode_records(model, records), explain.encode(model, rows)
    )


def test_contributions_plus_base_are_the_raw_margin(model, rows):
    scored = scoring.score(model, rows, top=2)
    raw = model.booster_.predict(
        model.encode(rows), raw_score=True, num_iteration=model.best_iteration_
    )
    total = scored.contributions.sum(axis=1).to_numpy() + scored.frame["base_value"].to_numpy()
    assert total == pytest.approx(raw, abs=1e-9)
    assert scored.frame["raw_margin"].to_numpy() == pytest.approx(raw, abs=1e-9)
    assert scored.margin_unit == "log-odds before calibration"


def test_probability_score_grade_follow_the_calibrated_model(model, rows):
    scored = scoring.score(model, rows)
    p = model.predict_proba(rows)[:, 1]
    assert scored.frame["probability"].to_numpy() == pytest.approx(p, abs=1e-12)
    expected = np.clip(np.rint(100 * p), 1, 99).astype(int)
    assert scored.frame["score"].tolist() == expected.tolist()
    grades = scored.frame.set_index("score")["grade"]
    for score_, grade in grades.items():
        assert grade == (
            "A" if score_ >= 50 else "B" if score_ >= 25 else "C" if score_ >= 10 else "D"
        )


def test_scores_do_not_depend_on_batch_size_or_row_order(model, rows):
    together = scoring.score(model, rows).frame["probability"].to_numpy()
    alone = [
        scoring.score(model, rows.iloc[[i]]).frame["probability"].iloc[0] for i in range(len(rows))
    ]
    assert np.array_equal(together, np.array(alone))
    backwards = scoring.score(model, rows.iloc[::-1]).frame["probability"].to_numpy()
    assert np.array_equal(backwards[::-1], together)


def test_reasons_are_the_largest_absolute_contributions_with_labels(model, rows):
    scored = scoring.score(model, rows, top=3)
    for i, reasons in enumerate(scored.reasons):
        row = scored.contributions.iloc[i]
        expected = row.abs().sort_values(ascending=False, kind="stable").index[:3].tolist()
        assert [r.feature for r in reasons] == expected
        for r in reasons:
            assert r.contribution == pytest.approx(row[r.feature])
            assert r.label
    first = scored.reasons[3]
    pricing = [r for r in first if r.feature == "touches_pricing_page_view_30d"]
    if pricing:
        assert "pricing page" in pricing[0].label


def test_top_zero_gives_no_reasons(model, rows):
    assert scoring.score(model, rows, top=0).reasons == [[] for _ in range(len(rows))]


def test_revenue_at_risk_is_probability_times_remaining_lifetime_value(model, rows):
    # given each row's remaining lifetime (one value unknown)
    value = np.linspace(0, 40_000, len(rows))
    value[5] = np.nan
    lifetime = pd.DataFrame(
        {
            "expected_remaining_months": np.linspace(1, 60, len(rows)),
            "lifetime_value": value,
            "lifetime_value_low": value / 2,
            "lifetime_value_high": value * 2,
        }
    )
    # when scored with it
    scored = scoring.score(model, rows, lifetime=lifetime)
    # then revenue at risk is the churn probability × the value (0 where it is unknown), and
    # the lifetime columns ride along
    expected = scored.frame["probability"].to_numpy() * np.nan_to_num(value)
    assert scored.frame["revenue_at_risk"].to_numpy() == pytest.approx(expected)
    assert scored.frame["revenue_at_risk"].iloc[5] == 0.0
    assert scored.frame["lifetime_value_high"].to_numpy() == pytest.approx(value * 2, nan_ok=True)


def _online(rows: pd.DataFrame, found: list[bool]) -> pd.DataFrame:
    out = rows.copy()
    out.insert(1, "event_timestamp", pd.Timestamp("2026-01-05", tz="UTC"))
    out.insert(2, "found", found)
    out.loc[~out["found"], FEATURES] = np.nan
    out.loc[~out["found"], "event_timestamp"] = pd.NaT
    return out


NAMES = {
    "lead_score": "Lead_Score__c",
    "lead_grade": "Lead_Grade__c",
    "lead_reasons": "Score_Reasons__c",
}


def _records(frame: pd.DataFrame) -> list[dict]:
    return [
        {
            k: (None if v is pd.NA or v is pd.NaT or (isinstance(v, float) and np.isnan(v)) else v)
            for k, v in r.items()
        }
        for r in frame.to_dict("records")
    ]


def test_score_items_reports_unknown_ids_and_scores_the_rest(model, rows):
    online = _online(rows.head(4), [True, False, True, False])
    overrides = [None, None, {"touches_7d": 9.0}, {"touches_pricing_page_view_30d": 4.0}]
    fields = [f"lead_ids[{i}]" for i in range(4)]
    out = scoring.score_items(
        "lead_conversion", model, _records(online), overrides, 2, NAMES, fields=fields
    )
    assert [r["status"] for r in out] == ["scored", "unknown", "scored", "scored"]
    assert out[1]["error"]["code"] == "unknown_id" and out[1]["error"]["field"] == "lead_ids[1]"
    assert "L00001" in out[1]["error"]["message"] and out[1]["crm_fields"] == {}
    assert [r.get("features_source") for r in out] == ["online", None, "online+request", "request"]
    assert out[0]["crm_fields"]["Lead_Score__c"] == out[0]["score"]
    assert out[0]["margin_unit"] == "log-odds before calibration"
    # the override is what was scored
    given = rows.head(3).copy()
    given.loc[2, "touches_7d"] = 9.0
    expected = scoring.score(model, given.iloc[[2]]).frame["probability"].iloc[0]
    assert out[2]["probability"] == pytest.approx(expected, abs=1e-15)
    assert out[3].get("feature_timestamp") is None


def test_reasons_up_and_down_are_the_largest_signed_contributions(model, rows):
    # given every lead scored with 3 reasons per list
    scored = scoring.score(model, rows, top=3)
    for i in range(len(rows)):
        row = scored.contributions.iloc[i]
        up, down = scored.reasons_up[i], scored.reasons_down[i]
        # then reasons_up are positive, largest first, and the largest positive ones
        assert all(r.contribution > 0 for r in up) and len(up) <= 3
        assert [r.contribution for r in up] == sorted((r.contribution for r in up), reverse=True)
        assert [r.feature for r in up] == row[row > 0].sort_values(
            ascending=False, kind="stable"
        ).index[:3].tolist()
        # and reasons_down negative, most negative first
        assert all(r.contribution < 0 for r in down) and len(down) <= 3
        assert [r.contribution for r in down] == sorted(r.contribution for r in down)
        assert [r.feature for r in down] == row[row < 0].sort_values(kind="stable").index[
            :3
        ].tolist()


def test_crm_text_signs_reasons_up_first_then_down():
    reasons = [
        scoring.Reason("a", 1.0, -0.5, "Lowers a"),
        scoring.Reason("b", 2.0, 0.2, "Raises b"),
        scoring.Reason("c", 3.0, 0.9, "Raises c"),
        scoring.Reason("d", 4.0, -0.7, "Lowers d"),
    ]
    text = scoring.reasons_text(reasons)
    assert text == "+ Raises c; + Raises b; \u2212 Lowers d; \u2212 Lowers a"


def test_an_unseen_category_is_labelled_as_such(model, rows):
    # given lead 0's seniority "never-seen-level", which the model never saw in training
    scored = scoring.score(model, rows, top=len(FEATURES))
    seniority = [r for r in scored.reasons[0] if r.feature == "seniority"]
    # then its reason says so, and a seen value reads as usual
    assert seniority[0].label == 'Seniority "never-seen-level" (not seen in training)'
    seen = [r for r in scored.reasons[3] if r.feature == "seniority"][0]
    assert "not seen" not in seen.label


def test_risk_bands_cut_the_churn_score_at_25_and_50():
    bands = explain.risk_band_from_score(np.array([1, 24, 25, 49, 50, 99]))
    assert bands.tolist() == ["low", "low", "medium", "medium", "high", "high"]


def test_logistic_and_points_families_explain_in_their_units(rows):
    from training.baselines import LEAD_RULES, RulePointsScore
    from training.linear import CalibratedLogisticClassifier

    frame, y = _leads(800, seed=4)
    logistic = CalibratedLogisticClassifier().fit(frame[FEATURES], y)
    points = RulePointsScore(LEAD_RULES).fit(frame[FEATURES], y)
    for fitted, unit in ((logistic, "log-odds before calibration"), (points, "points")):
        scored = scoring.score(fitted, rows, top=len(FEATURES))
        margin = fitted.margin(rows)
        total = scored.contributions.sum(axis=1).to_numpy() + scored.frame["base_value"]
        assert total.to_numpy() == pytest.approx(margin, abs=1e-9)
        assert scored.frame["raw_margin"].to_numpy() == pytest.approx(margin, abs=1e-9)
        assert scored.margin_unit == unit
    # the logistic model knows its vocabulary: lead 0's seniority is flagged
    labels = [r.label for r in scoring.score(logistic, rows, top=10).reasons[0]]
    assert 'Seniority "never-seen-level" (not seen in training)' in labels


def test_batch_frame_holds_the_api_fields_and_crm_columns(model, rows):
    online = _online(rows.head(5), [True] * 5)
    scored = scoring.score(model, online, top=2)
    names = {"lead_score": "S", "lead_grade": "G", "lead_reasons": "R"}
    out = scoring.batch_frame("lead", online, scored, "lead_conversion", "3", names)
    assert list(out["lead_id"]) == list(rows.head(5)["lead_id"])
    assert out["S"].tolist() == out["score"].tolist()
    assert out["model_version"].unique().tolist() == ["3"]
    assert set(out["status"]) == {"scored"} and out["margin_unit"].iloc[0].startswith("log-odds")
    reasons = json.loads(out.loc[0, "reasons"])
    assert [r["feature"] for r in reasons] == [r.feature for r in scored.reasons[0]]
    up = json.loads(out.loc[0, "reasons_up"])
    assert [r["feature"] for r in up] == [r.feature for r in scored.reasons_up[0]]


def test_batch_frame_writes_closed_and_stale_rows_with_empty_scores(model, rows):
    # given five online rows of which the second is closed and the fourth stale
    online = _online(rows.head(5), [True] * 5)
    error = {"code": "closed", "field": None, "message": "converted", "fix": None}
    standings = [
        Standing("scored"),
        Standing("closed", lifecycle="converted", error=error),
        Standing("scored"),
        Standing("stale", True, "open", error={**error, "code": "stale_features"}),
        Standing("scored"),
    ]
    scorable = online.iloc[[0, 2, 4]].reset_index(drop=True)
    scored = scoring.score(model, scorable, top=2)
    out = scoring.batch_frame("lead", online, scored, "m", "1", NAMES, standings)
    # then every row is written, scored ones with the scores of their own features
    assert out["status"].tolist() == ["scored", "closed", "scored", "stale", "scored"]
    assert out.loc[[0, 2, 4], "probability"].tolist() == pytest.approx(
        scored.frame["probability"].tolist()
    )
    # and the others with no score, the reason in the CRM text and the error as JSON
    assert out.loc[[1, 3], "score"].isna().all() and out.loc[[1, 3], "Lead_Score__c"].isna().all()
    assert out.loc[1, "Score_Reasons__c"] == "Not scored (closed): converted"
    assert json.loads(out.loc[3, "error"])["code"] == "stale_features"
    assert bool(out.loc[3, "stale"]) and out.loc[1, "lifecycle"] == "converted"
