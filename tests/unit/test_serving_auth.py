"""serving.auth and serving.gate without a server: keys with scopes, key files, the order of
the gate's answers, body limits and validation in the API's words, metrics by route."""

from __future__ import annotations

import hashlib
import json
import logging
import re

import pytest
from pydantic import BaseModel, ConfigDict, Field, SecretStr
from starlette.applications import Starlette
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route as StarletteRoute
from starlette.testclient import TestClient

from serving.auth import (
    ALL_SCOPES,
    KeyChecker,
    KeyConfigError,
    bearer_token,
    configured_keys,
    keys_from_entries,
    read_key_file,
)
from serving.gate import Gate, Limits, Route
from serving.metrics import RequestMetrics

pytestmark = pytest.mark.unit


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")

    lead_ids: list[str] = Field(min_length=1, max_length=3)
    top_reasons: int = Field(3, ge=0, le=10)


ROUTES = {
    "/score_leads": Route("/score_leads", frozenset({"POST"}), "score", Body),
    "/model_info": Route("/model_info", frozenset({"GET"}), "models:read"),
    "/boom": Route("/boom", frozenset({"GET"}), "models:read"),
}


def _app() -> Starlette:
    async def echo(request):
        return JSONResponse({"ok": True, "body": (await request.body()).decode()})

    async def ok(request):
        return JSONResponse({"ok": True})

    async def boom(request):  # an error body in a library's words, as BentoML sends them
        return PlainTextResponse("Traceback: /srv/venv/lib/thing.py ValueError", 500)

    return Starlette(
        routes=[
            StarletteRoute("/score_leads", echo, methods=["POST"]),
            StarletteRoute("/healthz", ok),
            StarletteRoute("/readyz", ok),
            StarletteRoute("/model_info", ok),
            StarletteRoute("/boom", boom),
            StarletteRoute("/docs.json", ok),
        ]
    )


def _client(expose_docs: bool = False, metrics: RequestMetrics | None = None) -> TestClient:
    keys = keys_from_entries([SecretStr("alpha"), "beta", "scorer:score", "reader:models:read"])
    gate = Gate(_app(), ROUTES, KeyChecker(keys), Limits(1000, 5.0), metrics, expose_docs)
    return TestClient(gate, raise_server_exceptions=False)


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_plain_keys_have_every_scope_and_scoped_keys_only_theirs():
    keys = keys_from_entries(["alpha", "scorer:score|attribution"])
    assert keys[0].scopes == ALL_SCOPES
    assert keys[1].scopes == {"score", "attribution"}
    assert keys[1].digest == hashlib.sha256(b"scorer").digest()
    assert keys[0].key_id == "env-" + hashlib.sha256(b"alpha").hexdigest()[:8]


def test_an_unknown_scope_is_refused_naming_the_entry_not_the_key():
    with pytest.raises(KeyConfigError, match="entry 2: unknown scope 'admin'") as err:
        keys_from_entries(["alpha", "secret-key:admin"])
    assert "secret-key" not in str(err.value)


def test_no_keys_at_all_is_refused():
    with pytest.raises(KeyConfigError, match="CRM_INTEL_API_KEYS"):
        configured_keys([])


def test_key_file_keys_are_digests_with_ids_and_scopes(tmp_path):
    path = tmp_path / "keys.yaml"
    path.write_text(
        "keys:\n"
        f"  - id: crm-sync\n    sha256: {hashlib.sha256(b'k1').hexdigest()}\n"
        "    scopes: [score]\n"
        f"  - id: admin\n    sha256: {hashlib.sha256(b'k2').hexdigest().upper()}\n"
        "    scopes: [models:read, models:write, metrics]\n"
    )
    checker = KeyChecker(configured_keys(["envkey"], path))
    found = checker.find("k1")
    assert found is not None and found.key_id == "crm-sync" and found.scopes == {"score"}
    admin = checker.find("k2")
    assert admin is not None and admin.scopes == {"models:read", "models:write", "metrics"}
    assert checker.find("envkey") is not None and checker.find("k3") is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("keys: [{id: a, sha256: abc, scopes: [score]}]", "keys.0.sha256"),
        ("keys: [{id: a, sha256: " + "0" * 64 + ", scopes: [root]}]", "unknown scope 'root'"),
        ("keys: [{id: a, sha256: " + "0" * 64 + ", scopes: []}]", "keys.0.scopes"),
        (
            "keys: [{id: a, sha256: " + "0" * 64 + ", scopes: [score]}, "
            "{id: a, sha256: " + "1" * 64 + ", scopes: [score]}]",
            "keys[1] (id 'a'): the id is used twice",
        ),
        ("keys: [{id: a, key: plaintext, scopes: [score]}]", "keys.0"),
        ("{{", "not valid YAML"),
    ],
)
def test_a_malformed_key_file_is_refused_naming_the_entry(tmp_path, text, message):
    path = tmp_path / "keys.yaml"
    path.write_text(text)
    with pytest.raises(KeyConfigError, match=re.escape(message)):
        read_key_file(path)


