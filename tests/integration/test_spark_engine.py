"""The Spark engine (local[2]): the same feature tables as the pandas pipeline's frozen output and
as DuckDB, the same training set, and no feature that sees the future.

Every Spark test of the suite lives in this module, so that the suite starts one Spark session
(``make test`` gives each module to one worker)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from engine_checks import TABLES, fixture_differences
from leakage_checks import (
    check_creation_rows_equal_features_known_when_created,
    check_events_after_t_change_nothing_up_to_t,
    check_training_rows_equal_features_known_at_their_time,
)

from crm.settings import Settings
from features.engines import SparkEngine
from features.store import apply, build
from features.training import training_set
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
    small_sim: SimulationResult, spark: SparkEngine
) -> None:
    check_events_after_t_change_nothing_up_to_t(small_sim.tables, spark)


def test_on_spark_training_rows_equal_features_known_at_their_time(
    spark_built: Settings, small_sim: SimulationResult, spark: SparkEngine
) -> None:
    # three snapshot times (first, middle, last) rebuilt on Spark from what was known then
    assert (
        check_training_rows_equal_features_known_at_their_time(
            spark_built, small_sim.tables, 3, spark
        )
        > 300
    )


def test_on_spark_creation_rows_equal_features_known_when_created(
    small_sim: SimulationResult, spark: SparkEngine
) -> None:
    check_creation_rows_equal_features_known_when_created(small_sim.tables, 2, spark)
