"""The Spark engine (local[2]): the same feature tables as the pandas pipeline's frozen output and
as DuckDB, the same training set, no feature that sees the future; and the nightly batch scored
in Spark's executors (``serving.spark_batch``) equal to the in-process batch, row for row, on the
shared demo deployment.

Every Spark test of the suite lives in this module, so that the suite starts one Spark session
(``make test`` gives each module to one worker)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest
from engine_checks import TABLES, fixture_differences
from leakage_checks import (
    built_frames,
    check_creation_rows_equal_features_known_when_created,
    check_events_after_t_change_nothing_up_to_t,
    check_training_rows_equal_features_known_at_their_time,
)

from crm.settings import Settings
from crm_intel.demo import Deployment
from features.engines import SparkEngine
from features.store import apply, build
from features.training import training_set
from serving.batch import score_batch
from serving.spark_batch import score_batch_spark
from simulator import SimulationResult

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def spark(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SparkEngine]:
    scratch = tmp_path_factory.mktemp("spark-scratch")
    engine = SparkEngine(Settings(data_dir=scratch, engine="spark"), scratch)
    yield engine
    engine.close()


def _built(data_dir: Path, raw: Path, engine: SparkEngine | None) -> Settings:
    shutil.copytree(raw, data_dir / "raw")
    settings = Settings(data_dir=data_dir, engine="spark" if engine else "duckdb")
    build(settings, engine=engine)
    apply(settings)
    return settings


@pytest.fixture(scope="module")
def spark_built(
    tmp_path_factory: pytest.TempPathFactory, small_data_dir: Path, spark: SparkEngine
) -> Settings:
    return _built(tmp_path_factory.mktemp("spark-built"), small_data_dir / "raw", spark)


def test_spark_build_equals_the_pandas_pipelines_frozen_tables(spark_built: Settings) -> None:
    # given the test CRM built on Spark local[2], then every table equals the frozen pandas output
    # row for row (floats within 1e-9), with the same stored types, as the DuckDB build does
    assert fixture_differences(spark_built.features_dir) == {name: [] for name in TABLES}


def test_spark_and_duckdb_builds_give_the_same_training_sets(
    tmp_path: Path, small_data_dir: Path, spark_built: Settings
) -> None:
    duckdb_built = _built(tmp_path, small_data_dir / "raw", None)
    for model in ("lead_conversion", "churn_risk"):
        pd.testing.assert_frame_equal(
            training_set(spark_built, model), training_set(duckdb_built, model)
        )


def test_on_spark_events_after_t_change_no_feature_up_to_t(
    spark_built: Settings, small_sim: SimulationResult, spark: SparkEngine
) -> None:
    # the module's build of the test CRM against a build with thousands of events after T
    check_events_after_t_change_nothing_up_to_t(small_sim.tables, spark, built_frames(spark_built))


def test_on_spark_training_rows_equal_features_known_at_their_time(
    spark_built: Settings, small_sim: SimulationResult, spark: SparkEngine
) -> None:
    # two snapshot times (the first and the last) rebuilt on Spark from what was known then
    assert (
        check_training_rows_equal_features_known_at_their_time(
            spark_built, small_sim.tables, 2, spark
        )
        > 100
    )


def test_on_spark_creation_rows_equal_features_known_when_created(
    spark_built: Settings, small_sim: SimulationResult, spark: SparkEngine
) -> None:
    # the creation rows of the module's build, each against a build of the CRM as known then
    lead_features = built_frames(spark_built)["lead_features"]
    check_creation_rows_equal_features_known_when_created(small_sim.tables, 1, spark, lead_features)


# ------------------------------------------------------------------------- batch scoring

NUMBERS = (
    "probability",
    "raw_margin",
    "base_value",
    "expected_remaining_months",
    "lifetime_value",
    "lifetime_value_low",
    "lifetime_value_high",
    "revenue_at_risk",
)


@pytest.fixture(scope="module")
def deployed(deployment: Deployment, spark: SparkEngine) -> Settings:
    """The shared demo deployment (Feast online store, MLflow SQLite champions), scored on the
    module's Spark session."""
    return Settings(data_dir=deployment.data_dir, mlflow_tracking_uri=deployment.tracking_uri)


