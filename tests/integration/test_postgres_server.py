"""The throwaway PostgreSQL server the score-log tests run against: real, and on loopback only
(the rows themselves are tested in ``test_score_log.py``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

pytestmark = pytest.mark.integration


@pytest.fixture()
def engine(postgres_url: str) -> Iterator[Engine]:
    """An engine on the server's database (the score log's own tests write and read rows)."""
    engine = sa.create_engine(postgres_url)
    yield engine
    engine.dispose()


def test_server_listens_on_loopback_only(engine: Engine) -> None:
    # when the server's own settings and sockets are inspected
    with engine.connect() as connection:
        listen = connection.execute(sa.text("SHOW listen_addresses")).scalar_one()
        socket_dir = connection.execute(sa.text("SHOW unix_socket_directories")).scalar_one()
        server_addr = connection.execute(sa.text("SELECT host(inet_server_addr())")).scalar_one()
    port = engine.url.port
    listening = {
        conn.laddr.ip
        for conn in psutil.net_connections(kind="inet")
        if conn.status == psutil.CONN_LISTEN and conn.laddr.port == port
    }
    # then it accepts TCP on 127.0.0.1 alone, and its unix socket is in its own temp directory
    assert listen == "127.0.0.1"
    assert server_addr == "127.0.0.1"
    assert listening == {"127.0.0.1"}
    assert (Path(socket_dir) / f".s.PGSQL.{port}").is_socket()
    assert Path(socket_dir).name.startswith("crm-intel-postgres-")
