"""A real Feast store in tmp_path: training sets, online reads, materialisation, failures, CLI."""

from __future__ import annotations

import json
import shutil
import sqlite3
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from feature_checks import same_values
from typer.testing import CliRunner

from crm.settings import Settings
from crm_intel.cli import app
from features import online_layout
from features import store as feature_store_module
from features.pipeline import FeatureInputError
from features.store import (
    FeatureStoreNotReadyError,
    UnknownEntityError,
    apply,
    build,
    feature_store,
    materialize,
    online_features,
)
from features.training import FEATURE_SERVICES, feature_names, training_set

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory, small_data_dir: Path) -> Settings:
    """A data directory with the small simulation, built, applied and materialised."""
    data_dir = tmp_path_factory.mktemp("feature-store")
    shutil.copytree(small_data_dir / "raw", data_dir / "raw")
    settings = Settings(data_dir=data_dir)
    build(settings)
    apply(settings)
    materialize(settings)
    return settings


@pytest.mark.parametrize(
    "model, key, table",
    [("lead_conversion", "lead_id", "lead"), ("churn_risk", "account_id", "account")],
)
def test_training_set_through_feast_equals_the_pipeline_values(
    settings: Settings, model: str, key: str, table: str
) -> None:
    # when the training set is fetched point-in-time through the model's feature service
    rows = training_set(settings, model)
    # then it holds every labelled snapshot, with exactly the pipeline's own values
    labels = pd.read_parquet(settings.features_dir / f"{table}_labels.parquet")
    assert len(rows) == labels["label"].notna().sum() > 1000
    assert set(rows["label"].unique()) == {0, 1} and rows["label"].dtype == np.int64
    assert list(rows.columns) == [key, "event_timestamp", "label", *feature_names(model)]
    pipeline = pd.read_parquet(settings.features_dir / f"{table}_features.parquet")
    joined = rows.merge(
        pipeline, on=[key, "event_timestamp"], suffixes=("", "_pipeline"), validate="one_to_one"
    )
    assert len(joined) == len(rows)
    for name in feature_names(model):
        assert same_values(joined[name], joined[f"{name}_pipeline"]), name


def test_file_and_asof_offline_stores_agree(settings: Settings) -> None:
    entity_df = training_set(settings, "churn_risk")[["account_id", "event_timestamp", "label"]]
    entity_df = entity_df.sample(400, random_state=0).astype({"account_id": object})
    ours = training_set(settings, "churn_risk", entity_df=entity_df)
    dask = training_set(
        settings, "churn_risk", store=feature_store(settings, "file"), entity_df=entity_df
    )
    pd.testing.assert_frame_equal(ours, dask, check_dtype=False)


def test_saved_dataset_is_persisted_as_parquet_and_read_back(
    settings: Settings, tmp_path: Path
) -> None:
    from feast.errors import SavedDatasetLocationAlreadyExists
    from feast.infra.offline_stores.file_source import SavedDatasetFileStorage

    store = feature_store(settings)
    entity_df = training_set(settings, "churn_risk")[["account_id", "event_timestamp"]]
    entity_df = entity_df.sample(200, random_state=2).astype({"account_id": object})
    service = store.get_feature_service(FEATURE_SERVICES["churn_risk"])
    job = store.get_historical_features(entity_df=entity_df, features=service)
    expected = job.to_df()
    path = tmp_path / "saved" / "churn_sample.parquet"
    # when the ASOF store's retrieval job is saved as a dataset
    store.create_saved_dataset(
        from_=job, name="churn_sample", storage=SavedDatasetFileStorage(path=str(path))
    )
    # then the file holds exactly the job's rows, and Feast reads the dataset back
    pd.testing.assert_frame_equal(pd.read_parquet(path), expected)
    saved = store.get_saved_dataset("churn_sample").to_df()
    key = ["account_id", "event_timestamp"]
    pd.testing.assert_frame_equal(
        saved[expected.columns].sort_values(key).reset_index(drop=True),
        expected.sort_values(key).reset_index(drop=True),
        check_dtype=False,
    )
    # and an existing file is only replaced when overwriting is allowed
    storage = SavedDatasetFileStorage(path=str(path))
    with pytest.raises(SavedDatasetLocationAlreadyExists):
        job.persist(storage)
    job.persist(storage, allow_overwrite=True)
    pd.testing.assert_frame_equal(pd.read_parquet(path), expected)
    assert sorted(p.name for p in path.parent.iterdir()) == ["churn_sample.parquet"]


