"""Segment models: kept only where a back-test before the test period says they help, routed per
row, explained by the model that scored the row, and registered as one model.

Data: seeded weekly snapshots (66 weeks × 500 rows) with a planted rule, conversion
p = sigmoid(-2.5 + 1.5 x), in segments A (55 % of rows) and B (40 %), and C (5 %, too small for
a model of its own). In the "reversed" data B's rule is p = sigmoid(-2.5 - 1.5 x). Candidate:
the sign-free logistic regression, which has no interactions, so one global model cannot follow
two opposite slopes. The simulated CRM's segments are checked in ``test_backtest.py``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from training.data import Minimums, check_counts
from training.pipeline import ModelSpec, TrainingResult, feature_columns, feature_kinds
from training.protocol import Protocol, cutoffs
from training.segment_backtest import decide_segments, sorted_snapshots
from training.segmented import GLOBAL, SegmentedClassifier
from training.segments import add_segment_models
from training.selection import Candidate, candidate_record
from training.snapshots import evaluate_as_of, fit_production

pytestmark = pytest.mark.model

SPEC = ModelSpec("synthetic_leads", "lead_id", "synthetic_leads_v1", ())
PROTOCOL = Protocol()
LOGISTIC = Candidate("logistic", {"C": 1.0}, True)


def snapshots(reversed_in: str | None, seed: int = 0) -> pd.DataFrame:
    """Weekly snapshots of leads (each lead in 8 of them) with the planted rule (module doc)."""
    rng = np.random.default_rng(seed)
    weeks, per_week = 66, 500
    n = weeks * per_week
    week = np.repeat(np.arange(weeks), per_week)
    segment = rng.choice(["A", "B", "C"], size=n, p=[0.55, 0.40, 0.05])
    x = rng.normal(size=n)
    slope = np.where(segment == reversed_in, -1.5, 1.5)
    p = 1.0 / (1.0 + np.exp(-(-2.5 + slope * x)))
    return pd.DataFrame(
        {
            "lead_id": [f"L{i % (n // 8)}" for i in range(n)],
            "event_timestamp": pd.Timestamp("2024-01-01", tz="UTC")
            + pd.to_timedelta(week * 7, unit="D"),
            "label": (rng.random(n) < p).astype(int),
            "x": x,
            "noise": rng.normal(size=n),
            "segment": pd.array(segment, dtype="string"),
        }
    )


def global_result(frame: pd.DataFrame) -> TrainingResult:
    """What ``train_time_split`` returns, for one candidate: the global model as of the test
    cutoff with its test figures, and the production model."""
    frame, ts, y = sorted_snapshots(frame, SPEC)
    cutoff = cutoffs(ts, PROTOCOL, 1)[-1]
    out = evaluate_as_of(frame, SPEC, cutoff, PROTOCOL, only=[LOGISTIC])
    X = frame[feature_columns(frame, SPEC.entity_key)]
    numeric, categorical = feature_kinds(X)
    return TrainingResult(
        SPEC.name,
        fit_production(X, y, ts, SPEC, PROTOCOL, LOGISTIC),
        numeric,
        categorical,
        out["metrics"],
        out["evaluation"],
        out["test"],
        PROTOCOL.name,
        check_counts([], Minimums()),
        {"cutoff": str(cutoff.date())},
        "synthetic",
        {},
        SPEC.feature_service,
        SPEC.entity_key,
        evaluation_model=out["models"]["model"],
        candidate=candidate_record(LOGISTIC),
    )


@pytest.fixture(scope="module")
def planted() -> TrainingResult:
    frame = snapshots(reversed_in="B")
    return add_segment_models(global_result(frame), frame, SPEC, PROTOCOL, "segment")


def test_segments_that_share_the_global_rule_are_dropped_and_small_ones_never_tried() -> None:
    # given segments with one rule, which the global model (a term per segment) fits already
    frame = snapshots(reversed_in=None)
    cutoff = cutoffs(frame["event_timestamp"], PROTOCOL, 1)[-1]
    # when each segment's model is back-tested against the global one
    decided = decide_segments(frame, SPEC, PROTOCOL, cutoff, LOGISTIC, "segment")
    by = {d.segment: d for d in decided.decisions}
    # then no segment model is kept: on three folds they score as the global model does
    assert decided.kept == []
    for segment in ("A", "B"):
        assert by[segment].folds == 3
        assert by[segment].segment_log_loss == pytest.approx(by[segment].global_log_loss, rel=0.01)
    # and the small segment is not tried (Einstein's 120 conversions per training part)
    assert by["C"].folds == 0
    assert by["C"].reason.startswith("too few: fold 1 trains on")


def test_a_segment_whose_rule_differs_is_kept_and_beats_the_global_model_after_the_cutoff(
    planted: TrainingResult,
) -> None:
    segments = planted.segments
    by = {d["segment"]: d for d in segments["decisions"]}
    # the global slope is a compromise between +1.5 (A) and -1.5 (B): wrong for both, so both
    # segment models are kept; C is scored by the global model
    assert segments["kept"] == ["A", "B"]
    assert by["B"]["segment_roc_auc"] > by["B"]["global_roc_auc"] + 0.3
    assert by["C"]["kept"] is False and by["C"]["folds"] == 0
    # every fold scored rows whose labels closed by the test cutoff
    cutoff = pd.Timestamp(segments["cutoff"])
    for fold in segments["folds"]:
        assert pd.Timestamp(fold["fold_as_of"]) <= cutoff
    # on the test period, which the decision never saw, the combined model is the better one,
    # and it is what the result reports and registers
    test = segments["test_metrics"]
    assert test["segmented"]["log_loss"] < test["global"]["log_loss"] - 0.01
    assert test["segmented"]["roc_auc"] > test["global"]["roc_auc"] + 0.05
    assert planted.metrics["model"] == test["segmented"]
    assert planted.metrics["global"] == test["global"]
    assert isinstance(planted.model, SegmentedClassifier)
    assert planted.summary()["segments_kept"] == "A, B"


def test_each_row_is_scored_by_its_segments_model_and_the_others_by_the_global_one(
    planted: TrainingResult,
) -> None:
    model = planted.model
    rows = planted.holdout[planted.features].head(400)
    odd = rows.head(4).astype({"segment": "string"})
    odd["segment"] = pd.array(["Z", None, "", "Z"], dtype="string")  # unseen, missing, empty
    frame = pd.concat([rows, odd])
    segment = frame["segment"].astype("string").fillna("").to_numpy()
    # when the segmented model scores them
    p = model.predict_proba(frame)[:, 1]
    # then A and B rows get their segment model's probability, C and the odd rows the global's
    expected = np.where(
        segment == "A",
        model.segment_models["A"].predict_proba(frame)[:, 1],
        np.where(
            segment == "B",
            model.segment_models["B"].predict_proba(frame)[:, 1],
            model.global_model.predict_proba(frame)[:, 1],
        ),
    )
    np.testing.assert_allclose(p, expected)
    routed = model.scored_by(frame)
    assert set(routed[segment == "C"]) == {GLOBAL}
    assert list(routed[-4:]) == [GLOBAL] * 4
    assert {"A", "B", "C"} <= set(segment)


def test_a_rows_reasons_come_from_the_model_that_scored_it(planted: TrainingResult) -> None:
    from serving.explain import explain_records
    from serving.scoring import score

    model = planted.model
    holdout = planted.holdout
    rows = holdout.loc[(holdout["segment"] == "B") & (holdout["x"] > 1.0), planted.features]
    assert len(rows) > 50
    # when the service scores B leads with a high x
    scored = score(model, rows, top=1)
    # then their contributions and probability are the B model's
    own = model.segment_models["B"]
    np.testing.assert_allclose(
        scored.contributions.to_numpy(), own.contributions(rows)[planted.features].to_numpy()
    )
    np.testing.assert_allclose(scored.frame["probability"], own.predict_proba(rows)[:, 1])
    # so the reason says what holds in B, a high x lowers the score, where the global model
    # (slope pulled toward A's) would say it raises it
    assert all(r[0].feature == "x" and r[0].contribution < 0 for r in scored.reasons)
    assert (model.global_model.contributions(rows)["x"] > 0).all()
    # and the API's path (feature dicts) gives the same numbers
    records = explain_records(model, rows.to_dict("records"))
    np.testing.assert_allclose(records["contributions"], scored.contributions.to_numpy())


def test_the_segmented_model_is_saved_and_loaded_as_the_registry_does(
    planted: TrainingResult,
) -> None:
    import skops.io

    from serving.explain import explain_frame
    from training.registry import SKOPS_TRUSTED_TYPES

    # when the model goes through the registry's serialiser (skops, the trusted types only)
    loaded = skops.io.loads(skops.io.dumps(planted.model), trusted=SKOPS_TRUSTED_TYPES)
    # then it routes, scores and explains as trained
    rows = planted.holdout[planted.features]
    np.testing.assert_array_equal(loaded.scored_by(rows), planted.model.scored_by(rows))
    np.testing.assert_allclose(loaded.predict_proba(rows), planted.model.predict_proba(rows))
    np.testing.assert_allclose(
        explain_frame(loaded, rows)["contributions"],
        explain_frame(planted.model, rows)["contributions"],
    )
    assert loaded.metadata()["segments"].keys() == {"A", "B"}
