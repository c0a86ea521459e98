"""MLflow model registry: aliases ``champion`` and ``challenger``, the promotion history, and the
service-facing loader.

Every registered version gets alias ``challenger`` when trained; ``champion`` moves only through
:func:`promote` (called by the promotion gate or by ``crm-intel models promote``). Each promotion is
appended to the registered model's ``champion_history`` tag, so :func:`rollback` can put the
previous champion back.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urlparse

import mlflow
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

CHAMPION = "champion"
CHALLENGER = "challenger"
HISTORY_TAG = "champion_history"
MODEL_NAMES = ("lead_conversion", "churn_risk")
URI_VARIABLES = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")

# Types skops may rebuild when loading a model (the package's own classes and LightGBM's).
SKOPS_TRUSTED_TYPES = [
    "training.model.CalibratedBoostingClassifier",
    "training.model.Calibrator",
    "training.linear.CalibratedLogisticClassifier",
    "training.baselines.RulePointsScore",
    "training.segmented.SegmentedClassifier",
    "training.baselines.as_number",
    "training.baselines.as_text",
    "lightgbm.basic.Booster",
    "collections.OrderedDict",
    "numpy.dtype",
]


class NoChampion(LookupError):
    """Raised when a registered model has no version with alias ``champion``."""


class NotRegistered(LookupError):
    """Raised when a model or a version is not in the registry; the message names those that
    are, in the user's words (MLflow's own says ``Model Version (name=…) not found``)."""


def _check_registered(client: MlflowClient, name: str, version: str | None = None) -> None:
    """Raise :class:`NotRegistered` unless ``name`` (and its ``version``, when given) exist."""
    try:
        client.get_registered_model(name)
    except MlflowException as err:
        if err.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        models = sorted(m.name for m in client.search_registered_models(max_results=1000))
        known = ", ".join(models) if models else "none yet (train one with `crm-intel train`)"
        raise NotRegistered(f"no registered model {name!r}; the models are: {known}") from None
    if version is None:
        return
    # the name is a registered one, so it is safe inside the filter string
    versions = sorted(int(v.version) for v in client.search_model_versions(f"name = '{name}'"))
    if version not in {str(v) for v in versions}:
        listed = ", ".join(str(v) for v in versions) or "none"
        raise NotRegistered(
            f"{name} has version{'s' if len(versions) != 1 else ''} {listed}; no version {version}"
        )


def artifact_root(tracking_uri: str) -> str | None:
    """Artifacts beside a SQLite tracking database (``<db dir>/artifacts``), else MLflow's."""
    parsed = urlparse(tracking_uri)
    if parsed.scheme != "sqlite":
        return None
    db = Path(tracking_uri.removeprefix("sqlite:///"))
    db = db if db.is_absolute() else Path.cwd() / db
    return (db.parent / "artifacts").as_uri()


def client_for(tracking_uri: str) -> MlflowClient:
    """A client for ``tracking_uri`` (creating a SQLite file's folder). Sets no global URI."""
    if tracking_uri.startswith("sqlite:///"):
        path = Path(tracking_uri.removeprefix("sqlite:///"))
        path.parent.mkdir(parents=True, exist_ok=True)
    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


@contextmanager
def tracking_to(tracking_uri: str) -> Iterator[MlflowClient]:
    """Point MLflow's fluent API (runs, ``log_model``) at ``tracking_uri`` for one block.

    The fluent API has no per-call URI, so the global one is set here and put back after, and
    nothing else in crm-intel depends on it.
    """
    client = client_for(tracking_uri)
    # MLflow keeps the URI in a global and in the environment (for subprocesses): both are put
    # back exactly as they were, so no later call or child process inherits this block's URI.
    saved = {name: os.environ.get(name) for name in URI_VARIABLES}
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    try:
        yield client
    finally:
        # The global is unset, not set to the environment's value of before: a URI set here
        # would outrank the environment for good (later blocks, tests that change it). MLflow's
        # hints say str, but None is how its implementation unsets a URI.
        mlflow.set_tracking_uri(None)  # type: ignore[arg-type]
        mlflow.set_registry_uri(None)  # type: ignore[arg-type]
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def experiment_id(tracking_uri: str, name: str) -> str:
    """The experiment called ``name``, created with artifacts under the tracking folder."""
    client = client_for(tracking_uri)
    found = client.get_experiment_by_name(name)
    if found is not None:
        return str(found.experiment_id)
    return str(client.create_experiment(name, artifact_location=artifact_root(tracking_uri)))


def _version_or_none(client: MlflowClient, name: str, alias: str) -> ModelVersion | None:
    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def champion_version(tracking_uri: str, name: str) -> ModelVersion | None:
    """The current champion's model version, if there is one."""
    return _version_or_none(client_for(tracking_uri), name, CHAMPION)


def challenger_version(tracking_uri: str, name: str) -> ModelVersion | None:
    """The version holding ``challenger`` (the newest trained, not yet promoted), if any."""
    return _version_or_none(client_for(tracking_uri), name, CHALLENGER)


