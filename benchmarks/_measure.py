"""Run a piece of Python in a fresh process and report its wall time and peak memory."""

from __future__ import annotations

import json
import platform
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"

_WRAPPER = """
import json, resource, time
_t0 = time.perf_counter()
{code}
_out = dict(globals().get("RESULT", {{}}))
_out["seconds"] = time.perf_counter() - _t0
_out["peak_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print("@@RESULT@@" + json.dumps(_out, default=str))
"""


def measure(code: str, timeout: float = 1800) -> dict[str, Any]:
    """Execute ``code`` in a new interpreter; ``RESULT`` (a dict) it sets is returned too."""
    script = _WRAPPER.format(code=textwrap.dedent(code))
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=timeout, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"benchmark step failed:\n{done.stderr[-4000:]}")
    line = next(x for x in done.stdout.splitlines() if x.startswith("@@RESULT@@"))
    return json.loads(line.removeprefix("@@RESULT@@"))


def machine() -> dict[str, Any]:
    import os

    return {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
    }


def write(name: str, payload: dict[str, Any]) -> Path:
    """Print the payload and write it to ``benchmarks/results/<name>.json``."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    text = json.dumps({"benchmark": name, "machine": machine(), **payload}, indent=2, default=str)
    path.write_text(text + "\n")
    print(text)
    return path
