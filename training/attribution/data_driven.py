"""Data-driven attribution: removal in a learned conversion model.

A gradient-boosted classifier learns the probability that a journey converts from how many
touches it had on each channel. By default its trees are stumps, so the model is additive in the
log-odds: one monotone curve per channel (a generalised additive model), which needs far fewer
journeys than a model of channel interactions. A converted journey then credits channel ``c``
with the share of its conversion the model says would be lost without that channel's touches,
``1 - p(journey without c) / p(journey)`` (never below 0), which is the counterfactual that the
simulator's ground truth also uses. The per-journey losses are summed per channel and scaled so
that the credit sums to the total conversions (and, weighting each journey by its revenue, to
the total revenue). Within a journey a channel's credit is split evenly over its touches, which
is how content items are credited.

The model is monotone by default: an extra touch never lowers the predicted probability, a
prior that keeps noise from producing negative credit. Identical journeys (same channel counts)
are pooled with weights before training, so a million journeys train on far fewer rows.
"""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd
from lightgbm import LGBMClassifier
from sklearn.metrics import roc_auc_score

from training.attribution.credit import Attribution, from_touch_credit, require_conversions
from training.attribution.journeys import Journeys


def journey_features(journeys: Journeys) -> np.ndarray:
    """Per journey, its number of touches on each channel: ``(n_journeys, n_channels)``."""
    n, k = journeys.n_journeys, len(journeys.channels)
    flat = journeys.touch_journey * k + journeys.channel
    return np.bincount(flat, minlength=n * k).reshape(n, k).astype(np.float64)


def _pool(features: np.ndarray, *weights: np.ndarray) -> tuple[np.ndarray, ...]:
    """Unique feature rows, the index of each row's unique row, and summed weights."""
    if len(features) == 0:
        return (features, np.zeros(0, dtype=np.int64), *(np.zeros(0) for _ in weights))
    frame = pd.DataFrame(features.astype(np.int64))
    inverse = frame.groupby(list(frame.columns), sort=False).ngroup().to_numpy()
    n_unique = int(inverse.max()) + 1
    first = np.full(n_unique, len(inverse), dtype=np.int64)
    np.minimum.at(first, inverse, np.arange(len(inverse)))
    pooled = tuple(np.bincount(inverse, weights=w, minlength=n_unique) for w in weights)
    return (features[first], inverse, *pooled)


def _training_rows(features: np.ndarray, conversions: np.ndarray, nulls: np.ndarray):
    unique, _, conv, null = _pool(features, conversions, nulls)
    x = np.vstack([unique, unique])
    y = np.concatenate([np.ones(len(unique)), np.zeros(len(unique))])
    w = np.concatenate([conv, null])
    keep = w > 0
    return x[keep], y[keep], w[keep]


def _classifier(
    n_features: int,
    monotone: bool,
    random_state: int,
    n_estimators: int,
    learning_rate: float,
    num_leaves: int,
    min_child_weight: float,
) -> LGBMClassifier:
    return LGBMClassifier(
        n_estimators=n_estimators,
        learning_rate=learning_rate,
        num_leaves=num_leaves,
        min_child_weight=min_child_weight,
        min_child_samples=1,
        monotone_constraints=[1] * n_features if monotone else None,
        random_state=random_state,
        n_jobs=1,  # threads only contend on small pooled data; one is faster and deterministic
        verbose=-1,
    )


