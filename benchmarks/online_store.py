"""Benchmark: the online stores, SQLite and Redis, each beside a peer measured in the same run.

On a simulated CRM of 100k leads (seeded; the lead view holds 64 features, the lead lifecycle
view 3 fields):

1. Materialise every lead's latest features and lifecycle (``features.store.materialize``,
   ``--entity lead``) into the embedded SQLite store and into a Redis server (a private
   ``redis-server`` on a free loopback port, no persistence), rows (leads) per second. Peer:
   Feast's own ``FeatureStore.materialize`` into Feast's own ``redis`` online store (the same key
   layout), on the same tables.
2. Online read of one lead at concurrency 1, p50 / p99: the service's read
   (``OnlineReader.rows(..., status=True)``: the 64 features and the lifecycle row) from
   each store, interleaved so that load from other processes falls on all alike. Peer: Feast's
   ``RedisOnlineStore.online_read`` of the same two views (one call per view).

Why a Redis store class of our own instead of Feast's: see ``features/redis_store.py``; these
are the figures. Usage: ``python benchmarks/online_store.py [--leads N] [--reads N]``. Writes
``benchmarks/results/online_store.json`` and prints it. Needs ``redis-server`` on PATH.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from _measure import measure as _measure_code
from _measure import write

# Each step runs as ``python -c`` with the working directory first on sys.path; run from
# benchmarks/, this file would shadow the ``features`` package, so every step drops that entry.
HERE = str(Path(__file__).resolve().parent)
PRELUDE = f"""
import os, sys
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != {HERE!r}]
"""

TARGETS = {"materialize_rows_per_second": 10_000, "online_p99_ms": 2.0}

SETTINGS = """
from crm.settings import Settings
def settings_for(data_dir, backend, port):
    if backend == "redis":
        return Settings(data_dir=data_dir, online_store="redis",
                        redis_url=f"redis://127.0.0.1:{{port}}/0")
    return Settings(data_dir=data_dir)
"""

MATERIALIZE = (
    SETTINGS
    + """
from features.store import apply, materialize, feature_store
settings = settings_for({data_dir!r}, {backend!r}, {port})
apply(settings)
result = materialize(settings, entities_=["lead"])
RESULT = {{"rows": result.rows["lead"], "lifecycle_rows": result.rows["lead_status"],
          "write_seconds": result.seconds, "rows_per_second": result.rows["lead"] / result.seconds}}
if {backend!r} == "redis":
    import redis
    memory = redis.Redis(port={port}).info("memory")["used_memory"]
    RESULT["redis_used_mib"] = memory / 2**20
"""
)

FEAST_MATERIALIZE = """
import time
from datetime import UTC, datetime
from feast import FeatureStore, RepoConfig
config = RepoConfig(
    project="crm_intel", provider="local",
    registry={{"registry_type": "file", "path": {registry!r}}},
    online_store={{"type": "redis", "connection_string": "127.0.0.1:{port},db=1"}},
    offline_store={{"type": "file"}}, entity_key_serialization_version=3,
    repo_path={repo_path!r})
store = FeatureStore(config=config)
store.apply([store.get_feature_view("lead_features"), store.get_feature_view("lead_status")])
t0 = time.perf_counter()
store.materialize(start_date=datetime(1970, 1, 1, tzinfo=UTC), end_date=datetime.now(UTC),
                  feature_views=["lead_features", "lead_status"])
seconds = time.perf_counter() - t0
RESULT = {{"rows": {leads}, "write_seconds": seconds, "rows_per_second": {leads} / seconds}}
"""

ONLINE = (
    SETTINGS
    + """
import gc, random, time
import numpy as np
import pyarrow.parquet as pq
from feast import FeatureStore, RepoConfig
from feast.infra.online_stores.redis import RedisOnlineStore
from feast.protos.feast.types.EntityKey_pb2 import EntityKey
from feast.protos.feast.types.Value_pb2 import Value
from features.store import OnlineReader, feature_store
ids = sorted(set(pq.read_table({features!r}, columns=["lead_id"])["lead_id"].to_pylist()))
random.seed(0)
sample = [random.choice(ids) for _ in range({n})]
readers = {{b: OnlineReader(feature_store(settings_for({data_dirs!r}[b], b, {port})))
           for b in ("sqlite", "redis")}}
# Feast's own store on the Redis database its own materialisation wrote (db 1)
feast_config = RepoConfig(
    project="crm_intel", provider="local", registry={feast_registry!r},
    online_store={{"type": "redis", "connection_string": "127.0.0.1:{port},db=1"}},
    entity_key_serialization_version=3, repo_path={repo_path!r})
feast_store = FeatureStore(config=feast_config)
views = [feast_store.get_feature_view("lead_features"), feast_store.get_feature_view("lead_status")]
feast_redis = RedisOnlineStore()
def feast_read(i):
    key = [EntityKey(join_keys=["lead_id"], entity_values=[Value(string_val=i)])]
    return [feast_redis.online_read(feast_config, v, key) for v in views]
