"""No feature sees the future: checked on simulated data, through Feast's training sets (DuckDB;
tests/integration/test_spark_engine.py runs the same checks on Spark)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from leakage_checks import (
    check_creation_rows_equal_features_known_when_created,
    check_events_after_t_change_nothing_up_to_t,
    check_training_rows_equal_features_known_at_their_time,
)

from crm.settings import Settings
from features.store import apply, build
from simulator import SimulationResult

pytestmark = pytest.mark.integration


def test_events_after_t_change_no_feature_at_any_snapshot_up_to_t(
    small_sim: SimulationResult,
) -> None:
    check_events_after_t_change_nothing_up_to_t(small_sim.tables)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, small_data_dir: Path) -> Settings:
    data_dir = tmp_path_factory.mktemp("leakage")
    shutil.copytree(small_data_dir / "raw", data_dir / "raw")
    settings = Settings(data_dir=data_dir)
    build(settings)
    apply(settings)
    return settings


def test_every_training_row_equals_features_from_the_crm_as_known_at_its_time(
    built: Settings, small_sim: SimulationResult
) -> None:
    # twelve snapshot times spread over the year, each rebuilt from only what was known then
    checked = check_training_rows_equal_features_known_at_their_time(built, small_sim.tables, 12)
    assert checked > 1000


def test_creation_rows_equal_features_from_the_crm_as_known_when_each_lead_was_created(
    small_sim: SimulationResult,
) -> None:
    check_creation_rows_equal_features_known_when_created(small_sim.tables, 6)
