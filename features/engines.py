"""The engines that run the feature pipeline's one relational definition: DuckDB or Spark.

The feature tables are defined once, as Ibis expressions (:mod:`features.pipeline` and the
modules it names); an engine reads the raw contract tables, runs those expressions and streams
the result back as Arrow record batches. ``CRM_INTEL_ENGINE`` (``--engine``) chooses:

* ``duckdb`` (the default): in-process, no server, out-of-core (it stages the raw tables as
  Parquet in a temp directory under the data directory, and spills there beyond
  ``duckdb_memory_limit``);
* ``spark``: Apache Spark at ``spark_master`` (``local[2]`` here, or a cluster's URL), through
  :mod:`features.spark_session`.

Both engines see every raw time column as int64 nanoseconds since the epoch (UTC), never as an
engine timestamp: DuckDB 1.x and Spark keep microseconds only, and a touch one nanosecond after a
snapshot must stay after it (the pandas pipeline's rule, which the leakage tests check).
Raw tables are Parquet files or folders of Parquet files
(``raw/interactions.parquet/part-*.parquet``).
"""

from __future__ import annotations

import itertools
import shutil
import tempfile
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import ibis
import ibis.expr.operations as ops
import ibis.expr.types as ir
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from crm.settings import Settings

NS_PER_UNIT = {"s": 1_000_000_000, "ms": 1_000_000, "us": 1_000, "ns": 1}
_NAMES = itertools.count()


def _view_name(table: str) -> str:
    return f"crm_{table}_{next(_NAMES)}_{uuid.uuid4().hex[:8]}"


def _quoted(path: Path) -> str:
    """``path`` as a SQL string literal."""
    return "'" + str(path).replace("'", "''") + "'"


def time_columns(schema: pa.Schema) -> dict[str, int]:
    """Timestamp columns of ``schema`` → nanoseconds per stored unit."""
    return {
        field.name: NS_PER_UNIT[field.type.unit]
        for field in schema
        if pa.types.is_timestamp(field.type)
    }


def frame_as_arrow(frame: pd.DataFrame, columns: list[str]) -> pa.Table:
    """An in-memory contract table as Arrow, its timestamp columns as int64 nanoseconds."""
    table = pa.Table.from_pandas(frame[columns], preserve_index=False)
    fields = []
    arrays = []
    for field, column in zip(table.schema, table.columns, strict=True):
        if pa.types.is_timestamp(field.type):
            column = column.cast(pa.timestamp("ns", tz=field.type.tz)).cast(pa.int64())
            field = pa.field(field.name, pa.int64())
        elif pa.types.is_large_string(field.type) or pa.types.is_null(field.type):
            column = column.cast(pa.string())
            field = pa.field(field.name, pa.string())
        fields.append(field)
        arrays.append(column)
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


class Engine(ABC):
    """One engine's connection: raw tables in, Ibis expressions run, Arrow batches out."""

    name: str
    con: Any  # the Ibis backend

    @abstractmethod
    def read_parquet(self, path: Path, columns: list[str]) -> ir.Table:
        """``columns`` of the Parquet file or folder at ``path``, times as int64 nanoseconds."""

    @abstractmethod
    def from_arrow(self, table: pa.Table) -> ir.Table:
        """A small in-memory Arrow table (times already int64) as an engine table."""

    def batches(self, expr: ir.Table, rows: int = 1_000_000) -> Iterator[pa.RecordBatch]:
        """The rows of ``expr`` as Arrow record batches of at most ``rows`` rows."""
        reader = self.con.to_pyarrow_batches(expr, chunk_size=rows)
        try:
            yield from reader
        finally:
            reader.close()

    def fetch(self, expr: ir.Table) -> pa.Table:
        """A small result (an aggregate, a few rows) as Arrow."""
        return self.con.to_pyarrow(expr)

    def clustered(self, table: ir.Table, column: str, value: ir.IntegerValue) -> ir.Table:
        """``table`` with ``column`` (an integer, e.g. a part number) holding ``value``, stored so
        that a filter on one value of ``column`` reads that value's rows, not the whole table.
        Here: the column only (Spark reads its persisted table partition by partition anyway)."""
        return table.mutate(**{column: value})

    def forget(self, table: ir.Table) -> None:  # noqa: B027 (a default that does nothing)
        """Free what this engine staged for ``table``'s sources: the caller uses a restaged copy
        (:meth:`clustered`) in its place from now on. Here: nothing (a Spark view is cheap)."""

    def lead_parts(self, interactions: int) -> int:
        """In how many parts to build the lead tables of a CRM with this many interactions
        (:func:`features.pipeline.lead_parts`): one, unless the engine says otherwise."""
        return 1

    @abstractmethod
    def release(self) -> None:
        """Drop the tables this engine staged for a build (the connection stays open)."""

    def close(self) -> None:
        """Release the staged tables and the connection (a Spark session stays: it is the
        process's)."""
        self.release()

    @staticmethod
    def schema_of(path: Path) -> pa.Schema:
        """The Arrow schema of the Parquet file or folder at ``path``."""
        return ds.dataset(path, format="parquet").schema


