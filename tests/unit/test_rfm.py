"""RFM segments: scores by quartile among customers, and the segment table's rules."""

from __future__ import annotations

import itertools

import pandas as pd
import pytest

from training.rfm import SEGMENTS, quartile_score, rfm_table, segment_of

pytestmark = pytest.mark.unit


def test_every_score_triple_has_exactly_the_segment_of_the_table() -> None:
    triples = pd.DataFrame(list(itertools.product(range(1, 5), repeat=3)), columns=["r", "f", "m"])
    segments = segment_of(triples["r"], triples["f"], triples["m"])
    fm = ((triples["f"] + triples["m"]) / 2 + 0.5).astype(int)
    expected = {
        (4, 4): "champions",
        (4, 3): "loyal",
        (3, 4): "loyal",
        (3, 3): "loyal",
        (4, 2): "potential loyalists",
        (3, 2): "potential loyalists",
        (4, 1): "new customers",
        (3, 1): "promising",
        (1, 4): "can't lose them",
        (2, 4): "at risk",
        (2, 3): "at risk",
        (1, 3): "at risk",
        (2, 2): "need attention",
        (2, 1): "need attention",
        (1, 2): "hibernating",
        (1, 1): "lost",
    }
    assert list(segments) == [expected[(r, f)] for r, f in zip(triples["r"], fm, strict=True)]
    assert set(segments) == set(SEGMENTS)


def test_ties_share_the_lowest_score_of_their_group() -> None:
    # six of eight customers bought once: they are the least frequent, not the middle
    scores = quartile_score(pd.Series([1, 1, 1, 1, 1, 1, 2, 5]))
    assert list(scores) == [1, 1, 1, 1, 1, 1, 4, 4]


def test_recent_frequent_big_buyers_are_champions_and_old_single_small_ones_lost() -> None:
    # a quarter of the customers at each end, half in between
    rows = []
    for i in range(3):  # recent, monthly, large
        rows += [(f"best{i}", f"2024-0{m}-1{i}", 500.0) for m in range(1, 7)]
    for i in range(3):  # one small purchase a year and a half ago
        rows.append((f"gone{i}", f"2023-01-0{i + 1}", 5.0))
    for i in range(6):  # in between
        rows += [(f"mid{i}", "2023-09-01", 50.0), (f"mid{i}", "2024-02-01", 50.0)]
    purchases = pd.DataFrame(rows, columns=["customer_id", "purchased_at", "amount"])
    purchases["purchased_at"] = pd.to_datetime(purchases["purchased_at"], utc=True)
    table = rfm_table(purchases, pd.Timestamp("2024-06-30")).set_index("customer_id")
    assert set(table.loc[[f"best{i}" for i in range(3)], "segment"]) == {"champions"}
    assert set(table.loc[[f"gone{i}" for i in range(3)], "segment"]) == {"lost"}
    # recency is days since the last purchase day; frequency counts every purchase day
    assert (
        table.loc["mid0", "recency_days"]
        == (pd.Timestamp("2024-06-30") - pd.Timestamp("2024-02-01")).days
    )
    assert table.loc["mid0", "frequency"] == 2 and table.loc["mid0", "monetary_value"] == 50.0
