"""A small, complete deployment to serve from: demo CRM → features → online store → champions.

Calls the stage functions (no subprocesses), for the service's tests and benchmark. The models are
trained with the training package's own protocol; only the minimum counts are lowered so that a
few hundred accounts are enough for a churn champion.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crm.settings import Settings
from serving.runtime import QUIET_ENV, server_env

__all__ = ["QUIET_ENV", "Deployment", "LiveServer", "build_demo", "free_port"]


@dataclass(frozen=True)
class Deployment:
    data_dir: Path
    tracking_uri: str
    versions: dict[str, str]


SMALL_MINIMUMS = dict(
    train_rows=200, train_positives=20, train_negatives=20, eval_positives=5, eval_negatives=5
)


def build_demo(
    root: Path, seed: int = 11, accounts: int = 300, leads: int = 3000, months: int = 18
) -> Deployment:
    """Simulate a CRM under ``root/data``, build/apply/materialise features and register both
    champions in ``root/mlruns/mlflow.db``. Reuses a finished build in ``root`` (marker file)."""
    from features import store
    from features.training import training_set
    from simulator import SimulationConfig, simulate, write_simulation
    from training.data import Minimums
    from training.pipeline import SPECS
    from training.protocol import Protocol
    from training.registry import champion_version
    from training.snapshots import train_time_split
    from training.tracking import log_training_run

    data_dir = root / "data"
    tracking_uri = f"sqlite:///{root / 'mlruns' / 'mlflow.db'}"
    done = root / "deployment.done"
    settings = Settings(data_dir=data_dir, mlflow_tracking_uri=tracking_uri)
    if not done.exists():
        previous = os.environ.get("MLFLOW_TRACKING_URI")
        os.environ["MLFLOW_TRACKING_URI"] = tracking_uri
        try:
            sim = simulate(
                SimulationConfig(seed=seed, accounts=accounts, leads=leads, months=months)
            )
            write_simulation(sim, data_dir)
            store.build(settings)
            store.apply(settings)
            store.materialize(settings)
            for name in ("lead_conversion", "churn_risk"):
                frame = training_set(settings, name)
                result = train_time_split(
                    frame, SPECS[name], Protocol(), Minimums(**SMALL_MINIMUMS)
                )
                log_training_run(result, tracking_uri, settings.promotion_margin)
        finally:
            if previous is None:
                os.environ.pop("MLFLOW_TRACKING_URI", None)
            else:
                os.environ["MLFLOW_TRACKING_URI"] = previous
        done.write_text("ok\n")
    versions = {}
    for name in ("lead_conversion", "churn_risk"):
        mv = champion_version(tracking_uri, name)
        versions[name] = "" if mv is None else str(mv.version)
    return Deployment(data_dir, tracking_uri, versions)


def _serve_settings(environ: dict[str, str]) -> dict[str, Any]:
    """The server-shape settings named in ``environ`` (``CRM_INTEL_SERVE_*``), for a child
    server started with another environment than this process's."""
    prefix = "CRM_INTEL_SERVE_"
    names = {"workers", "metrics", "access_log"}
    return {
        f"serve_{k[len(prefix) :].lower()}": v
        for k, v in environ.items()
        if k.startswith(prefix) and k[len(prefix) :].lower() in names
    }


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LiveServer:
    """``bentoml serve serving.service:CRMIntel`` in a subprocess on a loopback port.

    Use as a context manager; the process group it started is ended on exit.
    """

    def __init__(
        self,
        deployment: Deployment,
        api_keys: str,
        log: Path,
        extra_env: dict[str, str] | None = None,
        port: int | None = None,
    ):
        self.deployment = deployment
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        environ = {**os.environ, **(extra_env or {})}
        settings = Settings(
            data_dir=deployment.data_dir,
            mlflow_tracking_uri=deployment.tracking_uri,
            **_serve_settings(environ),
        )
        self.env = {
            **server_env(settings, environ),
            "MLFLOW_TRACKING_URI": deployment.tracking_uri,
            "CRM_INTEL_API_KEYS": api_keys,
            "BENTOML_HOME": str(log.parent / "bentoml-home"),
        }
        self.process: Any = None

    def __enter__(self) -> LiveServer:
        import subprocess
        import sys

        root = Path(__file__).resolve().parents[1]
        self._log_file = self.log.open("wb")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bentoml",
                "serve",
                "serving.service:CRMIntel",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--working-dir",
                str(root),
            ],
            env=self.env,
            cwd=root,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            self.wait_healthy()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def wait_healthy(self, timeout: float = 180.0) -> None:
        import time

        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"bentoml serve exited ({self.process.returncode}); see "
                    f"{self.log}:\n{self.log.read_text()[-3000:]}"
                )
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise TimeoutError(f"bentoml serve not healthy after {timeout:.0f}s; see {self.log}")

    def pids(self) -> list[int]:
        """The server's process and its descendants."""
        import psutil

        try:
            parent = psutil.Process(self.process.pid)
            return [parent.pid, *(p.pid for p in parent.children(recursive=True))]
        except psutil.NoSuchProcess:
            return []

    def rss_bytes(self) -> int:
        """Resident memory of the server's processes together."""
        import psutil

        total = 0
        for pid in self.pids():
            with contextlib.suppress(psutil.NoSuchProcess):
                total += psutil.Process(pid).memory_info().rss
        return total

    def __exit__(self, *exc: object) -> None:
        import signal
        import subprocess

        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)  # the group this object started
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        self._log_file.close()
