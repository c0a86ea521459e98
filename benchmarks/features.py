"""Benchmark: the feature store, each figure beside a peer measured in the same run.

1. Build features from ~10 million interactions (time, peak memory). Peer: the Parquet I/O floor,
   reading the raw columns the pipeline needs and writing the same feature tables again.
2. Point-in-time training set, 200k rows x ~60 features, through Feast ``get_historical_features``
   and the ``lead_conversion_v1`` service: our DuckDB ASOF offline store vs Feast's file (dask)
   offline store, on the same file source.
3. Materialise 100k leads x ~60 features into the SQLite online store: ``features.store.
   materialize`` vs plain ``FeatureStore.materialize`` (Feast's own path), each into a fresh store;
   Feast's ``get_online_features`` then reads both.
4. Online read of one lead: p50 / p99 of the service's read (``OnlineReader.rows`` and the
   DataFrame ``online_features``) vs Feast's ``get_online_features``.

5. Build by engine (``--by-engine``, a run of its own): ``crm-intel features build`` with the
   DuckDB and the Spark engine (``local[2]``) at 10 M and 100 M interactions (``--sizes``), beside
   the pandas pipeline (``benchmarks/pandas_features.py``, the build before the engines) at the
   sizes it fits in memory; time, peak memory of the whole process tree (the Spark JVM included)
   and the growth from the smallest size to the largest. The data are copies of one simulation
   with ids made unique per copy (``benchmarks/scale_data.py``), kept under ``--scale-root``.

Usage: ``python benchmarks/features.py [--raw-dir DIR] [--leads N] [--accounts N]`` (defaults
simulate ~10M interactions). Writes ``benchmarks/results/features.json`` and prints it.
``python benchmarks/features.py --by-engine [--sizes 10M 100M] [--engines duckdb spark pandas]``
writes ``benchmarks/results/features_engines.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import features_engines
from _measure import measure as _measure_code
from _measure import write

# Each step runs as ``python -c`` with the working directory first on sys.path; run from
# benchmarks/, this file would shadow the ``features`` package, so every step drops that entry.
HERE = str(Path(__file__).resolve().parent)
PRELUDE = f"""
import os, sys
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != {HERE!r}]
"""

TARGETS = {
    "build_seconds": 120.0,
    "build_peak_gib": 6.0,
    "materialize_rows_per_second": 10_000,
    "online_p99_ms": 2.0,
}

PREPARE = """
import shutil, pathlib
import pyarrow.parquet as pq, pyarrow.compute as pc
from crm.settings import Settings
from features.store import apply
src = pathlib.Path({features!r})
table = pq.read_table(src / "lead_features.parquet")
ids = pc.unique(table["lead_id"])[:{leads}]
subset = table.filter(pc.is_in(table["lead_id"], value_set=ids))
for name in ("pit", "ours", "feast"):
    d = pathlib.Path({work!r}) / name / "features"
    d.mkdir(parents=True)
    pq.write_table(subset, d / "lead_features.parquet", compression="zstd")
    # the lead lifecycle view holds the same leads as the features: one status row per lead
    status = pq.read_table(src / "lead_status.parquet")
    pq.write_table(status.filter(pc.is_in(status["lead_id"], value_set=ids)),
                   d / "lead_status.parquet", compression="zstd")
    for other in ("account_features", "content_features", "lead_labels", "account_labels",
                  "account_status"):
        shutil.copy(src / f"{{other}}.parquet", d)
    apply(Settings(data_dir=d.parent))
RESULT = {{"leads": len(ids), "feature_rows": subset.num_rows,
          "features": len(subset.column_names) - 2}}
"""

PIT = """
import time
import pandas as pd
from crm.settings import Settings
from features.store import feature_store
settings = Settings(data_dir={data_dir!r})
store = feature_store(settings, {offline!r})
rows = pd.read_parquet(settings.features_dir / "lead_features.parquet",
                       columns=["lead_id", "event_timestamp"])
entity_df = rows.sample({rows}, random_state=0).reset_index(drop=True)
entity_df["lead_id"] = entity_df["lead_id"].astype(object)
service = store.get_feature_service("lead_conversion_v1")
t0 = time.perf_counter()
out = store.get_historical_features(entity_df=entity_df, features=service).to_df()
seconds = time.perf_counter() - t0
RESULT = {{"rows": len(out), "columns": out.shape[1], "join_seconds": seconds,
          "touches_90d_sum": float(out["touches_90d"].sum())}}
