"""Data-driven attribution: removal in a learned conversion model, chosen by cross-validation.

A model learns the probability that a journey converts. Its form is chosen from a few candidates
(:data:`CANDIDATES`, simplest first: boosted stumps on touch counts; a noisy-OR, a logistic
regression and boosted trees on order, repeats and recency) by the **cross-validated conversion
log-likelihood on the journeys themselves**: journeys are split into folds (a path row's counts
split among the folds, so every fold holds journeys, not paths), each candidate is fitted on all
folds but one and scored on the one left out (boosting also picks its rounds there), and the
simplest candidate within one standard error of the best held-out log-loss wins. That criterion
exists on real data; no truth is used. Journeys built from the CRM's interactions end at their
conversion, so there the candidates see order and repeats but nothing measured from the end
(:func:`for_journeys`).

A converted journey then credits channel ``c`` with the share of its conversion the model says
would be lost without ``c``'s touches, ``1 - p(journey without c) / p(journey)``, the journey's
features recomputed without those touches (the counterfactual the simulators' truth also uses).
The losses are summed per channel (signed, so that noise around a channel of no effect cancels
instead of piling up), a channel's negative sum counts as 0, and the credit is scaled to sum to
the total conversions (and, weighting each journey by its revenue, to the total revenue). Within
a journey a channel's credit is split evenly over its touches, which is how content items are
credited. Identical feature rows are pooled with weights before training, so a million journeys
without times train on far fewer rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from training.attribution.conversion_learners import (
    MAX_ROUNDS,
    Boosted,
    Logistic,
    NoisyOr,
)
from training.attribution.credit import Attribution, from_touch_credit, require_conversions
from training.attribution.journey_features import (
    days_before_last_touch,
    feature_names,
    journey_matrix,
)
from training.attribution.journeys import Journeys

LEARNER_NAMES = {
    "boosted": "boosted trees",
    "logistic": "logistic regression",
    "noisy_or": "noisy-OR",
}
FEATURE_SET_NAMES = {
    "counts": "touch counts",
    "order": "order and repeats",
    "sequence": "order, repeats and recency",
}


@dataclass(frozen=True)
class Candidate:
    """A conversion model the cross-validation may choose.

    Attributes:
        feature_set: ``"counts"`` or ``"sequence"`` (see :mod:`journey_features`).
        learner: ``"boosted"``, ``"logistic"`` or ``"noisy_or"`` (see
            :mod:`training.attribution.conversion_learners`).
        num_leaves: boosting: leaves per tree; 2 (stumps) keeps the model additive in the
            log-odds; more lets features interact (a pair's order, targeting, saturation).
        min_child_weight: boosting: minimum summed hessian in a leaf.
        l2: logistic: inverse strength ``C`` of the L2 penalty.
    """

    feature_set: str
    learner: str = "boosted"
    num_leaves: int = 2
    min_child_weight: float = 20.0
    l2: float = 1.0

    @property
    def name(self) -> str:
        """How reports name it, e.g. "noisy-OR on order, repeats and recency"."""
        learner = LEARNER_NAMES[self.learner]
        if self.learner == "boosted":
            learner = "boosted stumps" if self.num_leaves == 2 else "boosted trees"
        return f"{learner} on {FEATURE_SET_NAMES[self.feature_set]}"

    def learner_for(self, n_channels: int, rounds: int, seed: int) -> Any:
        if self.learner == "logistic":
            return Logistic(self.feature_set, n_channels, self.l2, seed)
        if self.learner == "noisy_or":
            return NoisyOr(self.feature_set, n_channels)
        if self.learner == "boosted":
            return Boosted(
                self.feature_set, n_channels, self.num_leaves, self.min_child_weight, rounds, seed
            )
        raise ValueError(f"unknown learner {self.learner!r}")


CANDIDATES: tuple[Candidate, ...] = (  # simplest first: the one-standard-error rule's order
    Candidate("counts"),
    Candidate("sequence", "noisy_or"),
    Candidate("sequence", "logistic"),
    Candidate("sequence", "boosted", num_leaves=8),
)


@dataclass(eq=False)
class ConversionModel:
    """A fitted conversion model over journeys: the chosen candidate and its booster.

    ``cross_validation`` holds one row per candidate: ``candidate``, ``rounds`` (best),
    ``cv_log_loss`` (mean per journey at that round), ``standard_error`` (of that mean),
    ``minus_chosen`` (its held-out log-loss minus the chosen candidate's, per journey) and
    ``paired_standard_error`` (of that difference over the same journeys and folds, far smaller
    than either standard error alone: it says whether the likelihood really tells the two forms
    apart), ``chosen``.
    """

    candidate: Candidate
    channels: tuple[str, ...]
    timed: bool
    classifier: Any
    rounds: int
    cv_log_loss: float
    cv_auc: float
    cross_validation: pd.DataFrame = field(default_factory=pd.DataFrame)

    @property
    def feature_names(self) -> list[str]:
        return feature_names(self.candidate.feature_set, self.channels, self.timed)

    def probability(
        self, journeys: Journeys, keep: np.ndarray | None = None, days: np.ndarray | None = None
    ) -> np.ndarray:
        """Per journey, the predicted probability of conversion (from the touches where
        ``keep``); a model that saw only converting journeys predicts 1."""
        if self.classifier is None:
            return np.ones(journeys.n_journeys)
        x = journey_matrix(journeys, self.candidate.feature_set, keep, days)
        return self.classifier.probability(x)


def with_channels(journeys: Journeys, channels: tuple[str, ...]) -> Journeys:
    """``journeys`` with channel codes of ``channels`` (a model's); a channel the model never
    saw counts as no touch."""
    if tuple(journeys.channels) == tuple(channels):
        return journeys
    code = np.array([channels.index(c) if c in channels else -1 for c in journeys.channels])
    mapped = code[journeys.channel]
    keep = mapped >= 0
    kept = np.r_[0, np.cumsum(keep.astype(np.int64))]
    lengths = kept[journeys.offsets[1:]] - kept[journeys.offsets[:-1]]
    return replace(
        journeys,
        offsets=np.r_[0, np.cumsum(lengths)].astype(journeys.offsets.dtype),
        channel=mapped[keep].astype(np.int32),
        channels=tuple(channels),
        content=None if journeys.content is None else journeys.content[keep],
        touched_at=None if journeys.touched_at is None else journeys.touched_at[keep],
    )


def _pool(x: np.ndarray, *weights: np.ndarray) -> tuple[np.ndarray, ...]:
    """Unique rows of ``x`` and the summed weights of their duplicates."""
    if len(x) == 0:
        return (x, *(np.zeros(0) for _ in weights))
    hashes = pd.util.hash_pandas_object(pd.DataFrame(x), index=False).to_numpy()
    _, first, inverse = np.unique(hashes, return_index=True, return_inverse=True)
    return (x[first], *(np.bincount(inverse, weights=w, minlength=len(first)) for w in weights))


def _rows(x: np.ndarray, conversions: np.ndarray, nulls: np.ndarray):
    """Training rows: each feature row once as converted (weight: conversions) and once as not
    (weight: nulls), rows of weight 0 left out."""
    unique, conv, null = _pool(x, conversions, nulls)
    rows = np.vstack([unique[conv > 0], unique[null > 0]])
    y = np.r_[np.ones(int((conv > 0).sum())), np.zeros(int((null > 0).sum()))]
    return rows, y, np.r_[conv[conv > 0], null[null > 0]]


def journey_folds(
    conversions: np.ndarray, nulls: np.ndarray, folds: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per row and fold, the conversions and non-conversions that fall in that fold.

    A row with integer counts (a lead, or a path row standing for many journeys) has its
    journeys split among the folds at random; rows with fractional weights go whole to one fold.
    """
    rng = np.random.default_rng(seed)
    even = np.full(folds, 1.0 / folds)
    integral = np.all(conversions == np.round(conversions)) and np.all(nulls == np.round(nulls))
    if integral:
        conv = rng.multinomial(conversions.astype(np.int64), even).astype(np.float64)
        null = rng.multinomial(nulls.astype(np.int64), even).astype(np.float64)
        return conv, null
    one = np.eye(folds)[rng.integers(folds, size=len(conversions))]
    return one * conversions[:, None], one * nulls[:, None]


@dataclass
class _Scored:
    """A candidate's cross-validation: best rounds, mean held-out log-loss, per-row held-out
    losses (summed over the row's journeys) and held-out predictions for the AUC."""

    candidate: Candidate
    rounds: int
    loss: float
    row_loss: np.ndarray
    held_out: tuple[np.ndarray, np.ndarray, np.ndarray]


def _cross_validate(
    candidate: Candidate,
    x: np.ndarray,
    conv: np.ndarray,
    null: np.ndarray,
    n_channels: int,
    seed: int,
) -> _Scored | None:
    """Fit on all folds but one, score the one left out, for every fold; None when a fold has
    only one outcome."""
    folds = conv.shape[1]
    fitted = []
    for fold in range(folds):
        train_conv = conv.sum(axis=1) - conv[:, fold]
        train_null = null.sum(axis=1) - null[:, fold]
        tx, ty, tw = _rows(x, train_conv, train_null)
        hx, hy, hw = _rows(x, conv[:, fold], null[:, fold])
        if len(np.unique(ty)) < 2 or len(np.unique(hy)) < 2:
            return None
        model = candidate.learner_for(n_channels, MAX_ROUNDS, seed)
        fitted.append(model.fit(tx, ty, tw, held_out=(hx, hy, hw)))
    shortest = min(len(m.curve_) for m in fitted)
    weights = conv.sum(axis=0) + null.sum(axis=0)
    curve = np.sum([m.curve_[:shortest] * w for m, w in zip(fitted, weights, strict=True)], axis=0)
    curve = curve / weights.sum()
    rounds = int(np.argmin(curve)) + 1
    row_loss = np.zeros(len(x))
    ys, ps, ws = [], [], []
    for fold, model in enumerate(fitted):
        p = np.clip(model.probability(x, rounds), 1e-12, 1 - 1e-12)
        row_loss += -conv[:, fold] * np.log(p) - null[:, fold] * np.log1p(-p)
        ys += [np.ones(len(x)), np.zeros(len(x))]
        ps += [p, p]
        ws += [conv[:, fold], null[:, fold]]
    held = (np.concatenate(ys), np.concatenate(ps), np.concatenate(ws))
    return _Scored(candidate, rounds, float(curve[rounds - 1]), row_loss, held)


def _standard_error(values: np.ndarray, weight: np.ndarray) -> float:
    """Standard error of the weighted mean per-journey value (e.g. held-out log-loss), with the
    rows (a lead's journey, or a path row and the journeys it stands for) as units."""
    total = weight.sum()
    mean = values.sum() / total
    n = int((weight > 0).sum())
    if n < 2:
        return 0.0
    residual = values - mean * weight
    return float(np.sqrt(n / (n - 1) * (residual**2).sum()) / total)


def for_journeys(candidate: Candidate, journeys: Journeys) -> Candidate:
    """The candidate as it applies to these journeys: journeys that end at their conversion
    (built from the CRM's interactions) get the ``order`` features instead of ``sequence``.
    Their last touches are the ones a conversion followed, by construction, while the others
    end wherever their touches stop; features measured from the end (last touch, recency,
    exposure) would tell the model the outcome, not what caused it."""
    if candidate.feature_set == "sequence" and journeys.ends_at_conversion:
        return replace(candidate, feature_set="order")
    return candidate


def _touched_outcomes(journeys: Journeys) -> tuple[np.ndarray, np.ndarray]:
    """Per journey its conversions and non-conversions, 0 for journeys without a touch: they
    have nothing to credit and tell a model only the base rate."""
    has_touch = journeys.lengths > 0
    return (
        np.where(has_touch, journeys.conversions, 0.0),
        np.where(has_touch, journeys.nulls, 0.0),
    )


def fit_conversion_model(
    journeys: Journeys,
    candidates: tuple[Candidate, ...] = CANDIDATES,
    folds: int = 3,
    seed: int = 0,
) -> ConversionModel:
    """Choose among ``candidates`` by cross-validated log-likelihood and refit on all journeys.

    The rule is the one-standard-error rule (Breiman et al.'s for CART, glmnet's
    ``lambda.1se``): the first candidate, in the order given (simplest first), whose held-out
    log-loss is within one standard error of the best one's (the standard error of the best
    one's mean held-out log-loss per journey). A more complex form has to predict unseen
    journeys better by more than the estimate's own noise to be chosen.

    Journeys without a touch are left out: they have nothing to credit and tell the model only
    the base rate.
    """
    conversions, nulls = _touched_outcomes(journeys)
    n_channels = len(journeys.channels)
    split_conv, split_null = journey_folds(conversions, nulls, folds, seed)
    days = days_before_last_touch(journeys)
    timed = days is not None
    matrices: dict[str, np.ndarray] = {}
    scored: list[_Scored] = []
    for template in candidates:
        candidate = for_journeys(template, journeys)
        if candidate.feature_set not in matrices:
            matrices[candidate.feature_set] = journey_matrix(
                journeys, candidate.feature_set, days=days
            ).astype(np.float32)
        x = matrices[candidate.feature_set]
        result = _cross_validate(candidate, x, split_conv, split_null, n_channels, seed)
        if result is not None:
            scored.append(result)
    columns = [
        "candidate",
        "rounds",
        "cv_log_loss",
        "standard_error",
        "minus_chosen",
        "paired_standard_error",
        "chosen",
    ]
    if not scored:  # every journey converted (or none did): no contrast to learn from
        table = pd.DataFrame(columns=columns)
        return ConversionModel(
            CANDIDATES[0], journeys.channels, timed, None, 0, np.nan, np.nan, table
        )
    weight = conversions + nulls
    best = min(scored, key=lambda r: r.loss)
    error = _standard_error(best.row_loss, weight)
    chosen = next(r for r in scored if r.loss <= best.loss + error)
    table = pd.DataFrame(
        [
            (
                r.candidate.name,
                r.rounds,
                r.loss,
                _standard_error(r.row_loss, weight),
                float((r.row_loss - chosen.row_loss).sum() / weight.sum()),
                _standard_error(r.row_loss - chosen.row_loss, weight),
                r is chosen,
            )
            for r in scored
        ],
        columns=columns,
    )
    y, p, w = chosen.held_out
    auc = float(roc_auc_score(y, p, sample_weight=w))
    tx, ty, tw = _rows(matrices[chosen.candidate.feature_set], conversions, nulls)
    model = chosen.candidate.learner_for(n_channels, chosen.rounds, seed).fit(tx, ty, tw)
    return ConversionModel(
        chosen.candidate, journeys.channels, timed, model, chosen.rounds, chosen.loss, auc, table
    )


def refit(model: ConversionModel, journeys: Journeys, seed: int = 0) -> ConversionModel:
    """The same candidate with the same rounds, fitted on other journeys (a bootstrap sample):
    no cross-validation, so the replicate varies the data and not the choice."""
    if model.classifier is None:
        return model
    k = len(journeys.channels)
    x = journey_matrix(journeys, model.candidate.feature_set).astype(np.float32)
    tx, ty, tw = _rows(x, *_touched_outcomes(journeys))
    if len(np.unique(ty)) < 2:
        return replace(model, classifier=None)
    learner = model.candidate.learner_for(k, model.rounds, seed)
    return replace(model, classifier=learner.fit(tx, ty, tw))


def removal_fractions(model: ConversionModel, journeys: Journeys) -> np.ndarray:
    """Per journey and channel, ``1 - p(journey without the channel) / p(journey)``, signed;
    0 where the journey has no touch of the channel."""
    n, k = journeys.n_journeys, len(journeys.channels)
    lost = np.zeros((n, k))
    if model.classifier is None or n == 0:
        return lost
    days = days_before_last_touch(journeys)
    base = model.probability(journeys, days=days)
    present = journey_matrix(journeys, "counts") > 0
    for c in range(k):
        has = present[:, c]
        if not has.any():
            continue
        without = model.probability(journeys, keep=journeys.channel != c, days=days)
        lost[has, c] = 1.0 - without[has] / base[has]
    return lost


def converted_journeys(journeys: Journeys) -> tuple[np.ndarray, Journeys]:
    """The indices of the converted journeys with a touch (the ones credit goes to), and those
    journeys alone."""
    is_converted = (journeys.conversions > 0) & (journeys.lengths > 0)
    return np.flatnonzero(is_converted), journeys.select(is_converted)


def credit_from_fractions(
    journeys: Journeys,
    model_name: str,
    converted: np.ndarray,
    subset: Journeys,
    lost: np.ndarray,
    details: dict,
    per_journey: bool = False,
) -> Attribution:
    """Credit from per-journey lost fractions of the converted journeys (``converted`` and
    ``subset`` from :func:`converted_journeys`; rows of ``lost``).

    By default a channel's credit is its weighted sum of lost fractions, a negative sum counting
    as 0; within the channel it goes to the journeys where its fraction is positive, and within
    a journey evenly to the channel's touches; scaled to the total conversions (revenue).
    ``per_journey``: each journey's own conversions (revenue) are shared among its channels in
    proportion to their positive fractions (evenly when none is positive), so a conversion's
    credit sums to that conversion and the totals are the sums over conversions.
    """
    counts = journey_matrix(subset, "counts")
    present = (counts > 0).astype(float)
    even = present / np.maximum(present.sum(axis=1, keepdims=True), 1.0)
    weight_conv = journeys.conversions[converted]
    weight_value = journeys.value[converted]
    if per_journey:
        positive = np.clip(lost, 0.0, None)
        total = positive.sum(axis=1, keepdims=True)
        share = np.where(total > 0, positive / np.where(total > 0, total, 1.0), even)
        conv_lost = share * weight_conv[:, None] / max(weight_conv.sum(), 1e-300)
        value_lost = share * weight_value[:, None] / max(weight_value.sum(), 1e-300)
        details["fallback"] = bool((total[:, 0] <= 0).any())
    else:
        conv_lost, conv_even = _credit(lost, even, weight_conv)
        value_lost, _ = _credit(lost, even, weight_value)
        details["fallback"] = conv_even
    details["removal_effects"] = (lost * weight_conv[:, None]).sum(axis=0)
    details["channels"] = list(journeys.channels)

    row_of_journey = np.full(journeys.n_journeys, -1)
    row_of_journey[converted] = np.arange(len(converted))
    touch_row = row_of_journey[journeys.touch_journey]
    on = touch_row >= 0
    touch_conv = np.zeros(journeys.n_touches)
    touch_value = np.zeros(journeys.n_touches)
    rows, channel = touch_row[on], journeys.channel[on]
    count = counts[rows, channel]
    touch_conv[on] = conv_lost[rows, channel] / count * weight_conv.sum()
    touch_value[on] = value_lost[rows, channel] / count * weight_value.sum()
    details["touch_conversions"] = touch_conv
    details["touch_value"] = touch_value
    return from_touch_credit(journeys, model_name, touch_conv, touch_value, details)


def _credit(fraction: np.ndarray, even: np.ndarray, weight: np.ndarray) -> tuple[np.ndarray, bool]:
    """Per (journey, channel), its part of the whole credit (summing to 1); ``True`` when no
    channel had a positive effect and the credit was split evenly instead."""
    signed = fraction * weight[:, None]
    per_channel = np.clip(signed.sum(axis=0), 0.0, None)
    positive = np.clip(signed, 0.0, None)
    spread = positive.sum(axis=0)
    if per_channel.sum() > 0:
        part = np.divide(positive, spread, out=np.zeros_like(positive), where=spread > 0)
        part = part * per_channel / per_channel.sum()
        return part, False
    lost = even * weight[:, None]
    total = float(lost.sum())
    return (lost / total if total > 0 else lost), True


def data_driven(
    journeys: Journeys,
    candidates: tuple[Candidate, ...] = CANDIDATES,
    folds: int = 3,
    random_state: int = 0,
    model: ConversionModel | None = None,
) -> Attribution:
    """Credit by removal of each channel in the conversion model chosen by cross-validation.

    Args:
        journeys: the journeys to learn from and to credit.
        candidates: the models the cross-validation chooses from.
        folds: cross-validation folds.
        random_state: seed of the folds and of the booster.
        model: an already fitted conversion model to credit with (no fitting then).

    Returns:
        Credit per channel and content item; ``details`` holds ``model`` (the chosen candidate),
        ``cv_log_loss``, ``cv_auc`` (held-out ROC AUC at the chosen round),
        ``cross_validation`` (every candidate's figures), ``conversion_model`` and
        ``removal_effects`` (per channel, the conversions lost in the model before scaling).
    """
    require_conversions(journeys)
    if model is None:
        model = fit_conversion_model(journeys, candidates, folds, random_state)
    converted, subset = converted_journeys(journeys)
    lost = removal_fractions(model, subset)
    details: dict[str, object] = {
        "model": model.candidate.name,
        "cv_log_loss": model.cv_log_loss,
        "cv_auc": model.cv_auc,
        "cross_validation": model.cross_validation,
        "conversion_model": model,
    }
    return credit_from_fractions(journeys, "data_driven", converted, subset, lost, details)
