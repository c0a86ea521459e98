"""The Redis online store: the same reads as SQLite, Feast's own layout, replicas sharing one
server, and the server going away and coming back.

One real ``redis-server`` for the module (tests/redis_server.py), on a free loopback port with an
append-only file, killed and restarted by the outage test. The data is a copy of the demo
deployment's directory (its SQLite store stays as built), materialised into Redis once.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pyarrow.compute as pc
import pytest
import redis
from feast import FeatureStore, RepoConfig
from redis_server import RedisServer, redis_or_skip

from crm.settings import Settings
from crm_intel.demo import Deployment, LiveServer
from crm_intel.erasure import erase
from features.redis_store import CrmRedisOnlineStore, field_name
from features.store import (
    FeatureStoreNotReadyError,
    OnlineReader,
    feature_store,
    latest_rows,
    materialize,
    online_store_for,
)
from serving.batch import scorable_ids, score_batch
from serving.online import OnlineFeatures, OnlineStoreUnavailable

pytestmark = pytest.mark.integration

KEY = "redis-test-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
UNKNOWN = "L9999999"


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    redis_or_skip()
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def shared(
    deployment: Deployment, redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Deployment:
    """A copy of the demo deployment's data directory, its features materialised into Redis."""
    data_dir = tmp_path_factory.mktemp("redis-deployment") / "data"
    shutil.copytree(deployment.data_dir, data_dir)
    materialize(_settings(data_dir, redis_server.url))
    return Deployment(data_dir, deployment.tracking_uri, deployment.versions)


def _settings(data_dir: Any, url: str | None = None) -> Settings:
    if url is None:
        return Settings(data_dir=data_dir)
    return Settings(data_dir=data_dir, online_store="redis", redis_url=url)


def _ids(settings: Settings, entity: str, n: int) -> list[str]:
    return sorted(scorable_ids(settings, entity))[:n]


def test_redis_reads_what_sqlite_reads_and_feasts_own_redis_store_reads_it_too(
    shared: Deployment, redis_server: RedisServer
) -> None:
    # Given the same feature tables materialised into SQLite (at build) and into Redis
    lite = OnlineReader(feature_store(_settings(shared.data_dir)))
    red = OnlineReader(feature_store(_settings(shared.data_dir, redis_server.url)))
    for entity, key in (("lead", "lead_id"), ("account", "account_id")):
        latest = latest_rows(shared.data_dir / "features" / f"{entity}_features.parquet", key)
        ids = sorted(latest[key].to_pylist())[::7][:40] + [UNKNOWN]
        # When the service's read asks both for features and lifecycle
        # Then every value, timestamp and lifecycle row is the same, unknown ids alike
        assert red.rows(entity, ids, status=True) == lite.rows(entity, ids, status=True)
    # and Feast's own Redis online store (type: redis) reads the same values from that server
    config = red.store.config
    feast_redis = FeatureStore(
        config=RepoConfig(
            project=config.project,
            provider="local",
            registry={"registry_type": "file", "path": config.registry.path},
            online_store={"type": "redis", "connection_string": f"127.0.0.1:{redis_server.port}"},
            entity_key_serialization_version=config.entity_key_serialization_version,
            repo_path=str(config.repo_path),
        )
    )
    leads = sorted(
        latest_rows(shared.data_dir / "features" / "lead_features.parquet", "lead_id")[
            "lead_id"
        ].to_pylist()
    )[:25]
    names = ["touches_90d", "source", "status"]
    got = feast_redis.get_online_features(
        features=["lead_features:touches_90d", "lead_features:source", "lead_status:status"],
        entity_rows=[{"lead_id": i} for i in leads],
    ).to_dict()
    ours = red.rows("lead", leads, status=True)
    expected = {
        "touches_90d": [r["touches_90d"] for r in ours],
        "source": [r["source"] for r in ours],
        "status": [r["lifecycle"]["status"] for r in ours],
    }
    assert {n: got[n] for n in names} == expected


