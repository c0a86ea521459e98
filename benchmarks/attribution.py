"""Attribution benchmark: ours vs ChannelAttribution from the same path table, over several seeds.

For each seed, simulates a CRM, builds one journey per lead and aggregates the journeys into the
table ChannelAttribution takes: one row per distinct ``" > "``-joined channel path with its
conversions, conversion value and non-converting count (``path``, ``total_conversions``,
``total_conversion_value``, ``total_null``). That table, in memory, is the input of every timed
row, so both sides do the same work:

* crm-intel: ``paths_to_journeys`` (parses the path strings) and then the model, both inside the
  timed region, for every model (channel level). Without per-touch times, time decay uses its
  per-touch half-life;
* ChannelAttribution (the ``bench`` extra): ``markov_model`` (order 1, its defaults) and
  ``heuristic_models`` (first, last, linear touch), called the way its documentation shows.

Each result's channel shares are scored against the simulator's counterfactual truth by total
variation distance (TVD); the summary gives, per model, the mean, standard deviation, minimum and
maximum over the seeds, the seconds per seed and the speed ratio per seed (all from this run).
Setting up (simulating, building and aggregating the journeys) is not timed, nor is a first call
of every model on a small slice of the table (imports and caches, both sides).

Writes ``benchmarks/results/attribution.json`` and prints it. Without ChannelAttribution
(``pip install -e '.[dev,bench]'``) its rows say why they are absent.

Usage::

    python benchmarks/attribution.py [--leads 200000] [--seeds 1 2 3] [--out FILE]
    python benchmarks/attribution.py --leads 1120000 --out benchmarks/results/attribution-1120k.json

The default (200k leads, about 180k journeys per seed) takes about 2 minutes for three seeds on
2 shared cores; 1,120,000 leads (about a million journeys per seed) about 7.5 minutes and 5 GB.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import gc
import io
import json
import os
import platform
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from simulator import SimulationConfig, simulate  # noqa: E402
from training.attribution import (  # noqa: E402
    MODELS,
    ModelOptions,
    journeys_from_interactions,
    paths_to_journeys,
    run_model,
    total_variation_distance,
)

DEFAULT_OUT = ROOT / "benchmarks" / "results" / "attribution.json"
DEFAULT_LEADS = 200_000
DEFAULT_SEEDS = (1, 2, 3)
# ChannelAttribution's heuristic_models columns → our model names.
HEURISTICS = {
    "first_touch_conversions": "first_touch",
    "last_touch_conversions": "last_touch",
    "linear_touch_conversions": "linear",
}


def timed(call: Any) -> tuple[Any, float]:
    started = time.perf_counter()
    result = call()
    return result, time.perf_counter() - started


def path_table(tables: dict[str, pd.DataFrame]) -> tuple[pd.DataFrame, dict[str, int]]:
    """The leads' journeys as ChannelAttribution's input: one row per distinct path."""
    journeys = journeys_from_interactions(
        tables["interactions"], tables["leads"], tables["opportunities"]
    )
    frame = (
        pd.DataFrame(
            {
                "path": journeys.paths(" > ").to_numpy(dtype=object),
                "total_conversions": journeys.conversions,
                "total_conversion_value": journeys.value,
                "total_null": journeys.nulls,
            }
        )
        .groupby("path", as_index=False, sort=False)
        .sum()
    )
    frame = frame[frame["path"] != ""].reset_index(drop=True)
    counts = {
        "journeys": journeys.n_journeys,
        "touches": journeys.n_touches,
        "conversions": int(journeys.total_conversions),
        "distinct_paths": len(frame),
    }
    return frame, counts


def channel_attribution() -> tuple[Any, str]:
    """The ChannelAttribution module (its import banner silenced), or None and why not."""
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            import ChannelAttribution as ca  # noqa: N813
    except ImportError as err:
        return None, f"not installed ({err}); pip install -e '.[dev,bench]'"
    from importlib.metadata import version

    return ca, f"ChannelAttribution {version('ChannelAttribution')}"


def peer_rows(ca: Any, table: pd.DataFrame) -> list[dict[str, Any]]:
    """ChannelAttribution on the path table: shares per model and seconds."""
    quiet = io.StringIO()  # it prints a banner on each call
    with contextlib.redirect_stdout(quiet):
        markov, markov_seconds = timed(
            lambda: ca.markov_model(
                table,
                "path",
                "total_conversions",
                var_value="total_conversion_value",
                var_null="total_null",
                order=1,
                sep=">",
                verbose=False,
                flg_pro=False,
            )
        )
        heuristic, heuristic_seconds = timed(
            lambda: ca.heuristic_models(
                table,
                "path",
                "total_conversions",
                var_value="total_conversion_value",
                sep=">",
                flg_pro=False,
            )
        )
    markov = markov if isinstance(markov, pd.DataFrame) else markov["result"]
    heuristic = heuristic if isinstance(heuristic, pd.DataFrame) else heuristic["result"]
    rows = [
        {
            "model": "markov_1",
            "call": "markov_model(order=1)",
            "seconds": markov_seconds,
            "shares": markov.set_index("channel_name")["total_conversions"],
        }
    ]
    for column, model in HEURISTICS.items():
        rows.append(
            {
                "model": model,
                "call": "heuristic_models (first, last and linear in one call)",
                "seconds": heuristic_seconds,
                "shares": heuristic.set_index("channel_name")[column],
            }
        )
    return rows


def one_seed(
    seed: int, args: argparse.Namespace, ca: Any, models: list[str]
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    accounts = args.accounts or max(500, args.leads // 12)
    config = SimulationConfig(seed=seed, accounts=accounts, leads=args.leads, months=args.months)
    sim, sim_seconds = timed(lambda: simulate(config))
    truth = sim.truth["attribution_channels"].set_index("channel")["share"]
    tables = sim.tables
    del sim
    (table, counts), table_seconds = timed(functools.partial(path_table, tables))
    del tables
    gc.collect()
    if seed == args.seeds[0]:  # one-time imports and caches, on both sides, outside the timing
        sample = table.head(2000)
        for name in models:
            run_model(paths_to_journeys(sample), name, ModelOptions(content=False))
        if ca is not None:
            peer_rows(ca, sample)
    _, parse_seconds = timed(lambda: paths_to_journeys(table))
    info = {
        "seed": seed,
        "leads": args.leads,
        "accounts": accounts,
        "months": args.months,
        **counts,
        "simulate_seconds": round(sim_seconds, 1),
        "journeys_and_path_table_seconds": round(table_seconds, 1),
        "parse_paths_seconds": round(parse_seconds, 3),
    }
    print(
        f"seed {seed}: {counts['journeys']:,} journeys as {counts['distinct_paths']:,} distinct "
        f"paths (simulated in {sim_seconds:.0f} s; parse {parse_seconds:.2f} s)",
        file=sys.stderr,
    )
    options = ModelOptions(content=False)
    rows = []
    for name in models:
        result, seconds = timed(
            lambda name=name: run_model(paths_to_journeys(table), name, options)
        )
        shares = result.channels.set_index("channel")["share"]
        rows.append(
            {
                "seed": seed,
                "implementation": "crm-intel",
                "model": name,
                "seconds": round(seconds, 3),
                "tvd": round(total_variation_distance(shares, truth), 4),
            }
        )
        print(f"  {name:>15}: {seconds:6.2f} s  TVD {rows[-1]['tvd']:.3f}", file=sys.stderr)
    heuristics = [m for m in HEURISTICS.values() if m in models]
    if ca is not None and len(heuristics) == len(HEURISTICS):
        # the work of one heuristic_models call: parse once, first, last and linear touch
        _, seconds = timed(
            lambda: [
                run_model(j, m, options) for j in [paths_to_journeys(table)] for m in heuristics
            ]
        )
        info["first_last_linear_seconds"] = round(seconds, 3)
    if ca is not None:
        for peer in peer_rows(ca, table):
            shares = peer["shares"] / peer["shares"].sum()
            rows.append(
                {
                    "seed": seed,
                    "implementation": "ChannelAttribution",
                    "model": peer["model"],
                    "call": peer["call"],
                    "seconds": round(peer["seconds"], 3),
                    "tvd": round(total_variation_distance(shares, truth), 4),
                }
            )
            print(
                f"  ChannelAttribution {peer['model']:>11}: {peer['seconds']:6.2f} s  "
                f"TVD {rows[-1]['tvd']:.3f}",
                file=sys.stderr,
            )
    info["load_1m"] = round(os.getloadavg()[0], 2)  # the machine is shared
    return info, rows


def summarise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per implementation and model: TVD mean, sd, min and max over seeds; seconds per seed."""
    out = []
    keys = dict.fromkeys((r["implementation"], r["model"]) for r in rows)
    for implementation, model in keys:
        mine = [r for r in rows if r["implementation"] == implementation and r["model"] == model]
        tvd = [r["tvd"] for r in mine]
        out.append(
            {
                "implementation": implementation,
                "model": model,
                "seeds": [r["seed"] for r in mine],
                "tvd_mean": round(statistics.fmean(tvd), 4),
                "tvd_sd": round(statistics.stdev(tvd), 4) if len(tvd) > 1 else 0.0,
                "tvd_min": min(tvd),
                "tvd_max": max(tvd),
                "seconds": [r["seconds"] for r in mine],
                "seconds_median": round(statistics.median(r["seconds"] for r in mine), 3),
            }
        )
    return out