"""

MATERIALIZE = """
import time
from crm.settings import Settings
from features.store import feature_store, feast_materialize, materialize, online_features
settings = Settings(data_dir={data_dir!r})
if {ours!r}:
    store = feature_store(settings)
    result = materialize(settings, store, entities_=["lead"])
    seconds, rows = result.seconds, result.rows["lead"]
    lifecycle_rows = result.rows.get("lead_status", 0)
else:
    store = feature_store(settings, "file")
    seconds = feast_materialize(settings, store, views=["lead_features"])
    rows, lifecycle_rows = {leads}, 0
feast_read = store.get_online_features(
    features=store.get_feature_service("lead_conversion_v1"),
    entity_rows=[{{"lead_id": "L0000001"}}]).to_dict()
RESULT = {{"rows": rows, "lifecycle_rows": lifecycle_rows, "write_seconds": seconds,
          "rows_per_second": rows / seconds,
          "feast_reads_back_touches_90d": feast_read["touches_90d"][0]}}
"""

ONLINE = """
import gc, random, time
import numpy as np
import pandas as pd
from crm.settings import Settings
from features.store import feature_store, online_reader, online_features
settings = Settings(data_dir={data_dir!r})
ids = pd.read_parquet(settings.features_dir / "lead_features.parquet",
                      columns=["lead_id"])["lead_id"].unique().tolist()
random.seed(0)
sample = [random.choice(ids) for _ in range({n})]
reader = online_reader(settings)
store = reader.store
service = store.get_feature_service("lead_conversion_v1")
def timed(fn, n):
    lat = []
    for i in sample[:n]:
        t0 = time.perf_counter(); fn(i); lat.append(time.perf_counter() - t0)
    lat = np.array(lat) * 1e3
    return {{"p50_ms": float(np.percentile(lat, 50)), "p99_ms": float(np.percentile(lat, 99)),
            "n": n}}
for i in sample[:200]:
    reader.rows("lead", [i]); online_features(settings, "lead", [i])
out = {{"rows_default_gc": timed(lambda i: reader.rows("lead", [i]), {n})}}
gc.collect(); gc.freeze()  # what the service does after loading: no full collections of the heap
# interleaved, so that load from other processes hits every reader alike
lat = {{"rows": [], "frame": [], "feast_get_online_features": []}}
for k, i in enumerate(sample):
    t0 = time.perf_counter(); reader.rows("lead", [i]); t1 = time.perf_counter()
    online_features(settings, "lead", [i]); t2 = time.perf_counter()
    lat["rows"].append(t1 - t0); lat["frame"].append(t2 - t1)
    if k < 1000:
        t0 = time.perf_counter()
        store.get_online_features(features=service, entity_rows=[{{"lead_id": i}}]).to_dict()
        lat["feast_get_online_features"].append(time.perf_counter() - t0)
for name, values in lat.items():
    values = np.array(values) * 1e3
    out[name] = {{"p50_ms": float(np.percentile(values, 50)),
                 "p99_ms": float(np.percentile(values, 99)), "n": len(values)}}
RESULT = out
"""


def measure(code: str) -> dict:
    """Run one step in a fresh interpreter (see ``_measure.measure``)."""
    return _measure_code(PRELUDE + code)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--raw-dir", type=Path, help="reuse raw tables instead of simulating")
    parser.add_argument("--leads", type=int, default=1_180_000)
    parser.add_argument("--accounts", type=int, default=60_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--pit-rows", type=int, default=200_000)
    parser.add_argument("--online-leads", type=int, default=100_000)
    parser.add_argument("--reads", type=int, default=5_000)
    parser.add_argument("--by-engine", action="store_true", help="run section 5 only")
    features_engines.add_arguments(parser)
    args = parser.parse_args()
    if args.by_engine:
        features_engines.by_engine(args)
        return
    with tempfile.TemporaryDirectory(prefix="crm-bench-features-") as tmp:
        work = Path(tmp)
        data = work / "data"
        if args.raw_dir:
            (data).mkdir()
            (data / "raw").symlink_to(args.raw_dir.resolve())
        else:
            measure(f"""
