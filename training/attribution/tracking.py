"""Attribution in MLflow: every run tracked, and the data-driven conversion model registered.

- **A run** (experiment ``attribution``): the period, the journeys and what was left out, each
  model's credit table (``credit/credit.csv``), the data-driven conversion model's
  cross-validated log-loss and AUC, and on simulated data each model's distance to the truth.
- **The registered model** ``content_attribution``: the fitted conversion model (its candidate
  form, channels and whether it sees times: its feature definition), stored with skops (no
  pickle is loaded) beside an MLflow pyfunc defined as code (``pyfunc_model.py``). A new
  version becomes ``challenger``; the gate scores it and the current champion on the same
  **held-out journeys**: the latest :data:`HELD_OUT_SHARE` of the run's journeys by their end,
  keeping only those that end after the champion's last training journey (its
  ``trained_through`` tag: a model is never scored on journeys it learned from), with the
  challenger's form refitted on the earlier ones. It is promoted when its held-out log-loss is
  lower; with nothing to compare on (no such journey, or a champion reading other features) it
  stays challenger and the version's ``gate`` tag says why. The version registered is the one
  fitted on every journey of the run, as the lead and churn models register the production
  refit. ``crm-intel models promote|rollback content_attribution`` move the alias like for the
  other models, and the service follows it (:class:`serving.attribution.AttributionChampion`).
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import skops.io as sio
from mlflow.models import infer_signature
from mlflow.pyfunc import PythonModel
from sklearn.metrics import log_loss

from training.attribution.credit import Attribution
from training.attribution.data_driven import ConversionModel, refit, with_channels
from training.attribution.journeys import Journeys, paths_to_journeys
from training.registry import (
    CHALLENGER,
    NoChampion,
    champion_version,
    client_for,
    experiment_id,
    promote,
    tracking_to,
)

EXPERIMENT = "attribution"
MODEL_NAME = "content_attribution"
HELD_OUT_SHARE = 0.2
MODEL_FILE = "conversion_model.skops"
# What skops may rebuild when loading a conversion model: the package's classes, LightGBM's and
# scikit-learn's.
TRUSTED_TYPES = [
    "training.attribution.data_driven.ConversionModel",
    "training.attribution.data_driven.Candidate",
    "training.attribution.conversion_learners.Boosted",
    "training.attribution.conversion_learners.Logistic",
    "training.attribution.conversion_learners.NoisyOr",
    "lightgbm.basic.Booster",
    "lightgbm.sklearn.LGBMClassifier",
    "sklearn.pipeline.Pipeline",
    "sklearn.preprocessing._data.StandardScaler",
    "sklearn.linear_model._logistic.LogisticRegression",
    "builtins.object",
    "builtins.range",
    "collections.OrderedDict",
]


# ----------------------------------------------------------------------------- runs
def log_attribution_run(
    tracking_uri: str,
    journeys: Journeys,
    results: list[Attribution],
    table: pd.DataFrame,
    summary: dict[str, Any],
    period: dict[str, str] | None = None,
    run_name: str | None = None,
) -> str:
    """Log one attribution run; returns its run id."""
    exp = experiment_id(tracking_uri, EXPERIMENT)
    with tracking_to(tracking_uri), mlflow.start_run(experiment_id=exp, run_name=run_name) as run:
        mlflow.log_params(
            {
                "source": journeys.source or "journeys",
                "models": ",".join(r.model for r in results),
                "period_start": (period or {}).get("period_start", ""),
                "period_end": (period or {}).get("period_end", ""),
            }
        )
        mlflow.set_tags({"kind": "attribution", **(period or {})})
        metrics = {
            "journeys": float(journeys.n_journeys),
            "weighted_journeys": journeys.total_journeys,
            "touches": float(journeys.n_touches),
            "conversions": journeys.total_conversions,
            "value": journeys.total_value,
            **{f"dropped.{k}": float(v) for k, v in journeys.dropped.items()},
            **{f"tvd.{model}": float(tvd) for model, tvd in summary.get("tvd", {}).items()},
        }
        learned = next((r for r in results if r.model == "data_driven"), None)
        if learned is not None:
            for key in ("cv_log_loss", "cv_auc"):
                if key in learned.details:
                    metrics[f"data_driven.{key}"] = float(learned.details[key])
        mlflow.log_metrics({k: v for k, v in metrics.items() if np.isfinite(v)})
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp)
            table.to_csv(out / "credit.csv", index=False)
            mlflow.log_artifact(str(out / "credit.csv"), "credit")
            (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
            mlflow.log_artifact(str(out / "summary.json"))
        return str(run.info.run_id)


# ----------------------------------------------------------------------------- the model
class ConversionModelPyfunc(PythonModel):
    """The registered model as MLflow sees it: ``predict`` takes a path table (``path``
    with channels joined by `` > ``) and gives each path's probability to convert. crm-intel
    itself loads the skops file directly (:func:`load_conversion_model`)."""

    def load_context(self, context: Any) -> None:
        self.model = _model(context.artifacts["conversion_model"])

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> np.ndarray:
        journeys = paths_to_journeys(model_input.assign(total_conversions=0, total_null=1))
        return np.asarray(self.model.probability(with_channels(journeys, self.model.channels)))


def held_out_split(
    journeys: Journeys, share: float = HELD_OUT_SHARE, after: np.datetime64 | None = None
) -> tuple[Journeys, Journeys]:
    """The earlier journeys (to fit) and the latest ``share`` of them by their end (to score),
    of which only those ending after ``after`` (the champion's last training journey: it must
    not be scored on journeys it learned from). Journeys without times are split by their order
    in the data."""
    n = journeys.n_journeys
    order = (
        np.argsort(journeys.ended_at, kind="stable")
        if journeys.ended_at is not None
        else np.arange(n)
    )
    cut = int(round(n * (1 - share)))
    late = np.zeros(n, dtype=bool)
    late[order[cut:]] = True
    scored = late.copy()
    if after is not None and journeys.ended_at is not None:
        scored &= journeys.ended_at > after
    return journeys.select(~late), journeys.select(scored)


def _trained_through(journeys: Journeys) -> str:
    return "" if journeys.ended_at is None else str(journeys.ended_at.max())


def held_out_log_loss(model: ConversionModel, journeys: Journeys) -> float:
    """Mean log-loss per journey of ``model`` on ``journeys`` (weighted by their counts)."""
    on = with_channels(journeys, model.channels)
    p = np.clip(model.probability(on), 1e-12, 1 - 1e-12)
    y = np.r_[np.ones(on.n_journeys), np.zeros(on.n_journeys)]
    weight = np.r_[on.conversions, on.nulls]
    return float(log_loss(y, np.r_[p, p], sample_weight=weight))


@dataclass(frozen=True)
class Registered:
    """A registered version and its gate: ``decision`` is ``promoted`` or ``kept champion``."""

    version: str
    run_id: str
    held_out_log_loss: float
    champion_log_loss: float | None
    decision: str
    champion: str

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def register_conversion_model(
    tracking_uri: str, model: ConversionModel, journeys: Journeys, run_id: str
) -> Registered:
    """Register ``model`` (fitted on ``journeys``) as a new version of
    :data:`MODEL_NAME` in the run ``run_id``, and apply the gate (module docstring)."""
    from training.tracking import pip_requirements  # the lead models' pins (heavy imports)

    current = champion_version(tracking_uri, MODEL_NAME)
    through = None if current is None else current.tags.get("trained_through") or None
    fit_part, held_out = held_out_split(
        journeys, after=None if through is None else np.datetime64(through)
    )
    challenger_loss = (
        held_out_log_loss(refit(model, fit_part), held_out) if held_out.n_journeys else np.nan
    )
    champion_loss: float | None = None
    why_not = ""
    if current is not None:
        champion = load_conversion_model(tracking_uri, str(current.version))
        same_features = (champion.timed, champion.candidate.feature_set) == (
            model.timed,
            model.candidate.feature_set,
        ) or champion.candidate.feature_set == "counts"
        if not same_features:
            why_not = "not compared: the champion sees other features"
        elif held_out.total_conversions <= 0 or held_out.n_journeys == 0:
            why_not = "not compared: no held-out journey after the champion's data"
        else:
            champion_loss = held_out_log_loss(champion, held_out)
    with tracking_to(tracking_uri) as client, mlflow.start_run(run_id=run_id):
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / MODEL_FILE
            sio.dump(_fields(model), path)
            example = pd.DataFrame({"path": [" > ".join(model.channels[:2])]})
            info = mlflow.pyfunc.log_model(
                name="conversion_model",
                python_model=str(Path(__file__).with_name("pyfunc_model.py")),
                signature=infer_signature(example, np.array([0.5])),
                artifacts={"conversion_model": str(path)},
                pip_requirements=pip_requirements(),
                registered_model_name=MODEL_NAME,
                metadata={
                    "candidate": model.candidate.name,
                    "feature_set": model.candidate.feature_set,
                    "channels": list(model.channels),
                    "timed": model.timed,
                },
            )
        version = str(info.registered_model_version)
        if np.isfinite(challenger_loss):
            mlflow.log_metric("held_out_log_loss", challenger_loss)
        client.set_registered_model_alias(MODEL_NAME, CHALLENGER, version)
        tags = {
            "candidate": model.candidate.name,
            "channels": json.dumps(list(model.channels)),
            "cv_log_loss": f"{model.cv_log_loss:.6f}",
            "held_out_log_loss": f"{challenger_loss:.6f}",
            "held_out_journeys": str(held_out.n_journeys),
            "trained_through": _trained_through(journeys),
        }
        if champion_loss is not None:
            tags["champion_held_out_log_loss"] = f"{champion_loss:.6f}"
        for key, value in tags.items():
            client.set_model_version_tag(MODEL_NAME, version, key, value)
    better = current is None or (champion_loss is not None and challenger_loss < champion_loss)
    if better:
        reason = (
            "first version"
            if champion_loss is None
            else f"held-out log-loss {challenger_loss:.5f} < champion's {champion_loss:.5f}"
        )
        promote(tracking_uri, MODEL_NAME, version, reason=reason)
    elif why_not:
        with tracking_to(tracking_uri) as client:
            client.set_model_version_tag(MODEL_NAME, version, "gate", why_not)
    holder = champion_version(tracking_uri, MODEL_NAME)
    return Registered(
        version=version,
        run_id=run_id,
        held_out_log_loss=challenger_loss,
        champion_log_loss=champion_loss,
        decision="promoted" if better else "kept champion",
        champion="" if holder is None else str(holder.version),
    )


def load_conversion_model(tracking_uri: str, version: str | None = None) -> ConversionModel:
    """A registered conversion model (default: the champion), loaded from its skops file.

    Raises:
        training.registry.NoChampion: no version holds ``champion``.
    """
    client = client_for(tracking_uri)
    if version is None:
        current = champion_version(tracking_uri, MODEL_NAME)
        if current is None:
            raise NoChampion(f"no champion for {MODEL_NAME!r}; run `crm-intel attribution run`")
        version = str(current.version)
    uri = client.get_model_version_download_uri(MODEL_NAME, version)
    with tempfile.TemporaryDirectory() as tmp:
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=uri, dst_path=tmp, tracking_uri=tracking_uri
        )
        return _model(next(Path(local).rglob(MODEL_FILE)))


def _fields(model: ConversionModel) -> dict[str, Any]:
    """What is stored: every field but the cross-validation table (kept in the version's tags)."""
    return {f.name: getattr(model, f.name) for f in fields(model) if f.name != "cross_validation"}


def _model(path: Path | str) -> ConversionModel:
    return ConversionModel(**sio.load(path, trusted=TRUSTED_TYPES))