def test_online_vector_equals_the_latest_offline_row_and_feasts_own_read(
    settings: Settings,
) -> None:
    pipeline = pd.read_parquet(settings.features_dir / "lead_features.parquet")
    latest = pipeline.sort_values("event_timestamp").groupby("lead_id").tail(1)
    sample = latest.sample(25, random_state=1).set_index("lead_id")
    ids = sample.index.tolist()
    # when the service's read fetches them (plus one unknown id)
    online = online_features(settings, "lead", [*ids, "L-unknown"]).set_index("lead_id")
    # then each vector is the lead's latest offline row, stamped with its snapshot time
    assert online.loc["L-unknown", "found"] == False  # noqa: E712 (numpy bool)
    assert online.loc[ids, "found"].all()
    assert (
        online.loc[ids, "event_timestamp"].to_numpy() == sample["event_timestamp"].to_numpy()
    ).all()
    for name in feature_names("lead_conversion"):
        assert same_values(online.loc[ids, name], sample[name]), name
    # and Feast's own get_online_features reads the same values from the same store
    store = feature_store(settings)
    feast = (
        store.get_online_features(
            features=store.get_feature_service(FEATURE_SERVICES["lead_conversion"]),
            entity_rows=[{"lead_id": i} for i in ids],
        )
        .to_df()
        .set_index("lead_id")
    )
    for name in feature_names("lead_conversion"):
        assert same_values(feast.loc[ids, name], sample[name]), name


def test_unknown_entity_is_a_named_error(settings: Settings) -> None:
    with pytest.raises(UnknownEntityError, match="unknown entity 'deal'"):
        online_features(settings, "deal", ["x"])


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.parquet"))}


def test_failed_build_leaves_previous_feature_tables_unchanged(
    settings: Settings, tmp_path: Path
) -> None:
    # given a built data directory whose raw interactions then become malformed
    data = Settings(data_dir=tmp_path / "d")
    shutil.copytree(settings.raw_dir, data.raw_dir)
    build(data)
    before = _files(data.features_dir)
    interactions = pd.read_parquet(data.raw_dir / "interactions.parquet")
    interactions["occurred_at"] = interactions["occurred_at"].astype(str)
    interactions.to_parquet(data.raw_dir / "interactions.parquet")
    # when the build runs again it fails with a named error
    with pytest.raises(FeatureInputError, match="interactions.occurred_at"):
        build(data)
    # then the previous feature tables are still there, byte for byte
    assert _files(data.features_dir) == before


