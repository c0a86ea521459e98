"""The scoring model: LightGBM with early stopping, class weighting and a calibrator.

``CalibratedBoostingClassifier`` follows scikit-learn's estimator contract (``__init__`` only
stores parameters, fitted attributes end in ``_``, ``fit`` returns ``self``) so that it works with
``cross_val_predict``-style loops, while keeping the raw LightGBM booster at hand for exact TreeSHAP
(``booster_.predict(X, pred_contrib=True)``, log-odds of the *uncalibrated* model).

Calibration is chosen on the validation rows: isotonic and sigmoid (Platt on the raw log-odds) are
each scored by 5-fold cross-fitting inside the validation set and the one with the lower log loss is
refitted on all of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Self

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss
from sklearn.model_selection import StratifiedKFold, train_test_split

_EPS = 1e-6
MISSING = "(missing)"  # its own category: in CRM exports, "not filled in" often predicts


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=float), _EPS, 1 - _EPS)
    return np.log(p / (1 - p))


@dataclass(frozen=True)
class Calibrator:
    """A fitted monotone map from raw model probability to calibrated probability.

    ``isotonic`` keeps the step function as (thresholds, values), ``sigmoid`` keeps Platt's
    ``(a, b)`` in ``p = 1 / (1 + exp(-(a * logit(raw) + b)))`` with ``a >= 0``. Plain numbers
    only, so the calibrator is stored as JSON beside the model rather than pickled.
    """

    method: str
    x: tuple[float, ...] = ()
    y: tuple[float, ...] = ()
    a: float = 1.0
    b: float = 0.0

    def __call__(self, raw: np.ndarray) -> np.ndarray:
        raw = np.asarray(raw, dtype=float)
        if self.method == "isotonic":
            return np.clip(np.interp(raw, self.x, self.y), _EPS, 1 - _EPS)
        if self.method == "sigmoid":
            return 1.0 / (1.0 + np.exp(-(self.a * _logit(raw) + self.b)))
        if self.method == "none":
            return raw
        raise ValueError(f"unknown calibration method {self.method!r}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "x": list(self.x),
            "y": list(self.y),
            "a": self.a,
            "b": self.b,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Calibrator:
        return cls(
            method=data["method"],
            x=tuple(data.get("x", ())),
            y=tuple(data.get("y", ())),
            a=float(data.get("a", 1.0)),
            b=float(data.get("b", 0.0)),
        )


def fit_calibrator(raw: np.ndarray, y: np.ndarray, method: str) -> Calibrator:
    """Fit one calibration ``method`` (``isotonic`` or ``sigmoid``) of raw scores to ``y``."""
    raw = np.asarray(raw, dtype=float)
    y = np.asarray(y, dtype=int)
    if method == "isotonic":
        iso = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(raw, y)
        return Calibrator(
            "isotonic",
            x=tuple(map(float, iso.X_thresholds_)),
            y=tuple(map(float, iso.y_thresholds_)),
        )
    if method == "sigmoid":
        lr = LogisticRegression(C=1e6, max_iter=1000).fit(_logit(raw)[:, None], y)
        a = float(lr.coef_[0, 0])
        if a < 0:
            # a falling map would turn the model's ranking upside down (seen on the few
            # validation rows of small segments): the raw scores carry no usable sign there,
            # so every row gets the validation rate
            rate = float(np.clip(y.mean(), _EPS, 1 - _EPS))
            return Calibrator("sigmoid", a=0.0, b=float(np.log(rate / (1 - rate))))
        return Calibrator("sigmoid", a=a, b=float(lr.intercept_[0]))
    if method == "none":
        return Calibrator("none")
    raise ValueError(f"calibration must be isotonic, sigmoid, none or auto, got {method!r}")


def choose_calibrator(
    raw: np.ndarray, y: np.ndarray, method: str = "auto", random_state: int = 0
) -> tuple[Calibrator, dict[str, float]]:
    """Calibrator for validation scores ``raw``; with ``auto``, the lower cross-fitted log loss.

    Returns:
        The calibrator refitted on all of ``raw`` and the cross-fitted log loss of each candidate.
    """
    if method != "auto":
        return fit_calibrator(raw, y, method), {}
    raw = np.asarray(raw, dtype=float)
    y = np.asarray(y, dtype=int)
    folds = StratifiedKFold(5, shuffle=True, random_state=random_state)
    losses: dict[str, float] = {}
    for candidate in ("isotonic", "sigmoid"):
        out = np.empty_like(raw)
        for fit_idx, hold_idx in folds.split(raw[:, None], y):
            out[hold_idx] = fit_calibrator(raw[fit_idx], y[fit_idx], candidate)(raw[hold_idx])
        losses[candidate] = float(log_loss(y, np.clip(out, _EPS, 1 - _EPS), labels=[0, 1]))
    best = min(losses, key=losses.__getitem__)
    return fit_calibrator(raw, y, best), losses


def categorical_levels(X: pd.DataFrame) -> dict[str, list[str]]:
    """Categorical columns (category, string, object or bool) and their sorted levels."""
    levels: dict[str, list[str]] = {}
    for col in X.columns:
        s = X[col]
        if (
            isinstance(s.dtype, pd.CategoricalDtype)
            or s.dtype == object
            or pd.api.types.is_string_dtype(s.dtype)
            or pd.api.types.is_bool_dtype(s.dtype)
        ):
            levels[col] = sorted({*map(str, s.dropna().astype(str).unique()), MISSING})
    return levels


def encode_frame(
    X: pd.DataFrame,
    features: list[str],
    levels: dict[str, list[str]],
    fill: dict[str, float] | None = None,
) -> pd.DataFrame:
    """The model's input: ``features`` in order, categoricals as fixed-level categories.

    Unknown categories and missing columns become missing; a numeric column named in ``fill``
    has its missing values replaced (see :data:`NEVER_DAYS`); the input is not modified.
    """
    out = {}
    fill = fill or {}
    for col in features:
        s = X[col] if col in X.columns else pd.Series(np.nan, index=X.index)
        if col in levels:
            values = s.astype("string").fillna(MISSING).astype(object)
            out[col] = pd.Categorical(values, categories=levels[col])
        else:
            numbers = pd.to_numeric(s, errors="coerce").astype("float64")
            out[col] = numbers.fillna(fill[col]) if col in fill else numbers
    return pd.DataFrame(out, index=X.index)


# "Days since the last touch" of a lead never touched is missing. A model constrained to score
# a more recent touch higher must place "never" beyond every real recency, so constrained
# recency features read a missing value as this many days.
NEVER_DAYS = 10_000.0


def never_fill(monotone: dict[str, int] | None) -> dict[str, float]:
    """Missing-value fills for the decreasing (recency) features of ``monotone``."""
    return {f: NEVER_DAYS for f, d in (monotone or {}).items() if d < 0 and f.startswith("days_")}


class CalibratedBoostingClassifier(ClassifierMixin, BaseEstimator):
    """LightGBM binary classifier with early stopping, class weighting and calibration.

    Args:
        n_estimators: Upper bound on boosting rounds; early stopping picks the number used.
        learning_rate: Shrinkage per round.
        num_leaves: Leaves per tree.
        min_child_samples: Minimum rows per leaf.
        reg_lambda: L2 penalty on leaf values.
        subsample: Row fraction per round (bagging every round).
        colsample_bytree: Feature fraction per tree.
        class_weight: ``"auto"`` is ``"sqrt_balanced"`` when positives or negatives are under
            20 % of the rows and ``None`` otherwise; ``"sqrt_balanced"`` weights positives by
            ``sqrt(negatives / positives)``, ``"balanced"`` by the full ratio, ``None`` leaves
            rows unweighted. Calibration undoes the shift in probabilities that weighting causes.
        early_stopping_rounds: Rounds without improvement in validation log loss before stopping.
        calibration: ``"auto"`` (isotonic or sigmoid, chosen on validation), ``"isotonic"``,
            ``"sigmoid"`` or ``"none"``.
        refit_full: After early stopping and calibration, refit the trees on training plus
            validation rows with proportionally more rounds, keeping the calibrator. Uses all
            rows on small tables; leave off when validation rows come from a later period.
        validation_fraction: Share of the training rows held out (stratified) for early stopping
            and calibration when ``fit`` is not given validation rows.
        max_bin: Histogram bins per feature.
        random_state: Seed for LightGBM and the internal split.
        n_jobs: Threads for LightGBM (1 by default: on small tables and busy machines more
            OpenMP threads are slower, not faster).
        monotone: feature → +1 (the score never falls as it grows) or -1 (never rises); other
            features are unconstrained. Missing recency in a -1 ``days_*`` feature reads as
            :data:`NEVER_DAYS`.
    """

    family = "lightgbm"

    def __init__(
        self,
        n_estimators: int = 2000,
        learning_rate: float = 0.05,
        num_leaves: int = 31,
        min_child_samples: int = 50,
        reg_lambda: float = 1.0,
        subsample: float = 0.8,
        colsample_bytree: float = 0.8,
        class_weight: str | None = "auto",
        early_stopping_rounds: int = 100,
        calibration: str = "auto",
        validation_fraction: float = 0.2,
        refit_full: bool = False,
        max_bin: int = 255,
        random_state: int = 0,
        n_jobs: int = 1,
        monotone: dict[str, int] | None = None,
    ) -> None:
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        self.reg_lambda = reg_lambda
        self.subsample = subsample
        self.colsample_bytree = colsample_bytree
        self.class_weight = class_weight
        self.early_stopping_rounds = early_stopping_rounds
        self.calibration = calibration
        self.validation_fraction = validation_fraction
        self.refit_full = refit_full
        self.max_bin = max_bin
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.monotone = monotone

    def _lgb_params(self, pos_weight: float) -> dict[str, Any]:
        constraints = {}
        monotone = self.directions
        if monotone:
            names = list(self.feature_names_in_)
            constraints = {
                "monotone_constraints": [int(monotone.get(f, 0)) for f in names],
                "monotone_constraints_method": "advanced",
            }
        return {
            **constraints,
            "objective": "binary",
            "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves,
            "min_child_samples": self.min_child_samples,
            "reg_lambda": self.reg_lambda,
            "subsample": self.subsample,
            "subsample_freq": 1,
            "colsample_bytree": self.colsample_bytree,
            "scale_pos_weight": pos_weight,
            "max_bin": self.max_bin,
            "seed": self.random_state,
            "num_threads": self.n_jobs,
            "deterministic": True,
            "force_col_wise": True,
            "verbose": -1,
            "min_data_per_group": 50,
            "cat_smooth": 10.0,
        }

    def _pos_weight(self, y: np.ndarray) -> float:
        pos = max(int(y.sum()), 1)
        neg = max(len(y) - pos, 1)
        if self.class_weight == "balanced":
            return neg / pos
        if self.class_weight == "sqrt_balanced" or (
            self.class_weight == "auto" and min(pos, neg) < 0.2 * len(y)
        ):
            return float(np.sqrt(neg / pos))
        if self.class_weight in (None, "auto"):
            return 1.0
        raise ValueError(
            f"class_weight must be balanced, sqrt_balanced or None, got {self.class_weight!r}"
        )

    def fit(
        self, X: pd.DataFrame, y: Any, X_val: pd.DataFrame | None = None, y_val: Any = None
    ) -> CalibratedBoostingClassifier:
        """Fit on ``X, y``; stop early and calibrate on ``X_val, y_val`` (or an internal split)."""
        y = np.asarray(y, dtype=int)
        if X_val is None:
            X, X_val, y, y_val = train_test_split(
                X, y, test_size=self.validation_fraction, stratify=y, random_state=self.random_state
            )
        y_val = np.asarray(y_val, dtype=int)
        self.feature_names_in_ = np.asarray(list(X.columns), dtype=object)
        self.n_features_in_ = len(self.feature_names_in_)
        self.classes_ = np.array([0, 1])
        self.categories_ = categorical_levels(X)
        self.fill_ = never_fill(self.monotone)
        features = list(self.feature_names_in_)
        train = lgb.Dataset(
            encode_frame(X, features, self.categories_, self.fill_),
            label=y,
            categorical_feature=list(self.categories_) or "auto",
            free_raw_data=True,
        )
        self.scale_pos_weight_ = self._pos_weight(y)
        # validation rows weighted like training rows, so early stopping watches the loss
        # being minimised rather than a calibration the weighting shifts on purpose
        valid = lgb.Dataset(
            encode_frame(X_val, features, self.categories_, self.fill_),
            label=y_val,
            weight=np.where(y_val == 1, self.scale_pos_weight_, 1.0),
            reference=train,
        )
        self.booster_ = lgb.train(
            self._lgb_params(self.scale_pos_weight_),
            train,
            num_boost_round=self.n_estimators,
            valid_sets=[valid],
            valid_names=["validation"],
            callbacks=[lgb.early_stopping(self.early_stopping_rounds, verbose=False)],
        )
        self.best_iteration_ = int(self.booster_.best_iteration or self.n_estimators)
        raw_val = self._raw(X_val)
        self.calibrator_, self.calibration_losses_ = choose_calibrator(
            raw_val, y_val, self.calibration, self.random_state
        )
        if self.refit_full:
            rounds = int(np.ceil(self.best_iteration_ * (len(y) + len(y_val)) / len(y)))
            both = lgb.Dataset(
                encode_frame(pd.concat([X, X_val]), features, self.categories_, self.fill_),
                label=np.concatenate([y, y_val]),
                categorical_feature=list(self.categories_) or "auto",
            )
            self.booster_ = lgb.train(
                self._lgb_params(self.scale_pos_weight_), both, num_boost_round=rounds
            )
            self.best_iteration_ = rounds
        return self

    def refit_trees(
        self, X: pd.DataFrame, y: Any, rows_fitted: int, scale_rounds: bool = True
    ) -> CalibratedBoostingClassifier:
        """Refit the trees on more rows (``X, y``: every row whose label is known), with the
        rounds early stopping chose scaled by ``len(X) / rows_fitted``; the calibrator is kept.

        The rows must all be known at the time the model is trained for: this widens the
        training part to the validation rows and those between, it never reaches ahead.
        """
        y = np.asarray(y, dtype=int)
        factor = len(y) / max(rows_fitted, 1) if scale_rounds else 1.0
        rounds = int(np.ceil(self.best_iteration_ * factor))
        data = lgb.Dataset(
            self.encode(X), label=y, categorical_feature=list(self.categories_) or "auto"
        )
        self.booster_ = lgb.train(self._lgb_params(self.scale_pos_weight_), data, rounds)
        self.best_iteration_ = rounds
        return self

    def calibrate(self, X_val: pd.DataFrame, y_val: Any, method: str = "auto") -> Self:
        """(Re)fit the calibrator on validation rows (selection fits candidates uncalibrated,
        since calibration does not change a ranking, and calibrates only those it keeps)."""
        self.calibrator_, self.calibration_losses_ = choose_calibrator(
            self.raw_proba(X_val), np.asarray(y_val, dtype=int), method, self.random_state
        )
        return self

    @property
    def directions(self) -> dict[str, int]:
        """The monotone constraints (empty for models saved before they existed)."""
        return dict(getattr(self, "monotone", None) or {})

    @property
    def fill(self) -> dict[str, float]:
        """Missing-value fills applied before the booster (empty for models saved before them)."""
        return dict(getattr(self, "fill_", {}) or {})

    def encode(self, X: pd.DataFrame) -> pd.DataFrame:
        """``X`` as the booster sees it: the trained columns in order, categoricals on the
        training vocabulary (unseen values → missing)."""
        return encode_frame(X, list(self.feature_names_in_), self.categories_, self.fill)

    def _raw(self, X: pd.DataFrame) -> np.ndarray:
        return np.asarray(self.booster_.predict(self.encode(X), num_iteration=self.best_iteration_))

    def raw_proba(self, X: pd.DataFrame) -> np.ndarray:
        """Uncalibrated (class-weighted) probability of the positive class."""
        return self._raw(X)

    def margin(self, X: pd.DataFrame) -> np.ndarray:
        """The booster's raw log-odds (before calibration): the sum of the contributions."""
        return np.asarray(
            self.booster_.predict(
                self.encode(X), raw_score=True, num_iteration=self.best_iteration_
            )
        )

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        """Calibrated probabilities, shape ``(n, 2)``."""
        p = self.calibrator_(self._raw(X))
        return np.column_stack([1 - p, p])

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return (self.predict_proba(X)[:, 1] >= 0.5).astype(int)

    def contributions(self, X: pd.DataFrame) -> pd.DataFrame:
        """Exact TreeSHAP contributions in raw log-odds, one column per feature plus ``bias``."""
        values = self.booster_.predict(
            self.encode(X), num_iteration=self.best_iteration_, pred_contrib=True
        )
        return pd.DataFrame(values, index=X.index, columns=[*self.feature_names_in_, "bias"])

    def metadata(self) -> dict[str, Any]:
        """What a loader needs besides the booster: features, levels, calibrator."""
        return {
            "feature_names": list(self.feature_names_in_),
            "categories": self.categories_,
            "calibrator": self.calibrator_.to_dict(),
            "best_iteration": self.best_iteration_,
            "scale_pos_weight": self.scale_pos_weight_,
            "family": self.family,
            "monotone": self.directions,
        }

    @classmethod
    def from_parts(
        cls, booster: lgb.Booster, metadata: dict[str, Any], params: dict[str, Any] | None = None
    ) -> CalibratedBoostingClassifier:
        """Rebuild a fitted model from a saved booster and :meth:`metadata`."""
        model = cls(**(params or {}))
        model.booster_ = booster
        model.feature_names_in_ = np.asarray(metadata["feature_names"], dtype=object)
        model.n_features_in_ = len(model.feature_names_in_)
        model.classes_ = np.array([0, 1])
        model.categories_ = {k: list(v) for k, v in metadata["categories"].items()}
        model.calibrator_ = Calibrator.from_dict(metadata["calibrator"])
        model.calibration_losses_ = {}
        model.best_iteration_ = int(metadata["best_iteration"])
        model.scale_pos_weight_ = float(metadata.get("scale_pos_weight", 1.0))
        return model