def _history(client: MlflowClient, name: str) -> list[str]:
    tags = client.get_registered_model(name).tags
    return list(json.loads(tags.get(HISTORY_TAG, "[]")))


def promote(tracking_uri: str, name: str, version: str | int, reason: str = "manual") -> dict:
    """Make ``version`` the champion and remember the promotion for :func:`rollback`.

    Raises:
        NotRegistered: no such model, or no such version of it.
    """
    client = client_for(tracking_uri)
    version = str(version)
    _check_registered(client, name, version)
    history = _history(client, name)
    current = _version_or_none(client, name, CHAMPION)
    current_version = None if current is None else str(current.version)
    if current_version is not None and (not history or history[-1] != current_version):
        history.append(current_version)  # champion set outside this module
    previous = current_version
    if previous != version:
        history.append(version)
    client.set_registered_model_alias(name, CHAMPION, version)
    challenger = _version_or_none(client, name, CHALLENGER)
    if challenger is not None and str(challenger.version) == version:
        client.delete_registered_model_alias(name, CHALLENGER)
    client.set_registered_model_tag(name, HISTORY_TAG, json.dumps(history))
    client.set_model_version_tag(name, version, "promoted_because", reason)
    return {"model": name, "champion": version, "previous_champion": previous, "reason": reason}


def rollback(tracking_uri: str, name: str) -> dict:
    """Give ``champion`` back to the version that held it before the current one.

    Raises:
        NotRegistered: no such model.
        NoChampion: there is no earlier champion to restore.
    """
    client = client_for(tracking_uri)
    _check_registered(client, name)
    history = _history(client, name)
    current = _version_or_none(client, name, CHAMPION)
    if current is not None and (not history or history[-1] != str(current.version)):
        history.append(str(current.version))
    if len(history) < 2:
        raise NoChampion(f"{name} has no earlier champion to roll back to")
    demoted = history.pop()
    restored = history[-1]
    client.set_registered_model_alias(name, CHAMPION, restored)
    client.set_registered_model_tag(name, HISTORY_TAG, json.dumps(history))
    client.set_model_version_tag(name, demoted, "rolled_back", "true")
    return {"model": name, "champion": restored, "demoted": demoted}


def list_versions(tracking_uri: str, names: tuple[str, ...] | None = None) -> list[dict[str, Any]]:
    """Every registered version with its aliases and headline metrics, newest first."""
    client = client_for(tracking_uri)
    wanted = names or tuple(m.name for m in client.search_registered_models())
    rows = []
    for name in wanted:
        try:
            versions = client.search_model_versions(f"name = '{name}'")
        except MlflowException:
            continue
        aliases: dict[str, list[str]] = {}
        for alias, version in client.get_registered_model(name).aliases.items():
            aliases.setdefault(str(version), []).append(alias)
        for v in sorted(versions, key=lambda v: int(v.version), reverse=True):
            rows.append(
                {
                    "model": name,
                    "version": str(v.version),
                    "aliases": sorted(aliases.get(str(v.version), [])),
                    "roc_auc": _float(v.tags.get("roc_auc")),
                    "ece": _float(v.tags.get("ece")),
                    "feature_service": v.tags.get("feature_service"),
                    "protocol": v.tags.get("protocol"),
                    "run_id": v.run_id,
                    "created": v.creation_timestamp,
                }
            )
    return rows


def _float(value: str | None) -> float | None:
    return None if value is None else float(value)


class Champion(NamedTuple):
    """What the service needs: the model, its registry version and how it was trained."""

    model: Any  # a fitted family of training.selection (trees, logistic or points)
    version: str
    metadata: dict[str, Any]


def load_version(tracking_uri: str, name: str, version: str | int) -> Champion:
    """Load one registered version with the native (scikit-learn) flavour."""
    client = client_for(tracking_uri)
    mv = client.get_model_version(name, str(version))
    import mlflow.sklearn

    model = mlflow.sklearn.load_model(client.get_model_version_download_uri(name, mv.version))
    metadata = {
        **model.metadata(),
        "model": name,
        "run_id": mv.run_id,
        "aliases": sorted(mv.aliases),
        "tags": dict(mv.tags),
    }
    return Champion(model, str(mv.version), metadata)


def load_champion(model_name: str, tracking_uri: str) -> Champion:
    """The current champion of ``model_name``, ready to score.

    ``model.predict_proba(frame)`` gives calibrated probabilities from a frame holding the
    feature columns (``metadata["feature_names"]``; categoricals as strings);
    ``model.booster_`` is the LightGBM booster for ``pred_contrib=True`` (use
    ``model.contributions(frame)``, which encodes the frame the same way).

    Raises:
        NoChampion: the model is not registered or no version holds ``champion``.
    """
    client = client_for(tracking_uri)
    mv = _version_or_none(client, model_name, CHAMPION)
    if mv is None:
        raise NoChampion(
            f"no champion for {model_name!r} in {tracking_uri}; train one with `crm-intel train`"
        )
    return load_version(tracking_uri, model_name, mv.version)
