"""TVD against truth, model names, and the long credit table."""

from __future__ import annotations

import pandas as pd
import pytest

from training.attribution import (
    UnknownModelError,
    credit_table,
    parse_models,
    paths_to_journeys,
    run_models,
    total_variation_distance,
    tvd_table,
)

pytestmark = pytest.mark.unit


def test_tvd_is_half_the_l1_distance_over_the_union_of_names() -> None:
    a = pd.Series({"email": 0.5, "sales": 0.5})
    assert total_variation_distance(a, a) == 0.0
    assert total_variation_distance(a, pd.Series({"display": 1.0})) == pytest.approx(1.0)
    assert total_variation_distance(
        a, pd.Series({"email": 0.2, "sales": 0.6, "event": 0.2})
    ) == pytest.approx(0.3)
    # unnormalised inputs are normalised first
    assert total_variation_distance(pd.Series({"x": 2.0, "y": 2.0}), a.set_axis(["x", "y"])) == 0


def test_tvd_table_scores_each_model_against_the_true_shares() -> None:
    journeys = paths_to_journeys(
        pd.DataFrame(
            {
                "path": ["a > b", "b"],
                "total_conversions": [1, 1],
                "total_conversion_value": [10.0, 30.0],
                "total_null": [1, 1],
            }
        )
    )
    results = run_models(journeys, ["first_touch", "last_touch"])
    truth = {
        "channel": pd.DataFrame(
            {"channel": ["a", "b"], "share": [0.5, 0.5], "value_share": [0.25, 0.75]}
        )
    }
    table = tvd_table(results, truth)
    assert table.set_index("model")["tvd"].to_dict() == pytest.approx(
        {"first_touch": 0.0, "last_touch": 0.5}
    )
    assert table.set_index("model")["value_tvd"].to_dict() == pytest.approx(
        {"first_touch": 0.0, "last_touch": 0.25}
    )


def test_model_names_accept_aliases_and_refuse_unknown_ones() -> None:
    assert parse_models("last, markov,linear_touch,last") == ["last_touch", "markov_1", "linear"]
    assert len(parse_models(None)) == 11
    with pytest.raises(UnknownModelError, match="unknown model 'magic'"):
        parse_models("last,magic")
    with pytest.raises(UnknownModelError, match="no model given"):
        parse_models(" , ")


def test_credit_table_has_one_row_per_model_and_channel() -> None:
    journeys = paths_to_journeys(
        pd.DataFrame({"path": ["a > b", "c"], "total_conversions": [2, 1]})
    )
    table = credit_table(run_models(journeys, "first,linear"))
    assert list(table.columns) == [
        "model",
        "level",
        "channel",
        "content_id",
        "conversions",
        "value",
        "share",
        "value_share",
        "std_error",
        "share_low",
        "share_high",
        "includes_zero",
    ]
    assert table[["model", "channel"]].astype(str).values.tolist() == [
        ["first_touch", "a"],
        ["first_touch", "b"],
        ["first_touch", "c"],
        ["linear", "a"],
        ["linear", "b"],
        ["linear", "c"],
    ]
    assert table.groupby("model")["conversions"].sum().tolist() == pytest.approx([3.0, 3.0])
    assert table["level"].eq("channel").all() and table["content_id"].isna().all()
