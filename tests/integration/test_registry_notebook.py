"""The retraining notebook runs top to bottom on a simulated CRM with a tmp MLflow store."""

from __future__ import annotations

import shutil
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from crm.settings import Settings

pytestmark = pytest.mark.integration

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "retraining.ipynb"


def test_retraining_notebook_trains_registers_and_explains(
    tmp_path: Path, small_data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from features import store

    # given a simulated data directory with its features built, named by the environment
    data_dir = tmp_path / "crm"
    shutil.copytree(small_data_dir, data_dir)
    settings = Settings(data_dir=data_dir)
    store.build(settings)
    store.apply(settings)
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    monkeypatch.setenv("CRM_INTEL_DATA_DIR", str(data_dir))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    # when it is executed in a tmp working directory
    NotebookClient(
        notebook,
        timeout=300,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    ).execute()
    # then every cell ran without error
    code = [c for c in notebook.cells if c.cell_type == "code"]
    assert all(c.execution_count is not None for c in code)
    assert [o for c in code for o in c.outputs if o.output_type == "error"] == []
    # the data verdict was said in plain words (12 months cannot test a churn model out of time:
    # the points score serves) and the first version became champion
    train = next(c for c in code if "train_time_split(frame" in c.source)
    said = "".join(o.get("text", "") for o in train.outputs if o.output_type == "stream")
    assert "History is short" in said and "Fallback: the points score" in said
    gate = next(c for c in code if "log_training_run(result" in c.source)
    assert "'promoted': True" in gate.outputs[-1]["data"]["text/plain"]
    # and the SHAP summary was drawn, into the tmp data dir only
    assert (data_dir / "shap_summary.png").stat().st_size > 10_000
    assert (tmp_path / "mlruns" / "mlflow.db").exists()
