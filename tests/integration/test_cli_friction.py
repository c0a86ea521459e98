"""The command line where it met users badly (issue 17): tables cut in logs, MLflow's wording
for a model that does not exist, progress that a log never shows, third-party warnings."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from typer.testing import CliRunner

from crm_intel.cli import app
from training.registry import client_for

pytestmark = pytest.mark.integration

PROTOCOL = "purged_as_of_weekly_snapshots_90d_label_window"  # longer than a folded cell


@pytest.fixture(scope="module")
def registered(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Both models registered with versions 1 and 2 (no training: registry rows only) in a
    store of this module's; version 2 is champion."""
    uri = f"sqlite:///{tmp_path_factory.mktemp('friction') / 'mlruns' / 'mlflow.db'}"
    client = client_for(uri)
    experiment = client.create_experiment("friction")
    for name in ("lead_conversion", "churn_risk"):
        client.create_registered_model(name)
        for _ in (1, 2):
            run = client.create_run(experiment)
            client.create_model_version(
                name,
                f"runs:/{run.info.run_id}/model",
                run_id=run.info.run_id,
                tags={
                    "roc_auc": "0.8123",
                    "ece": "0.0123",
                    "feature_service": f"{name}_v1",
                    "protocol": PROTOCOL,
                },
            )
        client.set_registered_model_alias(name, "champion", "2")
    return uri


@pytest.fixture()
def registry(registered: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """:func:`registered`, the store every command of the test uses."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", registered)
    return registered


def test_models_list_into_a_pipe_is_neither_cut_nor_warned_about(registry: str) -> None:
    # given stdout and stderr both pipes (as in `crm-intel models list > log 2>&1`), and
    # Python's deprecation warnings shown (as Feast turns them on in most commands)
    env = {**os.environ, "PYTHONWARNINGS": "default", "COLUMNS": ""}
    done = subprocess.run(
        [sys.executable, "-m", "crm_intel.cli", "models", "list"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    # then every name and figure is whole: no folded or shortened cell
    assert "…" not in done.stderr
    table = [line for line in done.stderr.splitlines() if line.startswith("│")]
    assert len(table) == 4
    assert all(PROTOCOL in line and "0.8123" in line for line in table)
    assert sum("lead_conversion_v1" in line for line in table) == 2
    # and no third-party deprecation warning is printed
    assert "DeprecationWarning" not in done.stderr, done.stderr


def test_a_warning_filter_a_library_adds_later_does_not_bring_them_back() -> None:
    from serving.runtime import quiet_third_party_warnings

    mlflow_file = str(Path("site-packages", "mlflow", "store", "tracking", "store.py").resolve())
    with warnings.catch_warnings(record=True) as shown:
        quiet_third_party_warnings()
        # what Feast does at its import, after the command line has set its filters
        warnings.simplefilter("once", DeprecationWarning)
        for message in ("The ``noload`` loader strategy is deprecated", "something of ours"):
            warnings.warn_explicit(
                message, DeprecationWarning, mlflow_file, 1, module="mlflow.store.x"
            )
    assert [str(w.message) for w in shown] == ["something of ours"]


def test_promote_and_rollback_name_the_models_and_versions_there_are(registry: str) -> None:
    runner = CliRunner()
    unknown = runner.invoke(app, ["models", "promote", "leads", "1"])
    assert unknown.exit_code == 2
    assert (
        "no registered model 'leads'; the models are: churn_risk, lead_conversion" in unknown.output
    )
    assert "Model Version" not in unknown.output  # MLflow's own wording
    missing = runner.invoke(app, ["models", "promote", "lead", "7"])
    assert missing.exit_code == 2
    assert "lead_conversion has versions 1, 2; no version 7" in missing.output
    rollback = runner.invoke(app, ["models", "rollback", "leads"])
    assert rollback.exit_code == 2
    assert "no registered model 'leads'; the models are: churn_risk, lead_conversion" in (
        rollback.output
    )
    # and a version that exists is still promoted
    done = runner.invoke(app, ["models", "promote", "lead", "1"])
    assert done.exit_code == 0, done.output
    assert "lead_conversion: champion is now v1 (was 2)" in done.output


def test_progress_into_a_log_is_one_line_per_step(capsys: pytest.CaptureFixture[str]) -> None:
    from crm_intel.commands.common import progress, status

    # given stderr that is not a terminal (pytest's capture)
    with progress("features build", total=2) as advance:
        advance("events", 0)  # a step announced, then the same step done
        advance("events")
        advance("leads")
    with status("step 1/4: loading the training set") as update:
        update("read 3 files")
    lines = capsys.readouterr().err.splitlines()
    assert lines[:3] == ["features build…", "features build: events", "features build: leads"]
    assert lines[3].startswith("features build: done in ")
    assert lines[4:6] == [
        "step 1/4: loading the training set…",
        "step 1/4: loading the training set: read 3 files",
    ]
    assert lines[6].startswith("step 1/4: loading the training set: done in ")
