"""The learners a journey conversion model can be: boosting, logistic regression, or both.

Each takes a journey feature matrix (:mod:`training.attribution.journey_features`) with 0/1
labels and weights, and gives conversion probabilities. ``fit`` with a held-out set also records
the held-out log-loss per boosting round (``curve_``), which the cross-validation reads to choose
the number of rounds.

* :class:`Boosted`: LightGBM, monotone in the touch counts (an extra touch never lowers the
  probability). Stumps keep it additive in the log-odds; more leaves let features interact.
* :class:`Logistic`: scikit-learn's L2 logistic regression on standardised features, with
  ``log(1 + count)`` beside each count so repeats can saturate and recency as
  ``1 / (1 + days)`` (0 when absent). Additive, and it fits every small effect at once, where
  boosting stopped early leaves a frequent channel's small per-touch effect short.
* :class:`NoisyOr`: an additive-hazard model, ``p = 1 - exp(-h)`` with non-negative effects:
  each touch an independent cause (the probabilistic multi-touch attribution model).
"""

from __future__ import annotations

import numpy as np
from lightgbm import LGBMClassifier, early_stopping
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from training.attribution.journey_features import count_columns

LEARNING_RATE = 0.1
MAX_ROUNDS = 400
PATIENCE = 40

HeldOut = tuple[np.ndarray, np.ndarray, np.ndarray]


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def logistic_input(x: np.ndarray, feature_set: str, n_channels: int) -> np.ndarray:
    """Features as the logistic regression takes them (see :class:`Logistic`)."""
    x = np.array(x, dtype=np.float64)
    if feature_set == "sequence":
        recency = x[:, 3 * n_channels : 4 * n_channels]
        x[:, 3 * n_channels : 4 * n_channels] = np.nan_to_num(1.0 / (1.0 + recency), nan=0.0)
    saturation = np.log1p(x[:, :n_channels])
    a, b = np.triu_indices(n_channels, k=1)
    return np.hstack([x, saturation, saturation[:, a] * saturation[:, b]])


class Boosted:
    """Gradient-boosted trees, monotone in the touch counts."""

    def __init__(
        self,
        feature_set: str,
        n_channels: int,
        num_leaves: int = 2,
        min_child_weight: float = 20.0,
        rounds: int = MAX_ROUNDS,
        seed: int = 0,
    ) -> None:
        self.feature_set = feature_set
        self.n_channels = n_channels
        self.num_leaves = num_leaves
        self.min_child_weight = min_child_weight
        self.rounds = rounds
        self.seed = seed

    def _booster(self, n_features: int) -> LGBMClassifier:
        monotone = np.zeros(n_features, dtype=int)
        monotone[count_columns(self.feature_set, self.n_channels)] = 1
        return LGBMClassifier(
            n_estimators=self.rounds,
            learning_rate=LEARNING_RATE,
            num_leaves=self.num_leaves,
            min_child_weight=self.min_child_weight,
            min_child_samples=1,
            monotone_constraints=monotone.tolist(),
            random_state=self.seed,
            n_jobs=1,  # threads only contend on pooled data this small; one is also deterministic
            verbose=-1,
        )

    def fit(
        self, x: np.ndarray, y: np.ndarray, w: np.ndarray, held_out: HeldOut | None = None
    ) -> Boosted:
        self.booster_ = self._booster(x.shape[1])
        kwargs: dict = {"sample_weight": w}
        if held_out is not None:
            hx, hy, hw = held_out
            kwargs.update(
                eval_X=(hx,),
                eval_y=(hy,),
                eval_sample_weight=[hw],
                callbacks=[early_stopping(PATIENCE, verbose=False)],
            )
        self.booster_.fit(x, y, **kwargs)
        if held_out is not None:
            self.curve_ = np.asarray(self.booster_.evals_result_["valid_0"]["binary_logloss"])
        return self

    def probability(self, x: np.ndarray, rounds: int | None = None) -> np.ndarray:
        return np.asarray(self.booster_.predict_proba(x, num_iteration=rounds))[:, 1]


