"""Journeys from path files and from CRM tables, and the named errors for bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from training.attribution import (
    EmptyJourneysError,
    MalformedPathsError,
    NegativeValueError,
    UnknownChannelError,
    journeys_from_interactions,
    paths_to_journeys,
    read_paths,
)
from training.attribution.errors import AttributionError
from training.attribution.periods import ending_within

pytestmark = pytest.mark.unit

UTC = "UTC"


def _paths(rows: list[tuple[str, float, float, float]]) -> pd.DataFrame:
    return pd.DataFrame(
        rows, columns=["path", "total_conversions", "total_conversion_value", "total_null"]
    )


def crm(
    touches: list[tuple[str, str, str, str | None]],
    converted: dict[str, str | None],
    won: list[tuple[str, float]] = (),
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Tiny CRM tables: touches are (lead, time, channel, content)."""
    interactions = pd.DataFrame(
        {
            "interaction_id": pd.array([f"I{i}" for i in range(len(touches))], dtype="string"),
            "occurred_at": pd.to_datetime([t[1] for t in touches], utc=True),
            "lead_id": pd.array([t[0] for t in touches], dtype="string"),
            "channel": pd.array([t[2] for t in touches], dtype="string"),
            "content_id": pd.array([t[3] for t in touches], dtype="string"),
        }
    )
    leads = pd.DataFrame(
        {
            "lead_id": pd.array(list(converted), dtype="string"),
            "converted_at": pd.to_datetime(list(converted.values()), utc=True),
        }
    )
    opportunities = pd.DataFrame(
        {
            "opportunity_id": pd.array([f"O{i}" for i in range(len(won))], dtype="string"),
            "lead_id": pd.array([w[0] for w in won], dtype="string"),
            "amount": [w[1] for w in won],
            "won": pd.array([True] * len(won), dtype="boolean"),
        }
    )
    return interactions, leads, opportunities


def test_path_rows_become_weighted_journeys_with_spaces_ignored() -> None:
    # given two aggregated paths with irregular spacing
    frame = _paths([("a > b>c", 2, 10.0, 3), (" b ", 0, 0.0, 5)])
    # when they are read
    journeys = paths_to_journeys(frame)
    # then channels, offsets and weights follow the rows
    assert journeys.channels == ("a", "b", "c")
    assert journeys.offsets.tolist() == [0, 3, 4]
    assert journeys.channel.tolist() == [0, 1, 2, 1]
    assert journeys.conversions.tolist() == [2, 0]
    assert journeys.nulls.tolist() == [3, 5]
    assert journeys.total_value == 10.0
    assert journeys.paths().tolist() == ["a > b > c", "b"]


def test_semicolon_file_is_read_and_optional_columns_default_to_zero(tmp_path: Path) -> None:
    # given a file without value and null columns
    file = tmp_path / "paths.csv"
    file.write_text("path;total_conversions\nx > y;4\ny;1\n")
    # when it is read
    journeys = read_paths(file)
    # then value and nulls are zero and conversions are the counts
    assert journeys.conversions.tolist() == [4, 1]
    assert journeys.value.tolist() == [0, 0]
    assert journeys.nulls.tolist() == [0, 0]


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([("a >  > b", 1, 1.0, 0)], "row 1: path 'a >  > b' has an empty step"),
        ([("a", 1, 1.0, 0), ("", 1, 1.0, 0)], "row 2: path is blank"),
        ([("a", -1, 0.0, 0)], "row 1: conversions must be a count >= 0"),
        ([("a", 1, 0.0, -2)], "row 1: nulls must be a count >= 0"),
        ([("a", 0, 5.0, 1)], "row 1: value 5.0 without any conversion"),
        ([("a >", 1, 1.0, 0)], "has an empty step"),
    ],
)
def test_malformed_paths_raise_naming_the_row(rows: list, message: str) -> None:
    with pytest.raises(MalformedPathsError, match=message):
        paths_to_journeys(_paths(rows))


def test_non_numeric_count_and_missing_column_are_malformed() -> None:
    with pytest.raises(MalformedPathsError, match="row 2: total_conversions 'x' is not a number"):
        paths_to_journeys(pd.DataFrame({"path": ["a", "b"], "total_conversions": ["1", "x"]}))
    with pytest.raises(MalformedPathsError, match="no conversions column"):
        paths_to_journeys(pd.DataFrame({"path": ["a"]}))


def test_negative_path_value_is_a_named_error() -> None:
    with pytest.raises(NegativeValueError, match="row 1: conversion value -3.0 is negative"):
        paths_to_journeys(_paths([("a", 1, -3.0, 0)]))


def test_unknown_channel_in_paths_when_channels_are_restricted() -> None:
    with pytest.raises(UnknownChannelError, match=r"unknown channel\(s\) \['fax'\]"):
        paths_to_journeys(_paths([("email > fax", 1, 0.0, 0)]), channels=["email"])


def test_empty_path_table_is_a_named_error() -> None:
    with pytest.raises(EmptyJourneysError):
        paths_to_journeys(_paths([]))


