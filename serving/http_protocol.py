"""Connection deadlines and a key check in front of everything, for the HTTP server.

uvicorn (which BentoML runs in each worker) closes a kept-alive connection that stays idle after
a response, but sets no deadline on a connection that has sent nothing yet or only part of its
headers: such sockets stay open for good, and a client can hold thousands of them. BentoML
exposes no option for uvicorn's protocol class, so :func:`install` registers
:class:`DeadlineHTTPProtocol` under uvicorn's ``auto`` protocol name (uvicorn's documented table
of protocol classes, read when a server starts). It is uvicorn's own httptools protocol plus:

* one timer, armed when a connection opens and when a new request begins, disarmed when its
  headers are complete; on expiry the connection is closed (with a 408 if part of a request had
  arrived);
* the idle time of a kept-alive connection from the settings (``idle_timeout_seconds``);
* the ``front`` layer given to :func:`install` around the application, outermost: the service
  puts its key check there (:class:`serving.gate.KeyFirst`), so that a request without a valid
  key costs nothing in BentoML's middlewares (whose request timer holds every request's context
  for the request timeout).

The deadlines and the front layer apply with ``request_limits`` on (the default); settings are
read at a worker's first connection. Body deadlines and sizes are the gate's
(:mod:`serving.gate`), which sees the body arrive.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from crm.settings import Settings
from serving.status import api_error

log = logging.getLogger("crm_intel.serving")


def _timeout_response(seconds: float) -> bytes:
    body = json.dumps(
        {
            "error": api_error(
                "request_timeout",
                f"the request's headers did not arrive within {seconds:g} seconds",
                None,
                "send the whole request at once",
            )
        }
    ).encode()
    return (
        b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
        b"connection: close\r\ncontent-length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )


ASGIApp = Callable[..., Awaitable[None]]
_front: Callable[[ASGIApp], ASGIApp] | None = None
_fronted: dict[int, ASGIApp] = {}  # id(the server's app) → the app behind the front layer


class DeadlineHTTPProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a deadline on each request's headers."""

    settings: Settings | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if DeadlineHTTPProtocol.settings is None:
            DeadlineHTTPProtocol.settings = Settings()  # once per worker
        settings = DeadlineHTTPProtocol.settings
        self.header_timeout: float | None = None
        if settings.request_limits:
            self.header_timeout = settings.request_header_timeout_seconds
            # uvicorn annotates it int; it goes to loop.call_later, which takes seconds as float
            self.timeout_keep_alive = settings.idle_timeout_seconds  # type: ignore[assignment]
            if _front is not None:
                if id(self.app) not in _fronted:
                    _fronted[id(self.app)] = _front(self.app)
                self.app = _fronted[id(self.app)]
        self._deadline: asyncio.TimerHandle | None = None
        self._begun = False

    def _arm(self) -> None:
        self._disarm()
        if self.header_timeout is not None:
            self._deadline = self.loop.call_later(self.header_timeout, self._expire)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expire(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        if self._begun:
            assert self.header_timeout is not None
            self.transport.write(_timeout_response(self.header_timeout))
            log.info("a request's headers did not arrive in time: connection closed (408)")
        self.transport.close()

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self._begun = False
        self._arm()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._begun = True
        if self._deadline is None:
            self._arm()

    def on_headers_complete(self) -> None:
        self._disarm()
        self._begun = False
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)


def install(front: Callable[[ASGIApp], ASGIApp] | None = None) -> None:
    """Make uvicorn's ``auto`` HTTP protocol :class:`DeadlineHTTPProtocol` in this process, with
    ``front`` wrapped around the server's application (httptools, which it builds on, comes
    with BentoML's server dependencies)."""
    global _front
    from uvicorn import config

    _front = front
    config.HTTP_PROTOCOLS["auto"] = f"{__name__}:DeadlineHTTPProtocol"
