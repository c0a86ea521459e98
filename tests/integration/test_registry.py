"""MLflow registry in a tmp SQLite store: the promotion gate, rollback and the service loader."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from training.data import Minimums
from training.pipeline import SPECS, TrainingResult
from training.protocol import Protocol
from training.registry import (
    CHALLENGER,
    CHAMPION,
    NoChampion,
    list_versions,
    load_champion,
    promote,
    rollback,
)
from training.snapshots import train_time_split
from training.tracking import log_training_run

pytestmark = pytest.mark.integration

MARGIN = 0.002


def snapshots(seed: int, informative: bool, entities: int = 1000, weeks: int = 10) -> pd.DataFrame:
    """Weekly lead snapshots with lead-style feature names; the last two weeks are the test
    period, whose features always carry the signal."""
    rng = np.random.default_rng(seed)
    n = entities * weeks
    demo = rng.poisson(0.3, n).astype(float)
    recency = rng.exponential(20, n)
    seniority = rng.choice(["individual", "manager", "director", "vp"], n)
    logit = -2.0 + 1.2 * demo - 0.03 * recency + np.where(seniority == "vp", 0.8, 0.0)
    label = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    frame = pd.DataFrame(
        {
            "lead_id": pd.Series([f"L{i % entities:05d}" for i in range(n)], dtype="string"),
            "event_timestamp": pd.Timestamp("2024-01-01", tz="UTC")
            + pd.to_timedelta(7 * (np.arange(n) // entities), unit="D"),
            "label": label,
            "touches_demo_request_90d": demo,
            "days_since_last_touch": recency,
            "seniority": pd.Series(seniority, dtype="string"),
        }
    )
    if not informative:  # broken training data: signal destroyed before the test weeks
        early = (np.arange(n) // entities) < weeks - 2
        for col in ("touches_demo_request_90d", "days_since_last_touch", "seniority"):
            values = frame[col].to_numpy().copy()
            values[early] = rng.permutation(values[early])
            frame[col] = values
    return frame


@pytest.fixture(scope="module")
def uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One tmp SQLite store for the module (creating one costs seconds); each test registers
    its own model name, so tests stay independent."""
    return f"sqlite:///{tmp_path_factory.mktemp('registry') / 'mlruns' / 'mlflow.db'}"


# Synthetic labels look one week ahead: a one-week label window, two weeks each of validation
# and test (the last two weeks), two of training at least.
WEEKLY = Protocol(label_window_days=7, validation_days=14, test_days=14, min_train_days=14)
SMALL = Minimums(train_rows=200, train_positives=20, train_negatives=20)


def _train(frame: pd.DataFrame, name: str) -> TrainingResult:
    spec = dataclasses.replace(SPECS["lead_conversion"], name=name)
    return train_time_split(frame, spec, WEEKLY, SMALL)


def test_first_version_becomes_champion_and_a_worse_challenger_is_not_promoted(
    uri: str, tmp_path: Path
) -> None:
    # given a champion trained on informative data that ends before the challenger's test period
    good = log_training_run(
        _train(snapshots(1, informative=True, weeks=9), "gate_lead"), uri, MARGIN
    )
    assert good["decision"]["promoted"] is True
    assert good["decision"]["reason"] == "no champion yet"
    # when a challenger trained on shuffled features arrives with three more weeks
    bad_result = _train(snapshots(1, informative=False, weeks=12), "gate_lead")
    assert bad_result.window["production_as_of"] > bad_result.window["cutoff"]
    bad = log_training_run(bad_result, uri, MARGIN)
    # then the champion, which never saw the challenger's test period, is scored on it and wins
    decision = bad["decision"]
    assert decision["promoted"] is False
    assert "scored on the period after" in decision["reason"]
    assert decision["champion_version"] == good["model_version"]
    assert decision["challenger_roc_auc"] == pytest.approx(bad_result.metrics["model"]["roc_auc"])
    assert decision["champion_roc_auc"] > decision["challenger_roc_auc"] + MARGIN
    rows = {r["version"]: r["aliases"] for r in list_versions(uri, ("gate_lead",))}
    assert rows == {good["model_version"]: [CHAMPION], bad["model_version"]: [CHALLENGER]}
    # and the decision is logged on the run
    from training.registry import client_for

    run = client_for(uri).get_run(bad["run_id"])
    assert run.data.metrics["gate_promoted"] == 0.0
    assert run.data.metrics["gate_champion_roc_auc"] == pytest.approx(decision["champion_roc_auc"])
    assert "challenger" in run.data.tags["gate_reason"]
    assert (Path(uri.removeprefix("sqlite:///")).parent / "artifacts").is_dir()


