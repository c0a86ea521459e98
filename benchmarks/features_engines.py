"""Section 5 of ``benchmarks/features.py``: the feature build by engine and size.

``crm-intel features build`` (``features.store.build``) with the DuckDB engine and the Spark engine
(``local[2]``), at each size of ``--sizes`` (default 10 M and 100 M interactions), beside the
pandas pipeline (``benchmarks/pandas_features.py``, the build before the engines) at the sizes up
to ``--pandas-max``; above that its peak is extrapolated from the sizes measured and the size is
reported "does not fit" when the estimate exceeds the machine's memory; Spark at the sizes up to
``--spark-max`` (default: all; at 100 M it takes hours on two cores); ``--largest-first`` builds
the largest size first. Each build runs alone in a fresh interpreter; its peak memory is the
summed RSS of the process tree (the Spark JVM included, see ``_measure``). The data are copies
of one simulation with ids made unique per copy (``benchmarks/scale_data.py``), generated once
under ``--scale-root`` and reused.

Run through ``python benchmarks/features.py --by-engine [--sizes 10M 100M]``; writes
``benchmarks/results/features_engines.json`` and prints a table with the growth from the smallest
size to the largest.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import psutil
from _measure import measure, write
from scale_data import DEFAULT_ACCOUNTS, DEFAULT_LEADS, copies_for, folder_bytes

# Each step runs as ``python -c`` with the working directory first on sys.path; run from
# benchmarks/, features.py would shadow the ``features`` package, so every step drops that entry.
HERE = str(Path(__file__).resolve().parent)
PRELUDE = f"""
import os, sys
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != {HERE!r}]
"""

# ------------------------------------------------------------------------- steps

ENGINE_TARGETS = {"peak_gib_at_100m": 16.0}
SCALE_SEED = 7
SCALE_SIMULATE = """
import sys
sys.path.insert(0, {here!r})
from scale_data import simulate_base
RESULT = {{"interactions": simulate_base(__import__("pathlib").Path({base!r}), {seed}, {leads},
                                          {accounts})}}
"""
SCALE_COPY = """
import sys, pathlib
sys.path.insert(0, {here!r})
from scale_data import write_scaled
RESULT = {{"rows": write_scaled(pathlib.Path({raw!r}), pathlib.Path({out!r}), {copies},
                               {layout!r}, progress=lambda m: None)}}
"""
ENGINE_BUILD = """
import time
import pyarrow.dataset as ds
from crm.settings import Settings
from features.store import build
settings = Settings(data_dir={data_dir!r}, engine={engine!r}, duckdb_memory_limit={limit!r})
session_seconds = 0.0
if {engine!r} == "spark":
    # the build asks for the process's session; made here first, it has the benchmark's memory
    from features.spark_session import spark_session
    t0 = time.perf_counter()
    spark_session(settings, {{"spark.driver.memory": {driver_memory!r}}})
    session_seconds = time.perf_counter() - t0
marks = []
def progress(step, amount=1, /):
    marks.append([step, time.perf_counter() - t0])
t0 = time.perf_counter()
counts = build(settings, progress=progress)
RESULT = {{"rows": counts, "build_seconds": time.perf_counter() - t0, "marks": marks,
          "session_seconds": session_seconds,
          "interactions": ds.dataset({interactions!r}).count_rows()}}
"""
# the pandas pipeline's build as features/store.py ran it before the engines: the same five tables
PANDAS_BUILD = """
import importlib.util, sys, time
import pyarrow.dataset as ds
import pyarrow.parquet as pq
from crm.io import atomic_dir, write_parquet
from crm.settings import Settings
spec = importlib.util.spec_from_file_location("pandas_features", {peer!r})
pf = importlib.util.module_from_spec(spec)
sys.modules["pandas_features"] = pf  # its dataclasses look their module up there
spec.loader.exec_module(pf)
settings = Settings(data_dir={data_dir!r})
t0 = time.perf_counter()
tables = pf.read_feature_tables(settings.raw_dir)
pf.check_tables(tables)
counts = {{}}
with atomic_dir(settings.features_dir) as tmp:
    writer, rows = None, 0
    for batch in pf.lead_feature_batches(tables, settings, validate=False, creation_rows=True):
        if writer is None:
            writer = pq.ParquetWriter(tmp / "lead_features.parquet", batch.schema,
                                      compression="zstd")
        writer.write_table(batch)
        rows += batch.num_rows
    writer.close()
    counts["lead_features"] = rows
    steps = {{
        "account_features": lambda: pf.build_account_features(tables, settings, False),
        "content_features": lambda: pf.build_content_features(tables, settings, False),
        "lead_labels": lambda: pf.lead_label_table(tables, settings, False, creation_rows=True),
        "account_labels": lambda: pf.account_label_table(tables, settings, False),
    }}
    for name, step in steps.items():
        frame = step()
        write_parquet(frame, tmp / f"{{name}}.parquet")
        counts[name] = len(frame)
