"""The counterfactual removal truth of attribution, as tables: what each channel and item caused.

Holding every random draw fixed, removing a channel's (or a content item's) touches can only lower
the conversion hazard, so the truth is computed exactly by re-running each lead's clock without
them (:meth:`simulator.conversion.LeadProcess.counterfactual_truth`): conversions lost, and their
revenue. Here those counts become the ``attribution_channels`` and ``attribution_content`` truth.
"""

from __future__ import annotations

import pandas as pd


def removal_tables(
    channel_rows: list[tuple[str, float, int, float]],
    content_rows: list[tuple[str, int, float]],
    touch_attributed: int,
    touch_attributed_value: float,
) -> dict[str, pd.DataFrame]:
    """Removal shares and credited conversions per channel and per content item.

    Args:
        channel_rows: per channel, its name, effect weight, conversions lost and value lost when
            its touches are removed.
        content_rows: per content item, its id, conversions lost and value lost.
        touch_attributed: conversions lost when every touch is removed: those touches cause.
        touch_attributed_value: their revenue.

    Returns:
        ``{"channels": ..., "content": ...}``, each with the removal ``share``/``value_share`` and
        the touch-caused conversions (revenue) split by them.
    """
    channels = pd.DataFrame(
        channel_rows, columns=["channel", "effect_weight", "conversions_lost", "value_lost"]
    )
    items = pd.DataFrame(content_rows, columns=["content_id", "conversions_lost", "value_lost"])
    for frame in (channels, items):
        total, total_value = frame["conversions_lost"].sum(), frame["value_lost"].sum()
        frame["share"] = frame["conversions_lost"] / total if total else 0.0
        frame["value_share"] = frame["value_lost"] / total_value if total_value else 0.0
        # the conversions (revenue) that touches cause, split by the removal shares
        frame["credited_conversions"] = frame["share"] * touch_attributed
        frame["credited_value"] = frame["value_share"] * touch_attributed_value
    return {"channels": channels, "content": items}
