"""The learned model credits the channel that moves conversion, not the one that is merely there,
and its form is chosen by held-out likelihood."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from planted_paths import planted_paths

from simulator.journey_families import sample_family
from training.attribution import Journeys, paths_to_journeys
from training.attribution.data_driven import (
    CANDIDATES,
    Candidate,
    data_driven,
    fit_conversion_model,
    journey_folds,
    refit,
)
from training.attribution.families import family_journeys

pytestmark = pytest.mark.unit


def planted(n: int = 6000, seed: int = 0) -> Journeys:
    """Each touch on "good" adds to the conversion odds; "noise" touches change nothing."""
    return planted_paths(
        n,
        seed,
        lambda good: 1 / (1 + np.exp(-(-3.0 + 1.2 * good))),
        good_mean=0.8,
        noise=lambda rng, size: rng.poisson(1.5, size),
        value=100.0,
    )


def test_credit_goes_to_the_channel_that_moves_conversion() -> None:
    # given journeys where only "good" touches raise conversion
    journeys = planted()
    # when
    result = data_driven(journeys)
    # then "good" takes nearly all credit, which sums to the conversions and revenue
    share = dict(zip(result.channels["channel"], result.channels["share"], strict=True))
    assert share["good"] > 0.9
    assert result.channels["conversions"].sum() == pytest.approx(journeys.total_conversions)
    assert result.channels["value"].sum() == pytest.approx(journeys.total_value)
    assert result.details["cv_auc"] > 0.7
    assert result.details["fallback"] is False


def test_bags_of_touches_choose_the_simplest_form() -> None:
    # given journeys where only the number of "good" touches matters, in any order
    model = fit_conversion_model(planted())
    table = model.cross_validation
    # then every candidate was scored and the chosen one is the first within one standard
    # error of the best held-out log-loss
    assert len(table) == len(CANDIDATES)
    best = table["cv_log_loss"].min()
    within = table[
        table["cv_log_loss"] <= best + table.loc[table["cv_log_loss"].idxmin(), "standard_error"]
    ]
    assert table.loc[table["chosen"], "candidate"].item() == within["candidate"].iloc[0]
    # and each row says how far it is from the chosen form on the same journeys: the paired
    # difference, whose standard error is below either candidate's own
    chosen = table[table["chosen"]].iloc[0]
    assert chosen["minus_chosen"] == 0 and chosen["paired_standard_error"] == 0
    others = table[~table["chosen"]]
    # (the same gap as between the log-losses, up to how each is scored: the fold's learning
    # curve against the predictions at the chosen round, ~4e-5 apart here)
    gap = others["cv_log_loss"] - chosen["cv_log_loss"]
    assert np.allclose(others["minus_chosen"], gap, atol=1e-4)
    assert (others["paired_standard_error"] < others["standard_error"]).all()


def test_order_in_the_journeys_chooses_a_form_that_sees_it() -> None:
    # given journeys where a sales touch after a webinar converts far more (the order family)
    journeys = family_journeys(sample_family("order", 20_000, seed=2))
    model = fit_conversion_model(journeys)
    # then the counts-only form loses on held-out likelihood
    assert model.candidate.feature_set == "sequence"
    table = model.cross_validation.set_index("candidate")
    assert table.loc["boosted stumps on touch counts", "cv_log_loss"] > model.cv_log_loss


def test_crm_journeys_never_see_features_measured_from_their_end() -> None:
    from dataclasses import replace

    journeys = replace(planted(3000), ends_at_conversion=True)
    model = fit_conversion_model(journeys, candidates=(Candidate("sequence", "logistic"),))
    assert model.candidate.feature_set == "order"
    assert not any(n.startswith(("last[", "recency[")) for n in model.feature_names)


def test_folds_split_a_path_rows_journeys() -> None:
    conv, null = journey_folds(np.array([30.0, 0.0, 1.0]), np.array([60.0, 5.0, 0.0]), 3, seed=1)
    assert conv.sum(axis=1).tolist() == [30.0, 0.0, 1.0]
    assert null.sum(axis=1).tolist() == [60.0, 5.0, 0.0]
    assert (conv[0] > 0).sum() == 3  # a row of 30 conversions lands in every fold


def test_same_seed_gives_the_same_credit_and_a_given_model_is_not_refitted() -> None:
    journeys = planted(2000, seed=1)
    a, b = data_driven(journeys, random_state=3), data_driven(journeys, random_state=3)
    assert a.channels["conversions"].tolist() == b.channels["conversions"].tolist()
    model = a.details["conversion_model"]
    again = data_driven(journeys, model=model)
    assert again.details["conversion_model"] is model
    assert again.channels["conversions"].tolist() == a.channels["conversions"].tolist()
    refitted = refit(model, journeys)
    assert refitted.candidate == model.candidate and refitted.rounds == model.rounds


def test_without_non_converting_journeys_credit_is_split_evenly_and_flagged() -> None:
    journeys = paths_to_journeys(
        pd.DataFrame(
            {
                "path": ["a > b", "a"],
                "total_conversions": [1, 1],
                "total_conversion_value": [10.0, 20.0],
            }
        )
    )
    result = data_driven(journeys)
    assert result.details["fallback"] is True
    assert dict(
        zip(result.channels["channel"], result.channels["conversions"], strict=True)
    ) == pytest.approx({"a": 1.5, "b": 0.5})
    assert dict(
        zip(result.channels["channel"], result.channels["value"], strict=True)
    ) == pytest.approx({"a": 25.0, "b": 5.0})


def _table(losses: list[float], chosen: int, paired_se: float) -> pd.DataFrame:
    names = ["stumps", "noisy-OR", "trees"][: len(losses)]
    return pd.DataFrame(
        {
            "candidate": names,
            "cv_log_loss": losses,
            "minus_chosen": [v - losses[chosen] for v in losses],
            "paired_standard_error": [0.0 if i == chosen else paired_se for i in range(3)][
                : len(losses)
            ],
            "chosen": [i == chosen for i in range(len(losses))],
        }
    )


def test_the_reason_for_the_form_says_how_clearly_the_data_chose_it() -> None:
    from training.attribution.recommend import why_this_form

    # given the chosen form best by 0.0015, with a paired standard error of 0.0002 against the next
    clear = why_this_form(_table([0.4760, 0.4720, 0.4735], 1, 0.0002), 0.4720)
    # then the reason names the next best and a clear margin (7.5 standard errors)
    assert "best" in clear and "trees" in clear and "8 standard errors" in clear
    assert "clear margin" in clear
    # given the same gap with a paired standard error of 0.001, the margin is called thin
    thin = why_this_form(_table([0.4760, 0.4720, 0.4735], 1, 0.001), 0.4720)
    assert "1.5 standard errors" in thin and "thin margin" in thin
    # given a richer form slightly better but the simpler one kept (one-standard-error rule)
    kept = why_this_form(_table([0.4722, 0.4720, 0.4735], 0, 0.0002), 0.4722)
    # then the reason does not claim the kept form predicted best
    assert "best" in kept and "predicted journeys it had not seen best" not in kept
    assert "noisy-OR" in kept and "simpler" in kept
    # given a model reloaded without its cross-validation table, only its loss is said
    assert "0.4720" in why_this_form(pd.DataFrame(), 0.4720)