RESULT = {{"rows": counts, "build_seconds": time.perf_counter() - t0,
          "interactions": ds.dataset({interactions!r}).count_rows()}}
"""
PANDAS_TABLES = (
    "lead_features",
    "account_features",
    "content_features",
    "lead_labels",
    "account_labels",
)


def parse_size(text: str) -> int:
    """``10M`` / ``100_000_000`` / ``2.5M`` → interactions."""
    text = text.replace("_", "").strip().upper()
    scale = {"K": 1_000, "M": 1_000_000, "G": 1_000_000_000}.get(text[-1:], 1)
    return int(float(text.rstrip("KMG")) * scale)


def size_label(interactions: int) -> str:
    """``100M`` for 100 000 000."""
    return f"{interactions / 1e6:g}M"


def scale_data(root: Path, size: int, layout: str, log: dict[str, Any]) -> tuple[Path, int]:
    """The data directory of ``size`` interactions under ``root`` (written when not there yet,
    its generation measured into ``log``); returns it and its copy count."""
    base = root / "base"
    fresh = not (base / "config.json").exists()
    sim = measure(
        PRELUDE
        + SCALE_SIMULATE.format(
            here=HERE,
            base=str(base),
            seed=SCALE_SEED,
            leads=DEFAULT_LEADS,
            accounts=DEFAULT_ACCOUNTS,
        )
    )
    figures = base / "simulation.json"
    if fresh:
        simulated = {
            "interactions": sim["interactions"],
            "seconds": round(sim["seconds"], 1),
            "peak_gib": round(sim["tree_peak_mib"] / 1024, 3),
        }
        figures.write_text(json.dumps(simulated) + "\n")
    if figures.exists():
        log["simulation"] = json.loads(figures.read_text())
    copies = copies_for(size, sim["interactions"])
    data = root / (f"copies-{copies}" if layout == "folders" else f"copies-{copies}-{layout}")
    manifest = data / "scale.json"
    if manifest.exists() and json.loads(manifest.read_text())["copies"] == copies:
        log[size_label(size)] = json.loads(manifest.read_text())
        return data, copies
    done = measure(
        PRELUDE
        + SCALE_COPY.format(
            here=HERE, raw=str(base / "raw"), out=str(data), copies=copies, layout=layout
        )
    )
    raw_bytes = folder_bytes(data / "raw")
    info = {
        "copies": copies,
        "base_interactions": sim["interactions"],
        "rows": done["rows"],
        "copy_seconds": round(done["seconds"], 1),
        "copy_peak_gib": round(done["tree_peak_mib"] / 1024, 3),
        "raw_gib": round(raw_bytes / 2**30, 3),
        "gib_per_10m_interactions": round(
            raw_bytes / 2**30 / done["rows"]["interactions"] * 1e7, 3
        ),
        "seconds_per_10m_interactions": round(
            done["seconds"] / done["rows"]["interactions"] * 1e7, 1
        ),
    }
    manifest.write_text(json.dumps(info, indent=2) + "\n")
    log[size_label(size)] = info
    return data, copies


def engine_figures(result: dict[str, Any], data: Path) -> dict[str, Any]:
    """Seconds, peak memory (process tree) and throughput of one build."""
    features = data / "features"
    out = {
        "interactions": result["interactions"],
        "seconds": round(result["seconds"], 1),
        "build_seconds": round(result["build_seconds"], 1),
        "peak_gib": round(result["tree_peak_mib"] / 1024, 3),
        "python_peak_gib": round(result["peak_mib"] / 1024, 3),
        "rows_per_second": round(result["interactions"] / result["seconds"]),
        "rows": result["rows"],
        "features_gib": round(folder_bytes(features) / 2**30, 3) if features.exists() else None,
    }
    if result.get("session_seconds"):
        out["spark_session_seconds"] = round(result["session_seconds"], 1)
    if result.get("marks"):
        out |= step_seconds(result["marks"], result["build_seconds"])
    return out


def step_seconds(marks: list[list[Any]], end: float) -> dict[str, Any]:
    """Seconds per step of a build, from its progress marks (step, seconds since the start):
    each table's, and of a table built in parts, its parts' mean, fastest and slowest."""
    tables: dict[str, float] = {}
    parts: dict[str, list[float]] = {}
    stops = [*(at for _, at in marks[1:]), end]
    for (step, start), stop in zip(marks, stops, strict=True):
        table, _, part = step.partition(", part ")
        tables[table] = tables.get(table, 0.0) + stop - start
        if part:
            parts.setdefault(table, []).append(stop - start)
    out: dict[str, Any] = {"step_seconds": {k: round(v, 1) for k, v in tables.items()}}
    if parts:
        out["part_seconds"] = {
            table: {
                "parts": len(times),
                "mean": round(sum(times) / len(times), 1),
                "min": round(min(times), 1),
                "max": round(max(times), 1),
            }
            for table, times in parts.items()
        }
    return out


def pandas_estimate(measured: dict[str, dict[str, Any]], size: int) -> dict[str, Any]:
    """The pandas build's peak at ``size``, extrapolated from the sizes it was measured at: a
    line through two sizes, else proportional to the interactions (it holds every raw table and
    its working arrays in memory at once, so its peak grows with the data)."""
    points = sorted(
        (m["interactions"], m["peak_gib"]) for m in measured.values() if "peak_gib" in m
    )
    if not points:
        return {"estimate": "no pandas size measured"}
    if len(points) >= 2:
        (x0, y0), (x1, y1) = points[0], points[-1]
        peak = y0 + (y1 - y0) / (x1 - x0) * (size - x0)
        how = f"linear through {size_label(x0)} and {size_label(x1)}"
    else:
        (x0, y0) = points[0]
        peak = y0 * size / x0
        how = f"proportional to {size_label(x0)}"
    machine = psutil.virtual_memory().total / 2**30
    return {
        "estimated_peak_gib": round(peak, 1),
        "how": how,
        "machine_gib": round(machine, 1),
        "fits": peak < machine,
    }


def by_engine(args: argparse.Namespace) -> None:
    """Section 5: the feature build by engine and size (see the module docstring)."""
    root = args.scale_root
    root.mkdir(parents=True, exist_ok=True)
    # largest first when asked: a run that outlasts its time budget then loses the small sizes,
    # which are quick to measure again, rather than the large one
    sizes = sorted((parse_size(s) for s in args.sizes), reverse=args.largest_first)
    pandas_max = parse_size(args.pandas_max)
    spark_max = parse_size(args.spark_max) if args.spark_max else None
    data_log: dict[str, Any] = {}
    results: dict[str, dict[str, Any]] = {}
    for size in sizes:
        label = size_label(size)
        data, _ = scale_data(root, size, args.layout, data_log)
        interactions = str(data / "raw" / "interactions.parquet")
        results[label] = {}
        for engine in args.engines:
            if engine == "pandas" and size > pandas_max:
                continue
            if engine == "spark" and spark_max is not None and size > spark_max:
                results[label][engine] = {"not_run": "above --spark-max (the run's time budget)"}
                continue
            print(f"build {label} {engine} ...", flush=True)
            if engine == "pandas":
                code = PANDAS_BUILD.format(
                    peer=str(Path(HERE) / "pandas_features.py"),
                    data_dir=str(data),
                    interactions=interactions,
                )
            else:
                code = ENGINE_BUILD.format(
                    data_dir=str(data),
                    engine=engine,
                    limit=args.duckdb_memory_limit,
                    driver_memory=args.spark_driver_memory,
                    interactions=interactions,
                )
            try:
                figures = engine_figures(measure(PRELUDE + code, timeout=args.timeout), data)
            except Exception as err:  # an engine that fails is reported, the others still run
                figures = {"error": str(err).strip().splitlines()[-1][:500]}
            results[label][engine] = figures
            print(f"  {json.dumps(figures)}", flush=True)
            shutil.rmtree(data / "features", ignore_errors=True)
            report(args, data_log, results, echo=False)  # what is measured so far, kept
    measured = {k: v["pandas"] for k, v in results.items() if "pandas" in v}
    for size in sizes:
        if "pandas" in args.engines and size > pandas_max:
            results[size_label(size)]["pandas"] = {
                "not_run": "does not fit",
                **pandas_estimate(measured, size),
            }
    results = {size_label(size): results[size_label(size)] for size in sorted(sizes)}
    payload = report(args, data_log, results)
    print(table(results, payload["growth"]))


def report(
    args: argparse.Namespace,
    data_log: dict[str, Any],
    results: dict[str, dict[str, Any]],
    echo: bool = True,
) -> dict[str, Any]:
    """Write ``benchmarks/results/features_engines.json`` (printed when ``echo``)."""
    payload: dict[str, Any] = {
        "label": args.label,
        "protocol": {
            "data": f"copies of one simulation (seed {SCALE_SEED}, {DEFAULT_LEADS:,} leads, "
            f"{DEFAULT_ACCOUNTS:,} accounts) with ids suffixed per copy, same dates "
            "(benchmarks/scale_data.py); layout "
            + (
                "Parquet folders, one part per copy"
                if args.layout == "folders"
                else "one Parquet file per table, its row groups copy by copy"
            ),
            "measure": "each build in a fresh interpreter, one at a time; seconds include "
            "imports and (Spark) the session start; peak_gib is the summed RSS of the process "
            "tree sampled every 0.2 s (the Spark JVM included), python_peak_gib the "
            "interpreter's own ru_maxrss",
            "spark": f"master local[2], spark.driver.memory {args.spark_driver_memory}",
            "duckdb_memory_limit": args.duckdb_memory_limit or "DuckDB's default (80 % of RAM)",
            "pandas": "benchmarks/pandas_features.py, the five feature and label tables as the "
            "build before the engines wrote them (lifecycle tables left out, under a second)",
            "machine_gib": round(psutil.virtual_memory().total / 2**30, 1),
        },
        "data": data_log,
        "results": results,
        "growth": growth(results),
        "same_rows": same_rows(results),
        "targets": ENGINE_TARGETS,
    }
    write("features_engines", payload, echo=echo)
    return payload


def same_rows(results: dict[str, dict[str, Any]]) -> dict[str, bool]:
    """Per size: every engine wrote the same row count to each table they all wrote."""
    out = {}
    for label, engines in results.items():
        counts = [fig["rows"] for fig in engines.values() if "rows" in fig]
        if len(counts) >= 2:
            common = set.intersection(*(set(c) for c in counts))
            out[label] = all(len({c[t] for c in counts}) == 1 for t in common)
    return out


def growth(results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Per engine, largest size over smallest: interactions, seconds and peak memory ratios."""
    out: dict[str, Any] = {}
    labels = list(results)
    engines = {e for r in results.values() for e in r}
    for engine in sorted(engines):
        sized = sorted(
            (
                (lab, results[lab][engine])
                for lab in labels
                if "seconds" in results[lab].get(engine, {})
            ),
            key=lambda item: item[1]["interactions"],
        )
        if len(sized) < 2:
            continue
        (a, first), (b, last) = sized[0], sized[-1]
        out[engine] = {
            "from": a,
            "to": b,
            "interactions_ratio": round(last["interactions"] / first["interactions"], 2),
            "seconds_ratio": round(last["seconds"] / first["seconds"], 2),
            "peak_ratio": round(last["peak_gib"] / first["peak_gib"], 2),
        }
    return out