def test_bearer_token_parsing():
    assert bearer_token([(b"authorization", b"Bearer abc ")]) == "abc"
    assert bearer_token([(b"Authorization", b"bearer abc")]) == "abc"
    assert bearer_token([(b"authorization", b"Basic abc")]) is None
    assert bearer_token([]) is None


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
def test_missing_or_wrong_key_is_401_without_echoing_keys(headers):
    r = _client().post("/score_leads", json={"lead_ids": ["L1"]}, headers=headers)
    assert r.status_code == 401
    assert "alpha" not in r.text and "beta" not in r.text
    error = r.json()["error"]
    assert error["code"] in ("missing_api_key", "invalid_api_key")
    assert error["field"] == "Authorization" and "CRM_INTEL_API_KEYS" in error["fix"]
    assert r.headers["www-authenticate"].startswith("Bearer")


def test_health_is_open_and_the_description_is_off_unless_exposed():
    client = _client()
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200
    for path in ("/docs.json", "/"):
        r = client.get(path)
        assert r.status_code == 404 and "CRM_INTEL_EXPOSE_DOCS" in r.json()["error"]["fix"]
    exposed = _client(expose_docs=True)
    assert exposed.get("/docs.json").status_code == 200
    page = exposed.get("/")
    assert page.status_code == 200 and "/score_leads" in page.text
    assert "<script" not in page.text and "http" not in page.text.replace('href="/', "")


def test_order_401_then_404_then_403_then_405():
    client = _client()
    assert client.get("/no/such/path").status_code == 401  # no key: nothing else is told
    r = client.get("/no/such/path", headers=_auth("alpha"))
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    r = client.get("/model_info", headers=_auth("scorer"))
    assert r.status_code == 403
    assert r.json()["error"]["code"] == "missing_scope" and "'models:read'" in r.text
    assert client.get("/model_info", headers=_auth("reader")).status_code == 200
    r = client.get("/score_leads", headers=_auth("scorer"))
    assert r.status_code == 405 and r.headers["allow"] == "POST"
    assert r.json()["error"]["code"] == "method_not_allowed"


def test_a_valid_body_reaches_the_app_as_sent():
    body = {"lead_ids": ["L1", "L2"], "top_reasons": 2}
    r = _client().post("/score_leads", json=body, headers=_auth("scorer"))
    assert r.status_code == 200 and json.loads(r.json()["body"]) == body


@pytest.mark.parametrize(
    ("body", "code", "field", "words"),
    [
        (b'{"lead_ids": []}', "invalid_field", "lead_ids", "should have at least 1 item"),
        (b'{"lead_ids": ["L1"], "top_reasons": 11}', "invalid_field", "top_reasons", "less than"),
        (b'{"lead_ids": [7]}', "invalid_field", "lead_ids[0]", "valid string"),
        (b'{"lead_ids": ["L1"], "x": 1}', "invalid_field", "x", "is not a field"),
        (b"{not json", "invalid_json", None, "not valid JSON"),
        (b"[]", "invalid_field", None, "JSON object"),
        (b'{"lead_ids": [NaN]}', "invalid_field", "lead_ids[0]", "valid string"),
    ],
)
def test_an_invalid_body_is_400_in_the_projects_words(body, code, field, words):
    r = _client().post(
        "/score_leads",
        content=body,
        headers={**_auth("alpha"), "Content-Type": "application/json"},
    )
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["code"] == code and error["field"] == field and words in error["message"]
    assert "pydantic" not in r.text and "http" not in r.text


def test_a_body_over_the_limit_is_413_naming_it_and_the_connection_closes():
    client = _client()
    auth = {**_auth("alpha"), "Content-Type": "application/json"}
    r = client.post("/score_leads", content=b" " * 1001, headers=auth)
    assert r.status_code == 413 and "1000 bytes" in r.json()["error"]["message"]
    assert r.headers["connection"] == "close"

    def chunks():  # no Content-Length: counted while it arrives
        for _ in range(5):
            yield b" " * 400

    r = client.post("/score_leads", content=chunks(), headers=auth)
    assert r.status_code == 413


def test_a_non_json_body_is_415_after_auth():
    r = _client().post(
        "/score_leads",
        content=b"x",
        headers={**_auth("alpha"), "Content-Type": "multipart/form-data"},
    )
    assert r.status_code == 415
    error = r.json()["error"]
    assert error["code"] == "unsupported_media_type" and error["field"] == "Content-Type"
    assert "multipart/form-data" in error["message"]