def test_a_champion_that_saw_the_test_period_is_refitted_before_the_comparison(uri: str) -> None:
    # given a champion trained on the same weeks as the challenger (it saw the test period)
    first = _train(snapshots(5, informative=True), "refit_lead")
    log_training_run(first, uri, MARGIN)
    second = _train(snapshots(6, informative=True), "refit_lead")
    # when the gate compares them
    decision = log_training_run(second, uri, MARGIN)["decision"]
    # then the champion's configuration is refitted as of the challenger's cutoff on the
    # challenger's data, and both are scored on the same test rows
    assert "refitted" in decision["reason"]
    expected = second.reevaluate(first.candidate) if second.reevaluate else None
    assert decision["champion_roc_auc"] == pytest.approx(expected)
    assert decision["promoted"] is (
        decision["challenger_roc_auc"] >= decision["champion_roc_auc"] + MARGIN
    )


def test_better_challenger_is_promoted_and_rollback_restores_the_previous_champion(
    uri: str,
) -> None:
    weak = log_training_run(
        _train(snapshots(2, informative=False, weeks=9), "rollback_lead"), uri, MARGIN
    )
    strong = log_training_run(
        _train(snapshots(2, informative=True, weeks=12), "rollback_lead"), uri, MARGIN
    )
    assert strong["decision"]["promoted"] is True
    assert load_champion("rollback_lead", uri).version == strong["model_version"]
    # when the champion is rolled back
    out = rollback(uri, "rollback_lead")
    # then the previous champion is back
    assert out == {
        "model": "rollback_lead",
        "champion": weak["model_version"],
        "demoted": strong["model_version"],
    }
    assert load_champion("rollback_lead", uri).version == weak["model_version"]
    # and nothing earlier is left to roll back to
    with pytest.raises(NoChampion):
        rollback(uri, "rollback_lead")
    # a manual promote moves the alias explicitly
    assert (
        promote(uri, "rollback_lead", strong["model_version"])["champion"]
        == strong["model_version"]
    )
    assert load_champion("rollback_lead", uri).version == strong["model_version"]


def test_loader_returns_a_calibrated_model_with_its_booster_and_metadata(uri: str) -> None:
    result = _train(snapshots(3, informative=True), "loader_lead")
    log_training_run(result, uri, MARGIN)
    # when the service loads the champion
    model, version, meta = load_champion("loader_lead", uri)
    # then it scores like the trained model, exposes TreeSHAP, and says what it needs
    rows = result.holdout[meta["feature_names"]].head(20)
    assert version == "1"
    assert model.predict_proba(rows)[:, 1] == pytest.approx(result.model.predict_proba(rows)[:, 1])
    contrib = model.booster_.predict(model.encode(rows), pred_contrib=True)
    assert contrib.shape == (20, len(meta["feature_names"]) + 1)
    assert meta["feature_names"] == [
        "touches_demo_request_90d",
        "days_since_last_touch",
        "seniority",
    ]
    assert meta["calibrator"]["method"] in ("isotonic", "sigmoid")
    assert meta["tags"]["feature_service"] == "lead_conversion_v1"


