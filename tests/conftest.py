"""Shared fixtures: small seeded simulations, isolated data dirs and MLflow stores."""

from __future__ import annotations

from pathlib import Path

import pytest

from simulator import SimulationConfig, SimulationResult, simulate, write_simulation

REPO = Path(__file__).resolve().parents[1]
SHARED_DATASETS = REPO.parent / "shared" / "datasets"

SMALL = SimulationConfig(seed=11, accounts=400, leads=4_000, months=12)


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test reads or writes the repo's own data/ or mlruns/."""
    monkeypatch.setenv("CRM_INTEL_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")


@pytest.fixture(scope="session")
def small_sim() -> SimulationResult:
    """A small seeded demo CRM (4k leads, 400 accounts, 12 months); do not mutate."""
    return simulate(SMALL)


@pytest.fixture(scope="session")
def small_data_dir(tmp_path_factory: pytest.TempPathFactory, small_sim: SimulationResult) -> Path:
    """``small_sim`` written as a data directory (raw/ and truth/); treat as read-only."""
    data_dir = tmp_path_factory.mktemp("small-crm")
    write_simulation(small_sim, data_dir)
    return data_dir
