"""The score log on real databases: SQLite in WAL mode (the default) and a PostgreSQL server.

Writes, reads, trend lookups and erasure through :mod:`serving.score_log`; the writer's bounded
queue; and the live service killed with ``kill -9`` in the middle of a load, then restarted in
shadow mode on the same log.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from crm.settings import Settings
from crm_intel.demo import Deployment, LiveServer
from serving import score_log
from serving.batch import scorable_ids, score_batch
from serving.score_log import LoggedScore, ScoreLogWriter, open_log
from training.registry import tracking_to

pytestmark = [pytest.mark.integration]

KEY = "score-log-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
T0 = datetime(2025, 3, 3, tzinfo=UTC)


def _row(entity_id: str, score: int, at: datetime, arm: str = "champion") -> LoggedScore:
    return LoggedScore(
        scored_at=at,
        source="batch",
        request_id="r1",
        entity="lead",
        entity_id=entity_id,
        model="lead_conversion",
        model_version="3",
        feature_service="lead_conversion_v1",
        feature_timestamp=at - timedelta(days=1),
        arm=arm,
        probability=score / 100,
        score=score,
        grade="C",
        reasons=json.dumps([{"feature": "web_visits_30d", "value": 4.0, "contribution": 0.3}]),
    )


def test_rows_round_trip_in_order_and_erase_removes_only_one_entity(log_database_url):
    engine = open_log(log_database_url)
    score_log.append(engine, [_row("L1", 20, T0 + timedelta(days=7)), _row("L1", 10, T0)])
    score_log.append(engine, [_row("L2", 50, T0)])
    got = score_log.history(engine, "lead", "L1")
    assert [r["score"] for r in got] == [10, 20]  # oldest first
    assert got[0]["scored_at"] == T0 and got[0]["feature_timestamp"] == T0 - timedelta(days=1)
    assert got[0]["reasons"][0]["feature"] == "web_visits_30d"
    assert got[0]["arm"] == "champion" and got[0]["model_version"] == "3"
    assert score_log.erase(engine, {"lead": ["L1"]}) == 2
    assert score_log.history(engine, "lead", "L1") == []
    assert len(score_log.history(engine, "lead", "L2")) == 1


def test_first_served_score_in_a_window_ignores_shadow_rows(log_database_url):
    engine = open_log(log_database_url)
    score_log.append(
        engine,
        [
            _row("L1", 30, T0 - timedelta(days=40)),  # before the window
            _row("L1", 90, T0, arm="shadow"),  # never served
            _row("L1", 12, T0 + timedelta(days=1)),
            _row("L1", 18, T0 + timedelta(days=8)),
        ],
    )
    end = T0 + timedelta(days=20)
    first = score_log.first_scores_since(engine, "lead", ["L1", "L9"], end - timedelta(30), end)
    assert first == {"L1": (T0 + timedelta(days=1), 12)}


def test_writer_counts_what_a_full_queue_drops_and_writes_the_rest(log_database_url):
    engine = open_log(log_database_url)
    writer = ScoreLogWriter(engine, max_queued=10, batch_rows=5)
    rows = [_row(f"L{i}", 10, T0) for i in range(2_000)]
    writer.put(rows)
    writer.flush()
    counters = writer.counters()
    writer.close()
    with engine.connect() as conn:
        stored = conn.execute(sa.select(sa.func.count()).select_from(score_log.scores)).scalar()
    assert counters["dropped"] > 0  # the queue holds 10: a burst of 2,000 cannot all fit
    assert counters["written"] + counters["dropped"] == 2_000
    assert stored == counters["written"]


def _load(url: str, ids: list[str], stop: threading.Event, counts: Counter) -> None:
    with httpx.Client(base_url=url, headers=AUTH, timeout=10) as http:
        i = 0
        while not stop.is_set():
            try:
                r = http.post("/score_leads", json={"lead_ids": [ids[i % len(ids)]]})
                counts[r.status_code] += 1
            except httpx.HTTPError:
                counts["connection"] += 1
                if stop.wait(0.05):
                    return
            i += 1


def _rows(url: str) -> list[dict]:
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        rows = [dict(r) for r in conn.execute(sa.select(score_log.scores)).mappings()]
    engine.dispose()
    return rows


def _whole(row: dict) -> bool:
    """A row every field of which is present and well-formed."""
    reasons = json.loads(row["reasons"])
    return (
        row["entity"] == "lead"
        and row["entity_id"].startswith("L")
        and 0.0 <= row["probability"] <= 1.0
        and 1 <= row["score"] <= 99
        and row["arm"] in score_log.ARMS
        and row["scored_at"] is not None
        and isinstance(reasons, list)
        and all("feature" in r and "contribution" in r for r in reasons)
    )


@pytest.mark.slow
@pytest.mark.usefixtures("deployment_env")
def test_kill_9_mid_load_leaves_whole_rows_then_shadow_logs_both_arms(
    deployment: Deployment, log_database_url: str, tmp_path: Path
):
    settings = Settings(data_dir=deployment.data_dir, mlflow_tracking_uri=deployment.tracking_uri)
    ids = scorable_ids(settings, "lead")[:200]
    env = {"CRM_INTEL_DATABASE_URL": log_database_url, "CRM_INTEL_MODEL_REFRESH_SECONDS": "1"}
    # Given a live service under load from 8 clients
    with LiveServer(deployment, KEY, tmp_path / "first.log", env) as server:
        stop, counts = threading.Event(), Counter()
        clients = [
            threading.Thread(target=_load, args=(server.url, ids[n::8], stop, counts))
            for n in range(8)
        ]
        for c in clients:
            c.start()
        time.sleep(4.0)
        # When every process of the server is killed at once, mid-load (its workers run in
        # sessions of their own: each is killed by id)
        for pid in server.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        server.process.wait(timeout=10)
        stop.set()
        for c in clients:
            c.join(timeout=20)
    # Then every logged row is whole (none torn), and there are some
    rows = _rows(log_database_url)
    assert counts[200] > 0 and rows, counts
    assert all(_whole(r) for r in rows)
    assert len(rows) <= counts[200] + 8  # at most the answered ones (and those in flight)

    # Given a challenger (a second version of the same model) and the service restarted on the
    # same log in shadow mode
    with tracking_to(deployment.tracking_uri) as client:  # MLflow resolves sources globally
        champion = client.get_model_version_by_alias("lead_conversion", "champion")
        challenger = client.create_model_version(
            "lead_conversion", source=champion.source, run_id=champion.run_id
        )
        client.set_registered_model_alias("lead_conversion", "challenger", challenger.version)
    try:
        shadow_env = {**env, "CRM_INTEL_RELEASE_MODE": "shadow"}
        with LiveServer(deployment, KEY, tmp_path / "second.log", shadow_env) as server:
            asked = ids[:20]
            batch, _ = score_batch(settings, "lead_conversion", asked)
            by_id = batch.set_index("lead_id")
            answers = {}
            with httpx.Client(base_url=server.url, headers=AUTH, timeout=30) as http:
                info = http.get("/model_info").json()
                assert info["models"]["lead_conversion"]["challenger_version"] == str(
                    challenger.version
                )
                for n, lead in enumerate(asked):
                    r = http.post(
                        "/score_leads",
                        json={"lead_ids": [lead]},
                        headers={"X-Request-Id": f"shadow-{n}"},
                    )
                    assert r.status_code == 200
                    assert r.headers["x-request-id"] == f"shadow-{n}"
                    answers[lead] = r.json()
                deadline = time.monotonic() + 30
                while http.get("/model_info").json()["score_log"]["written"] < 2 * len(asked):
                    assert time.monotonic() < deadline, "the shadow rows were not logged"
                    time.sleep(0.2)
    finally:
        client.delete_registered_model_alias("lead_conversion", "challenger")
    # Then the callers got exactly the champion's answers
    for lead, body in answers.items():
        assert body["model_version"] == str(champion.version)
        item = body["results"][0]
        assert item["arm"] == "champion" and item["model_version"] == str(champion.version)
        assert item["probability"] == pytest.approx(by_id.loc[lead, "probability"], abs=1e-12)
        assert item["score"] == by_id.loc[lead, "score"]
    # and the log holds both arms of every request, the shadow one by the challenger
    logged = [r for r in _rows(log_database_url) if r["request_id"].startswith("shadow-")]
    arms = {(r["request_id"], r["arm"]): r for r in logged}
    for n in range(len(asked)):
        assert arms[(f"shadow-{n}", "champion")]["model_version"] == str(champion.version)
        assert arms[(f"shadow-{n}", "shadow")]["model_version"] == str(challenger.version)
        assert arms[(f"shadow-{n}", "shadow")]["entity_id"] == asked[n]
    assert all(_whole(r) for r in logged)
