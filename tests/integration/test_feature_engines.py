"""The DuckDB engine reproduces the pandas pipeline's frozen tables; raw tables may be folders.

The same equality on Spark is in tests/integration/test_spark_engine.py (one Spark session)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from engine_checks import FIXTURE, TABLES, differences, fixture_differences

from crm.settings import Settings
from features.engines import DuckDBEngine
from features.pipeline import feature_tables, load_raw, raw_facts
from features.store import build

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def duckdb_built(tmp_path_factory: pytest.TempPathFactory, small_data_dir: Path) -> Settings:
    data_dir = tmp_path_factory.mktemp("duckdb-engine")
    shutil.copytree(small_data_dir / "raw", data_dir / "raw")
    settings = Settings(data_dir=data_dir, engine="duckdb")
    build(settings)
    return settings


def test_duckdb_build_equals_the_pandas_pipelines_frozen_tables(duckdb_built: Settings) -> None:
    # given the test CRM built on DuckDB, then every table equals the frozen pandas output row
    # for row (floats within 1e-9), with the same stored types
    assert fixture_differences(duckdb_built.features_dir) == {name: [] for name in TABLES}


def test_the_comparison_sees_a_single_changed_value() -> None:
    # (the equality above has teeth: one feature of one row moved by 1e-3 is reported)
    want = pd.read_parquet(FIXTURE / "account_features.parquet")
    got = want.copy()
    got.loc[17, "mrr"] = got.loc[17, "mrr"] + 1e-3
    found = differences(got, want, "account_id")
    assert len(found) == 1 and found[0].startswith("mrr: 1 rows differ")


def test_raw_tables_may_be_folders_of_parquet_parts(
    tmp_path: Path, small_data_dir: Path, duckdb_built: Settings
) -> None:
    # given the same CRM with its interactions and leads split into folders of three parts each
    raw = tmp_path / "raw"
    shutil.copytree(small_data_dir / "raw", raw)
    for name in ("interactions", "leads"):
        table = pq.read_table(raw / f"{name}.parquet")
        (raw / f"{name}.parquet").unlink()
        folder = raw / f"{name}.parquet"
        folder.mkdir()
        step = -(-table.num_rows // 3)
        for i in range(3):
            pq.write_table(table.slice(i * step, step), folder / f"part-{i:05d}.parquet")
    settings = Settings(data_dir=tmp_path)
    # when it is built, then the feature tables are the same as from single files
    build(settings)
    for name, key in TABLES.items():
        got = pd.read_parquet(settings.features_dir / f"{name}.parquet")
        want = pd.read_parquet(duckdb_built.features_dir / f"{name}.parquet")
        assert differences(got, want, key) == [], name


def test_lead_tables_built_in_parts_equal_the_frozen_tables(
    tmp_path: Path, small_data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a part size that splits the test CRM's leads into five parts (a large CRM's build)
    monkeypatch.setattr(DuckDBEngine, "PART_INTERACTIONS", 7_000)
    shutil.copytree(small_data_dir / "raw", tmp_path / "raw")
    settings = Settings(data_dir=tmp_path)
    # when it is built, then every table is still the pandas pipeline's, row for row
    steps: list[tuple[str, float]] = []
    build(settings, progress=lambda step, amount=1: steps.append((step, amount)))
    assert fixture_differences(settings.features_dir) == {name: [] for name in TABLES}
    # and the build told which part it was on, without counting parts as steps of its own
    assert [step for step, amount in steps if amount == 0] == [
        f"{table}, part {k} of 5" for table in ("lead features", "lead labels") for k in range(1, 6)
    ]
    assert sum(amount for _, amount in steps) == 7  # the steps `features build` counts


def test_a_build_in_parts_keeps_one_staged_copy_of_the_touches(
    small_data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given the test CRM staged for a build in five parts
    monkeypatch.setattr(DuckDBEngine, "PART_INTERACTIONS", 7_000)
    engine = DuckDBEngine()
    try:
        raw = load_raw(engine, small_data_dir / "raw")
        facts = raw_facts(engine, raw)
        # when its tables are defined (the touches restaged, clustered by part)
        feature_tables(engine, raw, Settings(data_dir=small_data_dir), facts=facts)
        # then the touches are staged once: the first staged copy is freed
        views = engine.con.con.sql(
            "SELECT view_name FROM duckdb_views() WHERE temporary AND NOT internal"
        )
        rows = [
            engine.con.con.sql(f'SELECT count(*) FROM "{name}"').fetchone()[0]
            for (name,) in views.fetchall()
        ]
        assert rows.count(facts["interactions.rows"]) == 1
    finally:
        engine.close()


def test_an_empty_table_restaged_by_part_reads_back_empty(tmp_path: Path) -> None:
    # given a staged table with no rows (a CRM without a kind of record)
    engine = DuckDBEngine(tmp_path)
    try:
        empty = engine.con.sql("SELECT 'L1' AS lead_id, 1 AS n WHERE false")
        # when it is restaged by part
        clustered = engine.clustered(empty, "part", empty.n % 3)
        # then it reads back with its columns, of their types, and no rows
        assert clustered.schema() == empty.mutate(part=empty.n % 3).schema()
        assert engine.fetch(clustered).column_names == ["lead_id", "n", "part"]
        assert engine.fetch(clustered).num_rows == 0
    finally:
        engine.close()
    # and nothing staged is left behind
    assert list(tmp_path.glob("staged-*")) == []