def test_failed_materialize_leaves_the_online_store_unchanged(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = Settings(data_dir=tmp_path / "d")
    shutil.copytree(settings.data_dir, data.data_dir)
    store = feature_store(data)
    before = online_features(store, "lead", ["L0000001", "L0000002"])
    with sqlite3.connect(data.feast_dir / "online.db") as conn:
        rows_before = conn.execute("SELECT count(*) FROM crm_intel_lead_features").fetchone()

    # when materialisation fails after the lead table was rewritten, before the account table
    real = online_layout.fill_view_table
    calls = []

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise OSError("disk full")
        return real(*args, **kwargs)

    monkeypatch.setattr(online_layout, "fill_view_table", failing)
    with pytest.raises(OSError, match="disk full"):
        materialize(data, store)
    # then the online store still serves exactly what it served before
    pd.testing.assert_frame_equal(
        online_features(feature_store(data), "lead", ["L0000001", "L0000002"]), before
    )
    with sqlite3.connect(data.feast_dir / "online.db") as conn:
        assert (
            conn.execute("SELECT count(*) FROM crm_intel_lead_features").fetchone() == rows_before
        )


def _table_rows(data: Settings, table: str) -> list[tuple]:
    with sqlite3.connect(data.feast_dir / "online.db") as conn:
        return conn.execute(f"SELECT * FROM {table} ORDER BY entity_key, feature_name").fetchall()


def test_materialize_swaps_the_store_under_open_readers_and_they_follow(
    settings: Settings, tmp_path: Path
) -> None:
    data = Settings(data_dir=tmp_path / "d")
    shutil.copytree(settings.data_dir, data.data_dir)
    ids = ["L0000001", "L0000002", "L0000003"]
    reader = feature_store_module.OnlineReader(feature_store(data), busy_timeout_ms=0)
    before = reader.frame("lead", ids)
    accounts = _table_rows(data, "crm_intel_account_features")
    assert before["found"].all() and accounts
    # while one thread reads the store without pause (and no wait on a lock allowed)
    errors: list[BaseException] = []
    reads = []
    stop = threading.Event()

    def read_forever() -> None:
        while not stop.is_set():
            try:
                reads.append(reader.rows("lead", ids[:1])[0]["found"])
            except BaseException as err:  # noqa: BLE001 (any failure fails the test)
                errors.append(err)

    thread = threading.Thread(target=read_forever)
    thread.start()
    try:
        # when only the leads are materialised again, as of an earlier time
        end = before["event_timestamp"].min() - pd.Timedelta(days=1)
        result = materialize(data, entities_=["lead"], end=end.to_pydatetime())
    finally:
        stop.set()
        thread.join()
    # then no read failed or waited, and the open reader now reads the new file
    assert not errors and len(reads) > 10 and all(reads)
    after = reader.frame("lead", ids)
    expected = feature_store_module.latest_rows(
        data.features_dir / "lead_features.parquet", "lead_id", end.to_pydatetime()
    ).to_pandas()
    expected = expected[expected["lead_id"].isin(ids)].set_index("lead_id")
    assert result.rows["lead"] > 0
    for lead in ids:
        row = after.set_index("lead_id").loc[lead]
        if lead in expected.index:
            assert row["event_timestamp"] == expected.loc[lead, "event_timestamp"]
            assert row["event_timestamp"] <= end
        else:
            assert not row["found"]
    # and the accounts' table, not materialised this time, was carried over row for row
    assert _table_rows(data, "crm_intel_account_features") == accounts
    # and no temporary file is left beside the store
    assert sorted(p.name for p in data.feast_dir.iterdir()) == ["online.db", "registry.db"]


@pytest.mark.parametrize("value", ["L0000001", "", "Ünïcødé-ß", "x" * 300])
def test_fast_entity_keys_equal_feasts_serialisation(value: str) -> None:
    from feast.infra.key_encoding_utils import serialize_entity_key
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value

    feast_key = serialize_entity_key(
        EntityKey(join_keys=["lead_id"], entity_values=[Value(string_val=value)]),
        entity_key_serialization_version=3,
    )
    assert online_layout.entity_keys("lead_id", ["L0", value])[1] == feast_key


def test_steps_out_of_order_say_what_to_run(tmp_path: Path) -> None:
    empty = Settings(data_dir=tmp_path / "empty")
    with pytest.raises(FeatureStoreNotReadyError, match="features build"):
        apply(empty)
    with pytest.raises(FeatureInputError, match="simulate"):
        build(empty)


def test_cli_build_apply_materialize_online(small_data_dir: Path, tmp_path: Path) -> None:
    data_dir = tmp_path / "cli"
    shutil.copytree(small_data_dir / "raw", data_dir / "raw")
    runner = CliRunner()
    common = ["--data-dir", str(data_dir)]
    built = runner.invoke(app, ["features", "build", *common, "--json"])
    assert built.exit_code == 0, built.output
    counts = json.loads(built.stdout.strip().splitlines()[-1])["rows"]
    assert counts["lead_features"] == counts["lead_labels"] > 0
    assert runner.invoke(app, ["features", "apply", *common]).exit_code == 0
    done = runner.invoke(app, ["features", "materialize", *common, "--json"])
    assert done.exit_code == 0, done.output
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    assert figures["rows"]["account"] > 0 and figures["rows_per_second"] > 0
    lead = pd.read_parquet(data_dir / "features" / "lead_features.parquet").iloc[-1]
    shown = runner.invoke(
        app, ["features", "online", "--entity", "lead", "--id", lead["lead_id"], *common]
    )
    assert shown.exit_code == 0, shown.output
    vector = json.loads(shown.stdout)
    assert vector["found"] is True
    assert vector["touches_90d"] == pytest.approx(float(lead["touches_90d"]))
    assert pd.Timestamp(vector["event_timestamp"]) == lead["event_timestamp"]
    bad = runner.invoke(app, ["features", "online", "--entity", "deal", "--id", "x", *common])
    assert bad.exit_code == 2 and "unknown entity" in bad.output
