"""The Spark session of the Spark engine (``CRM_INTEL_ENGINE=spark``), one per process.

Spark is optional (the ``spark`` extra, and Java 17): nothing imports :mod:`pyspark` until a Spark
session is asked for. The session reads time columns as they are stored: Parquet nanosecond
timestamps arrive as int64 nanoseconds (``spark.sql.legacy.parquet.nanosAsLong``), so an event
one nanosecond after a snapshot stays after it, as in the DuckDB engine. Sessions compute in UTC
and, in local mode, bind the driver to loopback only.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING

from crm.settings import Settings

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

_LOCK = threading.Lock()

BASE_CONF: dict[str, str] = {
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.legacy.parquet.nanosAsLong": "true",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
}
LOCAL_CONF: dict[str, str] = {
    "spark.driver.host": "127.0.0.1",
    "spark.driver.bindAddress": "127.0.0.1",
    # a local session's shuffles are small: AQE coalesces them further
    "spark.sql.shuffle.partitions": "8",
}


class SparkUnavailableError(RuntimeError):
    """The Spark engine was asked for but pyspark (the ``spark`` extra) or Java is missing."""


def spark_session(settings: Settings, conf: Mapping[str, str] | None = None) -> SparkSession:
    """The process's Spark session at ``settings.spark_master`` (created on first use).

    Args:
        conf: Spark settings added to the defaults (e.g. ``spark.driver.memory``); they take
            effect only when this call creates the session.

    Raises:
        SparkUnavailableError: pyspark is not installed or the JVM cannot start.
    """
    try:
        from pyspark.sql import SparkSession
    except ImportError as err:
        raise SparkUnavailableError(
            "the Spark engine needs the spark extra: pip install 'crm-intel[spark]' (and Java 17)"
        ) from err
    with _LOCK:
        active = SparkSession.getActiveSession()
        if active is not None:
            return active
        builder = SparkSession.builder.master(settings.spark_master).appName("crm-intel")
        options = dict(BASE_CONF)
        if settings.spark_master.startswith("local"):
            options.update(LOCAL_CONF)
            # Python workers (mapInPandas, UDFs) run this interpreter, with its packages;
            # PySpark reads the variable when the context starts and otherwise runs whatever
            # ``python3`` is on the PATH. A cluster's nodes name their own.
            os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        options.update(conf or {})
        for key, value in options.items():
            builder = builder.config(key, value)
        try:
            session = builder.getOrCreate()
        except Exception as err:  # the JVM failed to start (no Java, bad master URL)
            raise SparkUnavailableError(
                f"could not start Spark at {settings.spark_master!r}: {err}"
            ) from err
        session.sparkContext.setLogLevel("ERROR")
        return session
