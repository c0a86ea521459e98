"""Benchmark: write both pages of the main job on the demo CRM (seed 7): the attribution page
and the funnel cockpit, each as ``make demo`` writes it (time, peak memory, page weight).

The attribution page's time includes what the page needs: every model on the whole run with
its bootstrap intervals, then every model on each calendar quarter, then the figures of every
view. Page weight is given whole and beyond the inlined plotly.js (the issue's bar: 1 MB).

Usage: ``python benchmarks/pages.py [--seed N]``. Writes ``benchmarks/results/pages.json``.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from _measure import measure, write

WEIGHT_BAR_BYTES = 1_000_000


def _page(data_dir: str, args: list[str], out: str) -> dict:
    result = measure(f"""
from crm_intel.cli import app
code = app({args!r} + ["--data-dir", {data_dir!r}, "--out", {out!r}], standalone_mode=False)
assert not code, code
""")
    from plotly.offline import get_plotlyjs

    page = Path(out).read_text(encoding="utf-8")
    plotly_bytes = len(get_plotlyjs().encode("utf-8"))
    size = len(page.encode("utf-8"))
    return {
        "seconds": round(result["seconds"], 2),
        "peak_gib": round(result["peak_mib"] / 1024, 3),
        "bytes": size,
        "bytes_beyond_plotly_js": size - plotly_bytes,
        "within_weight_bar": size - plotly_bytes <= WEIGHT_BAR_BYTES,
        "charts": page.count('<figure class="chart"'),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="crm-bench-pages-") as tmp:
        measure(f"""
from simulator import SimulationConfig, simulate, write_simulation
write_simulation(simulate(SimulationConfig(seed={args.seed})), {tmp!r})
""")
        attribution = _page(tmp, ["attribution", "report"], f"{tmp}/attribution/report.html")
        funnel = _page(tmp, ["report", "funnel"], f"{tmp}/reports/funnel.html")
    write(
        "pages",
        {
            "data": f"demo CRM, seed {args.seed} (the main job's)",
            "attribution_page": attribution,
            "funnel_page": funnel,
            "both_pages_seconds": round(attribution["seconds"] + funnel["seconds"], 2),
            "weight_bar_bytes_beyond_plotly_js": WEIGHT_BAR_BYTES,
        },
    )


if __name__ == "__main__":
    main()
