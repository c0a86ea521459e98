"""Attribution as a tracked, registered model: MLflow runs, the held-out gate, rollback, request
journeys credited by the champion without fitting, and per-conversion credit."""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from crm.settings import forget_settings
from crm_intel.cli import app
from serving.attribution import AttributionChampion, NoAttributionModel, credit_for_paths
from training.attribution import ModelOptions, load_journeys, paths_to_journeys, run_model
from training.attribution.conversion_learners import Boosted, Logistic, NoisyOr
from training.attribution.data_driven import with_channels
from training.attribution.per_conversion import conversion_credit
from training.attribution.tracking import MODEL_NAME, load_conversion_model

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class Registry:
    uri: str
    runs: list[dict]
    periods: list[tuple[str, str]]


def _cli(*args: str) -> dict:
    result = CliRunner().invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory, small_data_dir: Path) -> Registry:
    """Two ``attribution run``s of the small CRM, on its first and second half."""
    tmp = tmp_path_factory.mktemp("attribution-registry")
    uri = f"sqlite:///{tmp / 'mlruns' / 'mlflow.db'}"
    ends = pd.to_datetime(load_journeys(raw_dir=small_data_dir / "raw").ended_at)
    middle = ends.min() + (ends.max() - ends.min()) / 2
    periods = [
        (f"{ends.min():%Y-%m-%d}", f"{middle:%Y-%m-%d}"),
        (f"{middle + pd.Timedelta(days=1):%Y-%m-%d}", f"{ends.max():%Y-%m-%d}"),
    ]
    runs = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        forget_settings()
        for i, (start, end) in enumerate(periods):
            runs.append(
                _cli(
                    "attribution",
                    "run",
                    "--data-dir",
                    str(small_data_dir),
                    "--models",
                    "linear,data_driven",
                    "--bootstrap",
                    "0",
                    "--start",
                    start,
                    "--end",
                    end,
                    "--out",
                    str(tmp / f"run{i}" / "credit.parquet"),
                )
            )
    forget_settings()
    return Registry(uri, runs, periods)


def test_two_runs_are_two_mlflow_runs_gated_on_held_out_journeys_and_rollback_restores_the_first(
    registry: Registry, monkeypatch: pytest.MonkeyPatch, small_data_dir: Path
) -> None:
    client = MlflowClient(tracking_uri=registry.uri, registry_uri=registry.uri)
    experiment = client.get_experiment_by_name("attribution")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id], order_by=["attributes.start_time ASC"])
    # then two runs, one per period, each with its credit table and the likelihood criterion
    assert [r.info.run_id for r in runs] == [r["mlflow_run_id"] for r in registry.runs]
    assert [(r.data.params["period_start"], r.data.params["period_end"]) for r in runs] == (
        registry.periods
    )
    for run in runs:
        assert [a.path for a in client.list_artifacts(run.info.run_id, "credit")] == [
            "credit/credit.csv"
        ]
        assert 0 < run.data.metrics["data_driven.cv_log_loss"] < 1
        assert run.data.metrics["conversions"] > 50
    # the second version was gated: both scored on the same held-out journeys
    first, second = (r["registered"] for r in registry.runs)
    assert (first["version"], first["decision"]) == ("1", "promoted")
    assert second["version"] == "2" and second["champion_log_loss"] is not None
    tags = client.get_model_version(MODEL_NAME, "2").tags
    assert float(tags["held_out_log_loss"]) == pytest.approx(second["held_out_log_loss"], abs=1e-6)
    assert float(tags["champion_held_out_log_loss"]) == pytest.approx(
        second["champion_log_loss"], abs=1e-6
    )
    promoted = second["held_out_log_loss"] < second["champion_log_loss"]
    assert second["decision"] == ("promoted" if promoted else "kept champion")
    assert second["champion"] == ("2" if promoted else "1")
    # the service follows the alias; rollback restores the first version
    monkeypatch.setenv("MLFLOW_TRACKING_URI", registry.uri)
    forget_settings()
    served = AttributionChampion(registry.uri, refresh_seconds=0)
    if not promoted:
        _cli("models", "promote", MODEL_NAME, "2", "--data-dir", str(small_data_dir))
    assert served.get()[0] == "2"
    out = _cli("models", "rollback", MODEL_NAME, "--data-dir", str(small_data_dir))
    assert out["champion"] == "1" and out["demoted"] == "2"
    assert served.get()[0] == "1"
    _cli("models", "promote", MODEL_NAME, "2", "--data-dir", str(small_data_dir))
    forget_settings()