def plain(value: object) -> object:
    """A cell as compared: missing (None, NaN, NaT, NA) is None, numbers as float."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return value


def assert_same_rows(in_process: pd.DataFrame, on_spark: pd.DataFrame) -> None:
    """Same columns, ids in the same order, numbers within 1e-9, every other cell equal."""
    assert list(on_spark.columns) == list(in_process.columns)
    assert len(on_spark) == len(in_process)
    for column in in_process.columns:
        given, got = in_process[column].tolist(), on_spark[column].tolist()
        if column in NUMBERS:
            assert got == pytest.approx(given, abs=1e-9, rel=0, nan_ok=True), column
        else:
            assert [plain(v) for v in got] == [plain(v) for v in given], column


@pytest.mark.usefixtures("deployment_env")
@pytest.mark.parametrize("model", ["lead_conversion", "churn_risk"])
def test_every_row_equals_the_in_process_batch(deployed: Settings, model: str) -> None:
    # given the demo CRM's online store and champions
    # when the nightly batch runs in process and on Spark
    in_process, champion = score_batch(deployed, model)
    on_spark, used = score_batch_spark(deployed, model, champion=champion)
    # then each entity gets the same row: status, probability, score, band, reasons, CRM fields
    assert used.version == champion.version
    assert set(in_process["status"]) >= {"scored", "closed"}
    assert_same_rows(in_process, on_spark)


@pytest.mark.usefixtures("deployment_env")
def test_unknown_and_closed_ids_get_the_in_process_status_rows(deployed: Settings) -> None:
    # given ids asked for in an order of their own: an unknown one, a closed lead, scored leads
    every, champion = score_batch(deployed, "lead_conversion")
    closed = every.loc[every["status"] == "closed", "lead_id"].iloc[0]
    scored = every.loc[every["status"] == "scored", "lead_id"].tolist()[:3]
    ids = [scored[2], "L9999999", closed, scored[0], scored[1]]
    # when both batches score them
    in_process, _ = score_batch(deployed, "lead_conversion", ids, champion=champion)
    on_spark, _ = score_batch_spark(deployed, "lead_conversion", ids, champion=champion)
    # then the rows come in the order asked, with the same statuses and errors
    assert on_spark["lead_id"].tolist() == ids
    assert on_spark["status"].tolist() == ["scored", "unknown", "closed", "scored", "scored"]
    assert_same_rows(in_process, on_spark)


@pytest.mark.usefixtures("deployment_env")
def test_only_unknown_accounts_give_the_in_process_columns(deployed: Settings) -> None:
    # given account ids the CRM does not have (the in-process file then has no CRM fields)
    ids = ["A999998", "A999999"]
    in_process, champion = score_batch(deployed, "churn_risk", ids)
    # when Spark scores them
    on_spark, _ = score_batch_spark(deployed, "churn_risk", ids, champion=champion)
    # then the same two unknown rows, column for column
    assert on_spark["status"].tolist() == ["unknown", "unknown"]
    assert_same_rows(in_process, on_spark)


@pytest.mark.usefixtures("deployment_env")
def test_a_back_fill_as_of_a_past_day_equals_the_in_process_one(deployed: Settings) -> None:
    # given a day two months before the data's as-of time
    every, champion = score_batch(deployed, "lead_conversion")
    as_of = every["data_as_of"].max().to_pydatetime().astimezone(UTC) - pd.Timedelta(days=60)
    as_of = datetime(as_of.year, as_of.month, as_of.day, tzinfo=UTC)
    # when both batches back-fill that day
    in_process, _ = score_batch(deployed, "lead_conversion", champion=champion, as_of=as_of)
    on_spark, _ = score_batch_spark(deployed, "lead_conversion", champion=champion, as_of=as_of)
    # then the same leads (those the CRM had then) get the same rows
    assert (in_process["status"] == "scored").sum() > 0
    assert_same_rows(in_process, on_spark)