class DuckDBEngine(Engine):
    """DuckDB in this process, out-of-core under ``temp_dir`` (staged tables and spill)."""

    name = "duckdb"
    # interactions per part of the lead tables: a part of 2.5 M touches is ~18 M rows of 52
    # measures in the grouped sum of its running sums (features.as_of.snapshot_windowed), which
    # an 8 GB memory limit holds
    PART_INTERACTIONS = 2_500_000

    def lead_parts(self, interactions: int) -> int:
        return max(1, -(-interactions // self.PART_INTERACTIONS))

    def __init__(self, temp_dir: Path | None = None, memory_limit: str | None = None):
        config: dict[str, Any] = {}
        if temp_dir is not None:
            temp_dir.mkdir(parents=True, exist_ok=True)
            config["temp_directory"] = str(temp_dir)
        if memory_limit:
            config["memory_limit"] = memory_limit
        # insertion order is not needed (every output is ordered explicitly): lets DuckDB
        # stream and spill without keeping row order
        config["preserve_insertion_order"] = False
        # a join's key range is pushed into the scans of its inputs; into a scan of the pyarrow
        # dataset read_parquet stages from, pyarrow would compare it with the stored timestamps
        # and fail (staging joins nothing today; kept off so that no later query can hit it)
        config["disabled_optimizers"] = "join_filter_pushdown"
        self.con = ibis.duckdb.connect(**config)
        self.con.raw_sql("SET enable_progress_bar = false")  # the build reports its own progress
        self._temp_dir = temp_dir
        self._stage_dir: Path | None = None  # made at the first staged table (see _stage)
        self._staged: dict[str, Path] = {}  # view name → its Parquet file or folder
        self._registered: list[str] = []

    def read_parquet(self, path: Path, columns: list[str]) -> ir.Table:
        # DuckDB 1.x reads a Parquet nanosecond timestamp as microseconds (it drops the last three
        # digits), and Ibis has no reader that keeps them. So the table is staged once, read from
        # a pyarrow dataset whose schema asks for the stored int64 (scanned lazily, batch by
        # batch, registered on the backend's DuckDB connection ``con.con``); see _stage for where.
        # Queries then never scan the dataset itself: filters pushed into pyarrow would be
        # compared with the stored timestamps and fail.
        dataset = ds.dataset(path, format="parquet")
        units = time_columns(dataset.schema)
        fields = [
            pa.field(c, pa.int64()) if c in units else dataset.schema.field(c) for c in columns
        ]
        dataset = ds.dataset(path, format="parquet", schema=pa.schema(fields))
        view = _view_name(path.stem)
        self.con.con.register(view, dataset)
        try:
            source = self.con.table(view)
            scaled = {c: source[c] * units[c] for c in columns if c in units and units[c] != 1}
            return self._stage(source.mutate(**scaled) if scaled else source, path.stem)
        finally:
            self.con.con.unregister(view)

    def clustered(self, table: ir.Table, column: str, value: ir.IntegerValue) -> ir.Table:
        # staged again, one Parquet folder per value of the column (``column=<value>/``): a
        # filter on one value reads that folder's files only
        return self._stage(table.mutate(**{column: value}), "clustered", partition_by=column)

    def _stage(self, expr: ir.Table, stem: str, partition_by: str | None = None) -> ir.Table:
        """``expr`` written once to Parquet under the temporary directory, as a view that reads
        it back (partitioned in folders by ``partition_by``, when given).

        Staged as files rather than as DuckDB tables of the in-memory database: a table there
        lives in the buffer pool that ``memory_limit`` bounds. At 100 M interactions the staged
        raw tables outgrew an 8 GB limit several times over, DuckDB spilled them, and every query
        after waited on that spill: a part of the lead tables took 105-112 s, against 83 s
        with a 14 GB limit and 79 s staged as files, for the same CPU time per row as at 10 M
        (DuckDB's profiler). Parquet files leave the whole limit to the queries; DuckDB reads
        them with its own reader (times are int64 here, not timestamps).
        """
        if self._stage_dir is None:  # this engine's own folder, removed on release
            self._stage_dir = Path(tempfile.mkdtemp(prefix="staged-", dir=self._temp_dir))
        name = _view_name(stem)
        target = self._stage_dir / (name if partition_by else f"{name}.parquet")
        options = "FORMAT parquet"
        if partition_by:
            options += f', PARTITION_BY ("{partition_by}")'
        self.con.con.execute(f"COPY ({self.con.compile(expr)}) TO {_quoted(target)} ({options})")
        if partition_by and not any(target.rglob("*.parquet")):
            # no rows, so no folder was written to read back: one empty file of the same columns
            shutil.rmtree(target, ignore_errors=True)
            target, partition_by = target.with_name(f"{name}.parquet"), None
            pq.write_table(expr.schema().to_pyarrow().empty_table(), target)
        self._staged[name] = target
        if partition_by:
            reader = (
                f"read_parquet({_quoted(target / '**' / '*.parquet')}, hive_partitioning = true)"
            )
        else:
            reader = f"read_parquet({_quoted(target)})"
        self.con.con.execute(f'CREATE TEMP VIEW "{name}" AS SELECT * FROM {reader}')
        return self.con.table(name)

    def forget(self, table: ir.Table) -> None:
        # the staged copy would otherwise stay beside the clustered one: twice the touches on
        # the temporary disk (and read again by nothing)
        for source in table.op().find(ops.PhysicalTable):
            if source.name in self._staged:
                self._drop(source.name)

    def _drop_view(self, name: str) -> None:
        # (Ibis's drop_view emits SQL this sqlglot cannot end)
        self.con.con.execute(f'DROP VIEW IF EXISTS temp.main."{name}"')

    def _drop(self, name: str) -> None:
        self._drop_view(name)
        target = self._staged.pop(name)
        if target.is_dir():
            shutil.rmtree(target, ignore_errors=True)
        else:
            target.unlink(missing_ok=True)

    def from_arrow(self, table: pa.Table) -> ir.Table:
        # registered on DuckDB's connection: Ibis's memtables are created lazily, at execution,
        # so a compiled query (a profile, an EXPLAIN) could not name them
        name = _view_name("memory")
        self.con.con.register(name, table)
        self._registered.append(name)
        return self.con.table(name)

    def release(self) -> None:
        for name in self._staged:
            self._drop_view(name)
        self._staged.clear()  # their files go with the stage folder below
        for name in self._registered:
            self.con.con.unregister(name)
        self._registered.clear()
        if self._stage_dir is not None:
            shutil.rmtree(self._stage_dir, ignore_errors=True)
            self._stage_dir = None

    def close(self) -> None:
        self.release()
        self.con.disconnect()


class SparkEngine(Engine):
    """Apache Spark through Ibis's PySpark backend, at ``settings.spark_master``."""

    name = "spark"

    def __init__(self, settings: Settings, scratch: Path, conf: Mapping[str, str] | None = None):
        from features.spark_session import spark_session

        self.scratch = scratch
        self.session = spark_session(settings, conf)
        self.con = ibis.pyspark.connect(self.session)
        self._views: list[str] = []
        self._frames: list[Any] = []

    def read_parquet(self, path: Path, columns: list[str]) -> ir.Table:
        from pyspark.sql import functions as F

        units = time_columns(self.schema_of(path))
        frame = self.session.read.parquet(str(path)).select(*columns)
        for column, ns in units.items():
            if column not in columns:
                continue
            if ns != 1:  # the session reads nanosecond timestamps as int64 already
                frame = frame.withColumn(column, F.unix_micros(F.col(column)) * 1000)
        return self._view(frame, path.stem)

    def from_arrow(self, table: pa.Table) -> ir.Table:
        frame = self.session.createDataFrame(table)  # Arrow types kept (no pandas round trip)
        return self._view(frame, "memory")

    def _view(self, frame: Any, stem: str) -> ir.Table:
        from pyspark import StorageLevel

        # each raw table is read by several of the pipeline's queries: Spark keeps it after the
        # first (in memory, spilling to disk) instead of reading the Parquet again each time
        frame = frame.persist(StorageLevel.MEMORY_AND_DISK)
        name = _view_name(stem)
        frame.createOrReplaceTempView(name)
        self._views.append(name)
        self._frames.append(frame)
        return self.con.table(name)

    def batches(self, expr: ir.Table, rows: int = 1_000_000) -> Iterator[pa.RecordBatch]:
        # Ibis's PySpark to_pyarrow_batches collects the whole result on the driver first. Spark
        # writes the result itself instead (in parallel, on a cluster too), and the driver then
        # reads it back one row group at a time; part files keep the order of an ordered result.
        self.scratch.mkdir(parents=True, exist_ok=True)
        folder = self.scratch / _view_name("result")
        try:
            self.con.to_parquet(expr, str(folder))
            for part in sorted(folder.glob("part-*.parquet")):
                yield from pq.ParquetFile(part).iter_batches(batch_size=rows)
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def release(self) -> None:
        for name in self._views:
            self.session.catalog.dropTempView(name)
        for frame in self._frames:
            frame.unpersist()
        self._views.clear()
        self._frames.clear()


def engine_for(settings: Settings, conf: Mapping[str, str] | None = None) -> Engine:
    """The engine ``settings.engine`` names, ready to read ``settings.raw_dir``.

    Args:
        conf: Spark settings for a session this call starts (ignored by DuckDB).
    """
    if settings.engine == "spark":
        return SparkEngine(settings, settings.data_dir / ".spark-tmp", conf)
    return DuckDBEngine(settings.data_dir / ".duckdb-tmp", settings.duckdb_memory_limit)
