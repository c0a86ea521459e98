"""Benchmark: simulate a CRM with ~10 million interactions (time and peak memory).

Peer, measured in the same run: the Parquet I/O floor — reading the simulator's own output back
into pandas and writing every table again with ``DataFrame.to_parquet``. Any simulator that
writes these tables pays at least that; the gap is the cost of generating them with their truth.

Usage: ``python benchmarks/simulate.py [--leads N] [--accounts N]`` (defaults give ~10M touches).
Writes ``benchmarks/results/simulate.json`` and prints it.
"""

from __future__ import annotations

import argparse
import tempfile

from _measure import measure, write

TARGET_SECONDS = 60.0
TARGET_GIB = 4.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leads", type=int, default=1_180_000)
    parser.add_argument("--accounts", type=int, default=60_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="crm-bench-") as tmp:
        ours = measure(f"""
from simulator import SimulationConfig, simulate, write_simulation
result = simulate(SimulationConfig(seed={args.seed}, leads={args.leads},
                                   accounts={args.accounts}))
write_simulation(result, {tmp!r})
RESULT = {{"interactions": result.summary["rows"]["interactions"],
          "truth_rows": {{k: len(v) for k, v in result.truth.items()}},
          "rows": result.summary["rows"]}}
""")
        peer = measure(f"""
import pathlib, pandas as pd
out = pathlib.Path({tmp!r}) / "rewrite"
out.mkdir()
for path in sorted((pathlib.Path({tmp!r}) / "raw").glob("*.parquet")):
    pd.read_parquet(path).to_parquet(out / path.name)
RESULT = {{}}
""")
    payload = {
        "interactions": ours["interactions"],
        "rows": ours["rows"],
        "truth_rows": ours["truth_rows"],
        "crm_intel_simulate": {
            "seconds": round(ours["seconds"], 2),
            "peak_gib": round(ours["peak_mib"] / 1024, 3),
        },
        "peer_parquet_io_floor": {
            "seconds": round(peer["seconds"], 2),
            "peak_gib": round(peer["peak_mib"] / 1024, 3),
        },
        "targets": {"seconds": TARGET_SECONDS, "peak_gib": TARGET_GIB},
        "meets_targets": ours["seconds"] <= TARGET_SECONDS
        and ours["peak_mib"] / 1024 <= TARGET_GIB,
    }
    write("simulate", payload)


if __name__ == "__main__":
    main()
