"""The service's read of the Feast online store, with the failures a live service meets.

Wraps :class:`features.store.OnlineReader` so that a missing or locked SQLite online store, or
a Redis server that does not answer or holds no features, becomes :class:`OnlineStoreUnavailable`
(answered 503) instead of a hang or a 500, and so that the store recovers by itself once it is
back: the SQLite reader (through the project's online store class,
:class:`features.online_store.CrmSqliteOnlineStore`) follows a replaced file (each
materialisation switches in a new generation of it) and is rebuilt from the registry after a
failure; the Redis client (:class:`features.redis_store.CrmRedisOnlineStore`) fails within its
timeout and reconnects on the next read.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import pandas as pd

from crm.settings import Settings
from features.redis_store import OnlineStoreUnreachableError
from features.store import FeatureStoreNotReadyError, OnlineReader, feature_store

PROBE_ID = "__crm_intel_readiness_probe__"


# What a client is told, by kind of failure: no path, no library, in a CRM integrator's words
PUBLIC_MESSAGES: dict[str, tuple[str, str]] = {
    "missing": (
        "scores are unavailable: this server's feature store has not been loaded",
        "an operator must run `crm-intel features apply` and `crm-intel features materialize`; "
        "retry afterwards",
    ),
    "locked": (
        "scores are briefly unavailable while this server's features are refreshed",
        "retry in a second",
    ),
    "unreachable": (
        "scores are briefly unavailable: this server cannot reach its feature store",
        "retry in a few seconds; if it persists, tell the operator (the server log has the "
        "details)",
    ),
    "unreadable": (
        "scores are unavailable: this server's feature store cannot be read",
        "retry shortly; if it persists, tell the operator (the server log has the details)",
    ),
}


class OnlineStoreUnavailable(RuntimeError):
    """The online store cannot be read now (missing, locked, not materialised).

    ``str()`` is the detail for the server log (it may name the file); :attr:`public` and
    :attr:`fix` are what a client is told.
    """

    kind = "unreadable"

    def __init__(self, detail: str, kind: str | None = None):
        super().__init__(detail)
        self.kind = kind or self.kind

    @property
    def public(self) -> str:
        return PUBLIC_MESSAGES[self.kind][0]

    @property
    def fix(self) -> str:
        return PUBLIC_MESSAGES[self.kind][1]


class OnlineStoreLocked(OnlineStoreUnavailable):
    """Another connection holds a write lock on the online store."""

    kind = "locked"


class OnlineFeatures:
    """Online feature vectors for the service; thread-safe; opens nothing until first used.

    A read never blocks on a locked store inside SQLite (busy timeout 0): :meth:`rows` and
    :meth:`frame` retry with ``time.sleep`` and :meth:`rows_async` with ``asyncio.sleep``, for
    up to ``timeout_ms`` in all, so a lock held elsewhere never stalls the service's event loop.
    A Redis read waits at most ``timeout_ms`` on the server (its socket timeout), then fails.
    """

    def __init__(self, settings: Settings, timeout_ms: int | None = None):
        self.settings = settings
        # the SQLite file, whose absence is told apart from other failures (None: Redis)
        self.path: Path | None = (
            settings.feast_dir / "online.db" if settings.online_store == "sqlite" else None
        )
        self.timeout_ms = settings.online_store_timeout_ms if timeout_ms is None else timeout_ms
        self._lock = threading.Lock()
        self._reader: OnlineReader | None = None

    def _current(self) -> OnlineReader:
        if self.path is not None and not self.path.exists():
            raise OnlineStoreUnavailable(
                f"online store {self.path} is missing: run `crm-intel features apply` and "
                "`crm-intel features materialize`",
                "missing",
            )
        with self._lock:
            if self._reader is None:
                # the reader follows a re-materialised (replaced) file by itself
                self._reader = OnlineReader(
                    feature_store(self.settings), busy_timeout_ms=0, timeout_ms=self.timeout_ms
                )
            return self._reader

    def _read_once(self, how: str, entity: str, ids: Sequence[str], status: bool = False) -> Any:
        reader = self._current()
        try:
            if how == "ttl":
                return reader.ttl(entity)
            return getattr(reader, how)(entity, list(ids), status)
        except OnlineStoreUnreachableError as err:
            # the reader stays: its client reconnects on the next read
            raise OnlineStoreUnavailable(str(err), "unreachable") from None
        except (sqlite3.Error, FeatureStoreNotReadyError) as err:
            message, kind = _explain(err, self.path)
            if isinstance(err, sqlite3.OperationalError) and _is_lock(err):
                raise OnlineStoreLocked(message) from None
            with self._lock:
                if self._reader is reader:  # rebuilt from the registry on the next read
                    reader.close()
                    self._reader = None
            raise OnlineStoreUnavailable(message, kind) from None

    def _read(self, how: str, entity: str, ids: Sequence[str], status: bool = False) -> Any:
        for pause in _pauses(self.timeout_ms):
            try:
                return self._read_once(how, entity, ids, status)
            except OnlineStoreLocked:
                time.sleep(pause)
        return self._read_once(how, entity, ids, status)  # the last attempt: still locked

    def frame(self, entity: str, ids: Sequence[str], status: bool = False) -> pd.DataFrame:
        """:meth:`features.store.OnlineReader.frame` for ``ids`` (the batch's read); with
        ``status`` the lifecycle rows too, in the same query.

        Raises:
            OnlineStoreUnavailable: the store is missing, locked or not materialised.
        """
        frame: pd.DataFrame = self._read("frame", entity, ids, status)
        return frame

    def rows(self, entity: str, ids: Sequence[str], status: bool = False) -> list[dict[str, Any]]:
        """:meth:`features.store.OnlineReader.rows` for ``ids`` (the API's read, no pandas);
        with ``status`` each row's ``lifecycle`` too, in the same query.

        Raises:
            OnlineStoreUnavailable: the store is missing, locked or not materialised.
        """
        rows: list[dict[str, Any]] = self._read("rows", entity, ids, status)
        return rows

    async def rows_async(
        self, entity: str, ids: Sequence[str], status: bool = False
    ) -> list[dict[str, Any]]:
        """:meth:`rows` for an event loop: waits on a lock with ``asyncio.sleep``.

        Raises:
            OnlineStoreUnavailable: the store is missing, locked or not materialised.
        """
        for pause in _pauses(self.timeout_ms):
            try:
                rows: list[dict[str, Any]] = self._read_once("rows", entity, ids, status)
                return rows
            except OnlineStoreLocked:
                await asyncio.sleep(pause)
        rows = self._read_once("rows", entity, ids, status)  # the last attempt: still locked
        return rows

    def ttl(self, entity: str) -> timedelta | None:
        """How long a feature row of ``entity`` answers for (its registered feature view's TTL;
        read from the registry once, then cached by the reader).

        Raises:
            OnlineStoreUnavailable: the store is missing or not applied.
        """
        ttl: timedelta | None = self._read_once("ttl", entity, [])
        return ttl

    def check(self) -> OnlineStoreUnavailable | None:
        """None when a read works now (features and lifecycle), else the failure (for
        ``/readyz``); never waits."""
        try:
            self._read_once("rows", "lead", [PROBE_ID], status=True)
            self._read_once("rows", "account", [PROBE_ID], status=True)
        except OnlineStoreUnavailable as err:
            return err
        return None

    def close(self) -> None:
        with self._lock:
            if self._reader is not None:
                self._reader.close()
            self._reader = None


def _pauses(timeout_ms: float) -> Iterator[float]:
    """Waits between attempts on a locked store (2 ms doubling to 32 ms) for as long as they end
    within ``timeout_ms`` from the first call."""
    deadline = time.monotonic() + timeout_ms / 1000
    pause = 0.002
    while time.monotonic() + pause <= deadline:
        yield pause
        pause = min(pause * 2, 0.032)


def _is_lock(err: sqlite3.OperationalError) -> bool:
    text = str(err)
    return "locked" in text or "busy" in text


def _explain(err: BaseException, path: Path | None) -> tuple[str, str]:
    """The failure in detail, for the server log, and its kind (:data:`PUBLIC_MESSAGES`)."""
    text = str(err)
    if path is None:  # Redis: the store's own message names the server
        return text, "missing" if isinstance(err, FeatureStoreNotReadyError) else "unreadable"
    if "does not exist" in text:
        return (
            f"online store {path} is missing: run `crm-intel features apply` and "
            "`crm-intel features materialize`",
            "missing",
        )
    if isinstance(err, sqlite3.OperationalError) and _is_lock(err):
        return f"online store {path} is locked (materialisation running?); retry shortly", "locked"
    if "no such table" in text:
        return (
            f"online store {path} holds no feature tables: run `crm-intel features apply` "
            "and `crm-intel features materialize`",
            "missing",
        )
    return f"online store {path} cannot be read: {text}", "unreadable"
