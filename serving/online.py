"""The service's read of the Feast online store, with the failures a live service meets.

Wraps :class:`features.store.OnlineReader` so that a missing, replaced or locked SQLite online
store becomes :class:`OnlineStoreUnavailable` (answered 503) instead of a hang or a 500, and so
that the store recovers by itself once the file is back: the reader is rebuilt whenever the file
is replaced (new inode, e.g. re-materialised elsewhere and moved in) or after a failure.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from crm_intel.settings import Settings
from features.store import FeatureStoreNotReadyError, OnlineReader, feature_store

PROBE_ID = "__crm_intel_readiness_probe__"


class OnlineStoreUnavailable(RuntimeError):
    """The online store cannot be read now (missing, locked, not materialised)."""


class OnlineFeatures:
    """Online feature vectors for the service; thread-safe; opens nothing until first used."""

    def __init__(self, settings: Settings, timeout_ms: int | None = None):
        self.settings = settings
        self.path: Path = settings.feast_dir / "online.db"
        self.timeout_ms = settings.online_store_timeout_ms if timeout_ms is None else timeout_ms
        self._lock = threading.Lock()
        self._reader: OnlineReader | None = None
        self._inode: tuple[int, int] | None = None

    def _identity(self) -> tuple[int, int]:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            raise OnlineStoreUnavailable(
                f"online store {self.path} is missing: run `crm-intel features apply` and "
                "`crm-intel features materialize`"
            ) from None
        return st.st_dev, st.st_ino

    def _close(self) -> None:
        if self._reader is not None:
            # Feast's SQLite store keeps one connection; drop it so the next read reopens.
            online: Any = self._reader._online  # noqa: SLF001
            conn = getattr(online, "_conn", None)
            if conn is not None:
                conn.close()
                online._conn = None  # noqa: SLF001
        self._reader = None
        self._inode = None

    def _current(self) -> OnlineReader:
        identity = self._identity()
        with self._lock:
            if self._reader is not None and self._inode == identity:
                return self._reader
            self._close()
            reader = OnlineReader(feature_store(self.settings))
            # Feast opens its connection lazily and waits 5 s on a lock; answer sooner.
            online: Any = reader._online  # noqa: SLF001
            conn = online._get_conn(reader.store.config)  # noqa: SLF001
            conn.execute(f"PRAGMA busy_timeout = {int(self.timeout_ms)}")
            self._reader, self._inode = reader, identity
            return reader

    def _read(self, how: str, entity: str, ids: Sequence[str]) -> Any:
        reader = self._current()
        try:
            return getattr(reader, how)(entity, list(ids))
        except (sqlite3.Error, FeatureStoreNotReadyError) as err:
            with self._lock:
                if self._reader is reader:
                    self._close()
            raise OnlineStoreUnavailable(_explain(err, self.path)) from None

    def frame(self, entity: str, ids: Sequence[str]) -> pd.DataFrame:
        """:meth:`features.store.OnlineReader.frame` for ``ids`` (the batch's read).

        Raises:
            OnlineStoreUnavailable: the store is missing, locked or not materialised.
        """
        frame: pd.DataFrame = self._read("frame", entity, ids)
        return frame

    def rows(self, entity: str, ids: Sequence[str]) -> list[dict[str, Any]]:
        """:meth:`features.store.OnlineReader.rows` for ``ids`` (the API's read, no pandas).

        Raises:
            OnlineStoreUnavailable: the store is missing, locked or not materialised.
        """
        rows: list[dict[str, Any]] = self._read("rows", entity, ids)
        return rows

    def check(self) -> str | None:
        """None when a read works now, else why not (for ``/readyz``)."""
        try:
            self.rows("lead", [PROBE_ID])
            self.rows("account", [PROBE_ID])
        except OnlineStoreUnavailable as err:
            return str(err)
        return None

    def close(self) -> None:
        with self._lock:
            self._close()


def _explain(err: BaseException, path: Path) -> str:
    text = str(err)
    if "locked" in text or "busy" in text:
        return f"online store {path} is locked (materialisation running?); retry shortly"
    if "no such table" in text:
        return (
            f"online store {path} holds no feature tables: run `crm-intel features apply` "
            "and `crm-intel features materialize`"
        )
    return f"online store {path} cannot be read: {text}"