def test_a_segmented_model_is_registered_with_its_keep_drop_table_and_loads_as_one_model(
    uri: str, tmp_path: Path
) -> None:
    from training.registry import client_for
    from training.segmented import SegmentedClassifier

    # given a global lead model and one for vice presidents, put together as one model (what
    # training.segments registers when a segment model is kept)
    frame = snapshots(7, informative=True)
    result = _train(frame, "segmented_lead")
    vp = _train(frame[frame["seniority"] == "vp"], "segmented_lead")
    model = SegmentedClassifier("seniority", result.model, {"vp": vp.model}).fit()
    decisions = [
        {"segment": "vp", "rows": 2500, "kept": True, "reason": "kept: log loss -2.0%"},
        {"segment": "manager", "rows": 2500, "kept": False, "reason": "dropped: log loss +1.0%"},
    ]
    figures = {"roc_auc": 0.7, "log_loss": 0.4}
    segmented = dataclasses.replace(
        result,
        model=model,
        segments={
            "segment_by": "seniority",
            "protocol": "segment_backtest(…)",
            "cutoff": result.window["cutoff"],
            "kept": ["vp"],
            "decisions": decisions,
            "folds": [],
            "test": [{"segment": "vp", "test_rows": 500}],
            "test_metrics": {"global": figures, "segmented": figures},
        },
    )
    # when it is logged, registered and loaded as the service loads a champion
    record = log_training_run(segmented, uri, MARGIN)
    loaded, _, meta = load_champion("segmented_lead", uri)
    # then it scores each row with its segment's model, as trained
    rows = result.holdout[meta["feature_names"]]
    assert loaded.predict_proba(rows)[:, 1] == pytest.approx(model.predict_proba(rows)[:, 1])
    is_vp = (rows["seniority"] == "vp").to_numpy()
    assert loaded.predict_proba(rows)[is_vp, 1] == pytest.approx(
        vp.model.predict_proba(rows[is_vp])[:, 1]
    )
    assert meta["segment_by"] == "seniority" and list(meta["segments"]) == ["vp"]
    assert meta["tags"]["segments_kept"] == "vp"
    # and the run holds the keep/drop table as a table, the column and the kept segments
    client = client_for(uri)
    run = client.get_run(record["run_id"])
    assert run.data.params["segment_by"] == "seniority"
    assert run.data.params["segments_kept"] == "vp"
    table = client.download_artifacts(record["run_id"], "segments/decisions.json", str(tmp_path))
    logged = pd.read_json(Path(table), orient="split")
    assert list(logged["segment"]) == ["vp", "manager"]
    assert list(logged["kept"]) == [True, False]


def test_loader_without_a_champion_says_so(uri: str) -> None:
    with pytest.raises(NoChampion, match="no champion for 'nobody_trained_this'"):
        load_champion("nobody_trained_this", uri)


def test_models_cli_lists_promotes_and_rolls_back_explicitly(
    uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    from typer.testing import CliRunner

    from crm_intel.cli import app

    # given two versions of a model, the second kept as challenger by the gate
    first = log_training_run(
        _train(snapshots(4, informative=True, weeks=9), "cli_lead"), uri, MARGIN
    )
    second = log_training_run(
        _train(snapshots(4, informative=False, weeks=12), "cli_lead"), uri, MARGIN
    )
    assert second["decision"]["promoted"] is False
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    runner = CliRunner()

    def run(*args: str) -> dict:
        done = runner.invoke(app, ["models", *args, "--json"])
        assert done.exit_code == 0, done.output
        return json.loads(done.stdout.strip().splitlines()[-1])

    def aliases() -> dict[str, list[str]]:
        return {
            r["version"]: r["aliases"] for r in run("list")["versions"] if r["model"] == "cli_lead"
        }

    assert aliases() == {"1": ["champion"], "2": ["challenger"]}
    # when the challenger is promoted by hand, then rolled back
    assert run("promote", "cli_lead", "2") == {
        "model": "cli_lead",
        "champion": "2",
        "previous_champion": "1",
        "reason": "promoted by hand (crm-intel models promote)",
    }
    assert aliases() == {"1": [], "2": ["champion"]}
    assert run("rollback", "cli_lead") == {"model": "cli_lead", "champion": "1", "demoted": "2"}
    assert aliases() == {"1": ["champion"], "2": []}
    assert first["model_version"] == "1"
    # and rolling back past the first champion is a clear error
    done = runner.invoke(app, ["models", "rollback", "cli_lead"])
    assert done.exit_code == 2
    assert "no earlier champion" in done.output
