"""The nightly batch on Spark (``serving.spark_batch``) against the in-process batch, row for row,
on the shared demo deployment (Feast online store, MLflow SQLite champions)."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import pytest

from crm.settings import Settings
from crm_intel.demo import Deployment
from features.spark_session import spark_session
from serving.batch import score_batch
from serving.spark_batch import score_batch_spark

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("deployment_env")]

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
def settings(deployment: Deployment) -> Settings:
    return Settings(data_dir=deployment.data_dir, mlflow_tracking_uri=deployment.tracking_uri)


@pytest.fixture(scope="module", autouse=True)
def spark(settings: Settings) -> object:
    """The process's one Spark session (local[2]), started once for the module."""
    return spark_session(settings)


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


@pytest.mark.parametrize("model", ["lead_conversion", "churn_risk"])
def test_every_row_equals_the_in_process_batch(settings: Settings, model: str) -> None:
    # given the demo CRM's online store and champions
    # when the nightly batch runs in process and on Spark
    in_process, champion = score_batch(settings, model)
    on_spark, used = score_batch_spark(settings, model, champion=champion)
    # then each entity gets the same row: status, probability, score, band, reasons, CRM fields
    assert used.version == champion.version
    assert set(in_process["status"]) >= {"scored", "closed"}
    assert_same_rows(in_process, on_spark)


def test_unknown_and_closed_ids_get_the_in_process_status_rows(settings: Settings) -> None:
    # given ids asked for in an order of their own: an unknown one, a closed lead, scored leads
    every, champion = score_batch(settings, "lead_conversion")
    closed = every.loc[every["status"] == "closed", "lead_id"].iloc[0]
    scored = every.loc[every["status"] == "scored", "lead_id"].tolist()[:3]
    ids = [scored[2], "L9999999", closed, scored[0], scored[1]]
    # when both batches score them
    in_process, _ = score_batch(settings, "lead_conversion", ids, champion=champion)
    on_spark, _ = score_batch_spark(settings, "lead_conversion", ids, champion=champion)
    # then the rows come in the order asked, with the same statuses and errors
    assert on_spark["lead_id"].tolist() == ids
    assert on_spark["status"].tolist() == ["scored", "unknown", "closed", "scored", "scored"]
    assert_same_rows(in_process, on_spark)


def test_only_unknown_accounts_give_the_in_process_columns(settings: Settings) -> None:
    # given account ids the CRM does not have (the in-process file then has no CRM fields)
    ids = ["A999998", "A999999"]
    in_process, champion = score_batch(settings, "churn_risk", ids)
    # when Spark scores them
    on_spark, _ = score_batch_spark(settings, "churn_risk", ids, champion=champion)
    # then the same two unknown rows, column for column
    assert on_spark["status"].tolist() == ["unknown", "unknown"]
    assert_same_rows(in_process, on_spark)


def test_a_back_fill_as_of_a_past_day_equals_the_in_process_one(settings: Settings) -> None:
    # given a day two months before the data's as-of time
    every, champion = score_batch(settings, "lead_conversion")
    as_of = every["data_as_of"].max().to_pydatetime().astimezone(UTC) - pd.Timedelta(days=60)
    as_of = datetime(as_of.year, as_of.month, as_of.day, tzinfo=UTC)
    # when both batches back-fill that day
    in_process, _ = score_batch(settings, "lead_conversion", champion=champion, as_of=as_of)
    on_spark, _ = score_batch_spark(settings, "lead_conversion", champion=champion, as_of=as_of)
    # then the same leads (those the CRM had then) get the same rows
    assert (in_process["status"] == "scored").sum() > 0
    assert_same_rows(in_process, on_spark)
