"""What a conversion model sees of a journey, and the same journey without some touches."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from training.attribution import Journeys, paths_to_journeys
from training.attribution.journey_features import (
    days_before_last_touch,
    feature_names,
    journey_matrix,
)

pytestmark = pytest.mark.unit


def two_journeys() -> Journeys:
    return paths_to_journeys(
        pd.DataFrame(
            {"path": ["a > b > a", "b"], "total_conversions": [1, 0], "total_null": [0, 1]}
        )
    )


def features(journeys: Journeys, feature_set: str, keep=None) -> dict[str, list[float]]:
    x = journey_matrix(journeys, feature_set, keep)
    names = feature_names(feature_set, journeys.channels, timed=journeys.has_time)
    return {name: x[:, i].tolist() for i, name in enumerate(names)}


def test_counts_per_channel() -> None:
    assert journey_matrix(two_journeys(), "counts").tolist() == [[2.0, 1.0], [0.0, 1.0]]


def test_sequence_features_of_a_path() -> None:
    got = features(two_journeys(), "sequence")
    assert got["first[a]"] == [1.0, 0.0] and got["first[b]"] == [0.0, 1.0]
    assert got["last[a]"] == [1.0, 0.0] and got["last[b]"] == [0.0, 1.0]
    # touches after the channel's last touch (no times); missing when absent
    assert got["recency[a]"][0] == 0.0 and np.isnan(got["recency[a]"][1])
    assert got["recency[b]"] == [1.0, 0.0]
    assert got["before[a,b]"] == [1.0, 0.0] and got["before[b,a]"] == [1.0, 0.0]
    # exposure halves per touch of age at a half-life of one touch
    assert got["exposure1[a]"] == pytest.approx([1.0 + 0.25, 0.0])


def test_removing_a_channel_recomputes_positions() -> None:
    journeys = two_journeys()
    without_a = features(journeys, "sequence", keep=journeys.channel != 0)
    assert without_a["count[a]"] == [0.0, 0.0]
    assert without_a["first[b]"] == [1.0, 1.0] and without_a["last[b]"] == [1.0, 1.0]
    assert without_a["before[b,a]"] == [0.0, 0.0]


def test_order_features_leave_out_what_is_measured_from_the_end() -> None:
    names = feature_names("order", ("a", "b"), timed=True)
    assert not any(n.startswith(("last[", "recency[", "exposure")) for n in names)
    assert journey_matrix(two_journeys(), "order").shape == (2, len(names))


def test_recency_in_days_is_to_the_last_touch_not_to_the_end() -> None:
    # given a journey whose touches are 10 and 4 days before its last touch, ending later
    at = np.array(["2026-01-01", "2026-01-07", "2026-01-11"], dtype="datetime64[ns]")
    journeys = Journeys(
        journey_id=np.array([1]),
        offsets=np.array([0, 3]),
        channel=np.array([0, 1, 0]),
        channels=("a", "b"),
        conversions=np.array([1.0]),
        value=np.array([1.0]),
        nulls=np.array([0.0]),
        touched_at=at,
        ended_at=np.array(["2026-02-01"], dtype="datetime64[ns]"),
    )
    assert days_before_last_touch(journeys).tolist() == [10.0, 4.0, 0.0]
    got = features(journeys, "sequence")
    assert got["recency[a]"] == [0.0] and got["recency[b]"] == [4.0]