def data_driven(
    journeys: Journeys,
    n_estimators: int = 300,
    learning_rate: float = 0.1,
    num_leaves: int = 2,
    min_child_weight: float = 20.0,
    monotone: bool = True,
    validation_fraction: float = 0.2,
    random_state: int = 0,
) -> Attribution:
    """Credit by removal of each channel in a learned conversion model.

    Args:
        journeys: the journeys to learn from and to credit.
        n_estimators: boosting rounds.
        learning_rate: boosting learning rate.
        num_leaves: leaves per tree; 2 (stumps, the default) makes the model additive in the
            log-odds, one curve per channel, which recovered the simulator's truth best.
        min_child_weight: minimum journeys (summed weight) in a leaf.
        monotone: constrain the probability to grow with every channel's touch count.
        validation_fraction: share of journeys held out once to report the model's ROC AUC
            (0 to skip); the credited model is refitted on all journeys.
        random_state: seed of the hold-out split and of the booster.

    Returns:
        Credit per channel and content item; ``details`` holds ``holdout_auc`` and
        ``removal_effects`` (per channel, the conversions lost in the model before scaling).
    """
    require_conversions(journeys)
    features = journey_features(journeys)
    has_touch = journeys.lengths > 0
    conversions = np.where(has_touch, journeys.conversions, 0.0)
    nulls = np.where(has_touch, journeys.nulls, 0.0)
    n_channels = features.shape[1]
    make = functools.partial(
        _classifier,
        n_channels,
        monotone=monotone,
        random_state=random_state,
        n_estimators=n_estimators,
        learning_rate=learning_rate,
        num_leaves=num_leaves,
        min_child_weight=min_child_weight,
    )
    details: dict[str, object] = {}
    if validation_fraction > 0:
        rng = np.random.default_rng(random_state)
        held = rng.random(journeys.n_journeys) < validation_fraction
        x, y, w = _training_rows(features[~held], conversions[~held], nulls[~held])
        hx, hy, hw = _training_rows(features[held], conversions[held], nulls[held])
        if len(np.unique(y)) == 2 and len(np.unique(hy)) == 2:
            probe = make().fit(x, y, sample_weight=w)
            details["holdout_auc"] = float(
                roc_auc_score(hy, _positive(probe, hx), sample_weight=hw)
            )
    x, y, w = _training_rows(features, conversions, nulls)
    # When every journey converted there is no contrast to learn from: no touch changes the odds.
    model = make().fit(x, y, sample_weight=w) if len(np.unique(y)) == 2 else None

    converted = np.flatnonzero(conversions > 0)
    unique, inverse, _ = _pool(features[converted], conversions[converted])
    if model is None:
        lost = np.zeros_like(unique)
    else:
        base = _positive(model, unique)
        lost = np.zeros_like(unique)
        for c in range(n_channels):
            has = unique[:, c] > 0
            if not has.any():
                continue
            removed = unique[has].copy()
            removed[:, c] = 0
            without = _positive(model, removed)
            lost[has, c] = np.clip(1.0 - without / base[has], 0.0, 1.0)
    journey_lost = lost[inverse]  # per converted journey and channel, the fraction lost
    present = (features[converted] > 0).astype(float)
    even = present / np.maximum(present.sum(axis=1, keepdims=True), 1.0)
    conv_total = float(conversions.sum())
    value_total = float(journeys.value[converted].sum())
    details["removal_effects"] = (journey_lost * conversions[converted][:, None]).sum(axis=0)
    # When the model sees no channel matter (e.g. every journey converted), split evenly.
    conv_lost, conv_scale, conv_even = _credit(
        journey_lost, even, conversions[converted], conv_total
    )
    value_lost, value_scale, _ = _credit(journey_lost, even, journeys.value[converted], value_total)
    details["fallback"] = conv_even

    # Spread each (journey, channel) credit evenly over that channel's touches in the journey.
    row_of_journey = np.full(journeys.n_journeys, -1)
    row_of_journey[converted] = np.arange(len(converted))
    touch_row = row_of_journey[journeys.touch_journey]
    on = touch_row >= 0
    touch_conv = np.zeros(journeys.n_touches)
    touch_value = np.zeros(journeys.n_touches)
    rows, channel = touch_row[on], journeys.channel[on]
    count = features[converted][rows, channel]
    touch_conv[on] = conv_lost[rows, channel] / count * conv_scale
    touch_value[on] = value_lost[rows, channel] / count * value_scale
    return from_touch_credit(journeys, "data_driven", touch_conv, touch_value, details)


def _positive(model: LGBMClassifier, x: np.ndarray) -> np.ndarray:
    """Predicted probability of conversion."""
    return np.asarray(model.predict_proba(x))[:, 1]


def _credit(
    fraction: np.ndarray, even: np.ndarray, weight: np.ndarray, total: float
) -> tuple[np.ndarray, float, bool]:
    """Weighted lost fractions and the factor scaling them to ``total``; even split if none."""
    lost = fraction * weight[:, None]
    raw = float(lost.sum())
    if raw > 0:
        return lost, total / raw, False
    lost = even * weight[:, None]
    raw = float(lost.sum())
    return lost, (total / raw if raw > 0 else 0.0), True
