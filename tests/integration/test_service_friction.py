"""What a CRM integrator and an operator meet first (issue 17): the access log line, health in
JSON, and errors in plain words. In-process (``Service.to_asgi()`` + TestClient) against the
shared demo deployment."""

from __future__ import annotations

import logging
import re
import sqlite3
import time
from collections.abc import Iterator

import pytest
from service_client import service_client
from starlette.testclient import TestClient

from crm_intel.demo import Deployment

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("deployment_env")]

KEY = "test-key-friction"
AUTH = {"Authorization": f"Bearer {KEY}"}
KEY_ID = r"env-[0-9a-f]{8}"


@pytest.fixture(scope="module")
def client(deployment: Deployment) -> Iterator[TestClient]:
    env = {"CRM_INTEL_API_KEYS": KEY, "CRM_INTEL_ONLINE_STORE_TIMEOUT_MS": "50"}
    with service_client(deployment, env) as c:
        yield c


@pytest.fixture(scope="module")
def open_lead(deployment: Deployment) -> tuple[str, str]:
    """A lead the service scores, and the as-of date of the CRM data it was loaded from."""
    import pandas as pd

    from crm.settings import Settings

    settings = Settings(data_dir=deployment.data_dir)
    status = pd.read_parquet(settings.features_dir / "lead_status.parquet")
    row = status[status["status"] == "open"].iloc[0]
    as_of = pd.Timestamp(row["event_timestamp"]).date().isoformat()
    return str(row["lead_id"]), as_of


def _lines(caplog: pytest.LogCaptureFixture, rid: str) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.name == "crm_intel.serving" and f" id={rid} " in r.getMessage()
    ]


# ------------------------------------------------------------------------------- access log


def test_each_request_is_one_access_line_with_status_latency_id_and_key(
    client: TestClient, open_lead: tuple[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    lead, _ = open_lead
    # given a valid request and an invalid one, each with its request id
    with caplog.at_level(logging.INFO, logger="crm_intel.serving"):
        ok = client.post(
            "/score_leads",
            json={"lead_ids": [lead]},
            headers={**AUTH, "X-Request-Id": "friction-ok"},
        )
        bad = client.post(
            "/score_leads",
            json={"lead_ids": [lead], "top_reasons": 99},
            headers={**AUTH, "X-Request-Id": "friction-bad"},
        )
    assert (ok.status_code, bad.status_code) == (200, 400)
    # then each is exactly one INFO line: method, route, status, (code), ms, id, key id
    [ok_line] = _lines(caplog, "friction-ok")
    assert re.fullmatch(
        rf"POST /score_leads 200 \d+\.\dms id=friction-ok key={KEY_ID}", ok_line.getMessage()
    ), ok_line.getMessage()
    [bad_line] = _lines(caplog, "friction-bad")
    assert re.fullmatch(
        rf"POST /score_leads 400 invalid_field \d+\.\dms id=friction-bad key={KEY_ID}",
        bad_line.getMessage(),
    ), bad_line.getMessage()
    assert ok_line.levelno == bad_line.levelno == logging.INFO
    # and no 4xx line carries a traceback, nor the key itself
    assert bad_line.exc_info is None and bad_line.exc_text is None
    assert all(KEY not in r.getMessage() for r in caplog.records)


def test_a_refused_key_is_one_line_and_health_checks_are_debug(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="crm_intel.serving"):
        refused = client.get("/model_info", headers={"X-Request-Id": "friction-401"})
        client.get("/healthz", headers={"X-Request-Id": "friction-health"})
    assert refused.status_code == 401 and refused.headers["x-request-id"] == "friction-401"
    [line] = _lines(caplog, "friction-401")
    assert re.fullmatch(
        r"GET /model_info 401 missing_api_key \d+\.\dms id=friction-401 key=-", line.getMessage()
    )
    assert line.levelno == logging.INFO and line.exc_info is None
    [health] = _lines(caplog, "friction-health")
    assert health.levelno == logging.DEBUG and health.getMessage().startswith("GET /healthz 200 ")


# ----------------------------------------------------------------------------- health as JSON


def test_health_and_readiness_answer_json(client: TestClient) -> None:
    for path in ("/healthz", "/livez"):
        r = client.get(path)
        assert (r.status_code, r.json()) == (200, {"alive": True})
        assert r.headers["content-type"] == "application/json"
    r = client.get("/readyz")
    assert (r.status_code, r.json()) == (200, {"ready": True})
    # another method is refused as such, never answered as "not ready"
    r = client.request("TRACE", "/readyz")
    assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed"


def test_not_ready_is_503_with_ready_false_and_the_api_error(
    client: TestClient, deployment: Deployment
) -> None:
    from crm.settings import Settings

    # given an online store another connection holds locked
    db = Settings(data_dir=deployment.data_dir).feast_dir / "online.db"
    lock = sqlite3.connect(db, isolation_level=None)
    lock.execute("BEGIN EXCLUSIVE")
    try:
        deadline = time.monotonic() + 15
        while (r := client.get("/readyz")).status_code != 503 and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    # then readiness says so in JSON, with the API's error shape
    assert r.status_code == 503
    body = r.json()
    assert body["ready"] is False
    assert body["error"]["code"] == "not_ready" and set(body["error"]) == {
        "code",
        "field",
        "message",
        "fix",
    }


# ------------------------------------------------------------------------------ plain words


def test_an_unknown_id_is_told_in_plain_words_with_the_datas_date(
    client: TestClient, open_lead: tuple[str, str]
) -> None:
    lead, as_of = open_lead
    r = client.post("/score_leads", json={"lead_ids": [lead, "NOPE-7"]}, headers=AUTH)
    error = r.json()["results"][1]["error"]
    assert error["code"] == "unknown_id" and error["field"] == "lead_ids[1]"
    assert error["message"] == (
        f"lead 'NOPE-7' is not in the CRM data crm-intel last loaded (data as of {as_of})"
    )
    assert "online store" not in r.text


def test_an_empty_features_object_is_its_own_error_naming_the_field(
    client: TestClient, open_lead: tuple[str, str]
) -> None:
    lead, _ = open_lead
    # given an unknown lead sent with "features": {}, and a known one likewise (scored even
    # when its features are older than the TTL)
    r = client.post(
        "/score_leads",
        json={
            "leads": [{"lead_id": "NOPE-8", "features": {}}, {"lead_id": lead, "features": {}}],
            "allow_stale": True,
        },
        headers=AUTH,
    )
    assert r.status_code == 200
    unknown, known = r.json()["results"]
    # then the unknown one is told its features object is empty, not to send features
    error = unknown["error"]
    assert unknown["status"] == "unknown" and error["code"] == "empty_features"
    assert error["field"] == "leads[0].features" and "empty object" in error["message"]
    assert "leads[0].features" in error["fix"]
    # and the known one is scored from the CRM data as if no features were sent
    assert known["status"] == "scored" and known["features_source"] == "online"