def _no_fitting(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a conversion model was fitted")

    for learner in (Boosted, Logistic, NoisyOr):
        monkeypatch.setattr(learner, "fit", refuse)


def test_request_journeys_are_credited_by_the_champion_and_never_fitted(
    registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given the registered champion, and no learner allowed to fit
    champion = AttributionChampion(registry.uri, refresh_seconds=0).get()
    assert champion is not None
    _no_fitting(monkeypatch)
    path = {"channels": ["email", "webinar", "email", "sales"], "conversions": 1, "value": 900.0}
    # when one journey is sent as a request would send it
    credit = credit_for_paths([path], ["data_driven", "data_driven_shapley"], champion)
    served = {(r["model"], r["channel"]): r["value"] for r in credit.channels}
    assert credit.credited_by == f"content_attribution v{champion[0]}"
    # then it equals the credit computed here from the registered model, loaded offline
    model = load_conversion_model(registry.uri)
    frame = pd.DataFrame({"path": [" > ".join(path["channels"])], "total_conversions": [1]})
    journey = with_channels(paths_to_journeys(frame), model.channels)
    channels = sorted(set(path["channels"]))
    codes = [model.channels.index(c) for c in channels]

    def p(without: set[int]) -> float:
        keep = ~np.isin(journey.channel, list(without))
        return float(model.probability(journey, keep=keep)[0])

    full = p(set())
    removal = np.array([1 - p({c}) / full for c in codes])
    shapley = np.zeros(len(codes))
    m = len(codes)
    for i, c in enumerate(codes):
        others = [o for o in codes if o != c]
        for size in range(m):
            for subset in itertools.combinations(others, size):
                kept = set(subset)
                weight = 1 / (m * len(list(itertools.combinations(others, size))))
                shapley[i] += weight * (p(set(codes) - kept - {c}) - p(set(codes) - kept))
    for name, effect in (("data_driven", removal), ("data_driven_shapley", shapley)):
        positive = np.clip(effect, 0, None)
        expected = 900.0 * positive / positive.sum()
        for channel, value in zip(channels, expected, strict=True):
            assert served[(name, channel)] == pytest.approx(value, abs=1e-9)


def test_without_a_champion_the_data_driven_models_say_so() -> None:
    path = {"channels": ["email", "sales"], "conversions": 1, "value": 10.0}
    with pytest.raises(NoAttributionModel, match="no registered attribution model"):
        credit_for_paths([path], ["data_driven"], None)
    # the rule-based models need none
    credit = credit_for_paths([path], ["linear"], None)
    assert credit.credited_by is None and len(credit.channels) == 2


def test_per_conversion_credit_sums_to_each_conversion_and_to_the_runs_credit(
    registry: Registry, small_data_dir: Path
) -> None:
    journeys = load_journeys(raw_dir=small_data_dir / "raw")
    model = load_conversion_model(registry.uri)
    run = run_model(journeys, "data_driven_shapley", ModelOptions(conversion_model=model))
    per = conversion_credit(journeys, model)
    # each conversion's credit is that conversion: its revenue, shares summing to 1
    by_journey = per.groupby("journey_id")[["conversions", "value", "share"]].sum()
    value = pd.Series(journeys.value, index=journeys.journey_id)
    converted = journeys.journey_id[journeys.conversions > 0]
    assert set(by_journey.index) == set(converted)
    assert by_journey["conversions"].to_numpy() == pytest.approx(1.0)
    assert by_journey["share"].to_numpy() == pytest.approx(1.0)
    assert by_journey["value"].to_numpy() == pytest.approx(value[by_journey.index].to_numpy())
    # summed over every conversion: the run's credit per channel
    totals = per.groupby("channel")[["conversions", "value"]].sum()
    run_totals = run.by_channel[["conversions", "value"]]
    used = run_totals[run_totals["conversions"] > 0]
    assert totals.loc[used.index].to_numpy() == pytest.approx(used.to_numpy(), rel=1e-9)


def test_influence_file_has_a_row_per_won_opportunity_and_campaign_with_a_touch(
    registry: Registry, small_data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given the registered champion
    monkeypatch.setenv("MLFLOW_TRACKING_URI", registry.uri)
    forget_settings()
    out = tmp_path / "influence.csv"
    # when
    summary = _cli("attribution", "influence", "--data-dir", str(small_data_dir), "--out", str(out))
    forget_settings()
    table = pd.read_csv(out, dtype={"opportunity_id": str, "campaign_id": str})
    # then one row per (won opportunity, campaign) with a touch of the opportunity's account in
    # the 90 days before it was created, counted here from the raw tables
    raw = small_data_dir / "raw"
    leads = pd.read_parquet(raw / "leads.parquet", columns=["lead_id", "account_id"])
    deals = pd.read_parquet(raw / "opportunities.parquet")
    touches = pd.read_parquet(raw / "interactions.parquet")
    won = deals[deals["won"].fillna(False).astype(bool) & deals["amount"].notna()]
    account = touches["account_id"].fillna(
        touches["lead_id"].map(leads.set_index("lead_id")["account_id"])
    )
    paired = touches.assign(account_id=account).merge(
        won[["opportunity_id", "account_id", "created_at"]], on="account_id"
    )
    inside = paired[
        (paired["occurred_at"] <= paired["created_at"])
        & (paired["occurred_at"] >= paired["created_at"] - pd.Timedelta(days=90))
        & paired["campaign_id"].notna()
    ]
    expected = set(zip(inside["opportunity_id"], inside["campaign_id"], strict=True))
    assert set(zip(table["opportunity_id"], table["campaign_id"], strict=True)) == expected
    assert len(table) == len(expected) > 50 and summary["rows"] == len(table)
    campaigns = pd.read_parquet(raw / "campaigns.parquet", columns=["campaign_id"])
    assert set(table["campaign_id"]) <= set(campaigns["campaign_id"])
    # each opportunity's influence sums to 100 % and its revenue shares to its amount
    per = table.groupby("opportunity_id")
    assert per["influence_percent"].sum().to_numpy() == pytest.approx(100.0, abs=0.01)
    amount = won.set_index("opportunity_id")["amount"]
    shares = per["revenue_share"].sum()
    assert shares.to_numpy() == pytest.approx(amount[shares.index].to_numpy(), abs=0.05)
    assert set(table["model"]) == {f"crm-intel data-driven v{summary['version']}"}