reads = {{"sqlite": lambda i: readers["sqlite"].rows("lead", [i], status=True),
         "redis": lambda i: readers["redis"].rows("lead", [i], status=True),
         "peer_feast_redis_online_read": feast_read}}
# the same answers from both stores, and Feast's own store holds the same values
for i in sample[:200]:
    a, b = reads["sqlite"](i)[0], reads["redis"](i)[0]
    assert a == b, (i, a, b)
    assert feast_read(i)[0][0][1]["touches_90d"].float_val == np.float32(a["touches_90d"])
gc.collect(); gc.freeze()  # what the service does after loading
lat = {{name: [] for name in reads}}
for i in sample:
    for name, read in reads.items():
        t0 = time.perf_counter(); read(i); lat[name].append(time.perf_counter() - t0)
out = {{}}
for name, values in lat.items():
    values = np.array(values) * 1e3
    out[name] = {{"p50_ms": float(np.percentile(values, 50)),
                 "p99_ms": float(np.percentile(values, 99)), "n": len(values)}}
RESULT = out
"""
)


def measure(code: str) -> dict:
    """Run one step in a fresh interpreter (see ``_measure.measure``)."""
    return _measure_code(PRELUDE + code)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def redis_server(folder: Path) -> Iterator[int]:
    """A private ``redis-server`` on a free loopback port (no persistence) for the block."""
    port = _free_port()
    server = subprocess.Popen(
        ["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly",
         "no", "--dir", str(folder)],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                break
            if time.monotonic() > deadline or server.poll() is not None:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.05)
        yield port
    finally:
        server.terminate()
        server.wait(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leads", type=int, default=100_000)
    parser.add_argument("--accounts", type=int, default=6_000)
    parser.add_argument("--months", type=int, default=12)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--reads", type=int, default=5_000)
    args = parser.parse_args()
    if shutil.which("redis-server") is None:
        raise SystemExit("redis-server is not on PATH (Debian: apt-get install redis-server)")
    repo_path = str(Path(HERE).parent / "features")
    with tempfile.TemporaryDirectory(prefix="crm-bench-online-") as tmp:
        work = Path(tmp)
        data = work / "data"
        measure(f"""
from crm.settings import Settings
from features.store import build
from simulator import SimulationConfig, simulate, write_simulation
write_simulation(simulate(SimulationConfig(seed={args.seed}, leads={args.leads},
                                           accounts={args.accounts}, months={args.months})),
                 {str(data)!r})
build(Settings(data_dir={str(data)!r}))
""")
        dirs = {}
        for backend in ("sqlite", "redis"):
            dirs[backend] = str(work / backend)
            (work / backend).mkdir()
            shutil.copytree(data / "features", work / backend / "features")
        with redis_server(work) as port:
            mat = {
                backend: measure(
                    MATERIALIZE.format(data_dir=dirs[backend], backend=backend, port=port)
                )
                for backend in ("sqlite", "redis")
            }
            registry = str(work / "redis" / "feast" / "registry.db")
            peer = measure(
                FEAST_MATERIALIZE.format(
                    registry=registry, port=port, repo_path=repo_path, leads=mat["redis"]["rows"]
                )
            )
            online = measure(
                ONLINE.format(
                    features=str(data / "features" / "lead_features.parquet"),
                    n=args.reads,
                    data_dirs=dirs,
                    port=port,
                    feast_registry=registry,
                    repo_path=repo_path,
                )
            )

    def written(fig: dict) -> dict:
        return {
            "seconds": round(fig["write_seconds"], 2),
            "rows_per_second": round(fig["rows_per_second"]),
        }

    payload = {
        "leads": mat["redis"]["rows"],
        "features": 64,
        "lifecycle_fields": 3,
        "materialize": {
            "crm_intel_sqlite": written(mat["sqlite"]),
            "crm_intel_redis": {
                **written(mat["redis"]),
                "redis_used_mib": round(mat["redis"]["redis_used_mib"], 1),
            },
            "peer_feast_materialize_into_feast_redis": written(peer),
        },
        "online_read_one_lead_concurrency_1": {
            name: {k: round(v, 3) for k, v in fig.items()}
            for name, fig in online.items()
            if isinstance(fig, dict)
        },
        "targets": TARGETS,
    }
    payload["meets_targets"] = {
        backend: {
            "materialize": mat[backend]["rows_per_second"]
            >= TARGETS["materialize_rows_per_second"],
            "online_p99": online[backend]["p99_ms"] <= TARGETS["online_p99_ms"],
        }
        for backend in ("sqlite", "redis")
    }
    write("online_store", payload)


if __name__ == "__main__":
    main()
