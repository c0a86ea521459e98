"""A throwaway Redis server on loopback, for tests that need the real thing (never mocked).

:class:`RedisServer` runs ``redis-server`` on a free port of 127.0.0.1 with its files in a
folder of the test's, append-only file on (every write logged, fsynced each second), so that a
test can kill it like a crash (:meth:`RedisServer.kill`) and start it again on the same port and
data (:meth:`RedisServer.start`). A test module starts one (module-scoped fixture) and stops it
after. :func:`redis_or_skip` skips when ``redis-server`` is not installed (``.ci/run`` installs
it with apt, as it does PostgreSQL).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

START_TIMEOUT_S = 15


def _free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class RedisServer:
    """``redis-server`` on ``127.0.0.1:port`` with its data in ``folder``; start, kill, stop."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = _free_loopback_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> RedisServer:
        """Start the server (on the same port and data as before) and wait until it answers."""
        self.folder.mkdir(parents=True, exist_ok=True)
        log = (self.folder / "redis.log").open("ab")
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--bind", "127.0.0.1",
                "--port", str(self.port),
                "--dir", str(self.folder),
                "--save", "",
                "--appendonly", "yes",
                "--appendfsync", "everysec",
                "--protected-mode", "no",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        log.close()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self.answers():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.kill()
                tail = (self.folder / "redis.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"redis-server did not start on port {self.port}:\n{tail}")
            time.sleep(0.05)
        return self

    def answers(self) -> bool:
        """True when the server answers ``PING``."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), 1) as conn:
                conn.sendall(b"PING\r\n")
                return conn.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def kill(self) -> None:
        """End the server at once (``SIGKILL``, like a crash); its data stays in the folder."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None

    def stop(self) -> None:
        """End the server (``SIGTERM``: it writes its append-only file and exits)."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()
        self.process = None


def redis_or_skip() -> None:
    """Skip the calling test when ``redis-server`` is not installed."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server not installed (Debian: apt-get install redis-server)")
