"""The project's Feast online store and provider: Feast's own CLI and writes, generations, locks."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from feast import FeatureStore, RepoConfig
from feast.protos.feast.types.EntityKey_pb2 import EntityKey
from feast.protos.feast.types.Value_pb2 import Value
from feast.repo_config import FeastConfigError, load_repo_config
from feature_checks import same_values
from pydantic import ValidationError

import features
from crm.settings import Settings
from features.online_store import CrmSqliteOnlineStore, CrmSqliteOnlineStoreConfig
from features.store import (
    OnlineReader,
    apply,
    build,
    feature_store,
    latest_rows,
    materialize,
    online_features,
    repo_config,
)
from features.training import FEATURE_SERVICES, feature_names

pytestmark = pytest.mark.integration

FEATURES_DIR = Path(features.__file__).resolve().parent
FEAST = Path(sys.executable).parent / "feast"
LEADS = ["L0000001", "L0000002", "L0000003"]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, small_data_dir: Path) -> Settings:
    """A data directory with the small simulation's feature tables, built but not applied."""
    data_dir = tmp_path_factory.mktemp("online-store")
    shutil.copytree(small_data_dir / "raw", data_dir / "raw")
    settings = Settings(data_dir=data_dir)
    build(settings)
    return settings


@pytest.fixture(scope="module")
def served(built: Settings, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """``built``, applied and materialised with the bulk writer."""
    settings = Settings(data_dir=tmp_path_factory.mktemp("served"))
    shutil.copytree(built.features_dir, settings.features_dir)
    apply(settings)
    materialize(settings)
    return settings


@pytest.fixture
def data(served: Settings, tmp_path: Path) -> Settings:
    """A private copy of ``served``."""
    settings = Settings(data_dir=tmp_path / "d")
    shutil.copytree(served.data_dir, settings.data_dir)
    return settings


def _latest(settings: Settings, entity: str, key: str, end: datetime | None = None) -> pd.DataFrame:
    table = latest_rows(settings.features_dir / f"{entity}_features.parquet", key, end)
    return table.to_pandas().set_index(key)


def _assert_serves_latest(
    settings: Settings, entity: str, key: str, model: str, n: int = 40
) -> None:
    latest = _latest(settings, entity, key)
    sample = latest.sample(min(n, len(latest)), random_state=3)
    ids = sample.index.tolist()
    online = online_features(settings, entity, ids).set_index(key)
    assert online["found"].all()
    assert (online["event_timestamp"].to_numpy() == sample["event_timestamp"].to_numpy()).all()
    for name in feature_names(model):
        assert same_values(online[name], sample[name]), name


def _files(settings: Settings) -> list[str]:
    return sorted(p.name for p in settings.feast_dir.iterdir())


def _feast(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CRM_INTEL_DATA_DIR": str(settings.data_dir), "FEAST_USAGE": "False"}
    return subprocess.run(
        [str(FEAST), "-c", str(FEATURES_DIR), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_feast_cli_apply_and_materialize_write_through_the_custom_store(
    built: Settings, tmp_path: Path
) -> None:
    # given a data directory with feature tables only, named by CRM_INTEL_DATA_DIR
    settings = Settings(data_dir=tmp_path / "cli")
    shutil.copytree(built.features_dir, settings.features_dir)
    # when Feast's own CLI applies the repo folder and materialises everything
    applied = _feast(settings, "apply")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert _files(settings) == ["online.db", "registry.db"]
    done = _feast(settings, "materialize", "1970-01-01T00:00:00", "2100-01-01T00:00:00")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "CrmSqliteOnlineStore" in done.stdout
    # then the views were registered over this data directory's tables
    store = feature_store(settings)
    source = store.get_feature_view("lead_features").batch_source
    assert Path(source.path) == settings.features_dir / "lead_features.parquet"  # type: ignore[attr-defined]
    # and the service's read returns each entity's latest offline row
    _assert_serves_latest(settings, "lead", "lead_id", "lead_conversion")
    _assert_serves_latest(settings, "account", "account_id", "churn_risk")
    # and each view's generation was switched in, leaving no temporary file behind
    assert _files(settings) == ["online.db", "registry.db"]


def test_feature_store_yaml_resolves_under_crm_intel_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CRM_INTEL_DATA_DIR", str(tmp_path))
    config = load_repo_config(FEATURES_DIR, FEATURES_DIR / "feature_store.yaml")
    assert config.online_store.path == f"{tmp_path}/feast/online.db"
    assert config.registry.path == f"{tmp_path}/feast/registry.db"
    assert config.provider == "features.provider.CrmProvider"
    # an unset variable is a named error, not a folder called "${CRM_INTEL_DATA_DIR}"
    monkeypatch.delenv("CRM_INTEL_DATA_DIR")
    with pytest.raises(FeastConfigError, match="CRM_INTEL_DATA_DIR"):
        load_repo_config(FEATURES_DIR, FEATURES_DIR / "feature_store.yaml")
    with pytest.raises(ValidationError, match="HOME_OF_DATA"):
        CrmSqliteOnlineStoreConfig(path="${HOME_OF_DATA}/online.db")


def test_feast_materialize_switches_a_new_generation_under_open_readers(data: Settings) -> None:
    store = feature_store(data)
    reader = OnlineReader(store, busy_timeout_ms=0)
    before = reader.frame("lead", LEADS)
    path = data.feast_dir / "online.db"
    inode = path.stat().st_ino
    with sqlite3.connect(path) as conn:
        accounts = conn.execute("SELECT * FROM crm_intel_account_features ORDER BY 1, 2").fetchall()
    # when Feast's own FeatureStore.materialize writes the leads as of an earlier time
    end = before["event_timestamp"].min() - pd.Timedelta(days=1)
    store.materialize(
        start_date=datetime(1970, 1, 1, tzinfo=UTC),
        end_date=end.to_pydatetime(),
        feature_views=["lead_features"],
    )
    # then a new file replaced the store and the open reader follows it
    assert path.stat().st_ino != inode
    after = reader.frame("lead", LEADS).set_index("lead_id")
    expected = _latest(data, "lead", "lead_id", end.to_pydatetime())
    known = [i for i in LEADS if i in expected.index]
    assert known
    for lead in known:
        assert after.loc[lead, "event_timestamp"] == expected.loc[lead, "event_timestamp"]
        for name in feature_names("lead_conversion"):
            assert same_values(after.loc[[lead], name], expected.loc[[lead], name]), name
    # and the generation started as a copy: the accounts' table is unchanged
    with sqlite3.connect(path) as conn:
        assert (
            conn.execute("SELECT * FROM crm_intel_account_features ORDER BY 1, 2").fetchall()
            == accounts
        )
    assert _files(data) == ["online.db", "registry.db"]


def _config_with_batches(settings: Settings, rows: int) -> RepoConfig:
    base = repo_config(settings)
    return RepoConfig(
        project=base.project,
        provider=base.provider,
        registry={"registry_type": "file", "path": str(settings.feast_dir / "registry.db")},
        online_store={"type": base.online_store.type, "path": base.online_store.path},
        offline_store={"type": base.offline_store.type},
        entity_key_serialization_version=3,
        repo_path=str(base.repo_path),
        materialization={"online_write_batch_size": rows},
    )


def test_failed_feast_materialize_leaves_the_old_store_serving(
    data: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = data.feast_dir / "online.db"
    before_bytes = path.read_bytes()
    before = online_features(feature_store(data), "lead", LEADS)
    # when Feast's materialisation fails after its first batch of 500 leads was written
    real = CrmSqliteOnlineStore.online_write_batch
    calls: list[int] = []

    def failing(self, config, table, data, progress):  # type: ignore[no-untyped-def]
        calls.append(len(data))
        if len(calls) == 2:
            raise OSError("disk full")
        return real(self, config, table, data, progress)

    monkeypatch.setattr(CrmSqliteOnlineStore, "online_write_batch", failing)
    store = FeatureStore(config=_config_with_batches(data, 500))
    with pytest.raises(OSError, match="disk full"):
        store.materialize(
            start_date=datetime(1970, 1, 1, tzinfo=UTC),
            end_date=datetime(2100, 1, 1, tzinfo=UTC),
            feature_views=["lead_features"],
        )
    # then the store is the same file, byte for byte, and serves what it served
    assert calls[0] == 500
    assert path.read_bytes() == before_bytes
    pd.testing.assert_frame_equal(online_features(feature_store(data), "lead", LEADS), before)
    assert _files(data) == ["online.db", "registry.db"]


def test_killed_generation_leaves_the_old_store_serving_and_unlocked(data: Settings) -> None:
    path = data.feast_dir / "online.db"
    before_bytes = path.read_bytes()
    before = online_features(feature_store(data), "lead", LEADS)
    # given a process that writes into an open generation and is then killed
    script = textwrap.dedent(
        f"""
        import sys, time
        from datetime import UTC, datetime
        from feast.protos.feast.types.EntityKey_pb2 import EntityKey
        from feast.protos.feast.types.Value_pb2 import Value
        from crm.settings import Settings
        from features.online_store import CrmSqliteOnlineStore
        from features.store import feature_store
        store = feature_store(Settings(data_dir={str(data.data_dir)!r}))
        view = store.get_feature_view("lead_features")
        online = CrmSqliteOnlineStore()
        key = EntityKey(join_keys=["lead_id"], entity_values=[Value(string_val="L0000001")])
        row = (key, {{"touches_90d": Value(float_val=-1.0)}}, datetime.now(UTC), None)
        with online.generation(store.config):
            online.online_write_batch(store.config, view, [row], None)
            print("written", flush=True)
            time.sleep(600)
        """
    )
    child = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=FEATURES_DIR.parent
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "written"
    finally:
        child.kill()
        child.wait()
    # then the store is the old file, still serving, and its write lock is free again
    assert path.read_bytes() == before_bytes
    pd.testing.assert_frame_equal(online_features(feature_store(data), "lead", LEADS), before)
    with sqlite3.connect(path, timeout=0) as conn:
        conn.execute("BEGIN IMMEDIATE")
        conn.rollback()
    # and the killed generation's new file, left behind, is deleted by the next generation
    left = sorted(p.name for p in path.parent.glob(".online.db.tmp-*"))
    assert left, "the killed generation left no new file: nothing was tested"
    online = CrmSqliteOnlineStore()
    with online.generation(feature_store(data).config):
        pass
    assert not list(path.parent.glob(".online.db.tmp-*"))
    pd.testing.assert_frame_equal(online_features(feature_store(data), "lead", LEADS), before)


def _lead_frame(settings: Settings, ids: list[str]) -> pd.DataFrame:
    latest = _latest(settings, "lead", "lead_id").loc[ids].reset_index()
    return latest.astype({"lead_id": object})


def test_write_to_online_store_writes_in_place_through_the_class(data: Settings) -> None:
    store = feature_store(data)
    reader = OnlineReader(store)
    path = data.feast_dir / "online.db"
    inode = path.stat().st_ino
    rows = _lead_frame(data, LEADS[:2])
    rows["touches_90d"] = np.array([555.0, 777.0], dtype=np.float32)
    # when Feast's write_to_online_store pushes two leads
    store.write_to_online_store("lead_features", rows)
    # then they are written into the same file, read back by the service and by Feast
    assert path.stat().st_ino == inode
    assert reader.frame("lead", LEADS[:2])["touches_90d"].tolist() == [555.0, 777.0]
    feast = store.get_online_features(
        features=store.get_feature_service(FEATURE_SERVICES["lead_conversion"]),
        entity_rows=[{"lead_id": i} for i in LEADS[:2]],
    ).to_dict()
    assert feast["touches_90d"] == [555.0, 777.0]
    assert feast["seniority"] == rows["seniority"].tolist()


def test_write_to_online_store_is_one_transaction(data: Settings) -> None:
    store = feature_store(data)
    before = online_features(store, "lead", LEADS[:2])
    rows = _lead_frame(data, LEADS[:2])
    rows["touches_90d"] = np.array([555.0, 999.0], dtype=np.float32)
    # given a store that refuses the second lead's value (a trigger, as a failing disk would)
    with sqlite3.connect(data.feast_dir / "online.db") as conn:
        conn.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON crm_intel_lead_features "
            "WHEN NEW.value_text = '999.0' BEGIN SELECT RAISE(ABORT, 'refused'); END"
        )
    # when both are pushed, the write fails
    with pytest.raises(sqlite3.IntegrityError, match="refused"):
        store.write_to_online_store("lead_features", rows)
    # then neither lead changed: the first lead's rows were rolled back with the second's
    pd.testing.assert_frame_equal(online_features(feature_store(data), "lead", LEADS[:2]), before)


def test_a_write_in_place_waits_for_the_generation_and_lands_in_the_new_file(
    data: Settings,
) -> None:
    store = feature_store(data)
    config = store.config
    view = store.get_feature_view("lead_features")
    path = data.feast_dir / "online.db"

    def row(lead: str, value: float) -> tuple:
        key = EntityKey(join_keys=["lead_id"], entity_values=[Value(string_val=lead)])
        return (key, {"touches_90d": Value(float_val=value)}, datetime.now(UTC), None)

    generation = CrmSqliteOnlineStore()
    elsewhere = CrmSqliteOnlineStore(busy_timeout_ms=30_000)
    reader = OnlineReader(store, busy_timeout_ms=0)
    inode = path.stat().st_ino
    pushed = threading.Event()
    with generation.generation(config):
        generation.online_write_batch(config, view, [row(LEADS[0], 111.0)], None)
        # while the generation is open, another writer pushes in place
        thread = threading.Thread(
            target=lambda: (
                elsewhere.online_write_batch(config, view, [row(LEADS[1], 222.0)], None),
                pushed.set(),
            )
        )
        thread.start()
        time.sleep(0.3)
        # then it waits for the generation, and readers are not blocked meanwhile
        assert not pushed.is_set()
        assert reader.frame("lead", LEADS[:2])["touches_90d"].tolist() != [111.0, 222.0]
    thread.join(timeout=30)
    # and once the generation is switched in, the push lands in the new file: nothing lost
    assert pushed.is_set() and path.stat().st_ino != inode
    assert reader.frame("lead", LEADS[:2])["touches_90d"].tolist() == [111.0, 222.0]
