"""A throwaway PostgreSQL server on loopback, for tests that need the real thing (never mocked).

:func:`running_postgres` runs ``initdb`` into a temporary directory, starts the server on a free
port of 127.0.0.1 only (its unix socket inside that directory, trust authentication, no fsync),
creates an empty database and yields its SQLAlchemy URL
(``postgresql+psycopg://postgres@127.0.0.1:PORT/crm_intel_test``); on exit it stops the server
and deletes the directory. It raises :class:`PostgresUnavailable` when no server can be started.

The session fixture :func:`postgres_url` skips the tests that use it in that case, and
:func:`log_database_url` gives a test an empty score-log database of each kind (SQLite and
PostgreSQL). ``tests/conftest.py`` registers this module as a plugin (``pytest_plugins``), so
any test takes them by name, and the whole session shares one server.

PostgreSQL refuses to run as root. Under root (CI), ``initdb`` and ``pg_ctl`` run as the
unprivileged ``postgres`` system user that Debian's ``postgresql`` package creates, and the
temporary directory is handed to that user.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shlex
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

DATABASE = "crm_intel_test"
SUPERUSER = "postgres"
SERVER_ACCOUNT = "postgres"  # the OS user the server runs as when the tests run as root
START_TIMEOUT_S = 30
LOG_TAIL_LINES = 15


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL server could be started here; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def server_binaries() -> Path:
    """The folder holding ``initdb`` and ``pg_ctl``: from PATH, else the newest
    ``/usr/lib/postgresql/*/bin`` (Debian keeps them off PATH).

    Raises:
        PostgresUnavailable: neither has them.
    """
    on_path = shutil.which("initdb")
    if on_path:
        folder = Path(on_path).resolve().parent
        if (folder / "pg_ctl").exists():
            return folder
    installed = [
        initdb.parent
        for initdb in Path("/usr/lib/postgresql").glob("*/bin/initdb")
        if (initdb.parent / "pg_ctl").exists()
    ]
    if not installed:
        raise PostgresUnavailable("no initdb/pg_ctl on PATH or under /usr/lib/postgresql/*/bin")
    return max(installed, key=lambda folder: _version(folder.parent.name))


def _version(name: str) -> tuple[int, ...]:
    return tuple(int(part) for part in name.split(".") if part.isdigit())


def _server_account() -> pwd.struct_passwd | None:
    """The account to run the server as: ``postgres`` under root, else the current user
    (``None``)."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(SERVER_ACCOUNT)
    except KeyError:
        raise PostgresUnavailable(
            f"running as root and there is no {SERVER_ACCOUNT!r} user to run the server as"
        ) from None


def _free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _tail(text: str) -> str:
    return "\n".join(text.strip().splitlines()[-LOG_TAIL_LINES:])


def _run(
    args: list[str], account: pwd.struct_passwd | None, cwd: Path, failure: str, log: Path | None
) -> None:
    """Run one server tool, as ``account`` when given.

    Raises:
        PostgresUnavailable: it could not run or failed; with the last lines of its output and
            of the server log.
    """
    as_account: dict[str, Any] = {}
    if account is not None:
        as_account = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}
    try:
        done = subprocess.run(
            args,
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT_S * 2,
            check=False,
            **as_account,
        )
    except (OSError, subprocess.SubprocessError) as error:
        raise PostgresUnavailable(f"{failure}: {error}") from error
    if done.returncode != 0:
        details = _tail(done.stdout + done.stderr)
        if log is not None and log.exists():
            details += f"\nserver log:\n{_tail(log.read_text(errors='replace'))}"
        raise PostgresUnavailable(f"{failure} (exit {done.returncode}):\n{details}")


def _create_database(port: int) -> None:
    try:
        with psycopg.connect(
            host="127.0.0.1", port=port, user=SUPERUSER, dbname="postgres", autocommit=True
        ) as connection:
            connection.execute(f'CREATE DATABASE "{DATABASE}"')
    except psycopg.Error as error:
        raise PostgresUnavailable(f"could not create database {DATABASE!r}: {error}") from error


@contextlib.contextmanager
def running_postgres() -> Iterator[str]:
    """A fresh PostgreSQL server on 127.0.0.1, for as long as the block runs.

    Yields:
        The SQLAlchemy URL of an empty database on it, ``postgresql+psycopg://…``.

    Raises:
        PostgresUnavailable: no server binaries, no account to run them as under root, or the
            server did not start (the reason ends with the last lines of its log).
    """
    binaries = server_binaries()
    account = _server_account()
    root = Path(tempfile.mkdtemp(prefix="crm-intel-postgres-"))
    try:
        if account is not None:
            os.chown(root, account.pw_uid, account.pw_gid)
        data, log = root / "data", root / "server.log"
        _run(
            [
                str(binaries / "initdb"),
                f"--pgdata={data}",
                f"--username={SUPERUSER}",
                "--auth=trust",
                "--encoding=UTF8",
                "--no-locale",
                "--no-sync",
            ],
            account,
            root,
            "initdb failed",
            log=None,
        )
        port = _free_loopback_port()
        server_options = [
            "-c listen_addresses=127.0.0.1",
            f"-c port={port}",
            f"-c unix_socket_directories={shlex.quote(str(root))}",
            # a throwaway database: durability buys nothing and costs seconds
            "-c fsync=off",
            "-c synchronous_commit=off",
            "-c full_page_writes=off",
        ]
        pg_ctl = [str(binaries / "pg_ctl"), f"--pgdata={data}"]
        try:
            _run(
                [
                    *pg_ctl,
                    f"--log={log}",
                    "--wait",
                    f"--timeout={START_TIMEOUT_S}",
                    f"--options={' '.join(server_options)}",
                    "start",
                ],
                account,
                root,
                f"PostgreSQL ({binaries}) did not start on 127.0.0.1:{port}",
                log=log,
            )
            _create_database(port)
            yield f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{port}/{DATABASE}"
        finally:
            # immediate: no shutdown checkpoint, the data is thrown away anyway
            with contextlib.suppress(PostgresUnavailable):
                _run([*pg_ctl, "--mode=immediate", "--wait", "stop"], account, root, "", None)
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """The SQLAlchemy URL of an empty database on a throwaway PostgreSQL server on loopback;
    skips the test when no server can be started here."""
    with contextlib.ExitStack() as server:
        try:
            url = server.enter_context(running_postgres())
        except PostgresUnavailable as error:
            pytest.skip(f"PostgreSQL not available: {error.reason}")
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def log_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty score-log database of each kind: a SQLite file, and the PostgreSQL server's
    database with the log's tables dropped (a module using it imports ``postgres_url`` too)."""
    import sqlalchemy as sa

    from serving import score_log

    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'log.db'}"
    url = request.getfixturevalue("postgres_url")
    score_log.dispose_all()
    engine = sa.create_engine(url)
    score_log.metadata.drop_all(engine)
    engine.dispose()
    return str(url)
