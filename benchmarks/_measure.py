"""Run a piece of Python in a fresh process and report its wall time and peak memory.

``peak_mib`` is the process's own peak resident set (``ru_maxrss``); ``tree_peak_mib`` the peak of
the summed resident sets of the process and every descendant (a Spark JVM, worker processes),
sampled from outside every ``SAMPLE_SECONDS``. Summed RSS counts pages the processes share once
per process, so it errs high; sampling can miss a spike shorter than the interval, so
``tree_peak_mib`` is never reported below ``peak_mib``.
"""

from __future__ import annotations

import contextlib
import json
import platform
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import psutil

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


SAMPLE_SECONDS = 0.2


def tree_rss(pid: int) -> int:
    """Summed resident bytes of process ``pid`` and all its descendants (0 once it is gone)."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    total = 0
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess):  # ended since the listing
            total += proc.memory_info().rss
    return total


def measure(code: str, timeout: float = 1800) -> dict[str, Any]:
    """Execute ``code`` in a new interpreter; ``RESULT`` (a dict) it sets is returned too,
    with ``seconds``, ``peak_mib`` and ``tree_peak_mib`` (see the module's docstring)."""
    script = _WRAPPER.format(code=textwrap.dedent(code))
    proc = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    peak = [0]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(SAMPLE_SECONDS):
            peak[0] = max(peak[0], tree_rss(proc.pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        for child in psutil.Process(proc.pid).children(recursive=True):
            child.kill()
        proc.kill()
        proc.communicate()
        raise
    finally:
        done.set()
        sampler.join()
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark step failed:\n{stderr[-4000:]}")
    line = next(x for x in stdout.splitlines() if x.startswith("@@RESULT@@"))
    out: dict[str, Any] = json.loads(line.removeprefix("@@RESULT@@"))
    out["tree_peak_mib"] = max(peak[0] / 2**20, out["peak_mib"])
    return out


def machine() -> dict[str, Any]:
    import os

    return {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
    }


def write(name: str, payload: dict[str, Any], echo: bool = True) -> Path:
    """Write the payload to ``benchmarks/results/<name>.json``; print it when ``echo``."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    text = json.dumps({"benchmark": name, "machine": machine(), **payload}, indent=2, default=str)
    path.write_text(text + "\n")
    if echo:
        print(text)
    return path
