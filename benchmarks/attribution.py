"""Attribution benchmark: seconds per model on about a million journeys, and accuracy vs truth.

Simulates a CRM large enough to give about one million lead journeys, builds the journeys, runs
every model (channel level, timed), and runs ChannelAttribution's ``markov_model`` (order 1, its
defaults) on the same journeys in the same process, given as its native input: the distinct
``" > "``-joined paths with their conversion, revenue and null counts. Each model's channel
shares are scored against the simulator's counterfactual truth by total variation distance.

Writes ``benchmarks/results/attribution.json`` and prints it. Needs the ``bench`` extra for the
ChannelAttribution peer (``pip install -e .[bench]``); without it that row says why it is absent.

Usage::

    python benchmarks/attribution.py [--leads 1120000] [--seed 3] [--out FILE]
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import io
import json
import os
import platform
import resource
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
    run_model,
    total_variation_distance,
)

DEFAULT_OUT = ROOT / "benchmarks" / "results" / "attribution.json"


def _timed(call: Any) -> tuple[Any, float]:
    started = time.perf_counter()
    result = call()
    return result, time.perf_counter() - started


def channel_attribution_peer(paths: pd.DataFrame) -> tuple[pd.Series | None, float, str]:
    """ChannelAttribution's first-order Markov model on aggregated paths: shares, seconds, note."""
    quiet = io.StringIO()  # ChannelAttribution prints a banner on import and on each call
    try:
        with contextlib.redirect_stdout(quiet):
            import ChannelAttribution as ca  # noqa: N813
    except ImportError as err:
        return None, float("nan"), f"not installed ({err}); pip install -e .[bench]"
    with contextlib.redirect_stdout(quiet):
        result, seconds = _timed(
            lambda: ca.markov_model(
                paths,
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
    frame = result if isinstance(result, pd.DataFrame) else result["result"]
    shares = frame.set_index("channel_name")["total_conversions"]
    version = getattr(ca, "__version__", "2.2.5")
    return shares / shares.sum(), seconds, f"ChannelAttribution {version}, markov_model(order=1)"


def _journeys(tables: dict[str, pd.DataFrame]) -> Any:
    return journeys_from_interactions(
        tables["interactions"], tables["leads"], tables["opportunities"]
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leads", type=int, default=1_120_000)
    parser.add_argument("--accounts", type=int, default=50_000)
    parser.add_argument("--months", type=int, default=18)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)

    config = SimulationConfig(
        seed=args.seed, accounts=args.accounts, leads=args.leads, months=args.months
    )
    sim, sim_seconds = _timed(lambda: simulate(config))
    truth = sim.truth["attribution_channels"].set_index("channel")["share"]
    journeys, journey_seconds = _timed(functools.partial(_journeys, sim.tables))
    del sim
    print(
        f"{journeys.n_journeys:,} journeys, {journeys.n_touches:,} touches "
        f"({journey_seconds:.1f} s to build)",
        file=sys.stderr,
    )

    options = ModelOptions(content=False)
    rows = []
    for name in MODELS:
        result, seconds = _timed(lambda name=name: run_model(journeys, name, options))
        shares = result.channels.set_index("channel")["share"]
        rows.append(
            {
                "model": name,
                "implementation": "crm-intel",
                "seconds": round(seconds, 3),
                "tvd": round(total_variation_distance(shares, truth), 4),
            }
        )
        print(f"{name:>15}: {seconds:7.2f} s  TVD {rows[-1]['tvd']:.3f}", file=sys.stderr)

    aggregated, aggregate_seconds = _timed(
        lambda: (
            pd.DataFrame(
                {
                    "path": journeys.paths(" > ").to_numpy(dtype=object),
                    "total_conversions": journeys.conversions,
                    "total_conversion_value": journeys.value,
                    "total_null": journeys.nulls,
                }
            )
            .groupby("path", as_index=False)
            .sum()
        )
    )
    peer, peer_seconds, note = channel_attribution_peer(aggregated)
    rows.append(
        {
            "model": "markov_1",
            "implementation": "ChannelAttribution",
            "seconds": round(peer_seconds, 3),
            "tvd": None if peer is None else round(total_variation_distance(peer, truth), 4),
            "note": note,
        }
    )
    print(f"ChannelAttribution markov_1: {peer_seconds:.2f} s  {note}", file=sys.stderr)

    ours = next(r for r in rows if r["model"] == "markov_1" and r["implementation"] == "crm-intel")
    best = min((r for r in rows if r["implementation"] == "crm-intel"), key=lambda r: r["tvd"])
    payload = {
        "benchmark": "attribution",
        "journeys": journeys.n_journeys,
        "touches": journeys.n_touches,
        "conversions": journeys.total_conversions,
        "distinct_paths": len(aggregated),
        "simulation": {
            "seed": args.seed,
            "leads": args.leads,
            "accounts": args.accounts,
            "months": args.months,
            "seconds": round(sim_seconds, 1),
        },
        "build_journeys_seconds": round(journey_seconds, 2),
        "aggregate_paths_seconds": round(aggregate_seconds, 2),
        "models": rows,
        "markov_1_speedup_vs_channelattribution": (
            None if peer is None else round(peer_seconds / ours["seconds"], 1)
        ),
        "best_model": {"model": best["model"], "tvd": best["tvd"]},
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