def speedups(rows: list[dict[str, Any]], runs: list[dict[str, Any]]) -> dict[str, list[float]]:
    """Per model with a peer: ChannelAttribution's seconds over ours, per seed (> 1: ours is
    faster). The peer's ``heuristic_models`` computes first, last and linear touch in one call;
    it is compared with ours doing the same in one timed region (one parse, three models)."""
    out: dict[str, list[float]] = {}
    seeds = sorted({r["seed"] for r in rows})

    def seconds(seed: int, implementation: str, model: str) -> float | None:
        for r in rows:
            if (r["seed"], r["implementation"], r["model"]) == (seed, implementation, model):
                return float(r["seconds"])
        return None

    for seed in seeds:
        ours = seconds(seed, "crm-intel", "markov_1")
        theirs = seconds(seed, "ChannelAttribution", "markov_1")
        if ours and theirs:
            out.setdefault("markov_1", []).append(round(theirs / ours, 2))
        ours_h = next((r.get("first_last_linear_seconds") for r in runs if r["seed"] == seed), None)
        theirs_h = seconds(seed, "ChannelAttribution", "first_touch")
        if theirs_h and ours_h:
            out.setdefault("first_last_linear", []).append(round(theirs_h / ours_h, 2))
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--leads",
        type=int,
        default=DEFAULT_LEADS,
        help=f"leads per simulation (default {DEFAULT_LEADS:,}: three seeds in a few minutes on "
        "2 cores; 1120000 gives about a million journeys, about 2.5 minutes and 5 GB per seed)",
    )
    parser.add_argument("--accounts", type=int, default=None, help="default max(500, leads / 12)")
    parser.add_argument("--months", type=int, default=18)
    parser.add_argument("--seeds", type=int, nargs="+", default=list(DEFAULT_SEEDS))
    parser.add_argument(
        "--models", default=",".join(MODELS), help="comma-separated (default: every model)"
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    ca, peer_note = channel_attribution()
    started = time.perf_counter()
    runs = []
    rows: list[dict[str, Any]] = []
    for seed in args.seeds:
        info, seed_rows = one_seed(seed, args, ca, models)
        runs.append(info)
        rows.extend(seed_rows)
    summary = summarise(rows)
    ours = [s for s in summary if s["implementation"] == "crm-intel"]
    best = min(ours, key=lambda s: s["tvd_mean"])
    payload = {
        "benchmark": "attribution",
        "input": "the same in-memory path table (distinct paths with counts) for both sides; "
        "ours parses it inside every timed call",
        "peer": peer_note,
        "runs": runs,
        "summary": summary,
        "speedup_vs_channelattribution_per_seed": speedups(rows, runs),
        "best_model": {"model": best["model"], "tvd_mean": best["tvd_mean"]},
        "rows": rows,
        "total_seconds": round(time.perf_counter() - started, 1),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
        },
        "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 2),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(payload, indent=2)
    args.out.write_text(text + "\n")
    print(text)
    return payload


if __name__ == "__main__":
    main()
