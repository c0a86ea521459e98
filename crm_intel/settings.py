"""One frozen settings object. Reading it has no side effects: nothing is created on import."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def project_root() -> Path:
    """The repository root when running from a checkout, else the working directory."""
    here = Path(__file__).resolve().parents[1]
    return here if (here / "pyproject.toml").exists() else Path.cwd()


class Settings(BaseSettings):
    """crm-intel settings; every field can be set as ``CRM_INTEL_<NAME>`` or in ``.env``."""

    model_config = SettingsConfigDict(
        env_prefix="CRM_INTEL_", env_file=".env", extra="ignore", frozen=True
    )

    data_dir: Path = Field(default_factory=lambda: project_root() / "data")
    mlflow_tracking_uri: str | None = None
    conversion_window_days: int = 90
    churn_window_days: int = 90
    snapshot_frequency_days: int = 7
    lead_scoring_horizon_days: int = 182

    @property
    def raw_dir(self) -> Path:
        """Contract tables (Parquet), as simulated or imported."""
        return self.data_dir / "raw"

    @property
    def truth_dir(self) -> Path:
        """Simulator ground truth, beside the raw tables."""
        return self.data_dir / "truth"

    @property
    def features_dir(self) -> Path:
        """Feature tables (Parquet) written by ``crm-intel features build``."""
        return self.data_dir / "features"

    @property
    def feast_dir(self) -> Path:
        """Feast registry and SQLite online store."""
        return self.data_dir / "feast"

    def tracking_uri(self) -> str:
        """MLflow tracking URI: ``MLFLOW_TRACKING_URI`` when set, else SQLite under ``mlruns/``."""
        import os

        env = os.environ.get("MLFLOW_TRACKING_URI")
        if env:
            return env
        if self.mlflow_tracking_uri:
            return self.mlflow_tracking_uri
        return f"sqlite:///{project_root() / 'mlruns' / 'mlflow.db'}"


@lru_cache(maxsize=8)
def _cached(data_dir: str | None) -> Settings:
    return Settings() if data_dir is None else Settings(data_dir=Path(data_dir))


def get_settings(data_dir: Path | str | None = None) -> Settings:
    """Settings, with ``data_dir`` overriding the environment when given."""
    return _cached(None if data_dir is None else str(Path(data_dir).resolve()))
