"""Benchmark: single-lead score + reasons over HTTP at concurrency 1, 8 and 32 (loopback only).

Measured in the same run, on the same demo deployment and the same leads:

* ``crm_intel``: ``bentoml serve serving.service:CRMIntel`` — ``POST /score_leads`` with one
  ``lead_id``: API-key check, Feast online read, TreeSHAP reasons, calibrated score, CRM fields;
* ``mlflow_serve``: ``mlflow models serve`` of the same champion (``models:/lead_conversion@
  champion``, pyfunc ``predict_proba``) — ``POST /invocations`` with the lead's feature vector
  in the body: prediction only, no feature read, no reasons;
* ``in_process_floor``: the same scoring called directly in Python (``score_items`` on a
  pre-read online row: encode + ``pred_contrib`` + calibration + reasons), and with the online
  read included.

The load generator is a minimal keep-alive HTTP/1.1 client on asyncio streams (pre-encoded
requests), so that on a 2-core machine the client takes as little CPU from the servers as
possible. Every phase is bounded by ``--seconds``.

Usage: ``python benchmarks/serve.py [--seconds 10] [--workers 1]``. Writes
``benchmarks/results/serve.json`` and prints it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from _measure import write

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from crm_intel.demo import QUIET_ENV, LiveServer, build_demo, free_port  # noqa: E402

TARGET_P99_MS_AT_8 = 25.0
TARGET_THROUGHPUT_RATIO = 1.5
CONCURRENCY = (1, 8, 32)
KEY = "bench-key"


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


def wait_http(url: str, timeout: float, process: subprocess.Popen) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise TimeoutError(url)


def in_process_floor(deployment, ids: list[str], seconds: float) -> dict[str, Any]:
    from crm.settings import Settings
    from serving.online import OnlineFeatures
    from serving.scoring import score_items
    from training.registry import load_champion

    settings = Settings(data_dir=deployment.data_dir, mlflow_tracking_uri=deployment.tracking_uri)
    champion = load_champion("lead_conversion", deployment.tracking_uri)
    online = OnlineFeatures(settings)
    names = settings.crm_field_names
    records = {i: online.rows("lead", [i]) for i in ids}

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
        lambda lead: score_items("lead_conversion", champion.model, records[lead], [None], 3, names)
    )
    with_read = timed(
        lambda lead: score_items(
            "lead_conversion", champion.model, online.rows("lead", [lead]), [None], 3, names
        )
    )
    online.close()
    return {
        "predict_contributions_reasons": scoring_only,
        "online_read_predict_contributions_reasons": with_read,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="per phase")
    parser.add_argument("--workers", type=int, default=1, help="server processes (each side)")
    parser.add_argument("--leads", type=int, default=3000)
    parser.add_argument(
        "--deployment", type=Path, default=None, help="reuse (or create) a demo deployment here"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="crm-bench-serve-") as tmp:
        root = args.deployment or Path(tmp) / "deployment"
        started = time.perf_counter()
        deployment = build_demo(root, leads=args.leads)
        build_seconds = time.perf_counter() - started
        from crm.settings import Settings
        from serving.batch import entity_ids

        settings = Settings(
            data_dir=deployment.data_dir, mlflow_tracking_uri=deployment.tracking_uri
        )
        ids = entity_ids(settings, "lead")[:500]
        floor = in_process_floor(deployment, ids, min(args.seconds, 5.0))

        # The lead's feature vectors as the MLflow scoring server needs them (it reads nothing).
        from features.store import online_features
        from training.registry import load_champion

        champion = load_champion("lead_conversion", deployment.tracking_uri)
        features = list(champion.model.feature_names_in_)
        frame = online_features(settings, "lead", ids)[features]
        vectors = json.loads(frame.to_json(orient="records"))

        results: dict[str, Any] = {"crm_intel": [], "mlflow_serve": []}
        log = Path(tmp) / "bentoml.log"
        env_workers = {"CRM_INTEL_MODEL_REFRESH_SECONDS": "10"}
        with LiveServer(deployment, KEY, log, env_workers) as ours:
            requests = [
                encode_post(
                    ours.port, "/score_leads", {"lead_ids": [i]}, {"Authorization": f"Bearer {KEY}"}
                )
                for i in ids
            ]
            asyncio.run(run_load(ours.port, requests, 4, 2.0))  # warm-up
            for c in CONCURRENCY:
                results["crm_intel"].append(
                    asyncio.run(run_load(ours.port, requests, c, args.seconds))
                )
        port = free_port()
        # mlflow starts ``uvicorn`` by name: the interpreter's own bin/ must be on PATH.
        path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
        env = {
            **os.environ,
            **QUIET_ENV,
            "MLFLOW_TRACKING_URI": deployment.tracking_uri,
            "PATH": path,
        }
        mlflow_log = (Path(tmp) / "mlflow.log").open("wb")
        mlflow_proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mlflow",
                "models",
                "serve",
                "-m",
                "models:/lead_conversion@champion",
                "--env-manager",
                "local",
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
                "-w",
                str(args.workers),
            ],
            env=env,
            stdout=mlflow_log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            wait_http(f"http://127.0.0.1:{port}/ping", 180, mlflow_proc)
            requests = [
                encode_post(port, "/invocations", {"dataframe_records": [v]}, {}) for v in vectors
            ]
            asyncio.run(run_load(port, requests, 4, 2.0))
            for c in CONCURRENCY:
                results["mlflow_serve"].append(
                    asyncio.run(run_load(port, requests, c, args.seconds))
                )
        finally:
            import signal

            if mlflow_proc.poll() is None:
                os.killpg(mlflow_proc.pid, signal.SIGTERM)  # the group started above
                mlflow_proc.wait(timeout=30)
            mlflow_log.close()
    ours_by_c = {r["concurrency"]: r for r in results["crm_intel"]}
    theirs_by_c = {r["concurrency"]: r for r in results["mlflow_serve"]}
    best_ours = max(r["throughput_rps"] for r in results["crm_intel"])
    best_theirs = max(r["throughput_rps"] for r in results["mlflow_serve"])
    ratio = best_ours / best_theirs if best_theirs else float("inf")
    payload = {
        "what": "single-lead score + reasons (crm_intel) vs prediction only (mlflow serve)",
        "leads_cycled": len(ids),
        "seconds_per_phase": args.seconds,
        "workers": args.workers,
        "deployment_build_seconds": round(build_seconds, 1),
        "crm_intel": results["crm_intel"],
        "mlflow_serve": results["mlflow_serve"],
        "in_process_floor": floor,
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
        "load_average_1m": round(os.getloadavg()[0], 2),
    }
    errors = sum(sum(r["errors"].values()) for r in results["crm_intel"])
    payload["crm_intel_errors"] = errors
    payload["median_p50_ms"] = statistics.median(r["p50_ms"] for r in results["crm_intel"])
    write("serve", payload)


if __name__ == "__main__":
    main()
