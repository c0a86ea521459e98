"""The scoring service over HTTP in-process (``Service.to_asgi()`` + TestClient), against a real
demo deployment: Feast online store, MLflow SQLite champions, the same scoring as the batch."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import threading
import time
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest
from service_client import service_client
from starlette.testclient import TestClient

from crm.settings import Settings
from crm_intel.demo import Deployment
from features.store import entity_info, latest_rows
from serving.batch import score_batch, write_scores
from training.registry import client_for, load_champion, promote

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("deployment_env")]

KEY = "test-key-in-process"
AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture(scope="module")
def settings(deployment: Deployment) -> Settings:
    return Settings(data_dir=deployment.data_dir, mlflow_tracking_uri=deployment.tracking_uri)


@pytest.fixture(scope="module")
def client(deployment: Deployment) -> Iterator[TestClient]:
    env = {
        "CRM_INTEL_API_KEYS": f"other,{KEY}",
        "CRM_INTEL_MODEL_REFRESH_SECONDS": "0.3",
        "CRM_INTEL_ONLINE_STORE_TIMEOUT_MS": "100",
    }
    with service_client(deployment, env) as c:
        yield c


@pytest.fixture(scope="module")
def lead_batch(settings: Settings) -> pd.DataFrame:
    """The nightly batch of every lead (status, scores, reasons), keyed by lead_id."""
    frame, _ = score_batch(settings, "lead_conversion")
    return frame.set_index("lead_id", drop=False)


@pytest.fixture(scope="module")
def account_batch(settings: Settings) -> pd.DataFrame:
    frame, _ = score_batch(settings, "churn_risk")
    return frame.set_index("account_id", drop=False)


@pytest.fixture(scope="module")
def lead_ids(lead_batch: pd.DataFrame) -> list[str]:
    """Leads the service scores: open, with fresh weekly snapshots."""
    scored = lead_batch[
        (lead_batch["status"] == "scored") & (lead_batch["feature_row"] == "snapshot")
    ]
    return scored["lead_id"].tolist()[:40]


@pytest.fixture(scope="module")
def account_ids(account_batch: pd.DataFrame) -> list[str]:
    return account_batch[account_batch["status"] == "scored"]["account_id"].tolist()[:20]


@pytest.fixture(scope="module")
def lifecycle(settings: Settings) -> dict[str, pd.DataFrame]:
    """The lifecycle tables the features build wrote, by entity."""
    return {
        entity: pd.read_parquet(settings.features_dir / f"{entity}_status.parquet").set_index(
            f"{entity}_id", drop=False
        )
        for entity in ("lead", "account")
    }


def _same_reasons(api: list[dict], batch: list[dict]) -> None:
    """The API's and the batch's reasons name the same features, values and labels, with the
    same contributions."""
    assert [(r["feature"], r["label"]) for r in api] == [(r["feature"], r["label"]) for r in batch]
    assert [r["contribution"] for r in api] == pytest.approx([r["contribution"] for r in batch])


def _wait(predicate, timeout: float = 15.0, step: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return False


# ----------------------------------------------------------------------------------- auth


def test_health_is_open_and_ready(client):
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200


@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Bearer nope"}, {"Authorization": f"Basic {KEY}"}]
)
@pytest.mark.parametrize("path", ["/score_leads", "/score_accounts", "/attribution"])
def test_scoring_needs_a_valid_key(client, headers, path):
    r = client.post(path, json={"lead_ids": ["L1"]}, headers=headers)
    assert r.status_code == 401
    assert KEY not in r.text


def test_model_info_needs_a_key_and_names_the_champions(client, deployment):
    assert client.get("/model_info").status_code == 401
    info = client.get("/model_info", headers=AUTH).json()
    assert info["models"]["lead_conversion"]["version"] == deployment.versions["lead_conversion"]
    assert info["models"]["churn_risk"]["feature_service"] == "churn_risk_v1"
    assert info["models"]["lead_conversion"]["expected_feature_service"] == "lead_conversion_v1"
    assert info["models"]["lead_conversion"]["refused_version"] is None
    assert info["online_store_ready"] is True
    assert info["crm_field_names"]["lead_score"] == "Lead_Score__c"


# ----------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"lead_ids": []}, "lead_ids"),
        ({"lead_ids": [f"L{i}" for i in range(1001)]}, "lead_ids"),
        ({"lead_ids": [7]}, "lead_ids"),
        ({"lead_ids": "L1"}, "lead_ids"),
        ({"leads": [{"lead_id": "L1", "features": {"touches_7d": "lots"}}]}, "touches_7d"),
        ({"leads": [{"lead_id": "L1", "features": {"no_such_feature": 1}}]}, "no_such_feature"),
        ({"lead_ids": ["L1"], "top_reasons": "three"}, "top_reasons"),
    ],
)
def test_bad_input_is_400_naming_the_field(client, body, field):
    r = client.post("/score_leads", json=body, headers=AUTH)
    assert r.status_code == 400
    assert field in json.dumps(r.json())


@pytest.mark.parametrize("raw", [b"{not json", b"", b"[]", b"null", b'{"lead_ids": [NaN]}'])
def test_malformed_json_is_400(client, raw):
    r = client.post(
        "/score_leads", content=raw, headers={**AUTH, "Content-Type": "application/json"}
    )
    assert r.status_code == 400


def test_non_json_content_type_is_415(client):
    r = client.post(
        "/score_leads",
        content=b"lead_ids=L1",
        headers={**AUTH, "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code == 415


# -------------------------------------------------------------------------------- scoring


def test_lead_scores_equal_the_batch_and_explain_the_raw_margin(
    client, settings, lead_ids, tmp_path
):
    # Given the nightly batch written to a file for the same leads
    batch, champion = score_batch(settings, "lead_conversion", lead_ids, top=3)
    write_scores(batch, tmp_path / "leads.parquet")
    from_file = pd.read_parquet(tmp_path / "leads.parquet").set_index("lead_id")
    # and the batch with every contribution (the API gives at most 10)
    every, _ = score_batch(settings, "lead_conversion", lead_ids, top=200)
    every = every.set_index("lead_id")
    # When the API scores them with its most reasons
    r = client.post("/score_leads", json={"lead_ids": lead_ids, "top_reasons": 10}, headers=AUTH)
    assert r.status_code == 200
    body = r.json()
    assert body["model_version"] == champion.version and body["scored"] == len(lead_ids)
    # Then probability, score, grade and top reasons equal the batch, and the contributions
    # plus the base value are the champion's margin before calibration
    from features.store import online_features

    features = online_features(settings, "lead", lead_ids)
    raw = champion.model.margin(features)
    for item, margin in zip(body["results"], raw, strict=True):
        row = from_file.loc[item["lead_id"]]
        assert item["status"] == row["status"] == "scored" and item["stale"] is False
        assert item["probability"] == pytest.approx(row["probability"], abs=1e-9)
        assert item["score"] == row["score"] and item["grade"] == row["grade"]
        assert [r["feature"] for r in item["reasons"][:3]] == [
            r["feature"] for r in json.loads(row["reasons"])
        ]
        all_reasons = json.loads(every.loc[item["lead_id"], "reasons"])
        _same_reasons(item["reasons"], all_reasons[:10])
        total = sum(r["contribution"] for r in all_reasons) + item["base_value"]
        assert total == pytest.approx(margin, abs=1e-9)
        assert item["raw_margin"] == pytest.approx(margin, abs=1e-9)
        assert row["raw_margin"] == pytest.approx(margin, abs=1e-9)
        assert item["margin_unit"] == row["margin_unit"] == "log-odds before calibration"
        assert "log_odds" not in item
        fields = item["crm_fields"]
        assert (fields["Lead_Score__c"], fields["Lead_Grade__c"]) == (
            row["Lead_Score__c"],
            row["Lead_Grade__c"],
        )
        assert item["feature_timestamp"] is not None and item["feature_row"] == "snapshot"
    # and with the batch's number of reasons, the lists and the CRM text are the batch's
    three = client.post("/score_leads", json={"lead_ids": lead_ids}, headers=AUTH).json()
    for item in three["results"]:
        row = from_file.loc[item["lead_id"]]
        for name in ("reasons", "reasons_up", "reasons_down"):
            _same_reasons(item[name], json.loads(row[name]))
        assert item["crm_fields"]["Score_Reasons__c"] == row["Score_Reasons__c"]


def test_unknown_id_is_reported_and_the_rest_scored(client, lead_ids):
    r = client.post(
        "/score_leads", json={"lead_ids": [lead_ids[0], "NOPE-1", lead_ids[1]]}, headers=AUTH
    )
    body = r.json()
    assert r.status_code == 200 and body["scored"] == 2 and body["unknown"] == 1
    assert [x["status"] for x in body["results"]] == ["scored", "unknown", "scored"]
    error = body["results"][1]["error"]
    assert error["code"] == "unknown_id" and error["field"] == "lead_ids[1]"
    assert "NOPE-1" in error["message"] and error["fix"]
    assert body["results"][1]["crm_fields"] == {}


def test_given_features_override_the_online_ones(client, settings, lead_ids):
    from features.store import online_features
    from serving.scoring import score

    given = {
        "touches_pricing_page_view_30d": 6,
        "touches_demo_request_30d": 2,
        "days_since_last_high_intent": 1,
    }
    champion = load_champion("lead_conversion", settings.tracking_uri())
    online = online_features(settings, "lead", lead_ids)
    overridden = online.assign(**{name: float(value) for name, value in given.items()})
    before = score(champion.model, online).frame["probability"].to_numpy()
    after = score(champion.model, overridden).frame["probability"].to_numpy()
    # a lead whose score the override moves (a calibrator's plateau can hide a raised raw score)
    moved = [lead for lead, b, a in zip(lead_ids, before, after, strict=True) if a != b]
    assert moved
    lead = moved[0]
    base = client.post("/score_leads", json={"lead_ids": [lead]}, headers=AUTH).json()
    r = client.post(
        "/score_leads", json={"leads": [{"lead_id": lead, "features": given}]}, headers=AUTH
    )
    item = r.json()["results"][0]
    assert item["features_source"] == "online+request"
    expected = after[lead_ids.index(lead)]
    assert item["probability"] == pytest.approx(expected, abs=1e-12)
    assert item["probability"] != base["results"][0]["probability"]


def test_a_lead_only_known_from_the_request_is_scored(client):
    r = client.post(
        "/score_leads",
        json={
            "leads": [
                {
                    "lead_id": "NEW-1",
                    "features": {"touches_pricing_page_view_30d": 3, "seniority": "vp"},
                }
            ]
        },
        headers=AUTH,
    )
    item = r.json()["results"][0]
    assert item["status"] == "scored" and item["features_source"] == "request"
    assert item["feature_timestamp"] is None


def test_account_scores_carry_revenue_at_risk_and_a_risk_band(client, settings, account_ids):
    r = client.post("/score_accounts", json={"account_ids": account_ids}, headers=AUTH)
    assert r.status_code == 200
    batch, _ = score_batch(settings, "churn_risk", account_ids)
    batch = batch.set_index("account_id")
    _, table, _, _ = entity_info("account")
    latest = latest_rows(settings.features_dir / f"{table}.parquet", "account_id").to_pandas()
    segments = dict(zip(latest["account_id"].astype(str), latest["rfm_segment"], strict=True))
    for item in r.json()["results"]:
        row = batch.loc[item["account_id"]]
        assert item["status"] == row["status"] == "scored"
        assert item["probability"] == pytest.approx(row["probability"], abs=1e-9)
        # the account's remaining lifetime value: what the batch gives it, asked for alone or
        # with others; revenue at risk is the churn probability × that value
        for column in ("expected_remaining_months", "lifetime_value", "lifetime_value_low"):
            assert item[column] == pytest.approx(row[column], rel=1e-9)
        assert item["lifetime_value_low"] <= item["lifetime_value"] <= item["lifetime_value_high"]
        assert item["revenue_at_risk"] == pytest.approx(row["revenue_at_risk"], rel=1e-9)
        assert item["revenue_at_risk"] == pytest.approx(
            item["probability"] * item["lifetime_value"], rel=1e-12
        )
        fields = item["crm_fields"]
        assert fields["Revenue_At_Risk__c"] == round(row["revenue_at_risk"], 2)
        assert fields["Lifetime_Value__c"] == round(item["lifetime_value"], 2)
        assert fields["Churn_Risk_Score__c"] == item["score"]
        # churn is banded, not graded: high >= 50, medium 25-49, low < 25
        band = "high" if item["score"] >= 50 else "medium" if item["score"] >= 25 else "low"
        assert item["risk_band"] == row["risk_band"] == fields["Churn_Risk_Band__c"] == band
        assert "grade" not in item and "Churn_Risk_Grade__c" not in fields
        # the account's RFM segment rides along, as the features hold it, and as a CRM field
        segment = item["rfm_segment"]
        assert (
            segment
            == row["rfm_segment"]
            == fields["RFM_Segment__c"]
            == segments[item["account_id"]]
        )
        assert segment in {"champion", "loyal", "recent", "at_risk", "lapsed", "no_deals"}


def test_an_accounts_value_does_not_depend_on_what_else_is_asked(client, account_ids):
    together = _one(client, "/score_accounts", {"account_ids": account_ids[:3]})["results"]
    for item in together:
        alone = _one(client, "/score_accounts", {"account_ids": [item["account_id"]]})
        assert alone["results"][0]["lifetime_value"] == pytest.approx(item["lifetime_value"])


def test_value_accounts_gives_what_the_value_command_gives(
    client, settings, account_ids, lifecycle
):
    from serving.account_value import account_values

    # given live, cancelled and unknown accounts
    accounts = lifecycle["account"]
    cancelled = accounts[accounts["status"] == "cancelled"]["account_id"].iloc[0]
    ids = [*account_ids[:4], cancelled, "A9999999"]
    # when valued through the API
    body = _one(client, "/value_accounts", {"account_ids": ids})
    # then the live ones get what `crm-intel value accounts` gives them, from the same model
    valued = account_values(settings)
    table = valued.table.set_index("account_id")
    assert body["model_version"] == valued.champion.version
    assert body["persistence"] == pytest.approx(valued.persistence)
    assert (body["scored"], body["closed"], body["unknown"]) == (4, 1, 1)
    for item in body["results"][:4]:
        row = table.loc[item["account_id"]]
        for column in (
            "mrr",
            "expected_remaining_months",
            "remaining_months_low",
            "remaining_months_high",
            "lifetime_value",
            "lifetime_value_low",
            "lifetime_value_high",
        ):
            assert item[column] == pytest.approx(row[column], rel=1e-9), column
        assert item["churn_probability_next_renewal"] == pytest.approx(row["p_next_renewal"])
        assert item["plan"] == row["plan"] and item["rfm_segment"] == row["rfm_segment"]
    # and the others say why they have no value, in the API's words
    closed, unknown = body["results"][4:]
    assert closed["status"] == "closed" and closed["lifetime_value"] is None
    assert unknown["status"] == "unknown" and unknown["error"]["field"] == "account_ids[5]"
    bad = client.post("/value_accounts", json={"account_ids": []}, headers=AUTH)
    assert bad.status_code == 400 and bad.json()["error"]["field"] == "account_ids"


# ------------------------------------------------------------------------ status of an item


def _one(client, path: str, body: dict) -> dict:
    r = client.post(path, json=body, headers=AUTH)
    assert r.status_code == 200, r.text
    return r.json()


def test_each_status_scored_unknown_closed_stale(client, lead_batch, lifecycle, lead_ids):
    # given a scored lead, a converted one, a disqualified one, a stale one and an unknown id
    leads = lifecycle["lead"]
    converted = leads[leads["status"] == "converted"]["lead_id"].iloc[0]
    disqualified = leads[leads["status"] == "disqualified"]["lead_id"].iloc[0]
    stale = lead_batch[lead_batch["status"] == "stale"]["lead_id"].iloc[0]
    ids = [lead_ids[0], converted, disqualified, stale, "NOPE-2"]
    # when the API scores them
    body = _one(client, "/score_leads", {"lead_ids": ids})
    results = {r["lead_id"]: r for r in body["results"]}
    # then each has its status, and only the first one a score
    assert [r["status"] for r in body["results"]] == [
        "scored",
        "closed",
        "closed",
        "stale",
        "unknown",
    ]
    assert (body["scored"], body["closed"], body["stale"], body["unknown"]) == (1, 2, 1, 1)
    for lead in ids[1:]:
        item = results[lead]
        assert item["score"] is None and item["probability"] is None and item["reasons"] == []
        assert item["error"]["code"] in ("closed", "stale_features", "unknown_id")
    # a converted lead says since when; a disqualified one has no date to say
    conv = results[converted]
    converted_at = pd.Timestamp(leads.loc[converted, "converted_at"])
    assert pd.Timestamp(conv["closed_at"]) == converted_at
    assert (
        conv["lifecycle"] == "converted"
        and converted_at.date().isoformat() in (conv["error"]["message"])
    )
    assert results[disqualified]["closed_at"] is None
    assert "date not recorded" in results[disqualified]["error"]["message"]
    # the CRM fields of a closed lead are emptied, with the reason
    fields = conv["crm_fields"]
    assert fields["Lead_Score__c"] is None and fields["Score_Reasons__c"].startswith("Not scored")
    # a stale lead reports its feature timestamp, older than the TTL at the data's as-of time
    item = results[stale]
    age = pd.Timestamp(item["data_as_of"]) - pd.Timestamp(item["feature_timestamp"])
    assert item["stale"] is True and age > pd.Timedelta(days=14)
    assert item["error"]["field"] == "lead_ids[3]" and "allow_stale" in item["error"]["fix"]


def test_allow_stale_scores_stale_leads_with_a_flag(client, settings, lead_batch):
    stale = lead_batch[lead_batch["status"] == "stale"]["lead_id"].tolist()[:5]
    body = _one(client, "/score_leads", {"lead_ids": stale, "allow_stale": True})
    assert body["scored"] == len(stale) and body["stale"] == 0
    batch, _ = score_batch(settings, "lead_conversion", stale, allow_stale=True)
    batch = batch.set_index("lead_id")
    for item in body["results"]:
        assert item["status"] == "scored" and item["stale"] is True and item["error"] is None
        assert item["probability"] == pytest.approx(batch.loc[item["lead_id"], "probability"])
        assert bool(batch.loc[item["lead_id"], "stale"])
        assert item["crm_fields"]["Lead_Score__c"] == item["score"]


def test_a_lead_created_since_the_last_snapshot_is_scored_from_its_creation_features(
    client, settings, lifecycle
):
    # given open leads created after the last weekly snapshot (Monday 00:00), which no
    # snapshot describes
    from features.store import online_features

    features = pd.read_parquet(settings.features_dir / "lead_features.parquet")
    stamps = features["event_timestamp"]
    last = stamps[(stamps == stamps.dt.normalize()) & (stamps.dt.dayofweek == 0)].max()
    leads = lifecycle["lead"]
    created = pd.to_datetime(leads["created_at"], utc=True)
    new = leads[(created >= last) & (leads["status"] == "open")]["lead_id"].tolist()
    assert new, "the demo CRM has leads created since its last snapshot"
    # when the API scores them
    body = _one(client, "/score_leads", {"lead_ids": new})
    # then each is scored from its creation row: stamped at created_at, no touch, age 0, the
    # source and firmographics it was created with
    assert body["scored"] == len(new)
    online = online_features(settings, "lead", new).set_index("lead_id")
    raw = pd.read_parquet(settings.raw_dir / "leads.parquet").set_index("lead_id")
    for item in body["results"]:
        lead = item["lead_id"]
        assert item["status"] == "scored" and item["feature_row"] == "creation"
        stamp = pd.Timestamp(item["feature_timestamp"])  # created_at, to the second
        assert pd.Timedelta(0) <= stamp - created[lead] <= pd.Timedelta("1s")
        row = online.loc[lead]
        assert row["touches_90d"] == 0
        assert 0 <= row["days_since_created"] <= 1 / 86_400  # stamped within a second of it
        assert row["source"] == raw.loc[lead, "source"]
        assert row["country"] == raw.loc[lead, "country"]
    # and the offline table holds those creation rows after every snapshot
    assert set(features.loc[stamps > last, "lead_id"]) >= set(new)


def test_reasons_up_raise_reasons_down_lower_and_the_crm_text_is_signed(client, lead_ids):
    body = _one(client, "/score_leads", {"lead_ids": lead_ids[:10], "top_reasons": 4})
    for item in body["results"]:
        up = [r["contribution"] for r in item["reasons_up"]]
        down = [r["contribution"] for r in item["reasons_down"]]
        assert len(up) <= 4 and len(down) <= 4 and (up or down)
        assert all(c > 0 for c in up) and up == sorted(up, reverse=True)
        assert all(c < 0 for c in down) and down == sorted(down)
        # the CRM text: the top reasons, raising ones first, each with its sign
        parts = item["crm_fields"]["Score_Reasons__c"].split("; ")
        signs = [p[0] for p in parts]
        assert signs == sorted(signs, key=lambda s: s != "+") and set(signs) <= {"+", "\u2212"}
        expected = sorted(
            item["reasons"], key=lambda r: (r["contribution"] < 0, -abs(r["contribution"]))
        )
        assert [p[2:] for p in parts] == [r["label"] for r in expected if r["contribution"] != 0]


def test_an_unseen_category_is_labelled_in_the_reasons(client, lead_ids):
    # 20 leads sent with a source never seen in training: among the ten reasons of some
    leads = [{"lead_id": lead, "features": {"source": "tiktok"}} for lead in lead_ids[:20]]
    body = _one(client, "/score_leads", {"leads": leads, "top_reasons": 10})
    labels = []
    for item in body["results"]:
        assert item["status"] == "scored" and item["features_source"] == "online+request"
        labels += [r["label"] for r in item["reasons"] if r["feature"] == "source"]
    assert labels and set(labels) == {'Lead source "tiktok" (not seen in training)'}


def test_cancelled_accounts_are_closed_and_prospects_unknown(client, lifecycle):
    accounts = lifecycle["account"]
    cancelled = accounts[accounts["status"] == "cancelled"]["account_id"].iloc[0]
    prospect = accounts[accounts["status"] == "prospect"]["account_id"].iloc[0]
    body = _one(client, "/score_accounts", {"account_ids": [cancelled, prospect]})
    closed, unknown = body["results"]
    assert closed["status"] == "closed" and closed["lifecycle"] == "cancelled"
    assert pd.Timestamp(closed["closed_at"]) == pd.Timestamp(
        accounts.loc[cancelled, "cancelled_at"]
    )
    assert closed["crm_fields"]["Churn_Risk_Band__c"] is None
    assert unknown["status"] == "unknown" and unknown["error"]["code"] == "not_a_customer"


# ---------------------------------------------------------------------------- attribution


def test_attribution_for_journeys_in_the_request(client):
    body = {
        "journeys": [
            {"channels": ["email", "webinar"], "conversions": 3, "nulls": 2, "value": 300.0},
            {"channels": ["paid_search"], "conversions": 1, "nulls": 8},
        ],
        "models": ["linear", "markov_1"],
    }
    r = client.post("/attribution", json=body, headers=AUTH)
    assert r.status_code == 200
    rows = pd.DataFrame(r.json()["channels"])
    linear = rows[rows["model"] == "linear"].set_index("channel")["conversions"]
    assert linear.to_dict() == pytest.approx({"email": 1.5, "webinar": 1.5, "paid_search": 1.0})
    for _, part in rows.groupby("model"):
        assert part["conversions"].sum() == pytest.approx(4.0)


def test_data_driven_credit_of_request_journeys_comes_from_the_registered_champion(
    client, deployment
):
    from training.attribution import paths_to_journeys
    from training.attribution.data_driven import fit_conversion_model
    from training.attribution.tracking import register_conversion_model
    from training.registry import experiment_id

    body = {
        "journeys": [{"channels": ["email", "sales"], "conversions": 1, "value": 100.0}],
        "models": ["data_driven", "linear"],
    }
    # without a registered attribution model: a clear 409, nothing fitted on the request
    r = client.post("/attribution", json=body, headers=AUTH)
    error = r.json()["error"]
    assert r.status_code == 409 and error["code"] == "no_attribution_model"
    assert "crm-intel attribution run" in error["fix"]
    # once one is registered, the service credits with it and says which
    paths = pd.DataFrame(
        {
            "path": ["email > sales", "email", "sales", "webinar > email > sales", "webinar"],
            "total_conversions": [40, 10, 30, 25, 5],
            "total_null": [160, 190, 170, 75, 195],
        }
    )
    model = fit_conversion_model(paths_to_journeys(paths))
    uri = deployment.tracking_uri
    run_id = client_for(uri).create_run(experiment_id(uri, "attribution")).info.run_id
    registered = register_conversion_model(uri, model, paths_to_journeys(paths), run_id)
    client_for(uri).set_terminated(run_id)
    time.sleep(0.4)  # the service checks the alias every 0.3 s here
    r = client.post("/attribution", json=body, headers=AUTH)
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["credited_by"] == f"content_attribution v{registered.version}"
    learned = [c for c in answer["channels"] if c["model"] == "data_driven"]
    assert sum(c["value"] for c in learned) == pytest.approx(100.0)


def test_attribution_without_conversions_is_400(client):
    r = client.post(
        "/attribution",
        json={"journeys": [{"channels": ["email"], "conversions": 0, "nulls": 5}]},
        headers=AUTH,
    )
    assert r.status_code == 400 and "conversion" in r.json()["error"]["message"]


def _stored_run(folder, start: str, end: str, email_share: float, intervals=False) -> None:
    folder.mkdir(parents=True)
    (folder / "run.json").write_text(json.dumps({"period_start": start, "period_end": end}))
    table = pd.DataFrame(
        {
            "model": ["markov_1"] * 2,
            "level": ["channel"] * 2,
            "channel": ["email", "event"],
            "content_id": [None, None],
            "conversions": [4 * email_share, 4 * (1 - email_share)],
            "value": [40 * email_share, 40 * (1 - email_share)],
            "share": [email_share, 1 - email_share],
            "value_share": [email_share, 1 - email_share],
            "std_error": [None, None],
        }
    )
    if intervals:  # a run with bootstrap intervals (event's includes zero)
        table["share_low"] = [email_share - 0.1, 0.0]
        table["share_high"] = [email_share + 0.1, 1 - email_share + 0.2]
        table["includes_zero"] = pd.array([False, True], dtype="boolean")
    table.to_parquet(folder / "credit.parquet")


def test_attribution_for_a_period_is_exactly_that_periods_run(client, settings):
    # given no run yet: the answer says so, in the API's words
    quarter = {"start": "2026-01-01", "end": "2026-03-31"}
    r = client.post("/attribution", json={"period": quarter}, headers=AUTH)
    assert r.status_code == 404 and "no attribution run yet" in r.json()["error"]["message"]
    folder = settings.data_dir / "attribution"
    try:
        # given a run of a year and a run of its first quarter
        _stored_run(folder / "year", "2025-10-01", "2026-09-30", 0.75)
        _stored_run(folder / "q1", "2026-01-01", "2026-03-31", 0.5, intervals=True)

        # when the quarter is asked for, then its own run answers, not the year's
        body = client.post("/attribution", json={"period": quarter}, headers=AUTH).json()
        assert (body["run"], body["period"]) == ("q1", quarter)
        assert [c["share"] for c in body["channels"]] == [0.5, 0.5]
        assert [
            (c["share_low"], c["share_high"], c["includes_zero"]) for c in body["channels"]
        ] == [
            (0.4, 0.6, False),
            (0.0, 0.7, True),
        ]
        year = {"start": "2025-10-01", "end": "2026-09-30"}
        body = client.post("/attribution", json={"period": year}, headers=AUTH).json()
        assert body["run"] == "year" and body["channels"][0]["share"] == 0.75
        assert body["channels"][0]["share_low"] is None  # a run without intervals

        # and a period inside a run, overlapping one, or outside all is refused naming the
        # periods there are, with the command to credit it and no server path
        for start, end in [
            ("2026-02-01", "2026-02-28"),  # inside both
            ("2026-09-01", "2026-12-31"),  # overlapping the year
            ("2027-01-01", "2027-03-31"),  # outside
        ]:
            r = client.post(
                "/attribution", json={"period": {"start": start, "end": end}}, headers=AUTH
            )
            error = r.json()["error"]
            assert (r.status_code, error["code"]) == (404, "no_attribution_run")
            assert f"no attribution run is of {start} to {end}" in error["message"]
            assert "2025-10-01 to 2026-09-30, 2026-01-01 to 2026-03-31" in error["message"]
            assert f"attribution run --start {start} --end {end}" in error["fix"]
            assert str(settings.data_dir) not in r.text and "/tmp" not in r.text
    finally:
        shutil.rmtree(folder)


# ------------------------------------------------------------------------ faults and swaps


def _score_status(client, lead: str) -> int:
    return client.post("/score_leads", json={"lead_ids": [lead]}, headers=AUTH).status_code


def test_missing_online_store_is_503_and_not_ready_then_recovers(client, settings, lead_ids):
    db = settings.feast_dir / "online.db"
    aside = db.with_name("online.db.aside")
    os.replace(db, aside)
    try:
        r = client.post("/score_leads", json={"lead_ids": lead_ids[:1]}, headers=AUTH)
        error = r.json()["error"]
        assert r.status_code == 503 and "not been loaded" in error["message"]
        assert error["code"] == "scores_unavailable" and "materialize" in error["fix"]
        assert str(settings.data_dir) not in r.text
        assert _wait(lambda: client.get("/readyz").status_code == 503)
        assert client.get("/model_info", headers=AUTH).json()["online_store_ready"] is False
    finally:
        os.replace(aside, db)
    assert _wait(lambda: _score_status(client, lead_ids[0]) == 200)
    assert _wait(lambda: client.get("/readyz").status_code == 200)


def test_locked_online_store_is_503_quickly_then_recovers(client, settings, lead_ids):
    lock = sqlite3.connect(settings.feast_dir / "online.db", isolation_level=None)
    lock.execute("BEGIN EXCLUSIVE")
    try:
        r = client.post("/score_leads", json={"lead_ids": lead_ids[:2]}, headers=AUTH)
        error = r.json()["error"]
        assert r.status_code == 503 and error["code"] == "scores_unavailable"
        assert "refreshed" in error["message"] and "retry" in error["fix"]
        assert _wait(lambda: client.get("/readyz").status_code == 503)
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    assert _wait(lambda: _score_status(client, lead_ids[0]) == 200)
    assert _wait(lambda: client.get("/readyz").status_code == 200)


def test_a_locked_store_is_waited_on_without_stalling_other_requests(
    client: TestClient, settings: Settings, lead_ids: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import bentoml

    # the test, not the service's wait limit, decides when the lock goes
    service = bentoml.get_current_service()
    monkeypatch.setattr(service.online, "timeout_ms", 20_000)
    assert _score_status(client, lead_ids[0]) == 200
    lock = sqlite3.connect(settings.feast_dir / "online.db", isolation_level=None)
    lock.execute("BEGIN EXCLUSIVE")
    answer: dict[str, int] = {}
    waiting = threading.Thread(
        target=lambda: answer.update(status=_score_status(client, lead_ids[1]))
    )
    try:
        # given a scoring request waiting on the locked store
        waiting.start()
        waiting.join(0.5)
        assert waiting.is_alive()
        # then the service still answers other requests meanwhile
        assert client.get("/healthz").status_code == 200
        assert _wait(
            lambda: client.get("/model_info", headers=AUTH).json()["online_store_ready"] is False
        )
        assert waiting.is_alive()
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    # and once the lock is released the waiting request is scored, not refused
    waiting.join(20)
    assert answer == {"status": 200}


def test_champion_swap_is_picked_up_without_failing_a_request(client, deployment, lead_ids):
    uri = deployment.tracking_uri
    mlflow_client = client_for(uri)
    name = "lead_conversion"
    old = mlflow_client.get_model_version_by_alias(name, "champion")
    new = mlflow_client.create_model_version(
        name, source=old.source, run_id=old.run_id, model_id=getattr(old, "model_id", None)
    )
    statuses: list[int] = []
    versions: set[str] = set()
    stop = threading.Event()

    def hammer() -> None:
        while not stop.is_set():
            r = client.post("/score_leads", json={"lead_ids": lead_ids[:5]}, headers=AUTH)
            statuses.append(r.status_code)
            if r.status_code == 200:
                versions.add(r.json()["model_version"])

    worker = threading.Thread(target=hammer)
    worker.start()
    try:
        time.sleep(0.5)
        promote(uri, name, new.version, "swap test")
        swapped = _wait(
            lambda: (
                client.get("/model_info", headers=AUTH).json()["models"][name]["version"]
                == str(new.version)
            ),
            timeout=30,
        )
        time.sleep(0.5)
    finally:
        stop.set()
        worker.join()
        promote(uri, name, old.version, "swap test: restore")
    assert swapped
    assert statuses and set(statuses) == {200}
    assert {str(old.version), str(new.version)} <= versions
    assert _wait(
        lambda: (
            client.get("/model_info", headers=AUTH).json()["models"][name]["version"]
            == str(old.version)
        ),
        timeout=30,
    )


def test_batch_command_writes_the_same_fields(settings, tmp_path):
    from typer.testing import CliRunner

    from crm_intel.cli import app

    runner = CliRunner()
    env = {"MLFLOW_TRACKING_URI": settings.tracking_uri()}
    out = tmp_path / "accounts.csv"
    result = runner.invoke(
        app,
        ["score", "accounts", "--out", str(out), "--data-dir", str(settings.data_dir), "--json"],
        env=env,
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    frame = pd.read_csv(out)
    assert summary["rows"] == len(frame) > 0
    assert {
        "account_id",
        "status",
        "stale",
        "lifecycle",
        "closed_at",
        "probability",
        "score",
        "risk_band",
        "revenue_at_risk",
        "reasons",
        "reasons_up",
        "reasons_down",
        "raw_margin",
        "margin_unit",
        "model_version",
        "feature_timestamp",
        "Churn_Risk_Score__c",
        "Churn_Risk_Band__c",
        "Revenue_At_Risk__c",
        "rfm_segment",
        "RFM_Segment__c",
        "expected_remaining_months",
        "lifetime_value",
        "Lifetime_Value__c",
    } <= set(frame.columns)
    assert "log_odds" not in frame.columns and "raw_log_odds" not in frame.columns
    scored = frame[frame["status"] == "scored"]
    assert len(scored) and set(frame["status"]) <= {"scored", "closed", "stale", "unknown"}
    assert np.all((scored["score"] >= 1) & (scored["score"] <= 99))
    assert set(scored["risk_band"]) <= {"high", "medium", "low"}
    assert frame.loc[frame["status"] != "scored", "score"].isna().all()
    bad = runner.invoke(
        app,
        ["score", "leads", "--out", str(tmp_path / "x.xlsx"), "--data-dir", str(settings.data_dir)],
        env=env,
    )
    assert bad.exit_code != 0 and ".parquet or .csv" in bad.output


def test_the_batch_gives_every_item_the_apis_status_and_fields(client, lead_batch, lifecycle):
    # given a sample of every status in the nightly batch of all leads
    sample = lead_batch.groupby("status").head(5)
    assert set(sample["status"]) == {"scored", "closed", "stale"}
    assert set(lead_batch["lead_id"]) == set(lifecycle["lead"]["lead_id"])  # every CRM lead
    # when the API scores the same leads
    body = _one(client, "/score_leads", {"lead_ids": sample["lead_id"].tolist()})
    # then status, flags and scores agree item by item
    for item in body["results"]:
        row = sample.loc[item["lead_id"]]
        assert item["status"] == row["status"] and item["stale"] == bool(row["stale"])
        assert item["lifecycle"] == row["lifecycle"]
        assert item["feature_row"] == (None if pd.isna(row["feature_row"]) else row["feature_row"])
        if item["status"] == "scored":
            assert item["probability"] == pytest.approx(row["probability"], abs=1e-9)
            _same_reasons(item["reasons_up"], json.loads(row["reasons_up"]))
        else:
            assert (
                pd.isna(row["score"]) and item["error"]["code"] == json.loads(row["error"])["code"]
            )
            assert item["crm_fields"]["Score_Reasons__c"] == row["Score_Reasons__c"]


def test_service_stops_at_start_when_a_champion_is_missing(monkeypatch, tmp_path, deployment):
    from serving.champions import MissingChampion
    from serving.service import CRMIntel

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'none' / 'mlflow.db'}")
    monkeypatch.setenv("CRM_INTEL_API_KEYS", KEY)
    # The class BentoML instantiates at start (a second ASGI app would re-register metrics).
    with pytest.raises(MissingChampion, match="no champion for 'lead_conversion'"):
        CRMIntel.inner()


def _register_for_service(uri: str, name: str, feature_service: str) -> str:
    """A new version of ``name`` (the champion's model) tagged with ``feature_service``."""
    mlflow_client = client_for(uri)
    old = mlflow_client.get_model_version_by_alias(name, "champion")
    new = mlflow_client.create_model_version(
        name, source=old.source, run_id=old.run_id, model_id=getattr(old, "model_id", None)
    )
    mlflow_client.set_model_version_tag(name, new.version, "feature_service", feature_service)
    return str(new.version)


def test_service_refuses_at_start_a_champion_trained_for_another_feature_service(
    monkeypatch, tmp_path, deployment
):
    from serving.champions import RefusedChampion
    from serving.service import CRMIntel

    # given a copy of the registry whose churn champion was trained on the lead features
    db = tmp_path / "mlflow.db"
    shutil.copy(deployment.tracking_uri.removeprefix("sqlite:///"), db)
    uri = f"sqlite:///{db}"
    version = _register_for_service(uri, "churn_risk", "lead_conversion_v1")
    promote(uri, "churn_risk", version, "wrong features")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("CRM_INTEL_API_KEYS", KEY)
    # then the service does not start, and says why and what to do
    with pytest.raises(RefusedChampion) as err:
        CRMIntel.inner()
    message = str(err.value)
    assert f"version {version} of 'churn_risk'" in message
    assert "'lead_conversion_v1'" in message and "'churn_risk_v1'" in message


def test_a_champion_for_another_feature_service_is_refused_live_and_the_old_one_serves(
    client, deployment, lead_ids
):
    uri = deployment.tracking_uri
    name = "lead_conversion"
    old = client_for(uri).get_model_version_by_alias(name, "champion").version
    wrong = _register_for_service(uri, name, "churn_risk_v1")

    def info() -> dict:
        return client.get("/model_info", headers=AUTH).json()["models"][name]

    try:
        # when the alias moves to a version trained on the churn features
        promote(uri, name, wrong, "refusal test")
        assert _wait(lambda: info()["refused_version"] == wrong, timeout=30)
        # then the old champion keeps scoring, and model_info says why
        body = _one(client, "/score_leads", {"lead_ids": lead_ids[:3]})
        assert body["model_version"] == str(old) and body["scored"] == 3
        shown = info()
        assert shown["version"] == str(old)
        assert "'churn_risk_v1'" in shown["refresh_error"]
        assert "'lead_conversion_v1'" in shown["refresh_error"]
    finally:
        promote(uri, name, old, "refusal test: restore")
    # and once the alias is back, the report clears
    assert _wait(lambda: info()["refresh_error"] is None, timeout=30)
    assert info()["refused_version"] is None