def test_lead_journey_keeps_window_orders_touches_and_sums_won_revenue() -> None:
    # given lead A converting on day 100 with touches on days 1, 50, 95 and 120 (after), and
    # lead B not converting
    day = lambda d: str(pd.Timestamp("2024-01-01", tz=UTC) + pd.Timedelta(days=d))  # noqa: E731
    interactions, leads, opps = crm(
        [
            ("A", day(95), "sales", None),
            ("A", day(1), "email", "C1"),
            ("A", day(50), "webinar", "C2"),
            ("A", day(120), "email", None),
            ("B", day(10), "display", None),
            ("B", day(30), "email", "C1"),
        ],
        {"A": day(100), "B": None},
        won=[("A", 1000.0), ("A", 500.0)],
    )
    # when journeys are built with a 60-day lookback
    journeys = journeys_from_interactions(interactions, leads, opps, lookback_days=60)
    # then A keeps days 50 and 95 in order, B keeps both touches (window ends at its last touch)
    frame = journeys.touches_frame()
    assert frame.loc[frame["journey_id"] == "A", "channel"].tolist() == ["webinar", "sales"]
    assert frame.loc[frame["journey_id"] == "B", "channel"].tolist() == ["display", "email"]
    assert journeys.conversions.tolist() == [1.0, 0.0]
    assert journeys.value.tolist() == [1500.0, 0.0]
    assert journeys.contents == ("C1", "C2")
    assert dict(journeys.dropped)["touches_after_conversion"] == 1
    assert dict(journeys.dropped)["touches_before_lookback"] == 1


def test_conversion_without_touch_in_window_is_counted_not_credited() -> None:
    interactions, leads, opps = crm(
        [("A", "2024-01-01", "email", None), ("B", "2024-06-01", "email", None)],
        {"A": "2024-09-01", "B": "2024-06-02"},
        won=[("A", 700.0)],
    )
    journeys = journeys_from_interactions(interactions, leads, opps, lookback_days=30)
    assert journeys.journey_id.tolist() == ["B"]
    assert dict(journeys.dropped)["conversions_without_touch"] == 1
    assert dict(journeys.dropped)["value_without_touch"] == 700.0


def test_unknown_channel_and_negative_amount_are_named_errors() -> None:
    interactions, leads, opps = crm([("A", "2024-01-01", "carrier_pigeon", None)], {"A": None})
    with pytest.raises(UnknownChannelError, match="carrier_pigeon"):
        journeys_from_interactions(interactions, leads, opps)
    interactions, leads, opps = crm(
        [("A", "2024-01-01", "email", None)], {"A": "2024-01-02"}, won=[("A", -5.0)]
    )
    with pytest.raises(NegativeValueError, match="negative amount"):
        journeys_from_interactions(interactions, leads, opps)


def test_touch_of_unknown_lead_and_no_touch_at_all_are_named_errors() -> None:
    interactions, leads, opps = crm([("Z", "2024-01-01", "email", None)], {"A": None})
    with pytest.raises(AttributionError, match="lead not in leads"):
        journeys_from_interactions(interactions, leads, opps)
    interactions, leads, opps = crm([], {"A": None})
    with pytest.raises(EmptyJourneysError):
        journeys_from_interactions(interactions, leads, opps)


def test_account_level_touches_are_not_part_of_lead_journeys() -> None:
    interactions, leads, opps = crm([("A", "2024-01-01", "email", None)], {"A": None})
    account_touch = interactions.iloc[[0]].assign(
        interaction_id=pd.array(["X"], dtype="string"), lead_id=pd.array([None], dtype="string")
    )
    journeys = journeys_from_interactions(pd.concat([interactions, account_touch]), leads, opps)
    assert journeys.n_touches == 1
    assert np.array_equal(journeys.offsets, [0, 1])


def test_journeys_ending_within_a_period_keep_their_whole_touches():
    # given three leads: one converting in March, one in April, one never (last touch in March)
    journeys = journeys_from_interactions(
        *crm(
            [
                ("A", "2024-02-20", "email", "C1"),
                ("A", "2024-03-05", "webinar", None),
                ("B", "2024-03-25", "social", None),
                ("B", "2024-04-02", "email", None),
                ("N", "2024-03-10", "display", "C2"),
            ],
            {"A": "2024-03-06", "B": "2024-04-03", "N": None},
            won=[("A", 100.0), ("B", 50.0)],
        )
    )

    # when the journeys ending in March are kept
    march = ending_within(
        journeys, pd.Timestamp("2024-03-01").date(), pd.Timestamp("2024-03-31").date()
    )

    # then A (converted) and N (did not) with all their touches, even A's February one
    assert list(march.journey_id) == ["A", "N"]
    assert march.paths().tolist() == ["email > webinar", "display"]
    assert (march.conversions.tolist(), march.value.tolist()) == ([1.0, 0.0], [100.0, 0.0])
    assert march.touches_frame()["content_id"].fillna("-").tolist() == ["C1", "-", "C2"]
    assert march.dropped == {"journeys_outside_period": 1}

    # and a period with no journey, or journeys without times, are named errors
    with pytest.raises(EmptyJourneysError, match="2025-01-01 to 2025-01-31"):
        ending_within(
            journeys, pd.Timestamp("2025-01-01").date(), pd.Timestamp("2025-01-31").date()
        )
    paths = paths_to_journeys(_paths([("email > webinar", 1, 10, 0)]))
    with pytest.raises(AttributionError, match="no times"):
        ending_within(paths, pd.Timestamp("2024-03-01").date(), pd.Timestamp("2024-03-31").date())
