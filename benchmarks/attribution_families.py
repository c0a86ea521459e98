"""Attribution on the journey families: every model's distance to the counterfactual truth,
which data-driven form the likelihood chose, interval coverage, and time at scale.

For each family of :mod:`simulator.journey_families` (order, repeats, recency, targeting,
frequent) and seed, draws the journeys, and:

* runs first, last and linear touch, Markov order 1, the Shapley rate game, the data-driven model
  (its form chosen by cross-validated log-likelihood, one-standard-error rule) and model-based
  Shapley, and scores each by TVD of channel shares against the family's truth;
* refits every data-driven candidate alone (the rounds its cross-validation found) to show which
  one the truth would have preferred, beside the one the likelihood chose;
* ChannelAttribution's ``markov_model(order=1)`` (the ``bench`` extra) on the same journeys as a
  path table (``path``, ``total_conversions``, ``total_conversion_value``, ``total_null``);
* with ``--bootstrap B``: the data-driven model's 90 % bootstrap intervals and how often they
  hold the true share (coverage; no bar, since a bootstrap does not see model bias).

Timing (``--timing``): the data-driven model and first-order Markov from the path table, parsed
inside the timed region on both sides (ours: ``paths_to_journeys`` then the model; the peer:
``markov_model``). Path tables carry no times, so recency enters as touches before the end.

Writes ``benchmarks/results/attribution-families.json`` (or ``--out``).

Usage::

    python benchmarks/attribution_families.py --journeys 120000 --seeds 1 2 3 --bootstrap 20
    python benchmarks/attribution_families.py --journeys 1000000 --seeds 1 --timing \\
        --out benchmarks/results/attribution-families-1m.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.attribution import channel_attribution, peer_rows, timed  # noqa: E402
from simulator.journey_families import FAMILIES, sample_family  # noqa: E402
from training.attribution import (  # noqa: E402
    ModelOptions,
    paths_to_journeys,
    run_model,
    total_variation_distance,
)
from training.attribution.data_driven import CANDIDATES, for_journeys, refit  # noqa: E402
from training.attribution.families import family_journeys  # noqa: E402
from training.attribution.models import conversion_model, model_intervals  # noqa: E402

DEFAULT_OUT = ROOT / "benchmarks" / "results" / "attribution-families.json"
MODELS = (
    "first_touch",
    "last_touch",
    "linear",
    "markov_1",
    "shapley",
    "data_driven",
    "data_driven_shapley",
)


def one(family: str, seed: int, args: argparse.Namespace, ca: Any) -> dict[str, Any]:
    sample = sample_family(family, args.journeys, seed)
    truth = sample.truth.set_index("channel")["share"]
    journeys = family_journeys(sample)
    options = ModelOptions(content=False, seed=0)
    row: dict[str, Any] = {
        "family": family,
        "seed": seed,
        "journeys": sample.n_journeys,
        "touches": int(len(sample.channel)),
        "conversions": int(sample.converted.sum()),
        "tvd": {},
        "seconds": {},
    }
    chosen, fit_seconds = timed(lambda: conversion_model(journeys, options.seed))
    row["seconds"]["data_driven_fit"] = round(fit_seconds, 2)
    row["chosen"] = chosen.candidate.name
    row["cross_validation"] = chosen.cross_validation.round(6).to_dict(orient="records")
    for name in MODELS:
        result, seconds = timed(lambda name=name: run_model(journeys, name, options))
        row["tvd"][name] = round(total_variation_distance(result.by_channel["share"], truth), 4)
        row["seconds"][name] = round(seconds, 2)
    # each candidate alone, at the rounds its cross-validation chose
    table = chosen.cross_validation
    rounds = dict(zip(table["candidate"], table["rounds"], strict=True))
    row["candidates_tvd"] = {}
    for template in CANDIDATES if args.candidates else ():
        candidate = for_journeys(template, journeys)
        if candidate.name not in rounds:
            continue
        alone = refit(
            replace(chosen, candidate=candidate, rounds=int(rounds[candidate.name])), journeys
        )
        result = run_model(journeys, "data_driven", replace(options, conversion_model=alone))
        row["candidates_tvd"][candidate.name] = round(
            total_variation_distance(result.by_channel["share"], truth), 4
        )
    best = min(row["candidates_tvd"].values(), default=float("nan"))
    row["chosen_minus_truth_best"] = round(row["tvd"]["data_driven"] - best, 4)
    paths = sample.path_table()
    if ca is not None:
        for peer in peer_rows(ca, paths):
            if peer["model"] == "markov_1":
                shares = peer["shares"] / peer["shares"].sum()
                row["tvd"]["ChannelAttribution markov_1"] = round(
                    total_variation_distance(shares, truth), 4
                )
                row["seconds"]["ChannelAttribution markov_1"] = round(peer["seconds"], 2)
    if args.timing:
        for name in ("markov_1", "data_driven"):
            _, seconds = timed(lambda name=name: run_model(paths_to_journeys(paths), name, options))
            row["seconds"][f"{name} from the path table"] = round(seconds, 2)
    if args.bootstrap:
        intervals, seconds = timed(
            lambda: model_intervals(
                journeys, ["data_driven"], replace(options, conversion_model=chosen), args.bootstrap
            )
        )
        held = [
            low <= truth.get(channel, 0.0) <= high
            for channel, low, high in zip(
                intervals["channel"], intervals["share_low"], intervals["share_high"], strict=True
            )
        ]
        row["coverage_90"] = round(sum(held) / len(held), 3)
        row["seconds"]["bootstrap"] = round(seconds, 1)
    print(
        f"{family:>9} seed {seed}: chosen {row['chosen']} TVD {row['tvd']['data_driven']:.3f} "
        f"(truth-best candidate {best:.3f}); last {row['tvd']['last_touch']:.3f} "
        f"markov {row['tvd']['markov_1']:.3f}; fit {fit_seconds:.0f} s",
        file=sys.stderr,
        flush=True,
    )
    return row


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per family and model: mean and spread of TVD over seeds; coverage; the chosen forms."""
    out: dict[str, Any] = {}
    for family in dict.fromkeys(r["family"] for r in rows):
        mine = [r for r in rows if r["family"] == family]
        models = dict.fromkeys(m for r in mine for m in r["tvd"])
        out[family] = {
            "seeds": [r["seed"] for r in mine],
            "tvd_mean": {m: round(statistics.fmean(r["tvd"][m] for r in mine), 4) for m in models},
            "tvd_sd": {
                m: round(statistics.stdev(r["tvd"][m] for r in mine), 4) if len(mine) > 1 else 0.0
                for m in models
            },
            "chosen": [r["chosen"] for r in mine],
            "chosen_minus_truth_best": [r["chosen_minus_truth_best"] for r in mine],
        }
        if all("coverage_90" in r for r in mine):
            out[family]["coverage_90"] = round(statistics.fmean(r["coverage_90"] for r in mine), 3)
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--journeys", type=int, default=120_000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--families", nargs="+", default=list(FAMILIES))
    parser.add_argument("--bootstrap", type=int, default=0, help="replicates for coverage")
    parser.add_argument("--timing", action="store_true", help="time from the path table")
    parser.add_argument(
        "--no-candidates",
        dest="candidates",
        action="store_false",
        help="skip refitting every data-driven candidate alone (slow at 1M journeys)",
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    ca, peer_note = channel_attribution()
    started = time.perf_counter()
    rows = [one(f, s, args, ca) for f in args.families for s in args.seeds]
    payload = {
        "benchmark": "attribution on the journey families",
        "protocol": "channel-share TVD against each family's exact counterfactual truth; the "
        "data-driven form chosen by 3-fold cross-validated log-likelihood (one-standard-error "
        "rule), never by the truth",
        "peer": peer_note,
        "journeys": args.journeys,
        "summary": summarise(rows),
        "rows": rows,
        "total_seconds": round(time.perf_counter() - started, 1),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
        "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 2),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=2) + "\n")
    print(json.dumps(payload["summary"], indent=2))
    return payload


if __name__ == "__main__":
    main()