def table(results: dict[str, dict[str, Any]], grown: dict[str, Any]) -> str:
    """The results as a plain-text table, growth ratios below."""
    lines = [f"{'size':>6}  {'engine':<8}{'seconds':>9}{'peak GiB':>10}{'rows/s':>12}"]
    for label, engines in results.items():
        for engine, fig in engines.items():
            if "seconds" in fig:
                lines.append(
                    f"{label:>6}  {engine:<8}{fig['seconds']:>9.1f}{fig['peak_gib']:>10.2f}"
                    f"{fig['rows_per_second']:>12,}"
                )
            else:
                estimate = fig.get("estimated_peak_gib")
                note = fig.get("error") or (
                    f"{fig.get('not_run')}: ~{estimate} GiB estimated"
                    if estimate is not None
                    else f"{fig.get('not_run')}"
                )
                lines.append(f"{label:>6}  {engine:<8}  {note}")
    for engine, g in grown.items():
        lines.append(
            f"growth {g['from']}->{g['to']} {engine}: interactions x{g['interactions_ratio']}, "
            f"time x{g['seconds_ratio']}, peak memory x{g['peak_ratio']}"
        )
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """This section's options on ``benchmarks/features.py``'s parser."""
    group = parser.add_argument_group("build by engine (--by-engine)")
    group.add_argument("--sizes", nargs="+", default=["10M", "100M"])
    group.add_argument("--engines", nargs="+", default=["duckdb", "spark", "pandas"])
    group.add_argument("--pandas-max", default="10M", help="largest size pandas is run at")
    group.add_argument(
        "--spark-max", default=None, help="largest size Spark is run at (default: every size)"
    )
    group.add_argument(
        "--scale-root", type=Path, default=Path(tempfile.gettempdir()) / "crm-bench-scale"
    )
    group.add_argument("--layout", choices=("folders", "file"), default="folders")
    group.add_argument("--largest-first", action="store_true", help="build the largest size first")
    group.add_argument("--label", default="", help="a note kept with the results")
    group.add_argument("--spark-driver-memory", default="12g")
    group.add_argument("--duckdb-memory-limit", default=None)
    group.add_argument("--timeout", type=float, default=4 * 3600, help="per build, seconds")
