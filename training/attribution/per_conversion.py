"""Credit for each conversion: how much each channel and content item earned of one converted
journey, from a fitted conversion model, without fitting anything.

The credit of one conversion is the model-based Shapley credit of its journey
(:func:`training.attribution.model_shapley.model_shapley`): the journey's conversion and revenue
shared among its channels in proportion to their positive Shapley values of the model's
conversion probability (evenly when none is positive), and within a channel evenly over its
touches, so each touch's content item gets its part. A conversion's credit sums to that
conversion and its revenue; summed over every conversion of a run it is exactly the run's
``data_driven_shapley`` credit, which is defined journey by journey the same way.
"""

from __future__ import annotations

import pandas as pd

from training.attribution.data_driven import ConversionModel
from training.attribution.journeys import Journeys
from training.attribution.model_shapley import model_shapley


def touch_credit(journeys: Journeys, model: ConversionModel, seed: int = 0) -> pd.DataFrame:
    """Per touch of the converted journeys: ``journey_id``, ``position``, ``channel``,
    ``content_id`` (when the journeys carry content), ``touched_at`` (when they carry times),
    ``conversions`` and ``value`` credited to it by ``model``."""
    result = model_shapley(journeys, model, seed=seed)
    frame = journeys.touches_frame()
    frame["conversions"] = result.details["touch_conversions"]
    frame["value"] = result.details["touch_value"]
    converted = journeys.conversions[journeys.touch_journey] > 0
    return frame[converted].reset_index(drop=True)


def conversion_credit(journeys: Journeys, model: ConversionModel, seed: int = 0) -> pd.DataFrame:
    """Per converted journey and channel: ``journey_id``, ``channel``, ``conversions``,
    ``value`` and ``share`` (of the journey's credit; the shares of one journey sum to 1)."""
    touches = touch_credit(journeys, model, seed)
    per = (
        touches.groupby(["journey_id", "channel"], observed=True, sort=False)[
            ["conversions", "value"]
        ]
        .sum()
        .reset_index()
    )
    per["channel"] = per["channel"].astype(str)
    total = per.groupby("journey_id", sort=False)["conversions"].transform("sum")
    per["share"] = per["conversions"] / total.where(total > 0)
    return per