from simulator import SimulationConfig, simulate, write_simulation
write_simulation(simulate(SimulationConfig(seed={args.seed}, leads={args.leads},
                                           accounts={args.accounts})), {str(data)!r})
""")
        build = measure(f"""
import pyarrow.parquet as pq
from crm.settings import Settings
from features.store import build
counts = build(Settings(data_dir={str(data)!r}))
RESULT = {{"rows": counts,
          "interactions": pq.ParquetFile({str(data / "raw" / "interactions.parquet")!r}
                                         ).metadata.num_rows}}
""")
        floor = measure(f"""
import pathlib, pyarrow.parquet as pq
from features.pipeline import REQUIRED
raw, out = pathlib.Path({str(data / "raw")!r}), pathlib.Path({str(work / "floor")!r})
out.mkdir()
for name, columns in REQUIRED.items():
    pq.read_table(raw / f"{{name}}.parquet", columns=list(columns)).to_pandas()
for path in sorted(pathlib.Path({str(data / "features")!r}).glob("*.parquet")):
    pq.write_table(pq.read_table(path), out / path.name, compression="zstd")
RESULT = {{}}
""")
        prepared = measure(
            PREPARE.format(features=str(data / "features"), work=str(work), leads=args.online_leads)
        )
        pit = {
            name: measure(PIT.format(data_dir=str(work / "pit"), offline=name, rows=args.pit_rows))
            for name in ("duckdb_asof", "file")
        }
        mat = {
            name: measure(
                MATERIALIZE.format(
                    data_dir=str(work / name), ours=name == "ours", leads=prepared["leads"]
                )
            )
            for name in ("ours", "feast")
        }
        online = measure(ONLINE.format(data_dir=str(work / "ours"), n=args.reads))

    payload = {
        "interactions": build["interactions"],
        "feature_rows": build["rows"],
        "build": {
            "crm_intel_features_build": {
                "seconds": round(build["seconds"], 2),
                "peak_gib": round(build["peak_mib"] / 1024, 3),
            },
            "peer_parquet_io_floor": {
                "seconds": round(floor["seconds"], 2),
                "peak_gib": round(floor["peak_mib"] / 1024, 3),
            },
        },
        "point_in_time_training_set": {
            "rows": pit["duckdb_asof"]["rows"],
            "features": prepared["features"],
            "source_rows": prepared["feature_rows"],
            "duckdb_asof_offline_store": {
                "seconds": round(pit["duckdb_asof"]["join_seconds"], 2),
                "peak_gib": round(pit["duckdb_asof"]["peak_mib"] / 1024, 3),
            },
            "peer_feast_file_dask_offline_store": {
                "seconds": round(pit["file"]["join_seconds"], 2),
                "peak_gib": round(pit["file"]["peak_mib"] / 1024, 3),
            },
            "same_result": pit["duckdb_asof"]["touches_90d_sum"] == pit["file"]["touches_90d_sum"],
        },
        "materialize": {
            "leads": prepared["leads"],
            "features": prepared["features"],
            "crm_intel_materialize": {
                "seconds": round(mat["ours"]["write_seconds"], 2),
                "rows_per_second": round(mat["ours"]["rows_per_second"]),
                "lifecycle_rows_in_same_generation": mat["ours"]["lifecycle_rows"],
            },
            "peer_feast_materialize": {
                "seconds": round(mat["feast"]["write_seconds"], 2),
                "rows_per_second": round(mat["feast"]["rows_per_second"]),
            },
            "feast_reads_both": mat["ours"]["feast_reads_back_touches_90d"]
            == mat["feast"]["feast_reads_back_touches_90d"],
        },
        "online_read_one_lead": {
            k: {m: round(v, 3) for m, v in fig.items()}
            for k, fig in online.items()
            if isinstance(fig, dict)
        },
        "targets": TARGETS,
    }
    payload["meets_targets"] = {
        "build": build["seconds"] <= TARGETS["build_seconds"]
        and build["peak_mib"] / 1024 <= TARGETS["build_peak_gib"],
        "materialize": mat["ours"]["rows_per_second"] >= TARGETS["materialize_rows_per_second"],
        "online_p99": online["rows"]["p99_ms"] <= TARGETS["online_p99_ms"],
    }
    write("features", payload)


if __name__ == "__main__":
    main()
