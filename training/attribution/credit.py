"""The result every attribution model returns, and the helpers that build it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from training.attribution.errors import EmptyJourneysError
from training.attribution.journeys import NO_CONTENT, Journeys

CREDIT_COLUMNS = ("conversions", "value", "share", "value_share")


@dataclass(frozen=True)
class Attribution:
    """Credit one model gives each channel and each content item.

    Attributes:
        model: model name, e.g. ``"markov_1"``.
        channels: one row per channel seen in the journeys: ``channel``, ``conversions``
            (credited), ``value`` (credited revenue), ``share`` (of conversions) and
            ``value_share``; sampled models add ``std_error`` (of ``conversions``).
        content: the same per content item (``content_id``), with touches that carried no
            content under :data:`NO_CONTENT`; empty when the journeys have no content.
        details: model-specific figures (removal effects, sampling error, fit metrics).
    """

    model: str
    channels: pd.DataFrame
    content: pd.DataFrame
    details: Mapping[str, Any] = field(default_factory=dict)

    @property
    def by_channel(self) -> pd.DataFrame:
        """``channels`` indexed by channel name (a string)."""
        return self.channels.set_index(self.channels["channel"].astype(str))


def require_conversions(journeys: Journeys) -> None:
    """Raise :class:`EmptyJourneysError` when there is nothing to credit."""
    if journeys.n_journeys == 0 or journeys.n_touches == 0:
        raise EmptyJourneysError(f"{journeys.source or 'journeys'}: no journey has a touch")
    if journeys.total_conversions <= 0:
        raise EmptyJourneysError(
            f"{journeys.source or 'journeys'}: no conversions to credit "
            f"({journeys.n_journeys} journey(s), all without a conversion)"
        )


def _shares(values: np.ndarray) -> np.ndarray:
    total = values.sum()
    return values / total if total > 0 else np.zeros_like(values)


def credit_frame(
    key: str,
    names: list[str] | tuple[str, ...],
    conversions: np.ndarray,
    value: np.ndarray,
    std_error: np.ndarray | None = None,
) -> pd.DataFrame:
    """A credit table: one row per name with conversions, value and their shares."""
    frame = pd.DataFrame(
        {
            key: pd.array(list(names), dtype="string"),
            "conversions": np.asarray(conversions, dtype=np.float64),
            "value": np.asarray(value, dtype=np.float64),
        }
    )
    frame["share"] = _shares(frame["conversions"].to_numpy())
    frame["value_share"] = _shares(frame["value"].to_numpy())
    if std_error is not None:
        frame["std_error"] = np.asarray(std_error, dtype=np.float64)
    return frame


def seen_channels(journeys: Journeys) -> np.ndarray:
    """Indices of the channels that occur in at least one touch."""
    return np.flatnonzero(np.bincount(journeys.channel, minlength=len(journeys.channels)) > 0)


def content_keys(journeys: Journeys) -> tuple[np.ndarray, list[str]]:
    """Per touch, a content index where 0 means no content; and the names of the indices."""
    assert journeys.content is not None
    return journeys.content + 1, [NO_CONTENT, *journeys.contents]


def empty_content() -> pd.DataFrame:
    return credit_frame("content_id", [], np.zeros(0), np.zeros(0))


def from_touch_credit(
    journeys: Journeys,
    model: str,
    touch_conversions: np.ndarray,
    touch_value: np.ndarray,
    details: Mapping[str, Any] | None = None,
) -> Attribution:
    """Aggregate per-touch credit to channels and content."""
    n_channels = len(journeys.channels)
    conv = np.bincount(journeys.channel, weights=touch_conversions, minlength=n_channels)
    value = np.bincount(journeys.channel, weights=touch_value, minlength=n_channels)
    seen = seen_channels(journeys)
    channels = credit_frame(
        "channel", [journeys.channels[i] for i in seen], conv[seen], value[seen]
    )
    if journeys.has_content:
        keys, names = content_keys(journeys)
        c_conv = np.bincount(keys, weights=touch_conversions, minlength=len(names))
        c_value = np.bincount(keys, weights=touch_value, minlength=len(names))
        used = np.flatnonzero(np.bincount(keys, minlength=len(names)) > 0)
        content = credit_frame("content_id", [names[i] for i in used], c_conv[used], c_value[used])
    else:
        content = empty_content()
    return Attribution(model, channels, content, dict(details or {}))


def from_touch_weights(
    journeys: Journeys,
    model: str,
    weights: np.ndarray,
    details: Mapping[str, Any] | None = None,
) -> Attribution:
    """Credit from per-touch weights that sum to 1 within each journey."""
    journey = journeys.touch_journey
    return from_touch_credit(
        journeys,
        model,
        weights * journeys.conversions[journey],
        weights * journeys.value[journey],
        details,
    )
