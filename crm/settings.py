"""One frozen settings object. Reading it has no side effects: nothing is created on import."""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


def project_root() -> Path:
    """The repository root when running from a checkout, else the working directory."""
    here = Path(__file__).resolve().parents[1]
    return here if (here / "pyproject.toml").exists() else Path.cwd()


# Score outputs → CRM field names (Salesforce-style custom fields); override any of them with
# CRM_INTEL_CRM_FIELD_NAMES='{"lead_score": "Score__c"}'.
DEFAULT_CRM_FIELDS: dict[str, str] = {
    "lead_score": "Lead_Score__c",
    "lead_grade": "Lead_Grade__c",
    "lead_reasons": "Score_Reasons__c",
    "account_score": "Churn_Risk_Score__c",
    "account_risk_band": "Churn_Risk_Band__c",
    "account_revenue_at_risk": "Revenue_At_Risk__c",
    "account_reasons": "Churn_Reasons__c",
    "lead_trend": "Score_Trend__c",
    "lead_trend_change": "Score_Trend_Change__c",
    "account_trend": "Churn_Risk_Trend__c",
    "account_trend_change": "Churn_Risk_Trend_Change__c",
    "account_rfm_segment": "RFM_Segment__c",
    "account_lifetime_value": "Lifetime_Value__c",
    "lead_duplicate_of": "Duplicate_Of__c",
}


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
    promotion_margin: float = 0.002  # ROC AUC a challenger must gain over the champion
    # `crm-intel train`: rolling cutoffs of the short back-test run before registering (0: none;
    # the held-out test, the gate and the registered figures do not depend on it)
    train_backtest_cutoffs: int = Field(default=3, ge=0)
    # `crm-intel train lead`: a lead model per value of this categorical lead feature (source,
    # country, account_region, ...) where the segment has enough data and a back-test before the
    # test period says it beats the global model (training.segments); unset: the global model
    # only (the back-test costs several fits per segment, and on the demo CRM keeps none)
    lead_segment_by: str | None = None
    # attribution run: bootstrap replicates behind each credit share's 90 % interval (0: none)
    attribution_bootstrap: int = Field(default=20, ge=0)
    # an opportunity's journey for campaign influence: its account's touches (its leads' and
    # its contacts'), or only those of the lead it names (training.attribution.influence)
    attribution_opportunity_journey: Literal["account", "lead"] = "account"
    # Lifetime value (`crm-intel value`): the yearly rate future revenue is discounted at, and how
    # far ahead a transactional customer's value is counted
    value_discount_rate: float = Field(default=0.10, ge=0.0, lt=1.0)
    value_horizon_weeks: int = Field(default=52, ge=1)
    # a subscription account's value: the share of its MRR that is margin
    value_gross_margin: float = Field(default=0.80, gt=0.0, le=1.0)
    # Scoring service (serving/): API keys as comma-separated CRM_INTEL_API_KEYS, never logged;
    # an entry KEY:score|attribution limits a key to those scopes (serving.auth.SCOPES).
    api_keys: Annotated[tuple[SecretStr, ...], NoDecode] = ()
    # or a YAML file of SHA-256 digests with scopes and key ids (serving.auth.read_key_file)
    api_keys_file: Path | None = None
    expose_docs: bool = False  # /docs.json and the API's index page; off: answered 404
    max_request_bytes: int = Field(default=1_048_576, ge=1024)  # larger bodies: 413
    request_header_timeout_seconds: float = Field(default=10.0, gt=0)  # request line + headers
    request_body_timeout_seconds: float = Field(default=15.0, gt=0)  # the whole body: else 408
    idle_timeout_seconds: float = Field(default=5.0, gt=0)  # a kept-alive connection, unused
    # from a scoring request's valid body to its answer, else 504
    request_timeout_seconds: float = Field(default=10.0, gt=0)
    # body size and time, header deadline: turn off only to measure what they cost
    request_limits: bool = True
    # requests with more items than this are scored in a worker thread, off the event loop
    score_inline_max_items: int = Field(default=20, ge=0)
    serve_host: str = "127.0.0.1"
    serve_port: int = 3000
    serve_workers: int = 1  # service processes (each loads both champions)
    serve_access_log: bool = False  # BentoML's own line per request; off: the gate logs its own
    # The gate's access log (serving.gate), one line per request: method, route, status, ms,
    # request id, key id. Off: only 4xx and 5xx lines (health checks are DEBUG either way).
    request_log: bool = True
    serve_metrics: bool = True  # Prometheus /metrics (needs a key with the ``metrics`` scope)
    model_refresh_seconds: float = 10.0  # how often the service checks the champion aliases
    # how long a read waits on the online store (a locked SQLite file, a silent Redis server)
    # before the service answers 503
    online_store_timeout_ms: int = 250
    # The online store (features.store.repo_config): "sqlite", the embedded file under the data
    # directory, or "redis", a Redis server that several service replicas share, at redis_url
    # (redis://[:password@]host:port/db; never logged)
    online_store: Literal["sqlite", "redis"] = "sqlite"
    redis_url: SecretStr = SecretStr("redis://127.0.0.1:6379/0")
    # The engine that builds feature tables and runs batch scoring at scale (features.engines):
    # "duckdb", in-process and out-of-core (the default), or "spark", Apache Spark at spark_master
    # (local[N] on this machine, spark://host:7077 or another master URL for a cluster)
    engine: Literal["duckdb", "spark"] = "duckdb"
    spark_master: str = "local[2]"
    # DuckDB's memory limit for a feature build (it spills to disk beyond); unset: DuckDB's own
    # default (80 % of the machine's memory)
    duckdb_memory_limit: str | None = None
    score_reasons: int = 3  # top reasons per score
    crm_field_names: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_CRM_FIELDS))
    # The score log (serving.score_log): a SQLAlchemy URL, e.g. postgresql+psycopg://…; unset:
    # a SQLite file under the data directory
    database_url: str | None = None
    score_log: bool = True  # append every score the API and batch runs give
    score_log_queue_rows: int = Field(default=100_000, ge=1)  # beyond: rows dropped, counted
    # Score trend (serving.trend): the score now against the first one served in the last
    # trend_days; a change of trend_points or more is improving / declining, else steady
    trend_days: int = Field(default=30, ge=1)
    trend_points: int = Field(default=5, ge=1)
    # Gray release of each model's ``challenger`` (serving.release): off; shadow (scored and
    # logged, never returned); canary (canary_fraction of ids, sticky by id, get it)
    release_mode: Literal["off", "shadow", "canary"] = "off"
    canary_fraction: float = Field(default=0.1, ge=0.0, le=1.0)
    # crm-intel monitor (monitoring.monitor): windows compared and the thresholds of its alerts
    monitor_reference_days: int = Field(default=182, ge=7)  # before the champion's training end
    monitor_current_days: int = Field(default=28, ge=1)  # the latest period
    monitor_feature_psi: float = Field(default=0.2, gt=0)
    monitor_score_psi: float = Field(default=0.2, gt=0)
    monitor_auc_drop: float = Field(default=0.05, ge=0)  # realised below expected by this much
    monitor_calibration_error: float = Field(default=0.05, gt=0)
    monitor_min_outcomes: int = Field(default=200, ge=1)  # fewer: reported, never alerted on
    # crm-intel push salesforce (crm.exports.salesforce_bulk, Bulk API 2.0 ingest): the org's URL
    # (https://<domain>.my.salesforce.com) and an OAuth access token, never logged; each job
    # holds at most salesforce_rows_per_job rows (and 100 MB), a larger file goes in several
    salesforce_instance_url: str | None = None
    salesforce_access_token: SecretStr | None = None
    salesforce_api_version: str = "62.0"
    salesforce_poll_seconds: float = Field(default=2.0, gt=0)  # first wait between job polls
    salesforce_rows_per_job: int = Field(default=100_000, ge=1)
    # Lead identity kept on import (crm.identity): names as text (default), their phonetic codes,
    # or only the e-mail and phone hashes; e-mail and phone are always stored as SHA-256 only
    lead_identity: Literal["names", "phonetic", "hashes"] = "names"
    # `crm-intel dedupe leads` (features.duplicates): two records are one person at or above this
    # Splink match probability
    dedupe_match_probability: float = Field(default=0.9, gt=0.0, lt=1.0)
    dedupe_seed: int = 42  # Splink's random sampling of pairs (u probabilities)
    # merge each duplicate lead's engagement onto its surviving lead before features are built,
    # from this dedupe output (`features build --merge-duplicates FILE`); unset: no merging
    merge_duplicate_leads: Path | None = None
    # ISO 4217 code of the CRM's amounts (opportunity amount, MRR), named on the pages people read
    currency: str = "USD"

    @field_validator("api_keys", mode="before")
    @classmethod
    def _split_api_keys(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(k.strip() for k in value.split(",") if k.strip())
        return value

    @field_validator("crm_field_names", mode="after")
    @classmethod
    def _fill_crm_fields(cls, value: dict[str, str]) -> dict[str, str]:
        return {**DEFAULT_CRM_FIELDS, **value}

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
    def duplicate_leads_path(self) -> Path:
        """Where ``crm-intel dedupe leads`` writes by default, and the write-back reads
        ``Duplicate_Of__c`` from."""
        return self.data_dir / "dedupe" / "leads.parquet"

    @property
    def feast_dir(self) -> Path:
        """Feast registry and SQLite online store."""
        return self.data_dir / "feast"

    def score_log_url(self) -> str:
        """The score log's database: ``database_url``, else ``<data_dir>/crm_intel.db``."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_dir.resolve() / 'crm_intel.db'}"

    def tracking_uri(self) -> str:
        """MLflow tracking URI: ``MLFLOW_TRACKING_URI`` when set, else SQLite under ``mlruns/``."""
        import os

        env = os.environ.get("MLFLOW_TRACKING_URI")
        if env:
            return env
        if self.mlflow_tracking_uri:
            return self.mlflow_tracking_uri
        return f"sqlite:///{project_root() / 'mlruns' / 'mlflow.db'}"


def deep_merged(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``override``'s entries merged over it, nested mappings key by key."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merged(out[key], value)
        else:
            out[key] = value
    return out


@lru_cache(maxsize=8)
def _cached(data_dir: str | None) -> Settings:
    return Settings() if data_dir is None else Settings(data_dir=Path(data_dir))


def get_settings(data_dir: Path | str | None = None) -> Settings:
    """Settings, with ``data_dir`` overriding the environment when given."""
    return _cached(None if data_dir is None else str(Path(data_dir).resolve()))


def forget_settings() -> None:
    """Forget the settings read so far, so that the next :func:`get_settings` reads the
    environment again (a process whose environment changed, such as a test's)."""
    _cached.cache_clear()
