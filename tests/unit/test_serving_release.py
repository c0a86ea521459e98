"""Canary arms: the challenger's share and stickiness by id."""

from __future__ import annotations

import pytest

from serving.release import arms, canary_arm

pytestmark = pytest.mark.unit


def test_canary_at_a_fifth_gives_the_challenger_a_fifth_of_ids_and_always_the_same_ones():
    ids = [f"L{n:07d}" for n in range(10_000)]
    first = arms("lead_conversion", ids, "canary", 0.2, has_challenger=True)
    share = first.count("challenger") / len(ids)
    assert 0.19 <= share <= 0.21, share
    # sticky: the same id lands in the same arm on every call and in any order
    again = arms("lead_conversion", list(reversed(ids)), "canary", 0.2, has_challenger=True)
    assert list(reversed(again)) == first
    assert all(canary_arm("lead_conversion", i, 0.2) == a for i, a in zip(ids, first, strict=True))
    # a larger fraction only adds ids to the challenger
    wider = arms("lead_conversion", ids, "canary", 0.3, has_challenger=True)
    assert all(w == "challenger" for f, w in zip(first, wider, strict=True) if f == "challenger")


def test_every_id_gets_the_champion_without_canary_or_without_a_challenger():
    ids = [f"A{n}" for n in range(100)]
    assert set(arms("churn_risk", ids, "shadow", 0.5, has_challenger=True)) == {"champion"}
    assert set(arms("churn_risk", ids, "canary", 0.5, has_challenger=False)) == {"champion"}
    assert set(arms("churn_risk", ids, "off", 0.5, has_challenger=True)) == {"champion"}
