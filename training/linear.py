"""Logistic regression as a served model: calibrated, sign-constrained, explained per feature.

The design matrix is scikit-learn's (median-imputed numbers with missing flags, standardised,
and one-hot categories; see :func:`training.baselines.logistic_baseline`), built once. Reasons
are exact linear contributions in log-odds: for each original feature, the sum over its design
columns of ``coef × (value − training mean)``, so that the contributions plus the base value
(``intercept + coef · training mean``) equal the model's margin, as TreeSHAP's do for trees.

Monotone directions are kept by sign constraints: a feature whose direction is known (more
high-intent touches never lower a lead score) and whose fitted coefficient takes the wrong sign is
held at zero and the rest refitted, until every constrained coefficient has its sign (an
active-set solution of the constrained fit; scikit-learn's solvers take no bounds).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegression

from training.baselines import logistic_baseline
from training.model import Calibrator, categorical_levels, choose_calibrator, never_fill


def _expit(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


class CalibratedLogisticClassifier(ClassifierMixin, BaseEstimator):
    """Logistic regression with sign constraints and a calibrator fitted on validation rows.

    Args:
        C: inverse L2 strength of scikit-learn's ``LogisticRegression``.
        monotone: feature → +1 / -1, the sign its coefficient must keep (0 is allowed).
        calibration: as :class:`training.model.CalibratedBoostingClassifier`.
        random_state: seed for the solver and the calibration folds.
    """

    family = "logistic"

    def __init__(
        self,
        C: float = 1.0,
        monotone: dict[str, int] | None = None,
        calibration: str = "auto",
        random_state: int = 0,
    ) -> None:
        self.C = C
        self.monotone = monotone
        self.calibration = calibration
        self.random_state = random_state

    def _prepare(self, X: pd.DataFrame) -> pd.DataFrame:
        out = X[list(self.feature_names_in_)].copy()
        for col, value in self.fill_.items():
            out[col] = pd.to_numeric(out[col], errors="coerce").fillna(value)
        return out

    def fit(
        self, X: pd.DataFrame, y: Any, X_val: pd.DataFrame | None = None, y_val: Any = None
    ) -> CalibratedLogisticClassifier:
        """Fit on ``X, y``; calibrate on ``X_val, y_val`` (no calibration without them)."""
        y = np.asarray(y, dtype=int)
        self.feature_names_in_ = np.asarray(list(X.columns), dtype=object)
        self.n_features_in_ = len(self.feature_names_in_)
        self.classes_ = np.array([0, 1])
        levels = categorical_levels(X)
        self.categorical_ = [c for c in X.columns if c in levels]
        self.numeric_ = [c for c in X.columns if c not in levels]
        self.fill_ = never_fill(self.monotone)
        prepared = self._prepare(X)
        template = logistic_baseline(self.numeric_, self.categorical_, self.random_state)
        self.columns_ = template.named_steps["columns"].fit(prepared)
        self.design_names_ = list(self.columns_.get_feature_names_out())
        self.owner_ = self._owners()
        design = self._design(prepared)
        self.design_mean_ = design.mean(axis=0)
        self.used_ = np.ones(design.shape[1], dtype=bool)
        self.held_at_zero_: list[str] = []
        while True:  # active set: hold wrong-signed constrained features at zero, refit
            self._fit_weights(design, y)
            wrong = self._wrong_signs()
            if not wrong:
                break
            self.held_at_zero_.extend(wrong)
            for feature in wrong:
                self.used_[self.design_names_.index(f"numeric__{feature}")] = False
        if X_val is not None and self.calibration != "none":
            self.calibrate(X_val, y_val, self.calibration)
        else:
            self.calibrator_ = Calibrator("none")
            self.calibration_losses_: dict[str, float] = {}
        return self

    def _fit_weights(self, design: np.ndarray, y: np.ndarray) -> None:
        model = LogisticRegression(C=self.C, max_iter=5000, random_state=self.random_state)
        model.fit(design[:, self.used_], y)
        self.coef_ = np.zeros(design.shape[1])
        self.coef_[self.used_] = model.coef_[0]
        self.intercept_ = float(model.intercept_[0])

    def calibrate(
        self, X_val: pd.DataFrame, y_val: Any, method: str = "auto"
    ) -> CalibratedLogisticClassifier:
        """(Re)fit the calibrator on validation rows."""
        self.calibrator_, self.calibration_losses_ = choose_calibrator(
            self.raw_proba(X_val), np.asarray(y_val, dtype=int), method, self.random_state
        )
        return self

    def refit_weights(self, X: pd.DataFrame, y: Any) -> CalibratedLogisticClassifier:
        """Refit the coefficients on more rows (every row whose label is known), keeping the
        design, the features held at zero and the calibrator."""
        design = self._design(self._prepare(X))
        self._fit_weights(design, np.asarray(y, dtype=int))
        return self

    def _wrong_signs(self) -> list[str]:
        wrong = []
        for feature, direction in (self.monotone or {}).items():
            name = f"numeric__{feature}"
            if (
                direction
                and name in self.design_names_
                and self.coef_[self.design_names_.index(name)] * direction < 0
            ):
                wrong.append(feature)
        return wrong

    def _owners(self) -> list[str]:
        """The original feature behind each design column."""
        owners = []
        inputs = sorted([*self.numeric_, *self.categorical_], key=len, reverse=True)
        for name in self.design_names_:
            part, _, rest = name.partition("__")
            rest = rest.removeprefix("missingindicator_")
            owner = next(
                (
                    f
                    for f in inputs
                    if rest == f or (part == "categorical" and rest.startswith(f + "_"))
                ),
                rest,
            )
            owners.append(owner)
        return owners

    def _design(self, prepared: pd.DataFrame) -> np.ndarray:
        matrix = self.columns_.transform(prepared)
        return np.asarray(matrix.toarray() if hasattr(matrix, "toarray") else matrix, dtype=float)

    def margin(self, X: pd.DataFrame) -> np.ndarray:
        """The linear predictor (log-odds before calibration)."""
        return self._design(self._prepare(X)) @ self.coef_ + self.intercept_

    def raw_proba(self, X: pd.DataFrame) -> np.ndarray:
        return _expit(self.margin(X))

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        p = np.asarray(self.calibrator_(self.raw_proba(X)), dtype=float)
        return np.column_stack([1 - p, p])

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return (self.predict_proba(X)[:, 1] >= 0.5).astype(int)

    def contributions(self, X: pd.DataFrame) -> pd.DataFrame:
        """Exact linear contributions in log-odds, one column per feature plus ``bias``."""
        parts = (self._design(self._prepare(X)) - self.design_mean_) * self.coef_
        out = pd.DataFrame(0.0, index=X.index, columns=[*self.feature_names_in_, "bias"])
        for j, owner in enumerate(self.owner_):
            out[owner] = out[owner].to_numpy() + parts[:, j]
        out["bias"] = float(self.intercept_ + self.coef_ @ self.design_mean_)
        return out

    def coefficients(self) -> dict[str, float]:
        """Standardised coefficient of each numeric feature (0 where held at zero)."""
        return {
            f: float(self.coef_[self.design_names_.index(f"numeric__{f}")])
            for f in self.numeric_
            if f"numeric__{f}" in self.design_names_
        }

    def metadata(self) -> dict[str, Any]:
        return {
            "family": self.family,
            "feature_names": list(self.feature_names_in_),
            "calibrator": self.calibrator_.to_dict(),
            "monotone": dict(self.monotone or {}),
            "held_at_zero": list(self.held_at_zero_),
            "C": self.C,
        }
