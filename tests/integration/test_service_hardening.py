"""The live service against a hostile client: memory per path, body and connection limits, scoped
keys for every route, health checks while large requests are scored, what error bodies show.

One ``bentoml serve`` on loopback with short connection deadlines (1 s) so that the tests wait
little; sizes are small and no time is asserted (only what happened, in which order).
"""

from __future__ import annotations

import hashlib
import socket
import threading
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest

from crm_intel.demo import Deployment, LiveServer
from serving.batch import scorable_ids

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("deployment_env")]

KEYS = {
    "all": "every-scope-key",
    "score": "score-only-key",
    "attribution": "attribution-only-key",
    "models:read": "models-read-key",
    "metrics": "metrics-only-key",
}
FILE_KEY = "key-from-the-key-file"
DEADLINE_SECONDS = 1.0


@pytest.fixture(scope="module")
def server(
    deployment: Deployment, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    folder = tmp_path_factory.mktemp("hardened-server")
    key_file = folder / "keys.yaml"
    digest = hashlib.sha256(FILE_KEY.encode()).hexdigest()
    key_file.write_text(f"keys:\n  - id: crm-sync\n    sha256: {digest}\n    scopes: [score]\n")
    entries = [KEYS["all"]] + [f"{key}:{scope}" for scope, key in KEYS.items() if scope != "all"]
    extra = {
        "CRM_INTEL_API_KEYS_FILE": str(key_file),
        "CRM_INTEL_REQUEST_HEADER_TIMEOUT_SECONDS": str(DEADLINE_SECONDS),
        "CRM_INTEL_REQUEST_BODY_TIMEOUT_SECONDS": str(DEADLINE_SECONDS),
        "CRM_INTEL_IDLE_TIMEOUT_SECONDS": str(DEADLINE_SECONDS),
    }
    with LiveServer(deployment, ",".join(entries), folder / "bentoml.log", extra) as live:
        yield live


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _memory_mib(server: LiveServer) -> float:
    """Resident memory of the server and its worker processes."""
    return server.rss_bytes() / 2**20


def _raw(server: LiveServer, data: bytes, wait: float = 10.0) -> tuple[bytes, bool]:
    """Send ``data`` on a new connection; what came back and whether the server closed it."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=wait) as conn:
        if data:
            conn.sendall(data)
        received = b""
        try:
            while chunk := conn.recv(65536):
                received += chunk
        except TimeoutError:
            return received, False
        except ConnectionResetError:
            return received, True
        return received, True


# ------------------------------------------------------------------------------ memory


def test_random_paths_without_a_key_do_not_grow_memory(server):
    """Each request is answered 401 before any per-path state is kept; BentoML's metrics, which
    labelled every raw path, are off and ours are by route. (BentoML holds each request's
    timeout timer for the request timeout: a few hundred bytes a request, which that bounds.)"""
    with httpx.Client(base_url=server.url, timeout=30) as http:
        for _ in range(1000):  # warm up: every code path and allocator pool touched once
            assert http.get(f"/{uuid.uuid4().hex}").status_code == 401
        before = _memory_mib(server)
        for n in range(5000):
            r = http.get(f"/{uuid.uuid4().hex}/{n}?q={uuid.uuid4().hex}")
            assert r.status_code == 401
        growth = _memory_mib(server) - before
    assert growth <= 5.0, f"memory grew {growth:.1f} MiB over 5,000 random paths"


# ---------------------------------------------------------------------- body and deadlines


def test_a_50_mb_body_is_413_naming_the_limit_without_being_read(server):
    before = _memory_mib(server)
    head = (
        b"POST /score_leads HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + f"Authorization: Bearer {KEYS['all']}\r\n".encode()
        + f"Content-Length: {50 * 2**20}\r\n\r\n".encode()
    )
    received, closed = _raw(server, head + b" " * 2**20)
    assert received.startswith(b"HTTP/1.1 413") and b"1048576 bytes" in received
    assert closed
    # sent without a length, it is counted as it arrives and refused past the limit
    with httpx.Client(base_url=server.url, timeout=30) as http:

        def chunks() -> Iterator[bytes]:
            for _ in range(50):
                yield b" " * 2**20

        try:
            r = http.post(
                "/score_leads",
                content=chunks(),
                headers={**_auth(KEYS["all"]), "Content-Type": "application/json"},
            )
            assert r.status_code == 413
        except httpx.HTTPError:
            pass  # the server may close while the client still sends: refused either way
    assert _memory_mib(server) - before <= 10.0


def test_a_half_sent_request_and_an_idle_connection_are_closed(server):
    received, closed = _raw(server, b"POST /score_leads HTTP/1.1\r\nHost: x\r\n")
    assert closed and received.startswith(b"HTTP/1.1 408")
    assert b"request_timeout" in received
    received, closed = _raw(server, b"")  # connects, sends nothing
    assert closed and received == b""
    # a body that never arrives whole
    head = (
        b"POST /score_leads HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + f"Authorization: Bearer {KEYS['all']}\r\nContent-Length: 100\r\n\r\n".encode()
    )
    received, closed = _raw(server, head + b'{"lead_ids"')
    assert closed and received.startswith(b"HTTP/1.1 408")
    # a kept-alive connection left idle after an answer
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as conn:
        conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = b""
        while chunk := conn.recv(65536):  # ends only when the server closes the connection
            answer += chunk
        assert answer.startswith(b"HTTP/1.1 200")


# --------------------------------------------------------------------------------- scopes

ROUTE_CASES = [
    ("POST", "/score_leads", "score", {"lead_ids": ["L0000001"]}),
    ("POST", "/score_accounts", "score", {"account_ids": ["A000001"]}),
    ("POST", "/attribution", "attribution", {"journeys": [{"channels": ["email", "webinar"]}]}),
    ("GET", "/model_info", "models:read", None),
    ("GET", "/metrics", "metrics", None),
]


@pytest.mark.parametrize(("method", "path", "scope", "body"), ROUTE_CASES)
def test_every_route_needs_its_scope(server, method, path, scope, body):
    with httpx.Client(base_url=server.url, timeout=30) as http:

        def call(headers: dict[str, str]) -> httpx.Response:
            return http.request(method, path, json=body, headers=headers)

        assert call({}).status_code == 401
        assert call(_auth(KEYS[scope])).status_code == 200
        assert call(_auth(KEYS["all"])).status_code == 200  # a plain key: every scope
        for other, key in KEYS.items():
            if other in (scope, "all"):
                continue
            r = call(_auth(key))
            assert r.status_code == 403, (other, r.text)
            assert r.json()["error"]["code"] == "missing_scope" and repr(scope) in r.text


def test_a_key_file_key_works_and_only_key_ids_reach_the_log(server):
    with httpx.Client(base_url=server.url, timeout=30) as http:
        assert (
            http.post(
                "/score_leads", json={"lead_ids": ["L0000001"]}, headers=_auth(FILE_KEY)
            ).status_code
            == 200
        )
        assert http.get("/model_info", headers=_auth(FILE_KEY)).status_code == 403
    time.sleep(0.5)
    log = server.log.read_text()
    assert "key=crm-sync" in log
    assert all(key not in log for key in [*KEYS.values(), FILE_KEY])
    assert "Traceback" not in log


def test_the_description_and_index_are_off_by_default(server):
    with httpx.Client(base_url=server.url, timeout=30) as http:
        for path in ("/docs.json", "/", "/schema.json", "/static_content/swagger-ui.css"):
            r = http.get(path, headers=_auth(KEYS["all"]))
            assert r.status_code in (401, 404), path
            assert "<script" not in r.text


# ------------------------------------------------------------------- health under load


def test_health_is_answered_while_large_requests_are_scored(server, deployment):
    from crm.settings import Settings

    settings = Settings(data_dir=deployment.data_dir, mlflow_tracking_uri=deployment.tracking_uri)
    ids = (scorable_ids(settings, "lead") * 1000)[:1000]
    body = {"lead_ids": ids, "top_reasons": 10}
    windows: list[tuple[float, float]] = []
    stop = threading.Event()

    def big_requests() -> None:
        with httpx.Client(base_url=server.url, headers=_auth(KEYS["score"]), timeout=60) as http:
            while not stop.is_set():
                t0 = time.monotonic()
                assert http.post("/score_leads", json=body).status_code == 200
                windows.append((t0, time.monotonic()))

    worker = threading.Thread(target=big_requests)
    worker.start()
    answered: list[float] = []
    try:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            while len(windows) < 3:
                assert http.get("/healthz").status_code == 200
                answered.append(time.monotonic())
                time.sleep(0.005)
    finally:
        stop.set()
        worker.join()
    # health checks were answered *during* the big requests, not only between them
    inside = sum(1 for t in answered for a, b in windows if a < t < b)
    assert inside >= 3 * len(windows), (inside, len(windows))


# --------------------------------------------------------------------- what errors show


def test_no_error_body_in_the_suite_discloses_paths_libraries_or_versions(
    server, error_bodies, disclosure
):
    # the error cases of this module, on top of every other service test's (scanned as they
    # arrived, see tests/conftest.py)
    with httpx.Client(base_url=server.url, timeout=30) as http:
        auth = _auth(KEYS["all"])
        json_headers = {**auth, "Content-Type": "application/json"}
        http.get("/nope", headers=auth)
        http.get("/score_leads", headers=auth)
        http.post("/score_leads", content=b"{not json", headers=json_headers)
        http.post("/score_leads", json={"lead_ids": [1]}, headers=auth)
        http.post(
            "/score_leads", json={"leads": [{"lead_id": "L1", "features": {"x": 1}}]}, headers=auth
        )
        http.post("/score_leads", json={"lead_ids": ["L1"], "top_reasons": 200}, headers=auth)
        http.post(
            "/attribution",
            json={"period": {"start": "1990-01-01", "end": "1990-02-01"}},
            headers=auth,
        )
        http.post("/attribution", json={"journeys": []}, headers=auth)
        http.post("/score_leads", content=b"a=1", headers={**auth, "Content-Type": "text/plain"})
    mine = [e for e in error_bodies if e[1] >= 400]
    assert len(mine) >= 9
    assert all(not disclosure(body) for _, _, body in mine)


def test_nonsense_feature_values_are_refused_naming_the_feature(server):
    with httpx.Client(base_url=server.url, headers=_auth(KEYS["score"]), timeout=30) as http:
        for features, name in [
            ({"touches_7d": -3}, "touches_7d"),
            ({"days_since_created": 1e308}, "days_since_created"),
            ({"email_click_rate_90d": -0.1}, "email_click_rate_90d"),
        ]:
            r = http.post("/score_leads", json={"leads": [{"lead_id": "L1", "features": features}]})
            assert r.status_code == 400
            assert r.json()["error"]["field"] == f"leads[0].features.{name}"
        ok = http.post(
            "/score_leads",
            json={"leads": [{"lead_id": "L1", "features": {"touch_velocity_14d": -5}}]},
        )
        assert ok.status_code == 200  # a signed feature may be negative
