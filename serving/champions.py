"""The champions a service scores with, swapped in place when the ``champion`` alias moves.

A background thread asks the MLflow registry every ``refresh_seconds`` which version holds
``champion``; when it changed, the new version is loaded *beside* the old one and then swapped in
with one reference assignment. A request takes the reference once at its start and scores with
it to the end, so a swap never fails or mixes a request. A failed load keeps the old champion and
is reported in :meth:`Champions.info`.

A champion must have been trained on the feature service the service reads (``feature_service``
tag of the version, else of its run: ``lead_conversion_v1`` for leads, ``churn_risk_v1`` for
accounts), since a model scores exactly the features it was trained on. A version trained for
another one is refused: at start the service does not start (as without a champion); on a live
alias move the old champion keeps serving and :meth:`Champions.info` says why.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from training.registry import (
    Champion,
    NoChampion,
    challenger_version,
    champion_version,
    client_for,
    load_champion,
    load_version,
)

log = logging.getLogger(__name__)

Loader = Callable[[str, str], Champion]
VersionOf = Callable[[str, str], str | None]
ServiceOf = Callable[[Champion, str], str | None]


def _current_version(tracking_uri: str, name: str) -> str | None:
    version = champion_version(tracking_uri, name)
    return None if version is None else str(version.version)


def _challenger_version(tracking_uri: str, name: str) -> str | None:
    version = challenger_version(tracking_uri, name)
    return None if version is None else str(version.version)


class MissingChampion(RuntimeError):
    """A model the service needs has no ``champion`` at start-up."""


class RefusedChampion(MissingChampion):
    """A model's ``champion`` was trained for another feature service than the one served."""


def trained_feature_service(champion: Champion, tracking_uri: str) -> str | None:
    """The feature service a registered version was trained on: its ``feature_service`` tag,
    else its run's (a version registered by hand from a training run), else None."""
    tags = champion.metadata.get("tags") or {}
    if tags.get("feature_service"):
        return str(tags["feature_service"])
    run_id = champion.metadata.get("run_id")
    if not run_id:
        return None
    try:
        run_tags = client_for(tracking_uri).get_run(run_id).data.tags
    except Exception:  # the run is gone or unreadable: the version names no service
        return None
    return run_tags.get("feature_service") or None


def refusal(name: str, champion: Champion, trained: str | None, expected: str) -> str | None:
    """Why ``champion`` of model ``name`` cannot be served with ``expected``; None if it can."""
    if trained == expected:
        return None
    was = f"was trained for feature service {trained!r}" if trained else "names no feature service"
    return (
        f"version {champion.version} of {name!r} {was} (tag 'feature_service'), but this service "
        f"scores {name} with {expected!r}: promote a version trained on {expected!r} "
        "(`crm-intel models promote` / `crm-intel models rollback`)"
    )


