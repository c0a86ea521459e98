"""A model per segment with the global model for every other row, served as one model.

Salesforce Einstein's lead scoring trains a separate model for a segment of leads (a source, a
region) that has enough data of its own and the global model for the rest. Here a segment model
is kept only where a back-test says it beats the global model on that segment's leads
(:mod:`training.segments`); :class:`SegmentedClassifier` puts the kept ones and the global model
together so that a registered champion is still one estimator with ``predict_proba`` and
``contributions``: each row is scored, and its reasons computed, by the model of its segment
(the global model when its segment has none, its value is missing or was never seen).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin

GLOBAL = "global"  # what :meth:`SegmentedClassifier.scored_by` says of a row no segment model took


def segment_key(value: Any) -> str | None:
    """A segment column's value as the key of its model: the text, or None when missing."""
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, float) and value != value:
        return None
    text = str(value)
    return text or None


class SegmentedClassifier(ClassifierMixin, BaseEstimator):
    """Routes each row to its segment's model, else to the global model.

    The parts are fitted before, each by the purged protocol on its own rows
    (:func:`training.segments.segment_models_as_of`); like a scikit-learn meta-estimator given
    prefitted estimators, :meth:`fit` does not refit them: it checks that they score the same
    features and records what it routes.

    Args:
        segment_by: the feature column whose value picks the model (e.g. ``source``).
        global_model: the model of every row without a segment model of its own.
        segment_models: segment value → its fitted model (same features as the global one).
    """

    def __init__(
        self,
        segment_by: str = "source",
        global_model: Any = None,
        segment_models: dict[str, Any] | None = None,
    ) -> None:
        self.segment_by = segment_by
        self.global_model = global_model
        self.segment_models = segment_models

    def fit(self, X: Any = None, y: Any = None) -> SegmentedClassifier:
        """Check the parts and record the features and segments (no part is refitted).

        Raises:
            ValueError: no global model, a part with other features than the global model's, or
                a segment column the models do not score.
        """
        if self.global_model is None:
            raise ValueError("a segmented model needs the global model for rows without a segment")
        names = list(self.global_model.feature_names_in_)
        if self.segment_by not in names:
            raise ValueError(
                f"segment column {self.segment_by!r} is not one of the model's features"
            )
        for segment, model in (self.segment_models or {}).items():
            if list(model.feature_names_in_) != names:
                raise ValueError(
                    f"the model of segment {self.segment_by}={segment!r} scores other features "
                    "than the global model"
                )
        self.feature_names_in_ = np.asarray(names, dtype=object)
        self.n_features_in_ = len(names)
        self.classes_ = np.array([0, 1])
        self.segments_ = tuple(sorted(self.segment_models or {}))
        return self

    @property
    def family(self) -> str:
        """The global model's family (every segment model is of the same family)."""
        return str(getattr(self.global_model, "family", "lightgbm"))

    @property
    def categories_(self) -> dict[str, list[str]]:
        """The global model's categorical levels (what a reason calls a value never seen)."""
        return dict(getattr(self.global_model, "categories_", {}) or {})

    @property
    def calibrator_(self) -> Any:
        return getattr(self.global_model, "calibrator_", None)

    def model_for(self, value: Any) -> Any:
        """The model that scores a row whose segment column holds ``value``."""
        key = segment_key(value)
        models = self.segment_models or {}
        return models[key] if key is not None and key in models else self.global_model

    def segment_values(self, X: pd.DataFrame) -> list[Any]:
        """Each row's value of the segment column (missing when the frame lacks it)."""
        if self.segment_by not in X.columns:
            return [None] * len(X)
        return list(X[self.segment_by].tolist())

    def route(self, values: Sequence[Any]) -> list[tuple[Any, np.ndarray]]:
        """The models that score rows with these segment values, each with its row positions
        (the global model first, then the segments in sorted order; models with no rows left out).
        """
        models = self.segment_models or {}
        keys = [segment_key(v) for v in values]
        positions: dict[str | None, list[int]] = {}
        for i, key in enumerate(keys):
            positions.setdefault(key if key in models else None, []).append(i)
        out = []
        if None in positions:
            out.append((self.global_model, np.asarray(positions[None], dtype=int)))
        for key in sorted(k for k in positions if k is not None):
            out.append((models[key], np.asarray(positions[key], dtype=int)))
        return out

    def scored_by(self, X: pd.DataFrame) -> np.ndarray:
        """Per row, the segment whose model scores it, or ``global``."""
        models = self.segment_models or {}
        keys = [segment_key(v) for v in self.segment_values(X)]
        return np.asarray([k if k in models else GLOBAL for k in keys], dtype=object)

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        """Calibrated probabilities, shape ``(n, 2)``, each row from its own model."""
        out = np.empty((len(X), 2), dtype=float)
        for model, rows in self.route(self.segment_values(X)):
            out[rows] = model.predict_proba(X.iloc[rows])
        return out

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return (self.predict_proba(X)[:, 1] >= 0.5).astype(int)

    def contributions(self, X: pd.DataFrame) -> pd.DataFrame:
        """Each row's contributions (one column per feature plus ``bias``) from the model that
        scores it, in that model's margin unit."""
        columns = [*self.feature_names_in_, "bias"]
        out = np.empty((len(X), len(columns)), dtype=float)
        for model, rows in self.route(self.segment_values(X)):
            out[rows] = model.contributions(X.iloc[rows])[columns].to_numpy(dtype=float)
        return pd.DataFrame(out, index=X.index, columns=columns)

    def metadata(self) -> dict[str, Any]:
        """The global model's metadata, the segment column and each segment model's own."""
        models = self.segment_models or {}
        return {
            **self.global_model.metadata(),
            "segment_by": self.segment_by,
            "segments": {segment: models[segment].metadata() for segment in sorted(models)},
        }
