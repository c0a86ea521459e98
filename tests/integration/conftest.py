"""The demo deployment the service tests share (in-process, live and hardening)."""

from __future__ import annotations

import pytest

from crm_intel.demo import Deployment, build_demo


@pytest.fixture(scope="session")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Deployment:
    """Demo CRM (300 accounts, 3k leads, 18 months) with features online and both champions;
    built once per session."""
    return build_demo(tmp_path_factory.getbasetemp() / "serving-demo")


@pytest.fixture()
def deployment_env(monkeypatch: pytest.MonkeyPatch, deployment: Deployment) -> None:
    """The deployment's data directory and MLflow store for everything a test calls (they win
    over settings)."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", deployment.tracking_uri)
    monkeypatch.setenv("CRM_INTEL_DATA_DIR", str(deployment.data_dir))