def test_an_error_body_in_a_librarys_words_is_rewritten_and_logged(caplog):
    with caplog.at_level(logging.INFO, logger="crm_intel.serving"):
        r = _client().get("/boom", headers=_auth("alpha"))
    assert r.status_code == 500 and r.json()["error"]["code"] == "internal_error"
    assert "Traceback" not in r.text and "/srv" not in r.text
    assert any("Traceback" in rec.getMessage() for rec in caplog.records)


def test_each_4xx_is_one_info_line_with_the_key_id_never_the_key(caplog):
    with caplog.at_level(logging.INFO, logger="crm_intel.serving"):
        _client().get("/model_info", headers=_auth("scorer"))
    lines = [r for r in caplog.records if r.name == "crm_intel.serving"]
    assert len(lines) == 1 and lines[0].levelno == logging.INFO and lines[0].exc_info is None
    text = lines[0].getMessage()
    assert "403 missing_scope" in text and "scorer" not in text
    assert "key=env-" + hashlib.sha256(b"scorer").hexdigest()[:8] in text


def test_metrics_are_labelled_by_route_and_unknown_paths_share_one_label():
    metrics = RequestMetrics([*ROUTES, "/healthz", "/metrics"])
    client = _client(metrics=metrics)
    for n in range(50):
        client.get(f"/random-{n}")
        client.get(f"/random-{n}", headers=_auth("alpha"))
    client.get("/healthz")
    r = client.get("/metrics", headers=_auth("alpha"))
    assert r.status_code == 200
    lines = [x for x in r.text.splitlines() if x.startswith("crm_intel_requests_total")]
    assert 'route="other"' in "".join(lines) and "random" not in r.text
    other = [x for x in lines if 'route="other"' in x]
    assert sum(float(x.rsplit(" ", 1)[1]) for x in other) == 100
    assert _client(metrics=metrics).get("/metrics", headers=_auth("scorer")).status_code == 403


def test_keys_new_shows_the_key_once_and_the_file_keeps_only_its_digest(tmp_path):
    from typer.testing import CliRunner

    from crm_intel.cli import app

    path = tmp_path / "keys.yaml"
    runner = CliRunner()
    first = runner.invoke(
        app, ["keys", "new", "--id", "crm-sync", "--scopes", "score", "--file", str(path)]
    )
    assert first.exit_code == 0, first.output
    key = [line for line in first.output.splitlines() if len(line) == 43][0]
    assert key not in path.read_text()
    found = KeyChecker(read_key_file(path)).find(key)
    assert found is not None and found.key_id == "crm-sync" and found.scopes == {"score"}
    again = runner.invoke(
        app, ["keys", "new", "--id", "crm-sync", "--scopes", "score", "--file", str(path)]
    )
    assert again.exit_code == 2 and "already has a key with id 'crm-sync'" in again.output
    bad = runner.invoke(app, ["keys", "new", "--id", "x", "--scopes", "root", "--file", str(path)])
    assert bad.exit_code == 2 and "unknown scope 'root'" in bad.output
    assert len(read_key_file(path)) == 1  # a refused key leaves the file as it was


def test_key_first_answers_401_before_the_app_and_passes_the_rest():
    from serving.gate import KeyFirst

    reached: list[str] = []

    async def app(scope, receive, send):
        reached.append(scope["path"])
        await JSONResponse({"ok": True})(scope, receive, send)

    metrics = RequestMetrics(["/score_leads", "/healthz"])
    keys = KeyChecker(keys_from_entries(["alpha"]))
    client = TestClient(KeyFirst(app, keys, frozenset({"/score_leads"}), metrics))
    assert client.get("/random/path").status_code == 401
    assert client.post("/score_leads", headers=_auth("wrong")).status_code == 401
    assert reached == []  # refused before the application saw them
    assert client.get("/healthz").status_code == 200
    assert client.get("/docs.json").status_code == 200  # the gate decides on the description
    assert client.post("/score_leads", headers=_auth("alpha")).status_code == 200
    assert reached == ["/healthz", "/docs.json", "/score_leads"]
    exposition = metrics.exposition().decode()
    assert 'route="other",status="4xx"' in exposition and "random" not in exposition


def test_an_answer_later_than_the_timeout_is_504_in_the_apis_words():
    import asyncio

    async def slow(scope, receive, send):
        await asyncio.sleep(5)

    keys = KeyChecker(keys_from_entries(["alpha"]))
    gate = Gate(slow, ROUTES, keys, Limits(1000, 5.0, 0.05))
    r = TestClient(gate).post("/score_leads", json={"lead_ids": ["L1"]}, headers=_auth("alpha"))
    assert r.status_code == 504 and r.json()["error"]["code"] == "timeout"