class Logistic:
    """L2 logistic regression on standardised features (one "round")."""

    def __init__(self, feature_set: str, n_channels: int, l2: float = 1.0, seed: int = 0) -> None:
        self.feature_set = feature_set
        self.n_channels = n_channels
        self.l2 = l2
        self.seed = seed

    def _pipeline(self) -> Pipeline:
        return make_pipeline(
            StandardScaler(),
            LogisticRegression(C=self.l2, max_iter=2000, tol=1e-3, random_state=self.seed),
        )

    def fit(
        self, x: np.ndarray, y: np.ndarray, w: np.ndarray, held_out: HeldOut | None = None
    ) -> Logistic:
        self.pipeline_ = self._pipeline().fit(
            logistic_input(x, self.feature_set, self.n_channels),
            y,
            logisticregression__sample_weight=w,
        )
        if held_out is not None:
            hx, hy, hw = held_out
            self.curve_ = np.array([log_loss(hy, self.probability(hx), sample_weight=hw)])
        return self

    def decision(self, x: np.ndarray) -> np.ndarray:
        """Log-odds of conversion."""
        lx = logistic_input(x, self.feature_set, self.n_channels)
        return np.asarray(self.pipeline_.decision_function(lx))

    def probability(self, x: np.ndarray, rounds: int | None = None) -> np.ndarray:
        del rounds
        return _sigmoid(self.decision(x))


def hazard_input(x: np.ndarray, feature_set: str, n_channels: int) -> np.ndarray:
    """Non-negative features for :class:`NoisyOr`: counts and ``log(1 + count)``; with the
    sequence set also first, last, the exposures and pair order (recency enters through the
    exposures)."""
    x = np.nan_to_num(np.asarray(x, dtype=np.float64), nan=0.0)
    counts = x[:, :n_channels]
    if feature_set != "sequence":  # counts; or order: first and pair order after the counts
        return np.hstack([counts, np.log1p(counts), x[:, n_channels:]])
    first_last = x[:, n_channels : 3 * n_channels]
    rest = x[:, 4 * n_channels :]  # exposures, then pair order
    return np.hstack([counts, np.log1p(counts), first_last, rest])


class NoisyOr:
    """A noisy-OR (additive hazard) model: ``p = 1 - exp(-(b + sum_f beta_f x_f))`` with every
    ``beta_f >= 0``, fitted by maximum weighted likelihood (scipy's L-BFGS-B with bounds; a
    small L2 penalty). Each touch feature is an independent cause that can only add to the
    chance of conversion, the model of probabilistic multi-touch attribution."""

    def __init__(self, feature_set: str, n_channels: int, l2: float = 1e-4) -> None:
        self.feature_set = feature_set
        self.n_channels = n_channels
        self.l2 = l2

    def _z(self, x: np.ndarray) -> np.ndarray:
        return hazard_input(x, self.feature_set, self.n_channels) / self.scale_

    def fit(
        self, x: np.ndarray, y: np.ndarray, w: np.ndarray, held_out: HeldOut | None = None
    ) -> NoisyOr:
        from scipy.optimize import minimize

        raw = hazard_input(x, self.feature_set, self.n_channels)
        self.scale_ = np.maximum(raw.max(axis=0), 1e-12)
        z = raw / self.scale_
        total = float(w.sum())
        positive = y > 0

        def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
            h = np.maximum(theta[0] + z @ theta[1:], 1e-10)
            loss = np.where(positive, -np.log(-np.expm1(-h)), h)
            slope = np.where(positive, -1.0 / np.expm1(h), 1.0) * w
            value = float(w @ loss) / total + self.l2 * float(theta[1:] @ theta[1:])
            grad = np.r_[slope.sum(), z.T @ slope] / total
            grad[1:] += 2 * self.l2 * theta[1:]
            return value, grad

        rate = float(w[positive].sum()) / total
        start = np.r_[-np.log(max(1.0 - rate, 1e-6)) * 0.5, np.full(z.shape[1], 1e-3)]
        bounds = [(1e-8, None)] + [(0.0, None)] * z.shape[1]
        # a relative change of 1e-8 in a log-loss near 0.3 is far below any difference the
        # cross-validation can see; the default (2e-9) only adds iterations
        # one BLAS thread: each step's two matrix-vector products are too short to gain from
        # more and lose to their synchronisation (the cross-validation of a 120k-journey family:
        # 12 s on one thread, 17 s on two alone, 31 s on two beside another busy process)
        with threadpool_limits(limits=1, user_api="blas"):
            result = minimize(
                objective,
                start,
                jac=True,
                method="L-BFGS-B",
                bounds=bounds,
                options={"ftol": 1e-8, "maxiter": 2000},
            )
        self.theta_ = result.x
        if held_out is not None:
            hx, hy, hw = held_out
            self.curve_ = np.array([log_loss(hy, self.probability(hx), sample_weight=hw)])
        return self

    def probability(self, x: np.ndarray, rounds: int | None = None) -> np.ndarray:
        del rounds
        h = self.theta_[0] + self._z(x) @ self.theta_[1:]
        return np.clip(-np.expm1(-h), 1e-12, 1 - 1e-12)
