"""Benchmark: single-lead score + reasons over HTTP at concurrency 1, 8 and 32 (loopback only).

Measured in the same run, on the same demo deployment, the same LightGBM booster and the same
leads:

* ``crm_intel``: ``bentoml serve serving.service:CRMIntel`` — ``POST /score_leads`` with one
  ``lead_id``: API-key check, online read of the features and the lead's status, TreeSHAP
  reasons, calibrated score, CRM fields. The leads cycled are ones the API scores (open, with
  fresh features), not closed or stale ones it answers without scoring;
* ``mlflow_lightgbm`` (the peer): the champion's LightGBM booster logged with MLflow's native
  LightGBM flavour (``mlflow.lightgbm.log_model``) into a temporary MLflow store and served with
  ``mlflow models serve --env-manager local`` — ``POST /invocations`` with the lead's feature
  vector as ``dataframe_split`` JSON in the encoded numeric columns the booster takes
  (categoricals as the codes of the model's levels, as ``serving.scoring.encode`` gives them):
  prediction only (the booster's probability), no feature read, no reasons, no calibration;
* ``mlflow_pyfunc_wrapper`` (``--with-wrapper`` only, for comparison with earlier figures): the
  registered champion itself (``models:/lead_conversion@champion``, our scikit-learn model
  through MLflow's pyfunc wrapper, raw feature values in ``dataframe_records``). This is not the
  peer at its best: the wrapper re-encodes every request with pandas;
* ``in_process_floor``: the same scoring called directly in Python (``score_items`` on a
  pre-read online row: encode + ``pred_contrib`` + calibration + reasons), and with the online
  read included.

Both servers serve one booster: when the demo's champion is not LightGBM (model selection may
pick the logistic model on the small demo data), the best LightGBM candidate allowed to serve
(``lightgbm_monotone``) is selected, tested and fitted the way training does, registered and
promoted to ``champion`` in the benchmark's own deployment. The MLflow copy of the booster
carries no pandas category metadata (it takes the codes, not the strings); its predictions are
checked against the champion's before timing.

The load generator is a minimal keep-alive HTTP/1.1 client on asyncio streams (pre-encoded
requests), so that on a 2-core machine the client takes as little CPU from the servers as
possible. All servers are up together and the phases alternate (ours, then MLflow, at each
concurrency), so a change in the machine's load falls on both. Every phase is bounded by
``--seconds``.

The score log's cost (:func:`score_log_cost`): single-lead latency at concurrency 8 with the log
on and off, phases alternating, and 60 s at concurrency 16 with the log on (rows logged against
answers, rows dropped).

Usage: ``python benchmarks/serve.py [--seconds 10] [--workers 1] [--with-wrapper]``. Writes
``benchmarks/results/serve.json`` and prints it; ``--hardening-only`` and ``--score-log-only``
run one section.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
from _measure import write

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from crm_intel.demo import (  # noqa: E402
    QUIET_ENV,
    SMALL_MINIMUMS,
    Deployment,
    LiveServer,
    build_demo,
    free_port,
)

TARGET_P99_MS_AT_8 = 25.0
TARGET_THROUGHPUT_RATIO = 1.5
CONCURRENCY = (1, 8, 32)
KEY = "bench-key"
MODEL = "lead_conversion"


class Connection:
    """One keep-alive HTTP/1.1 connection on asyncio streams."""

    def __init__(self, port: int):
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, raw: bytes) -> int:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        assert self.reader is not None
        self.writer.write(raw)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = 0
        chunked = False
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
        if chunked:
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).strip(), 16)
                await self.reader.readexactly(size + 2)
                if size == 0:
                    break
        else:
            await self.reader.readexactly(length)
        return status

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def encode_post(port: int, path: str, body: dict[str, Any], headers: dict[str, str]) -> bytes:
    data = json.dumps(body).encode()
    lines = [
        f"POST {path} HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        "Content-Type: application/json",
        f"Content-Length: {len(data)}",
        *(f"{k}: {v}" for k, v in headers.items()),
        "",
        "",
    ]
    return "\r\n".join(lines).encode() + data


async def run_load(
    port: int, requests: list[bytes], concurrency: int, seconds: float
) -> dict[str, Any]:
    latencies: list[float] = []
    errors: dict[str, int] = {}
    deadline = time.perf_counter() + seconds

    async def worker(n: int) -> None:
        conn = Connection(port)
        i = n
        try:
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                try:
                    status = await conn.request(requests[i % len(requests)])
                except (OSError, asyncio.IncompleteReadError, ValueError) as err:
                    errors[type(err).__name__] = errors.get(type(err).__name__, 0) + 1
                    await conn.close()
                    conn = Connection(port)
                    continue
                latencies.append(time.perf_counter() - started)
                if status != 200:
                    errors[str(status)] = errors.get(str(status), 0) + 1
                i += concurrency
        finally:
            await conn.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker(n) for n in range(concurrency)))
    elapsed = time.perf_counter() - started
    ms = np.array(latencies) * 1000
    return {
        "concurrency": concurrency,
        "requests": len(ms),
        "errors": errors,
        "p50_ms": round(float(np.percentile(ms, 50)), 2) if len(ms) else None,
        "p99_ms": round(float(np.percentile(ms, 99)), 2) if len(ms) else None,
        "throughput_rps": round(len(ms) / elapsed, 1),
    }


def wait_http(url: str, timeout: float, process: subprocess.Popen, log: Path) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"server exited with {process.returncode}; see {log}:\n{log.read_text()[-3000:]}"
            )
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise TimeoutError(url)


class MlflowServer:
    """``mlflow models serve --env-manager local`` of ``model_uri`` on a loopback port.

    Use as a context manager; the process group it started is ended on exit.
    """

    def __init__(self, model_uri: str, tracking_uri: str, log: Path, workers: int):
        self.model_uri = model_uri
        self.port = free_port()
        self.log = log
        self.workers = workers
        # mlflow starts ``uvicorn`` by name: the interpreter's own bin/ must be on PATH.
        path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
        self.env = {
            **os.environ,
            **QUIET_ENV,
            "MLFLOW_TRACKING_URI": tracking_uri,
            "MLFLOW_REGISTRY_URI": tracking_uri,
            "PATH": path,
        }
        self.process: Any = None

    def __enter__(self) -> MlflowServer:
        self._log_file = self.log.open("wb")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mlflow",
                "models",
                "serve",
                "-m",
                self.model_uri,
                "--env-manager",
                "local",
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-w",
                str(self.workers),
            ],
            env=self.env,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            wait_http(f"http://127.0.0.1:{self.port}/ping", 180, self.process, self.log)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)  # the group this object started
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        self._log_file.close()


MLFLOW_URI_ENV = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")


@contextlib.contextmanager
def mlflow_env_kept() -> Any:
    """Put MLflow's URI variables back as they were: ``mlflow.set_tracking_uri`` (used by
    ``training.registry.tracking_to``) also writes them to ``os.environ``, where a server
    started later would find them (after the block they name MLflow's default,
    ``sqlite:///mlflow.db`` in the working directory)."""
    before = {k: os.environ.get(k) for k in MLFLOW_URI_ENV}
    try:
        yield
    finally:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def lightgbm_champion(deployment: Deployment) -> dict[str, Any]:
    """Make sure the deployment's ``lead_conversion`` champion is a LightGBM model.

    Keeps a LightGBM champion as it is. Otherwise selects among the LightGBM candidates that may
    serve (``lightgbm_monotone``, the grid training uses for data of this size) as of the same
    test cutoff, tests the winner on the same period, fits it as of the last date the data knows
    (as :func:`training.snapshots.train_time_split` does for its winner), logs and registers it
    through the usual gate and promotes it in this deployment.
    """
    import pandas as pd

    from crm.settings import Settings
    from features.training import training_set
    from training.data import LABEL, TIMESTAMP, Minimums
    from training.model import CalibratedBoostingClassifier
    from training.pipeline import SPECS, feature_columns
    from training.protocol import Protocol, as_of_parts, cutoffs
    from training.registry import champion_version, load_champion, promote
    from training.selection import candidate_record, candidates
    from training.snapshots import (
        evaluate_as_of,
        fit_production,
        selection_record,
        train_time_split,
    )
    from training.tracking import log_training_run

    current = load_champion(MODEL, deployment.tracking_uri)
    if isinstance(current.model, CalibratedBoostingClassifier):
        return {"version": current.version, "how": "the demo's own champion"}
    settings = Settings(data_dir=deployment.data_dir, mlflow_tracking_uri=deployment.tracking_uri)
    spec = SPECS[MODEL]
    protocol = Protocol()
    frame = training_set(settings, MODEL)
    result = train_time_split(frame, spec, protocol, Minimums(**SMALL_MINIMUMS))
    frame = frame.sort_values([TIMESTAMP, spec.entity_key], kind="stable").reset_index(drop=True)
    ts = pd.to_datetime(frame[TIMESTAMP], utc=True)
    y = frame[LABEL].to_numpy(dtype=int)
    X = frame[feature_columns(frame, spec.entity_key)]
    cutoff = cutoffs(ts, protocol, 1)[-1]
    train_rows = int(as_of_parts(ts, cutoff, protocol).train.sum())
    pool = [
        c
        for c in candidates(train_rows, spec.rules, list(X.columns))
        if c.name == "lightgbm_monotone"
    ]
    out = evaluate_as_of(frame, spec, cutoff, protocol, only=pool)
    winner = out["selection"].winner.candidate
    production = fit_production(X, y, ts, spec, protocol, winner)
    trees = dataclasses.replace(
        result,
        model=production,
        metrics=out["metrics"],
        evaluation=out["evaluation"],
        evaluation_model=out["models"]["model"],
        params=dict(winner.params),
        candidate=candidate_record(winner),
        selection=selection_record(out["selection"]),
        notes=[*result.notes, "benchmarks/serve.py: LightGBM candidates only"],
    )
    record = log_training_run(trees, deployment.tracking_uri, settings.promotion_margin)
    version = str(record["model_version"])
    if not record["decision"]["promoted"]:
        promote(
            deployment.tracking_uri,
            MODEL,
            version,
            "benchmarks/serve.py: both servers serve the same LightGBM booster",
        )
    assert str(champion_version(deployment.tracking_uri, MODEL).version) == version
    return {
        "version": version,
        "how": (
            f"demo champion v{current.version} is {current.metadata.get('family')}; "
            f"LightGBM candidate {winner.describe()} registered and promoted for the benchmark"
        ),
        "replaced_family": current.metadata.get("family"),
        "test_roc_auc": round(float(out["metrics"]["model"]["roc_auc"]), 4),
        "replaced_test_roc_auc": round(float(result.metrics["model"]["roc_auc"]), 4),
    }


def log_native(model: Any, encoded: np.ndarray, names: list[str], root: Path) -> tuple[str, str]:
    """Log ``model``'s booster with ``mlflow.lightgbm`` into a new store under ``root``.

    The copy keeps the trees the champion predicts with (``best_iteration_``) and no pandas
    category metadata, so it takes the encoded numeric columns. Returns (tracking URI, model URI).
    """
    from importlib.metadata import version

    import lightgbm as lgb
    import mlflow
    import mlflow.lightgbm
    import pandas as pd
    from mlflow.models import infer_signature

    from training.registry import experiment_id, tracking_to

    booster = lgb.Booster(
        model_str=model.booster_.model_to_string(num_iteration=model.best_iteration_)
    )
    booster.pandas_categorical = None
    example = pd.DataFrame(encoded[:5], columns=names)
    tracking_uri = f"sqlite:///{root / 'mlflow.db'}"
    pins = [f"{p}=={version(p)}" for p in ("mlflow", "lightgbm", "pandas", "numpy")]
    with (
        tracking_to(tracking_uri),
        mlflow.start_run(experiment_id=experiment_id(tracking_uri, "native_lightgbm")),
    ):
        info = mlflow.lightgbm.log_model(
            booster,
            name="model",
            signature=infer_signature(example, booster.predict(example)),
            input_example=example,
            pip_requirements=pins,
        )
    return tracking_uri, str(info.model_uri)


def split_body(names: list[str], row: np.ndarray) -> dict[str, Any]:
    """One encoded row as MLflow's ``dataframe_split`` (missing as JSON null)."""
    values = [None if np.isnan(v) else float(v) for v in row]
    return {"dataframe_split": {"columns": names, "data": [values]}}


def same_predictions(
    ours_port: int,
    native_port: int,
    ids: list[str],
    names: list[str],
    encoded: np.ndarray,
    expected_raw: np.ndarray,
    model: Any,
    n: int = 20,
) -> dict[str, Any]:
    """Both servers score the same booster: the MLflow server returns the booster's probability
    for the encoded rows, and our probability is the champion's calibrator applied to it."""
    import httpx

    native = np.array(
        [
            httpx.post(
                f"http://127.0.0.1:{native_port}/invocations",
                json=split_body(names, row),
                timeout=30,
            ).json()["predictions"][0]
            for row in encoded[:n]
        ],
        dtype=float,
    )
    reply = httpx.post(
        f"http://127.0.0.1:{ours_port}/score_leads",
        json={"lead_ids": ids[:n]},
        headers={"Authorization": f"Bearer {KEY}"},
        timeout=30,
    ).json()
    ours = np.array([r["probability"] for r in reply["results"]], dtype=float)
    native_diff = float(np.max(np.abs(native - expected_raw[:n])))
    ours_diff = float(np.max(np.abs(ours - model.calibrator_(native))))
    if native_diff > 1e-9 or ours_diff > 1e-6:
        raise RuntimeError(
            f"the servers do not score the same booster: MLflow vs booster {native_diff:.2e}, "
            f"ours vs calibrated MLflow {ours_diff:.2e}"
        )
    return {
        "rows_checked": n,
        "mlflow_vs_booster_max_abs_diff": native_diff,
        "ours_vs_calibrated_mlflow_max_abs_diff": ours_diff,
        "model_version": reply.get("model_version"),
    }


def scorable_leads(deployment: Deployment, n: int) -> list[str]:
    """The first ``n`` leads the API scores (open, with fresh features): a closed or stale lead
    is answered without scoring, which would flatter every figure."""
    from crm.settings import Settings
    from serving.batch import entity_ids
    from serving.online import OnlineFeatures
    from serving.scoring import score_items
    from training.registry import load_champion

    settings = Settings(data_dir=deployment.data_dir, mlflow_tracking_uri=deployment.tracking_uri)
    champion = load_champion(MODEL, deployment.tracking_uri)
    ids = entity_ids(settings, "lead")
    online = OnlineFeatures(settings)
    try:
        records = online.rows("lead", ids, status=True)
        ttl = online.ttl("lead")
    finally:
        online.close()
    results = score_items(
        MODEL, champion.model, records, [None] * len(ids), 3, settings.crm_field_names, ttl=ttl
    )
    return [i for i, r in zip(ids, results, strict=True) if r["status"] == "scored"][:n]


def in_process_floor(deployment: Deployment, ids: list[str], seconds: float) -> dict[str, Any]:
    """The API's scoring called in this process: on pre-read rows, and with the online read."""
    from crm.settings import Settings
    from serving.online import OnlineFeatures
    from serving.scoring import score_items
    from training.registry import load_champion

    settings = Settings(data_dir=deployment.data_dir, mlflow_tracking_uri=deployment.tracking_uri)
    champion = load_champion(MODEL, deployment.tracking_uri)
    online = OnlineFeatures(settings)
    names = settings.crm_field_names
    ttl = online.ttl("lead")
    records = {i: online.rows("lead", [i], status=True) for i in ids}

    def timed(fn) -> dict[str, float]:
        out = []
        deadline = time.perf_counter() + seconds
        n = 0
        while time.perf_counter() < deadline:
            lead = ids[n % len(ids)]
            started = time.perf_counter()
            fn(lead)
            out.append(time.perf_counter() - started)
            n += 1
        ms = np.array(out) * 1000
        return {
            "calls": len(ms),
            "p50_ms": round(float(np.percentile(ms, 50)), 3),
            "p99_ms": round(float(np.percentile(ms, 99)), 3),
            "throughput_rps": round(len(ms) / max(sum(out), 1e-9), 1),
        }

    scoring_only = timed(
        lambda lead: score_items(MODEL, champion.model, records[lead], [None], 3, names, ttl=ttl)
    )
    with_read = timed(
        lambda lead: score_items(
            MODEL,
            champion.model,
            online.rows("lead", [lead], status=True),
            [None],
            3,
            names,
            ttl=ttl,
        )
    )
    online.close()
    return {
        "predict_contributions_reasons": scoring_only,
        "online_read_predict_contributions_reasons": with_read,
    }


def encode_get(port: int, path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()


async def health_during_large_requests(port: int, big: bytes, seconds: float) -> dict[str, Any]:
    """``/healthz`` latency (every 10 ms) while one client sends 1,000-id requests back to back."""
    stop = time.perf_counter() + seconds
    big_ms: list[float] = []
    health_ms: list[float] = []

    async def big_client() -> None:
        conn = Connection(port)
        try:
            while time.perf_counter() < stop:
                t0 = time.perf_counter()
                status = await conn.request(big)
                if status == 200:
                    big_ms.append((time.perf_counter() - t0) * 1000)
        finally:
            await conn.close()

    async def health_client() -> None:
        conn = Connection(port)
        request = encode_get(port, "/healthz")
        try:
            await asyncio.sleep(0.2)  # the first big request is under way
            while time.perf_counter() < stop:
                t0 = time.perf_counter()
                await conn.request(request)
                health_ms.append((time.perf_counter() - t0) * 1000)
                await asyncio.sleep(0.01)
        finally:
            await conn.close()

    await asyncio.gather(big_client(), health_client())
    health = np.array(health_ms)
    return {
        "large_requests": len(big_ms),
        "large_request_p50_ms": round(float(np.median(big_ms)), 1) if big_ms else None,
        "healthz_checks": len(health),
        "healthz_p50_ms": round(float(np.percentile(health, 50)), 2),
        "healthz_p99_ms": round(float(np.percentile(health, 99)), 2),
        "healthz_max_ms": round(float(health.max()), 2),
    }


def hardening(
    deployment: Deployment, ids: list[str], tmp: Path, seconds: float, random_paths: int
) -> dict[str, Any]:
    """The hostile-client figures of the hardened service, each beside its peer in one run:

    * ``/healthz`` while 1,000-id requests are scored back to back; peer: the same server with
      every request scored on the event loop (``CRM_INTEL_SCORE_INLINE_MAX_ITEMS`` above 1,000,
      how the service scored before);
    * server and worker memory after ``random_paths`` requests to random paths without a key;
    * single-lead latency at concurrency 8 with the limits on (body size and time, header
      deadline) and off (``CRM_INTEL_REQUEST_LIMITS=0``), phases alternating.
    """
    big_ids = (ids * (1000 // len(ids) + 1))[:1000]
    out: dict[str, Any] = {}
    variants = {
        "limits_on": {},
        "limits_off": {"CRM_INTEL_REQUEST_LIMITS": "0"},
        "scored_on_the_loop": {"CRM_INTEL_SCORE_INLINE_MAX_ITEMS": "100000"},
    }
    with contextlib.ExitStack() as stack:
        servers = {
            name: stack.enter_context(LiveServer(deployment, KEY, tmp / f"bentoml-{name}.log", env))
            for name, env in variants.items()
        }
        auth = {"Authorization": f"Bearer {KEY}"}
        for name in ("limits_on", "scored_on_the_loop"):
            port = servers[name].port
            big = encode_post(port, "/score_leads", {"lead_ids": big_ids, "top_reasons": 10}, auth)
            out.setdefault("healthz_during_1000_id_requests", {})[name] = asyncio.run(
                health_during_large_requests(port, big, seconds)
            )
        latency: dict[str, list[dict[str, Any]]] = {"limits_on": [], "limits_off": []}
        for _ in range(2):
            for name in latency:
                port = servers[name].port
                single = [encode_post(port, "/score_leads", {"lead_ids": [i]}, auth) for i in ids]
                latency[name].append(asyncio.run(run_load(port, single, 8, seconds / 2)))
        out["latency_limits_on_vs_off_concurrency_8"] = {
            name: {
                "p50_ms": round(statistics.median(r["p50_ms"] for r in rows), 2),
                "p99_ms": round(statistics.median(r["p99_ms"] for r in rows), 2),
                "requests": sum(r["requests"] for r in rows),
            }
            for name, rows in latency.items()
        }
        server = servers["limits_on"]
        paths = [encode_get(server.port, f"/{uuid.uuid4().hex}/{n}") for n in range(5000)]
        asyncio.run(run_load(server.port, paths[:2000], 8, 3.0))  # warm up
        before = server.rss_bytes() / 2**20
        started = time.perf_counter()
        sent = 0
        while sent < random_paths:
            batch = [encode_get(server.port, f"/{uuid.uuid4().hex}") for _ in range(5000)]
            row = asyncio.run(run_until(server.port, batch, 8, min(5000, random_paths - sent)))
            sent += row
        out["memory_after_random_paths"] = {
            "requests": sent,
            "seconds": round(time.perf_counter() - started, 1),
            "growth_mib": round(server.rss_bytes() / 2**20 - before, 1),
        }
    return out


def score_log_cost(
    deployment: Deployment, ids: list[str], tmp: Path, seconds: float, load_seconds: float
) -> dict[str, Any]:
    """What the score log costs and whether it keeps up, in one run:

    * single-lead latency at concurrency 8 with the score log on (SQLite in WAL mode, the
      default) and off (``CRM_INTEL_SCORE_LOG=0``), phases alternating, three of each;
    * ``load_seconds`` at concurrency 16 with the log on: rows logged against 200 answers, and
      the rows the writer's queue dropped (must be 0).
    """
    import sqlalchemy

    url = f"sqlite:///{tmp / 'score-log.db'}"
    variants = {
        "log_on": {"CRM_INTEL_DATABASE_URL": url},
        "log_off": {"CRM_INTEL_SCORE_LOG": "0"},
    }
    auth = {"Authorization": f"Bearer {KEY}"}
    with contextlib.ExitStack() as stack:
        servers = {
            name: stack.enter_context(LiveServer(deployment, KEY, tmp / f"bentoml-{name}.log", env))
            for name, env in variants.items()
        }
        single = {
            name: [encode_post(s.port, "/score_leads", {"lead_ids": [i]}, auth) for i in ids]
            for name, s in servers.items()
        }
        for name, server in servers.items():  # warm up both
            asyncio.run(run_load(server.port, single[name], 8, 2.0))
        latency: dict[str, list[dict[str, Any]]] = {name: [] for name in servers}
        for _ in range(3):
            for name, server in servers.items():
                latency[name].append(asyncio.run(run_load(server.port, single[name], 8, seconds)))

        def logged() -> tuple[int, dict[str, Any]]:
            import httpx

            info = {}
            for _ in range(300):
                info = httpx.get(f"{servers['log_on'].url}/model_info", headers=auth).json()
                if info["score_log"]["queued"] == 0:
                    break
                time.sleep(0.1)
            time.sleep(0.5)
            engine = sqlalchemy.create_engine(url)
            with engine.connect() as conn:
                rows = conn.execute(sqlalchemy.text("SELECT count(*) FROM scores")).scalar_one()
            engine.dispose()
            return int(rows), info["score_log"]

        before, _ = logged()
        load = asyncio.run(run_load(servers["log_on"].port, single["log_on"], 16, load_seconds))
        after, counters = logged()
    answered = load["requests"] - sum(v for k, v in load["errors"].items() if k.isdigit())
    return {
        "latency_concurrency_8": {
            name: {
                "p50_ms": round(statistics.median(r["p50_ms"] for r in rows), 2),
                "p99_ms": round(statistics.median(r["p99_ms"] for r in rows), 2),
                "requests": sum(r["requests"] for r in rows),
            }
            for name, rows in latency.items()
        },
        "load_concurrency_16": {
            "seconds": load_seconds,
            "answered_200": answered,
            "rows_logged": after - before,
            "dropped": counters["dropped"],
            "failed": counters["failed"],
            "p50_ms": load["p50_ms"],
            "p99_ms": load["p99_ms"],
        },
    }


async def run_until(port: int, requests: list[bytes], concurrency: int, total: int) -> int:
    """Send ``total`` requests over ``concurrency`` connections; how many were answered."""
    done = 0

    async def worker(n: int) -> None:
        nonlocal done
        conn = Connection(port)
        i = n
        try:
            while done < total:
                done += 1
                await conn.request(requests[i % len(requests)])
                i += concurrency
        finally:
            await conn.close()

    await asyncio.gather(*(worker(n) for n in range(concurrency)))
    return done


def stats_by_concurrency(rows: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    return {r["concurrency"]: r for r in rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="per phase")
    parser.add_argument("--workers", type=int, default=1, help="server processes (each side)")
    parser.add_argument("--leads", type=int, default=3000)
    parser.add_argument(
        "--random-paths", type=int, default=100_000, help="keyless random-path requests"
    )
    parser.add_argument(
        "--hardening-only",
        action="store_true",
        help="only the hostile-client figures (writes serve-hardening.json)",
    )
    parser.add_argument(
        "--score-log-only",
        action="store_true",
        help="only the score log's cost and load figures (writes serve-score-log.json)",
    )
    parser.add_argument(
        "--deployment", type=Path, default=None, help="reuse (or create) a demo deployment here"
    )
    parser.add_argument(
        "--with-wrapper",
        action="store_true",
        help="also serve the registered champion through MLflow's pyfunc wrapper (the old peer)",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="crm-bench-serve-") as tmp:
        root = args.deployment or Path(tmp) / "deployment"
        started = time.perf_counter()
        with mlflow_env_kept():
            deployment = build_demo(root, leads=args.leads)
            champion_info = lightgbm_champion(deployment)
        build_seconds = time.perf_counter() - started
        from crm.settings import Settings
        from features.store import online_features
        from serving.scoring import encode
        from training.registry import load_champion

        settings = Settings(
            data_dir=deployment.data_dir, mlflow_tracking_uri=deployment.tracking_uri
        )
        ids = scorable_leads(deployment, 500)
        if args.hardening_only:
            figures = hardening(deployment, ids, Path(tmp), args.seconds, args.random_paths)
            write("serve-hardening", {"hardening": figures})
            return
        if args.score_log_only:
            figures = score_log_cost(deployment, ids, Path(tmp), args.seconds, 60.0)
            write("serve-score-log", {"score_log": figures})
            return
        floor = in_process_floor(deployment, ids, min(args.seconds, 5.0))

        # The leads' feature vectors as the MLflow servers need them (they read nothing).
        champion = load_champion(MODEL, deployment.tracking_uri)
        model = champion.model
        names = list(model.feature_names_in_)
        frame = online_features(settings, "lead", ids)[names]
        encoded = encode(model, frame)
        native_root = Path(tmp) / "native"
        native_root.mkdir()
        with mlflow_env_kept():
            native_uri, native_model = log_native(model, encoded, names, native_root)
        expected_raw = np.asarray(
            model.booster_.predict(encoded, num_iteration=model.best_iteration_)
        )

        results: dict[str, list[dict[str, Any]]] = {"crm_intel": [], "mlflow_lightgbm": []}
        if args.with_wrapper:
            results["mlflow_pyfunc_wrapper"] = []
        checks: dict[str, Any] = {}
        env_workers = {
            "CRM_INTEL_MODEL_REFRESH_SECONDS": "10",
            "CRM_INTEL_SERVE_WORKERS": str(args.workers),
        }
        with contextlib.ExitStack() as stack:
            ours = stack.enter_context(
                LiveServer(deployment, KEY, Path(tmp) / "bentoml.log", env_workers)
            )
            native = stack.enter_context(
                MlflowServer(
                    native_model, native_uri, Path(tmp) / "mlflow-native.log", args.workers
                )
            )
            requests: dict[str, tuple[int, list[bytes]]] = {
                "crm_intel": (
                    ours.port,
                    [
                        encode_post(
                            ours.port,
                            "/score_leads",
                            {"lead_ids": [i]},
                            {"Authorization": f"Bearer {KEY}"},
                        )
                        for i in ids
                    ],
                ),
                "mlflow_lightgbm": (
                    native.port,
                    [
                        encode_post(native.port, "/invocations", split_body(names, row), {})
                        for row in encoded
                    ],
                ),
            }
            if args.with_wrapper:
                wrapper = stack.enter_context(
                    MlflowServer(
                        f"models:/{MODEL}@champion",
                        deployment.tracking_uri,
                        Path(tmp) / "mlflow-wrapper.log",
                        args.workers,
                    )
                )
                vectors = json.loads(frame.to_json(orient="records"))
                requests["mlflow_pyfunc_wrapper"] = (
                    wrapper.port,
                    [
                        encode_post(wrapper.port, "/invocations", {"dataframe_records": [v]}, {})
                        for v in vectors
                    ],
                )
            checks = same_predictions(
                ours.port, native.port, ids, names, encoded, expected_raw, model
            )
            for port, raw in requests.values():
                asyncio.run(run_load(port, raw, 4, 2.0))  # warm-up
            for c in CONCURRENCY:
                for name, (port, raw) in requests.items():
                    row = asyncio.run(run_load(port, raw, c, args.seconds))
                    row["load_1m"] = round(os.getloadavg()[0], 2)  # the machine is shared
                    results[name].append(row)
                    print(
                        f"{name:>22} c={c:<2} p50 {row['p50_ms']} ms  p99 {row['p99_ms']} ms  "
                        f"{row['throughput_rps']} req/s  load {row['load_1m']}",
                        file=sys.stderr,
                    )
        hardened = hardening(deployment, ids, Path(tmp), args.seconds, args.random_paths)
        score_log_figures = score_log_cost(deployment, ids, Path(tmp), args.seconds, 60.0)
    ours_by_c = stats_by_concurrency(results["crm_intel"])
    theirs_by_c = stats_by_concurrency(results["mlflow_lightgbm"])
    best_ours = max(r["throughput_rps"] for r in results["crm_intel"])
    best_theirs = max(r["throughput_rps"] for r in results["mlflow_lightgbm"])
    ratio = best_ours / best_theirs if best_theirs else float("inf")
    payload: dict[str, Any] = {
        "what": (
            "single-lead score + reasons + online read (crm_intel) vs prediction only "
            "(mlflow models serve, native LightGBM flavour, same booster)"
        ),
        "leads_cycled": len(ids),
        "seconds_per_phase": args.seconds,
        "workers": args.workers,
        "deployment_build_seconds": round(build_seconds, 1),
        "champion": champion_info,
        "checks": checks,
        "crm_intel": results["crm_intel"],
        "mlflow_lightgbm": results["mlflow_lightgbm"],
        "in_process_floor": floor,
        "score_log": score_log_figures,
        "throughput_ratio_vs_mlflow": round(ratio, 2),
        "throughput_ratio_by_concurrency": {
            c: round(ours_by_c[c]["throughput_rps"] / theirs_by_c[c]["throughput_rps"], 2)
            for c in CONCURRENCY
            if theirs_by_c[c]["throughput_rps"]
        },
        "targets": {
            "p99_ms_at_concurrency_8": TARGET_P99_MS_AT_8,
            "throughput_ratio_vs_mlflow": TARGET_THROUGHPUT_RATIO,
        },
        "meets_targets": (
            ours_by_c[8]["p99_ms"] is not None
            and ours_by_c[8]["p99_ms"] <= TARGET_P99_MS_AT_8
            and ratio >= TARGET_THROUGHPUT_RATIO
        ),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "load_1m_during_phases": [
            min(r["load_1m"] for rows in results.values() for r in rows),
            max(r["load_1m"] for rows in results.values() for r in rows),
        ],
    }
    if args.with_wrapper:
        wrapped = results["mlflow_pyfunc_wrapper"]
        best_wrapped = max(r["throughput_rps"] for r in wrapped)
        payload["mlflow_pyfunc_wrapper"] = wrapped
        payload["throughput_ratio_vs_pyfunc_wrapper"] = (
            round(best_ours / best_wrapped, 2) if best_wrapped else None
        )
    payload["errors"] = {
        name: sum(sum(r["errors"].values()) for r in rows) for name, rows in results.items()
    }
    payload["median_p50_ms"] = statistics.median(r["p50_ms"] for r in results["crm_intel"])
    payload["hardening"] = hardened
    payload["hardening_targets"] = {
        "healthz_p99_ms_during_1000_id_requests": 50.0,
        "memory_growth_mib_after_100k_random_paths": 20.0,
    }
    write("serve", payload)


if __name__ == "__main__":
    main()
