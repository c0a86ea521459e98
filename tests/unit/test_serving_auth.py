"""serving.auth: bearer keys in constant time, open health paths, JSON-only bodies."""

from __future__ import annotations

import pytest
from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from crm.settings import Settings
from serving.auth import APIKeyMiddleware, JSONOnlyMiddleware, KeyChecker, bearer_token

pytestmark = pytest.mark.unit


def _app() -> Starlette:
    async def ok(request):
        return JSONResponse({"ok": True})

    return Starlette(
        routes=[
            Route("/score_leads", ok, methods=["POST"]),
            Route("/healthz", ok),
            Route("/readyz", ok),
            Route("/model_info", ok),
        ]
    )


@pytest.fixture()
def client() -> TestClient:
    app = JSONOnlyMiddleware(_app(), paths=["/score_leads"])
    return TestClient(APIKeyMiddleware(app, [SecretStr("alpha"), SecretStr("beta")]))


def test_valid_key_passes_and_any_of_several_keys_works(client):
    for key in ("alpha", "beta"):
        r = client.post("/score_leads", json={}, headers={"Authorization": f"Bearer {key}"})
        assert r.status_code == 200


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": "Basic alpha"},
        {"Authorization": "Bearer "},
        {"Authorization": "alpha"},
        {"Authorization": "Bearer alph"},
        {"Authorization": "Bearer alphaX"},
    ],
)
def test_missing_or_wrong_key_is_401_without_echoing_keys(client, headers):
    r = client.post("/score_leads", json={}, headers=headers)
    assert r.status_code == 401
    assert "alpha" not in r.text and "beta" not in r.text
    error = r.json()["error"]
    assert error["code"] in ("missing_api_key", "invalid_api_key")
    assert error["field"] == "Authorization" and "CRM_INTEL_API_KEYS" in error["fix"]
    assert r.headers["www-authenticate"].startswith("Bearer")


def test_health_paths_are_open(client):
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200
    assert client.get("/model_info").status_code == 401


def test_non_json_body_is_415_after_auth(client):
    auth = {"Authorization": "Bearer alpha"}
    r = client.post(
        "/score_leads", content=b"x", headers={**auth, "Content-Type": "multipart/form-data"}
    )
    assert r.status_code == 415
    error = r.json()["error"]
    assert error["code"] == "unsupported_media_type" and error["field"] == "Content-Type"
    assert "application/json" in error["fix"] and "multipart/form-data" in error["message"]
    r = client.post("/score_leads", content=b"x", headers={"Content-Type": "text/plain"})
    assert r.status_code == 401  # the key is checked first


def test_key_checker_needs_keys_and_rejects_none():
    with pytest.raises(ValueError, match="CRM_INTEL_API_KEYS"):
        KeyChecker([])
    checker = KeyChecker(["k"])
    assert checker.valid("k") and not checker.valid(None) and not checker.valid("")


def test_bearer_token_parsing():
    assert bearer_token([(b"authorization", b"Bearer  tok ")]) == "tok"
    assert bearer_token([(b"Authorization", b"bearer tok")]) == "tok"
    assert bearer_token([(b"authorization", b"Token tok")]) is None
    assert bearer_token([]) is None


def test_keys_come_from_the_environment_comma_separated_and_stay_secret(monkeypatch):
    monkeypatch.setenv("CRM_INTEL_API_KEYS", " k3y-0ne, k3y-tw0 ,,k3y-thr33 ")
    settings = Settings()
    assert [k.get_secret_value() for k in settings.api_keys] == ["k3y-0ne", "k3y-tw0", "k3y-thr33"]
    assert "k3y" not in repr(settings) and "k3y" not in str(settings.model_dump())


def test_crm_field_names_default_and_partial_override(monkeypatch):
    assert Settings().crm_field_names["lead_score"] == "Lead_Score__c"
    monkeypatch.setenv("CRM_INTEL_CRM_FIELD_NAMES", '{"lead_score": "Score__c"}')
    names = Settings().crm_field_names
    assert names["lead_score"] == "Score__c" and names["lead_grade"] == "Lead_Grade__c"