def test_batch_scores_from_redis_equal_the_batch_from_sqlite(
    shared: Deployment, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", shared.tracking_uri)
    lite = _settings(shared.data_dir)
    ids = _ids(lite, "lead", 60) + [UNKNOWN]
    from_sqlite, _ = score_batch(lite, "lead_conversion", ids, top=5)
    from_redis, _ = score_batch(
        _settings(shared.data_dir, redis_server.url), "lead_conversion", ids, top=5
    )
    assert (from_redis["status"] == "scored").sum() == 60
    assert from_redis.equals(from_sqlite)


def test_materialise_again_drops_what_left_the_tables_and_an_empty_server_is_not_ready(
    shared: Deployment, redis_server: RedisServer
) -> None:
    # Given the features materialised into a database of their own on the server
    url = redis_server.url.rsplit("/", 1)[0] + "/3"
    settings = _settings(shared.data_dir, url)
    materialize(settings, entities_=["lead"])
    store = feature_store(settings)
    views = [store.get_feature_view("lead_features"), store.get_feature_view("lead_status")]
    every = latest_rows(shared.data_dir / "features" / "lead_features.parquet", "lead_id")
    ids = sorted(every["lead_id"].to_pylist())
    gone, featureless, kept = ids[:5], ids[5:8], ids[8:13]
    reader = OnlineReader(store)
    assert all(r["found"] for r in reader.rows("lead", gone + featureless + kept))

    # When a run's tables no longer hold five leads (features and lifecycle), and three more
    # have a lifecycle row but no feature row
    def without_gone(view: Any) -> Any:
        table = latest_rows(shared.data_dir / "features" / f"{view.name}.parquet", "lead_id")
        dropped = gone + featureless if view.name == "lead_features" else gone
        return table.filter(
            pc.invert(pc.is_in(table["lead_id"], value_set=pc.cast(dropped, "string")))
        )

    writer = online_store_for(store.config)
    assert isinstance(writer, CrmRedisOnlineStore)
    written = writer.write_generation(store.config, views, without_gone)
    # Then those five are unknown, features and lifecycle; the three have only their lifecycle;
    # the others are still served
    assert written["lead_features"] == len(ids) - 8
    rows = reader.rows("lead", gone + featureless + kept, status=True)
    assert [r["found"] for r in rows] == [False] * 8 + [True] * 5
    assert [r["lifecycle"] is None for r in rows] == [True] * 5 + [False] * 8
    assert all(r["touches_90d"] is None for r in rows[5:8])
    client = redis.Redis.from_url(url)
    hashed = field_name("lead_features", "touches_90d")  # Feast's field naming
    assert client.hget(writer.redis_keys(store.config, "lead_id", kept[:1])[0], hashed)
    assert not client.exists(*writer.redis_keys(store.config, "lead_id", gone))

    # When the server comes back empty (its data lost)
    client.flushdb()
    # Then a read is "not loaded", never a lead reported unknown, and the service is not ready
    with pytest.raises(FeatureStoreNotReadyError, match="features materialize"):
        reader.rows("lead", kept)
    online = OnlineFeatures(settings)
    problem = online.check()
    assert problem is not None and problem.kind == "missing"
    with pytest.raises(OnlineStoreUnavailable):
        online.rows("lead", kept, status=True)
    # and materialising again serves them again, through the same reader
    materialize(settings, entities_=["lead", "account"])
    assert online.check() is None
    assert all(r["found"] for r in online.rows("lead", kept))
    client.close()


def _answers(http: httpx.Client, leads: list[str], accounts: list[str]) -> list[dict[str, Any]]:
    out = []
    for path, body in (
        ("/score_leads", {"lead_ids": [*leads, UNKNOWN], "top_reasons": 5}),
        ("/score_accounts", {"account_ids": accounts, "top_reasons": 5}),
    ):
        response = http.post(path, json=body)
        assert response.status_code == 200, response.text
        out.append(response.json())
    return out


def _scores(answers: list[dict[str, Any]]) -> list[Any]:
    """What must not change across an outage: each item's status, score and reasons (a trend
    moves once a score has been served)."""
    keep = ("status", "probability", "score", "reasons", "feature_timestamp", "lifecycle")
    return [[{k: item.get(k) for k in keep} for item in a["results"]] for a in answers]


def _until(predicate: Callable[[], bool], timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


def _replicas(
    shared: Deployment, redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> list[LiveServer]:
    """Two service replicas of the deployment reading the module's Redis server, each with a
    score log of its own."""
    out = []
    for n in range(2):
        folder = tmp_path_factory.mktemp(f"replica-{n}")
        extra = {
            "CRM_INTEL_ONLINE_STORE": "redis",
            "CRM_INTEL_REDIS_URL": redis_server.url,
            "CRM_INTEL_ONLINE_STORE_TIMEOUT_MS": "100",
            "CRM_INTEL_DATABASE_URL": f"sqlite:///{folder / 'scores.db'}",
        }
        out.append(LiveServer(shared, KEY, folder / "bentoml.log", extra))
    return out


def _started(stack: ExitStack, servers: list[LiveServer]) -> list[LiveServer]:
    """Start ``servers`` at once (each start waits for its server to answer), each stopped when
    ``stack`` closes."""
    with ThreadPoolExecutor(len(servers)) as pool:
        starts = [pool.submit(server.__enter__) for server in servers]
        wait(starts)
    for server, start in zip(servers, starts, strict=True):
        if start.exception() is None:
            stack.push(server.__exit__)
    for start in starts:
        start.result()  # the first failure, once every started server is in the stack
    return servers


def test_two_replicas_answer_alike_and_ride_out_a_redis_outage(
    shared: Deployment, redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> None:
    settings = _settings(shared.data_dir)
    leads, accounts = _ids(settings, "lead", 15), _ids(settings, "account", 10)
    with ExitStack() as stack:
        # Given two `bentoml serve` replicas on two ports, reading one Redis server
        replicas = [
            stack.enter_context(httpx.Client(base_url=server.url, headers=AUTH, timeout=30))
            for server in _started(stack, _replicas(shared, redis_server, tmp_path_factory))
        ]
        assert replicas[0].base_url != replicas[1].base_url
        # When both score the same leads and accounts
        before = [_answers(http, leads, accounts) for http in replicas]
        # Then their answers are identical, and real scores
        assert before[0] == before[1]
        assert before[0][0]["scored"] == 15 and before[0][0]["unknown"] == 1
        assert before[0][1]["scored"] + before[0][1]["closed"] + before[0][1]["stale"] == 10

        # When Redis dies
        redis_server.kill()
        try:
            for http in replicas:
                # Then each replica answers 503 in the API's words, never a 500, and is not ready
                for _ in range(3):
                    r = http.post("/score_leads", json={"lead_ids": leads[:1]})
                    assert r.status_code == 503, r.text
                    error = r.json()["error"]
                    assert error["code"] == "scores_unavailable"
                    assert "feature store" in error["message"] and error["fix"]
                    r = http.post("/score_accounts", json={"account_ids": accounts[:1]})
                    assert r.status_code == 503, r.text
                assert _until(lambda h=http: h.get("/readyz").status_code == 503)
                assert http.get("/readyz").json() != {"ready": True}
        finally:
            # When it comes back, with the data of its append-only file
            redis_server.start()
        # Then both replicas are ready again by themselves and answer as before
        for http in replicas:
            assert _until(lambda h=http: h.get("/readyz").status_code == 200)
        after = [_answers(http, leads, accounts) for http in replicas]
        assert _scores(after[0]) == _scores(after[1]) == _scores(before[0])


def test_erasure_removes_the_lead_from_redis_in_every_view(
    shared: Deployment, redis_server: RedisServer, tmp_path: Path
) -> None:
    # Given a data directory of its own, materialised into a Redis database of its own
    data_dir = tmp_path / "data"
    shutil.copytree(shared.data_dir, data_dir)
    url = redis_server.url.rsplit("/", 1)[0] + "/4"
    settings = Settings(
        data_dir=data_dir,
        online_store="redis",
        redis_url=url,
        database_url=f"sqlite:///{tmp_path / 'log.db'}",
    )
    materialize(settings)
    lead, neighbour = _ids(settings, "lead", 2)
    reader = OnlineReader(feature_store(settings))
    assert all(r["found"] and r["lifecycle"] for r in reader.rows("lead", [lead, neighbour], True))
    # When the lead is erased
    removed = erase(settings, "lead", lead, actor="test")
    # Then its features and lifecycle are gone from the server (its hash with them), and its
    # neighbour is still served
    assert removed["online/lead_features"] == removed["online/lead_status"] == 1
    gone, kept = reader.rows("lead", [lead, neighbour], status=True)
    assert not gone["found"] and gone["lifecycle"] is None
    assert kept["found"] and kept["lifecycle"]
    store = online_store_for(reader.store.config)
    assert isinstance(store, CrmRedisOnlineStore)
    client = redis.Redis.from_url(url)
    assert not client.exists(*store.redis_keys(reader.store.config, "lead_id", [lead]))
    client.close()