class Champions:
    """The current champion of each model, refreshed from the registry in the background."""

    def __init__(
        self,
        names: Iterable[str],
        tracking_uri: str,
        refresh_seconds: float = 10.0,
        loader: Loader | None = None,
        version_of: VersionOf | None = None,
        feature_services: Mapping[str, str] | None = None,
        service_of: ServiceOf | None = None,
        challengers: bool = False,
        challenger_of: VersionOf | None = None,
    ):
        """Load every champion (and, with ``challengers``, each model's ``challenger``).

        Args:
            feature_services: model name → the feature service it must have been trained on
                (a model not named is not checked).
            service_of: the feature service a loaded version was trained on (default:
                :func:`trained_feature_service`).
            challengers: also follow each model's ``challenger`` alias, for shadow and canary
                releases (:meth:`challenger`).
            challenger_of: the version holding ``challenger`` (default: the registry's).

        Raises:
            MissingChampion: a model has no champion.
            RefusedChampion: a champion was trained for another feature service.
        """
        self.names = tuple(names)
        self.tracking_uri = tracking_uri
        self.refresh_seconds = refresh_seconds
        self.feature_services = dict(feature_services or {})
        self._load = loader or (lambda name, uri: load_champion(name, uri))
        self._version_of = version_of or _current_version
        self._service_of = service_of or trained_feature_service
        self._models: dict[str, Champion] = {}
        self._loaded_at: dict[str, float] = {}
        self._last_error: dict[str, str] = {}
        self._refused: dict[str, str] = {}  # model → the version refused (not reloaded each tick)
        self._trained: dict[tuple[str, str], str | None] = {}  # accepted versions' services
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.follow_challengers = challengers
        self._challenger_of = challenger_of or _challenger_version
        self._challengers: dict[str, Champion] = {}
        self._challenger_error: dict[str, str] = {}
        missing, refused = [], []
        for name in self.names:
            try:
                champion = self._load(name, tracking_uri)
            except NoChampion as err:
                missing.append(str(err))
                continue
            problem = self._refusal(name, champion)
            if problem:
                refused.append(problem)
                continue
            self._models[name] = champion
            self._loaded_at[name] = time.time()
        if missing:
            raise MissingChampion(
                "cannot start: "
                + "; ".join(missing + refused)
                + " (train with `crm-intel train lead` / `crm-intel train churn`)"
            )
        if refused:
            raise RefusedChampion("cannot start: " + "; ".join(refused))
        if challengers:
            self.refresh_challengers()

    def _refusal(self, name: str, champion: Champion) -> str | None:
        expected = self.feature_services.get(name)
        if expected is None:
            return None
        trained = self._service_of(champion, self.tracking_uri)
        problem = refusal(name, champion, trained, expected)
        if problem is None:
            self._trained[(name, champion.version)] = trained
        return problem

    def __getitem__(self, name: str) -> Champion:
        return self._models[name]

    def refresh(self) -> list[str]:
        """Load any model whose ``champion`` alias moved; returns the names swapped.

        A version that cannot be loaded, or was trained for another feature service, is not
        swapped in: the current champion keeps serving and :meth:`info` reports why (a refused
        version is not loaded again until the alias moves on).
        """
        swapped = []
        for name in self.names:
            try:
                version = self._version_of(self.tracking_uri, name)
                if version is None or version == self._models[name].version:
                    if version is not None and self._refused.pop(name, None) is not None:
                        self._last_error.pop(name, None)  # the alias is back on the served one
                    continue
                if self._refused.get(name) == version:
                    continue
                fresh = self._load(name, self.tracking_uri)
                problem = self._refusal(name, fresh)
            except Exception as err:  # keep serving the old champion, say why
                # the detail (it may name a file or a library) goes to the log only
                self._last_error[name] = (
                    "the version the champion alias points to could not be loaded; the "
                    "previous version still serves (the server log has the details)"
                )
                log.warning("champion refresh of %s failed: %s: %s", name, type(err).__name__, err)
                continue
            if problem:
                self._refused[name] = version
                self._last_error[name] = f"refused: {problem}"
                log.error(
                    "champion of %s not swapped, version %s still serves: %s",
                    name,
                    self._models[name].version,
                    problem,
                )
                continue
            self._models = {**self._models, name: fresh}  # one assignment: readers see old or new
            self._loaded_at[name] = time.time()
            self._last_error.pop(name, None)
            self._refused.pop(name, None)
            log.info("champion of %s is now version %s", name, fresh.version)
            swapped.append(name)
        return swapped

    def challenger(self, name: str) -> Champion | None:
        """The model's challenger when one is followed, loaded and servable, else None."""
        return self._challengers.get(name)

    def refresh_challengers(self) -> list[str]:
        """Follow each model's ``challenger`` alias: load a new one, drop one that is gone (it
        was promoted or rejected: the experiment is over). Returns the names that changed.

        A challenger that cannot be loaded or was trained for another feature service is not
        used (every id gets the champion) and :meth:`info` says why.
        """
        changed = []
        for name in self.names:
            try:
                version = self._challenger_of(self.tracking_uri, name)
                current = self._challengers.get(name)
                if version is None or version == self._models[name].version:
                    if current is not None:
                        self._challengers = {
                            k: v for k, v in self._challengers.items() if k != name
                        }
                        changed.append(name)
                    self._challenger_error.pop(name, None)
                    continue
                if current is not None and current.version == version:
                    continue
                fresh = load_version(self.tracking_uri, name, version)
                problem = self._refusal(name, fresh)
            except Exception as err:  # no challenger is used; the champion serves everyone
                self._challenger_error[name] = "the challenger could not be loaded"
                log.warning("challenger of %s not loaded: %s: %s", name, type(err).__name__, err)
                continue
            if problem:
                self._challenger_error[name] = f"refused: {problem}"
                continue
            self._challengers = {**self._challengers, name: fresh}
            self._challenger_error.pop(name, None)
            log.info("challenger of %s is version %s", name, fresh.version)
            changed.append(name)
        return changed

    def _run(self) -> None:
        while not self._stop.wait(self.refresh_seconds):
            self.refresh()
            if self.follow_challengers:
                self.refresh_challengers()

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
                "feature_service": self._trained.get(
                    (name, champion.version), tags.get("feature_service")
                ),
                "expected_feature_service": self.feature_services.get(name),
                "refused_version": self._refused.get(name),
                "features": list(meta.get("feature_names", [])),
                "calibration": (meta.get("calibrator") or {}).get("method"),
                "roc_auc": _float(tags.get("roc_auc")),
                "loaded_at": self._loaded_at.get(name),
                "refresh_error": self._last_error.get(name),
            }
            if self.follow_challengers:
                challenger = self._challengers.get(name)
                out[name]["challenger_version"] = challenger.version if challenger else None
                out[name]["challenger_error"] = self._challenger_error.get(name)
        return out


def _float(value: Any) -> float | None:
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None
