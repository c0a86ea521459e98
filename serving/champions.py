"""The champions a service scores with, swapped in place when the ``champion`` alias moves.

A background thread asks the MLflow registry every ``refresh_seconds`` which version holds
``champion``; when it changed, the new version is loaded *beside* the old one and then swapped in
with one reference assignment. A request takes the reference once at its start and scores with
it to the end, so a swap never fails or mixes a request. A failed load keeps the old champion and
is reported in :meth:`Champions.info`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from training.registry import Champion, NoChampion, champion_version, load_champion

log = logging.getLogger(__name__)

Loader = Callable[[str, str], Champion]
VersionOf = Callable[[str, str], str | None]


def _current_version(tracking_uri: str, name: str) -> str | None:
    version = champion_version(tracking_uri, name)
    return None if version is None else str(version.version)


class MissingChampion(RuntimeError):
    """A model the service needs has no ``champion`` at start-up."""


class Champions:
    """The current champion of each model, refreshed from the registry in the background."""

    def __init__(
        self,
        names: Iterable[str],
        tracking_uri: str,
        refresh_seconds: float = 10.0,
        loader: Loader | None = None,
        version_of: VersionOf | None = None,
    ):
        self.names = tuple(names)
        self.tracking_uri = tracking_uri
        self.refresh_seconds = refresh_seconds
        self._load = loader or (lambda name, uri: load_champion(name, uri))
        self._version_of = version_of or _current_version
        self._models: dict[str, Champion] = {}
        self._loaded_at: dict[str, float] = {}
        self._last_error: dict[str, str] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        missing = []
        for name in self.names:
            try:
                self._models[name] = self._load(name, tracking_uri)
                self._loaded_at[name] = time.time()
            except NoChampion as err:
                missing.append(str(err))
        if missing:
            raise MissingChampion(
                "cannot start: "
                + "; ".join(missing)
                + " (train with `crm-intel train lead` / `crm-intel train churn`)"
            )

    def __getitem__(self, name: str) -> Champion:
        return self._models[name]

    def refresh(self) -> list[str]:
        """Load any model whose ``champion`` alias moved; returns the names swapped."""
        swapped = []
        for name in self.names:
            try:
                version = self._version_of(self.tracking_uri, name)
                if version is None or version == self._models[name].version:
                    continue
                fresh = self._load(name, self.tracking_uri)
            except Exception as err:  # keep serving the old champion, say why
                self._last_error[name] = f"{type(err).__name__}: {err}"
                log.warning("champion refresh of %s failed: %s", name, err)
                continue
            self._models = {**self._models, name: fresh}  # one assignment: readers see old or new
            self._loaded_at[name] = time.time()
            self._last_error.pop(name, None)
            log.info("champion of %s is now version %s", name, fresh.version)
            swapped.append(name)
        return swapped

    def _run(self) -> None:
        while not self._stop.wait(self.refresh_seconds):
            self.refresh()

    def start(self) -> None:
        """Start the background refresh (no-op when ``refresh_seconds`` <= 0)."""
        if self.refresh_seconds > 0 and self._thread is None:
            self._thread = threading.Thread(target=self._run, name="champion-refresh", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def info(self) -> dict[str, Any]:
        """Per model: version, features, feature service, run, when loaded, last refresh error."""
        out: dict[str, Any] = {}
        for name in self.names:
            champion = self._models[name]
            meta = champion.metadata
            tags = meta.get("tags", {})
            out[name] = {
                "version": champion.version,
                "run_id": meta.get("run_id"),
                "feature_service": tags.get("feature_service"),
                "features": list(meta.get("feature_names", [])),
                "calibration": (meta.get("calibrator") or {}).get("method"),
                "roc_auc": _float(tags.get("roc_auc")),
                "loaded_at": self._loaded_at.get(name),
                "refresh_error": self._last_error.get(name),
            }
        return out


def _float(value: Any) -> float | None:
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None
