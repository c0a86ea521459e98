"""The nightly batch on Apache Spark: :func:`serving.batch.score_batch`'s file, scored in executors.

:func:`score_batch_spark` returns the same rows as the in-process batch (status, probability,
score, band, reasons, CRM fields, in the same order), with each row's work (its status by
:func:`serving.status.standing`, its score and reasons by :func:`serving.scoring.score`, its file
row by :func:`serving.scoring.batch_frame`, all through :func:`serving.batch.score_rows`) run
inside Spark's Python workers by ``DataFrame.mapInPandas``.

**Where the rows come from.** Not from the online store: millions of point reads from every
executor would load the store the live API reads, and a Spark cluster need not reach it. The
rows are read from the tables the online store is loaded from, the feature and lifecycle
tables under ``settings.features_dir``, taking each entity's latest row as
:func:`features.store.materialize` does, and are then put in the form the online store gives them
back: numbers as ``Float32`` (the view's type; the store keeps 4 bytes), timestamps to the second
(SQLite keeps epoch seconds) or microsecond (Redis keeps a protobuf ``Timestamp``, read back to
the microsecond). So the rows equal the online store's as long as it was materialised from the
current tables, which is the nightly order (``features build``, ``features materialize``, then
the batch); a build not yet materialised is scored by Spark and not yet by the in-process batch.
The TTL is the registered view's, read from the registry, as the in-process batch reads it.
With ``as_of``, the rows are those of :class:`serving.batch.AsOfFeatures`: the latest feature row
at or before ``as_of`` (compared to the microsecond, as DuckDB's cast to ``TIMESTAMPTZ`` does),
numbers as stored, and the lifecycle recomputed from the raw tables on the driver
(:func:`serving.batch.lifecycle_table_as_of`, one small row per entity) and joined in. Times
pass through Spark as its ``TIMESTAMP``, to the microsecond: finer than both online stores keep,
and the feature tables' times are whole seconds (weekly snapshots, creation rows rounded up to
the second).

**The champion on the executors.** The model (and, for accounts, the lifetime reference it is
measured against) is broadcast once with ``SparkContext.broadcast``: each executor fetches it
once and each Python worker unpickles it once and keeps it while Spark reuses the worker
(``spark.python.worker.reuse``, on by default). Left in the function's closure instead, it would
be pickled into every task's command (PySpark broadcasts a command only past 1 MB), so a
small model would travel with each of thousands of tasks. The executors need the ``crm-intel``
package importable (the model's classes are pickled by reference); in local mode they run the
driver's interpreter (:func:`features.spark_session.spark_session`).

**Accounts.** Their remaining lifetime is measured against the whole book
(:func:`serving.lifetime.lifetime_reference`), on the same population as in process: the
scorable rows of every account the batch covers, selected by the executors, collected to the
driver in id order (one row per live account) and measured there once.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from crm.exports.common import SourceIds
from crm.settings import Settings
from features.feature_views import TTL
from features.schema import STATUS_TABLES
from features.spark_session import spark_session
from features.store import entity_info
from serving.batch import lifecycle_table_as_of, score_rows, standings
from serving.lifetime import LifetimeReference, lifetime_reference
from serving.online import OnlineFeatures
from serving.scoring import LIFETIME_FIELDS, MODEL_ENTITIES
from serving.status import NOT_A_CUSTOMER
from training.registry import Champion, load_champion

if TYPE_CHECKING:
    from pyspark import Broadcast
    from pyspark.sql import Column, DataFrame, SparkSession
    from pyspark.sql.types import StructType

POSITION = "batch_position"  # the row's place among the ids asked for (0 for every default id)
FOUND = "found"
EVENT = "event_timestamp"
LIFECYCLE_AS_OF = "lifecycle__as_of"  # the lifecycle row's time (null: no lifecycle row)
LIFECYCLE = "lifecycle__"  # prefix of the lifecycle fields in the Spark rows
TIME_COLUMNS = ("closed_at", "data_as_of", "feature_timestamp")
# what the online store keeps of a timestamp (features.online_store / features.redis_store)
STORE_TIME_UNIT = {"sqlite": "seconds", "redis": "micros"}


class BatchColumnChanged(RuntimeError):
    """:func:`serving.scoring.batch_frame` wrote a column the Spark output schema does not
    declare (update :func:`output_schema`)."""


@dataclass(frozen=True)
class RowForm:
    """How Spark's rows become the online store's: which entity, and what the store keeps."""

    entity: str
    float32: bool  # numbers read back as the store's Float32 (not with as_of: read as stored)

    def frame(self, batch: pd.DataFrame) -> pd.DataFrame:
        """Rows of the Spark frame (:func:`spark_rows`) in the layout of
        :meth:`serving.online.OnlineFeatures.frame` with ``status=True``."""
        key, _, numeric, categorical = entity_info(self.entity)
        fields = STATUS_TABLES[self.entity][2] if self.entity in STATUS_TABLES else ()
        columns: dict[str, Any] = {
            key: pd.array(batch[key].to_numpy(dtype=object), dtype="string[pyarrow]"),
            EVENT: pd.to_datetime(batch[EVENT], utc=True),
            FOUND: batch[FOUND].to_numpy(dtype=bool),
        }
        for name in numeric:
            values = batch[name].to_numpy(dtype=np.float64, na_value=np.nan)
            # the online store keeps Float32: what it gives back is the float32 value
            columns[name] = values.astype(np.float32).astype(np.float64) if self.float32 else values
        for name in categorical:
            columns[name] = pd.array(batch[name].to_numpy(dtype=object), dtype="string[pyarrow]")
        stamps = pd.to_datetime(batch[LIFECYCLE_AS_OF], utc=True)
        lifecycle: list[dict[str, Any] | None] = []
        values_of = [batch[LIFECYCLE + f].to_numpy(dtype=object) for f in fields]
        for i, stamp in enumerate(stamps):
            if pd.isna(stamp):
                lifecycle.append(None)
                continue
            row: dict[str, Any] = {"as_of": stamp.to_pydatetime()}
            for field, values in zip(fields, values_of, strict=True):
                row[field] = None if values[i] is None or pd.isna(values[i]) else str(values[i])
            lifecycle.append(row)
        columns["lifecycle"] = pd.Series(lifecycle, dtype=object)
        return pd.DataFrame(columns, copy=False)


class ScorePartitions:
    """The executors' work (a function for ``mapInPandas``): Spark rows → the batch's rows."""

    def __init__(
        self,
        model_name: str,
        form: RowForm,
        shipped: Broadcast[tuple[Champion, LifetimeReference | None]],
        top: int,
        names: dict[str, str],
        ttl: timedelta | None,
        allow_stale: bool,
        columns: Sequence[tuple[str, str]],
    ):
        self.model_name = model_name
        self.form = form
        self.shipped = shipped
        self.top = top
        self.names = names
        self.ttl = ttl
        self.allow_stale = allow_stale
        self.columns = list(columns)

    def __call__(self, batches: Iterable[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        champion, reference = self.shipped.value  # unpickled once per Python worker
        for batch in batches:
            if not len(batch):
                continue
            rows = self.form.frame(batch)
            frame = score_rows(
                self.model_name,
                rows,
                champion,
                self.top,
                self.names,
                ttl=self.ttl,
                allow_stale=self.allow_stale,
                reference=reference,
            )
            frame[POSITION] = batch[POSITION].to_numpy(dtype=np.int64)
            yield conformed(frame, self.columns)


class ScorableRows:
    """The executors' filter (a function for ``mapInPandas``): the rows the batch scores, as
    :func:`serving.batch.scorable_rows` keeps them (stale ones left out)."""

    def __init__(self, form: RowForm, ttl: timedelta | None):
        self.form = form
        self.ttl = ttl

    def __call__(self, batches: Iterable[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for batch in batches:
            rows = self.form.frame(batch)
            keep = [st.scorable for st in standings(self.form.entity, rows, self.ttl)]
            yield batch[np.asarray(keep, dtype=bool)]


def conformed(frame: pd.DataFrame, columns: Sequence[tuple[str, str]]) -> pd.DataFrame:
    """``frame`` with exactly ``columns`` (name, Spark type name: the output schema's), in
    types Arrow converts to them: a column the chunk did not write is empty (the CRM fields of
    a chunk of unknown ids), integers stay integers, text is ``str`` or None.

    Raises:
        BatchColumnChanged: ``frame`` has a column the schema does not declare.
    """
    names = [name for name, _ in columns]
    extra = [c for c in frame.columns if c not in names]
    if extra:
        raise BatchColumnChanged(
            f"batch_frame wrote column(s) {extra} that serving.spark_batch.output_schema does "
            "not declare"
        )
    out = frame.reindex(columns=names)
    for name, kind in columns:
        values = out[name]
        if kind == "string":
            out[name] = values.astype(object).where(values.notna(), None)
        elif kind == "long":
            out[name] = pd.array(values.to_numpy(dtype=object, na_value=None), dtype="Int64")
        elif kind == "double":
            out[name] = values.astype("float64")
        elif kind == "boolean":
            out[name] = values.astype(bool)
        elif kind == "timestamp":
            out[name] = pd.to_datetime(values, utc=True)
    return out


def output_schema(model_name: str, names: dict[str, str]) -> StructType:
    """The Spark schema of the batch's rows (the columns of
    :func:`serving.scoring.batch_frame`, in order, and :data:`POSITION`)."""
    from pyspark.sql.types import (
        BooleanType,
        DataType,
        DoubleType,
        LongType,
        StringType,
        StructField,
        StructType,
        TimestampType,
    )

    entity, key = MODEL_ENTITIES[model_name]
    band = "grade" if entity == "lead" else "risk_band"
    text, number, whole, time = StringType(), DoubleType(), LongType(), TimestampType()
    fields: list[tuple[str, DataType]] = [
        (key, text),
        ("status", text),
        ("stale", BooleanType()),
        ("error", text),
        ("lifecycle", text),
        ("closed_at", time),
        ("data_as_of", time),
        ("feature_row", text),
        ("probability", number),
        ("score", whole),
        (band, text),
    ]
    if entity == "account":
        fields += [("grade", text), *[(c, number) for c in LIFETIME_FIELDS]]
        fields += [("revenue_at_risk", number), ("rfm_segment", text)]
    fields += [("raw_margin", number), ("margin_unit", text), ("base_value", number)]
    fields += [(c, text) for c in ("reasons", "reasons_up", "reasons_down", "model")]
    fields += [("model_version", text), ("feature_timestamp", time)]
    kinds: dict[str, DataType] = {"score": whole, "revenue_at_risk": number}
    kinds["lifetime_value"] = number
    for output, field in crm_columns(model_name, names):
        fields.append((field, kinds.get(output, text)))
    fields.append((POSITION, whole))
    return StructType([StructField(name, kind, nullable=True) for name, kind in fields])


def crm_columns(model_name: str, names: dict[str, str]) -> list[tuple[str, str]]:
    """(output, CRM field name) of the CRM columns the batch writes, in order
    (:func:`serving.scoring.crm_fields`; the trend's come later, from the score log)."""
    entity, _ = MODEL_ENTITIES[model_name]
    band = "grade" if entity == "lead" else "risk_band"
    outputs = ["score", band, "reasons"]
    if entity == "account":
        outputs += ["revenue_at_risk", "lifetime_value", "rfm_segment"]
    return [(output, names[f"{entity}_{output}"]) for output in outputs]


def _time(name: str, kind: str, unit: str) -> Column:
    """A Parquet time column as Spark's ``TIMESTAMP``, cut to ``unit`` (seconds or micros).
    The session reads nanosecond times as int64 nanoseconds (``kind`` ``bigint``); integer
    division (SQL ``div``) keeps every digit, where a double would round them to 256 ns."""
    from pyspark.sql import functions as F

    if kind == "bigint":
        if unit == "seconds":
            return F.timestamp_seconds(F.expr(f"`{name}` div 1000000000"))
        return F.timestamp_micros(F.expr(f"`{name}` div 1000"))
    if unit == "seconds":
        return F.timestamp_seconds(F.unix_seconds(F.col(name)))
    return F.col(name).cast("timestamp")


def _utc(stamp: datetime) -> datetime:
    """``stamp`` as an aware UTC time (a naive one is UTC, as the session's time zone)."""
    moment = pd.Timestamp(stamp)
    moment = moment.tz_localize("UTC") if moment.tzinfo is None else moment.tz_convert("UTC")
    return moment.to_pydatetime()


def _latest(frame: DataFrame, key: str) -> DataFrame:
    """Each ``key``'s latest row by ``event_timestamp`` (what materialisation stores)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    newest = Window.partitionBy(key).orderBy(F.col(EVENT).desc())
    return frame.withColumn("_n", F.row_number().over(newest)).where("_n = 1").drop("_n")


def spark_rows(
    settings: Settings,
    entity: str,
    ids: Sequence[str] | None = None,
    as_of: datetime | None = None,
) -> DataFrame:
    """The rows the batch reads, as a Spark frame: one per id (default: the ids
    :func:`serving.batch.batch_ids` covers, or with ``as_of`` those of
    :meth:`serving.batch.AsOfFeatures.ids`), with :data:`POSITION`, the join key,
    ``event_timestamp``, ``found``, the features, :data:`LIFECYCLE_AS_OF` and the lifecycle
    fields (prefixed :data:`LIFECYCLE`). See the module's doc for what is read."""
    from pyspark.sql import functions as F

    spark = spark_session(settings)
    key, table, numeric, categorical = entity_info(entity)
    unit = "micros" if as_of is not None else STORE_TIME_UNIT.get(settings.online_store, "micros")
    features = spark.read.parquet(str(settings.features_dir / f"{table}.parquet"))
    kinds = dict(features.dtypes)
    if as_of is not None:
        # DuckDB compares CAST(event_timestamp AS TIMESTAMPTZ), i.e. to the microsecond
        features = features.where(_time(EVENT, kinds[EVENT], "micros") <= F.lit(_utc(as_of)))
    features = _latest(features, key).select(
        F.col(key).cast("string").alias(key),
        _time(EVENT, kinds[EVENT], unit).alias(EVENT),
        F.lit(True).alias(FOUND),
        *[F.col(name) for name in (*numeric, *categorical)],
    )
    lifecycle = _lifecycle(spark, settings, entity, as_of, unit)
    if ids is not None:
        wanted = spark.createDataFrame(
            pd.DataFrame({POSITION: np.arange(len(ids), dtype=np.int64), key: list(map(str, ids))}),
            schema=f"{POSITION} bigint, {key} string",
        )
    else:
        covered = lifecycle.where(
            F.col(LIFECYCLE + "status").isNull() | (F.col(LIFECYCLE + "status") != NOT_A_CUSTOMER)
        ).select(key)
        if as_of is None:  # batch_ids: every feature row too
            covered = covered.union(features.select(key))
        wanted = covered.distinct().select(F.lit(0).cast("long").alias(POSITION), key)
    rows = wanted.join(features, on=key, how="left").join(lifecycle, on=key, how="left")
    return rows.withColumn(FOUND, F.coalesce(F.col(FOUND), F.lit(False)))


def _lifecycle(
    spark: SparkSession, settings: Settings, entity: str, as_of: datetime | None, unit: str
) -> DataFrame:
    """Join key, :data:`LIFECYCLE_AS_OF` and the prefixed lifecycle fields, one row per id."""
    from pyspark.sql import functions as F

    key, _, _ = STATUS_TABLES.get(entity, (entity_info(entity)[0], "", ()))
    fields = STATUS_TABLES[entity][2] if entity in STATUS_TABLES else ()
    schema = ", ".join(
        [f"{key} string", f"{LIFECYCLE_AS_OF} timestamp"]
        + [f"{LIFECYCLE}{f} string" for f in fields]
    )
    if entity not in STATUS_TABLES:
        return spark.createDataFrame([], schema=schema)
    if as_of is not None:
        table = lifecycle_table_as_of(settings, entity, pd.Timestamp(as_of))
        frame = pd.DataFrame(
            {
                key: table[key].astype(str).to_numpy(dtype=object),
                LIFECYCLE_AS_OF: pd.Series(pd.Timestamp(as_of), index=table.index),
                **{
                    LIFECYCLE + f: table[f].astype(object).where(table[f].notna(), None)
                    for f in fields
                },
            }
        )
        return spark.createDataFrame(frame, schema=schema)
    path = settings.features_dir / f"{STATUS_TABLES[entity][1]}.parquet"
    if not Path(path).exists():
        return spark.createDataFrame([], schema=schema)
    status = spark.read.parquet(str(path))
    kinds = dict(status.dtypes)
    return _latest(status, key).select(
        F.col(key).cast("string").alias(key),
        _time(EVENT, kinds[EVENT], unit).alias(LIFECYCLE_AS_OF),
        *[F.col(f).cast("string").alias(LIFECYCLE + f) for f in fields],
    )


def score_batch_spark(
    settings: Settings,
    model_name: str,
    ids: Sequence[str] | None = None,
    top: int | None = None,
    champion: Champion | None = None,
    allow_stale: bool = False,
    as_of: datetime | None = None,
    partitions: int | None = None,
) -> tuple[pd.DataFrame, Champion]:
    """:func:`serving.batch.score_batch` with the rows scored by Spark's executors.

    Same arguments and result (rows, columns and order); ``partitions`` spreads the rows over
    that many Spark partitions before scoring (default: as the joins leave them).

    Raises:
        features.spark_session.SparkUnavailableError: no pyspark or no Java.
        serving.online.OnlineStoreUnavailable: (without ``as_of``) the store is not applied,
            so the view's TTL cannot be read.
    """
    entity, key = MODEL_ENTITIES[model_name]
    champion = champion or load_champion(model_name, settings.tracking_uri())
    top = settings.score_reasons if top is None else top
    spark = spark_session(settings)
    form = RowForm(entity, float32=as_of is None)
    ttl = _ttl(settings, entity, as_of)
    requested = spark_rows(settings, entity, ids, as_of)
    everyone = requested if ids is None else spark_rows(settings, entity, None, as_of)
    reference = (
        _reference(settings, champion, form, everyone, ttl, as_of) if entity == "account" else None
    )
    names = dict(settings.crm_field_names)
    schema = output_schema(model_name, names)
    shipped = spark.sparkContext.broadcast(
        (Champion(champion.model, champion.version, {}), reference)
    )
    try:
        if partitions:
            requested = requested.repartition(partitions)
        scorer = ScorePartitions(
            model_name,
            form,
            shipped,
            top,
            names,
            ttl,
            allow_stale,
            [(f.name, f.dataType.typeName()) for f in schema.fields],
        )
        frame: pd.DataFrame = requested.mapInPandas(scorer, schema=schema).toPandas()
    finally:
        shipped.destroy()
    if not len(frame):
        return pd.DataFrame(), champion
    frame = finished(frame, model_name, names)
    source_ids = SourceIds(settings.raw_dir)
    source_key = source_ids.key_field(entity)
    if source_key is not None:
        frame.insert(1, source_key, source_ids.of(entity, frame[key].astype(str)))
    return frame, champion


def finished(frame: pd.DataFrame, model_name: str, names: dict[str, str]) -> pd.DataFrame:
    """The collected rows as :func:`serving.batch.score_batch` gives them: in its order (the ids
    asked for, else by id), without :data:`POSITION`, its column types."""
    _, key = MODEL_ENTITIES[model_name]
    frame = frame.sort_values([POSITION, key], kind="stable").reset_index(drop=True)
    frame = frame.drop(columns=[POSITION])
    frame["score"] = frame["score"].astype("Int64")
    frame["stale"] = frame["stale"].astype(bool)
    for column in TIME_COLUMNS:
        frame[column] = pd.to_datetime(frame[column], utc=True)
    if (frame["status"] == "unknown").all():
        # an unknown id has no CRM fields: with only those, the in-process file has no such columns
        frame = frame.drop(columns=[field for _, field in crm_columns(model_name, names)])
    return frame


def _ttl(settings: Settings, entity: str, as_of: datetime | None) -> timedelta | None:
    """The TTL the in-process batch applies: the registered view's, or with ``as_of`` the
    definition's (:class:`serving.batch.AsOfFeatures`)."""
    if as_of is not None:
        return TTL
    online = OnlineFeatures(settings, timeout_ms=30_000)
    try:
        return online.ttl(entity)
    finally:
        online.close()


def _reference(
    settings: Settings,
    champion: Champion,
    form: RowForm,
    everyone: DataFrame,
    ttl: timedelta | None,
    as_of: datetime | None,
) -> LifetimeReference:
    """The accounts' lifetime reference, measured on the rows the batch scores, in id order
    (as :func:`serving.batch.scorable_rows` gives them to the in-process batch)."""
    kept: pd.DataFrame = everyone.mapInPandas(
        ScorableRows(form, ttl), schema=everyone.schema
    ).toPandas()
    key = entity_info(form.entity)[0]
    kept = kept.sort_values(key, kind="stable").reset_index(drop=True)
    population = form.frame(kept) if len(kept) else pd.DataFrame()
    return lifetime_reference(settings, champion.model, population, as_of)
