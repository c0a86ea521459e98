"""The service's read of the Feast online store, with the failures a live service meets.

Wraps :class:`features.store.OnlineReader` so that a missing or locked SQLite online store
becomes :class:`OnlineStoreUnavailable` (answered 503) instead of a hang or a 500, and so that
the store recovers by itself once the file is back: the reader follows a replaced file (what
``crm-intel features materialize`` does) and is rebuilt from the registry after a failure.
"""

from __future__ import annotations

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

    def _current(self) -> OnlineReader:
        if not self.path.exists():
            raise OnlineStoreUnavailable(
                f"online store {self.path} is missing: run `crm-intel features apply` and "
                "`crm-intel features materialize`"
            )
        with self._lock:
            if self._reader is None:
                # the reader follows a re-materialised (replaced) file by itself; Feast waits
                # 5 s on a lock by default, the service answers sooner
                self._reader = OnlineReader(feature_store(self.settings), self.timeout_ms)
            return self._reader

    def _read(self, how: str, entity: str, ids: Sequence[str]) -> Any:
        reader = self._current()
        try:
            return getattr(reader, how)(entity, list(ids))
        except (sqlite3.Error, FeatureStoreNotReadyError) as err:
            with self._lock:
                if self._reader is reader:  # rebuilt from the registry on the next read
                    reader.close()
                    self._reader = None
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
            if self._reader is not None:
                self._reader.close()
            self._reader = None


def _explain(err: BaseException, path: Path) -> str:
    text = str(err)
    if "does not exist" in text:
        return (
            f"online store {path} is missing: run `crm-intel features apply` and "
            "`crm-intel features materialize`"
        )
    if "locked" in text or "busy" in text:
        return f"online store {path} is locked (materialisation running?); retry shortly"
    if "no such table" in text:
        return (
            f"online store {path} holds no feature tables: run `crm-intel features apply` "
            "and `crm-intel features materialize`"
        )
    return f"online store {path} cannot be read: {text}"
