"""The service's front door: every request passes here before BentoML sees it.

In order, each step answering in the API's error shape and keeping no state per raw path:

1. health and readiness (``/healthz``, ``/livez``, ``/readyz``) pass, without a key, and are
   answered in JSON: ``{"alive": true}``; ``{"ready": true}``, or 503 ``{"ready": false,
   "error": {...}}`` in the API's error shape;
2. the API's description (``/docs.json``, ``/schema.json``, the index page ``/``) only with
   ``CRM_INTEL_EXPOSE_DOCS=1``, else 404; BentoML's bundled UI assets never;
3. a key (401), a route that exists (404), the key's scope for it (403, naming the scope), the
   method (405);
4. for the API's POST routes: JSON only (415), the body's size (413, naming the limit, read no
   further) and time to arrive (408), then the body validated against the route's request
   schema (400 naming the field, in the project's words); a valid body is handed on as read.

Every request is one log line, the service's access log (BentoML's own is off)::

    POST /score_leads 200 12.3ms id=<request id> key=env-6ab9f1eb
    POST /score_leads 400 invalid_field 0.8ms id=<request id> key=env-6ab9f1eb

method, route (``(other path)`` for a path that is none: never a client's path), status, the
error code of a refusal, milliseconds to the last byte, request id and key id (never the key).
2xx and 4xx are INFO (4xx never with a traceback), 5xx ERROR with what went wrong; health checks
and ``/metrics`` answered 2xx are DEBUG: probes every few seconds would bury the rest. With
``request_log`` off, 2xx lines are DEBUG too. A response BentoML itself produces for an error
(its own wording, possibly a library's) is rewritten into the API's shape, its text going to
the server log only. ``/metrics`` is answered here, by route template (:mod:`serving.metrics`).

Every request gets an id: the client's ``X-Request-Id`` when it is a short token, else a new
one. It is answered in ``X-Request-Id`` and, with the caller's key id, held in context variables
(:data:`REQUEST_ID`, :data:`CALLER`) for what the request does downstream (the score log).
"""

from __future__ import annotations

import asyncio
import html
import json
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from serving.answers import Outcome, health, shaped, validation_problem
from serving.auth import APIKey, KeyChecker, bearer_token
from serving.metrics import RequestMetrics
from serving.status import api_error

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

log = logging.getLogger("crm_intel.serving")

HEALTH_PATHS = frozenset({"/healthz", "/livez", "/readyz"})
HEALTH_METHODS = frozenset({"GET", "HEAD"})
DOCS_PATHS = frozenset({"/docs.json", "/schema.json"})
INDEX_PATH = "/"
METRICS_PATH = "/metrics"
KEY_HINT = "a key from CRM_INTEL_API_KEYS or CRM_INTEL_API_KEYS_FILE"

REQUEST_ID: ContextVar[str] = ContextVar("request_id", default="")
CALLER: ContextVar[str] = ContextVar("caller", default="")  # the API key's id
_GIVEN_ID = re.compile(rb"[A-Za-z0-9._:-]{1,64}")


def access_log(
    method: str,
    label: str,
    status: int,
    code: str,
    seconds: float,
    rid: str,
    key_id: str,
    level: int = logging.INFO,
    detail: str = "",
) -> None:
    """The one log line of a request (module docstring); ``detail`` says what went wrong in a
    5xx (for the operator: it may name a file or a library)."""
    log.log(
        level,
        "%s %s %s %s%.1fms id=%s key=%s%s",
        method,
        label,
        status or "-",  # 0: nothing was answered (the client went away first)
        f"{code} " if code else "",
        seconds * 1000,
        rid,
        key_id,
        f": {detail}" if detail else "",
    )


def request_id(headers: list[tuple[bytes, bytes]]) -> str:
    """The client's ``X-Request-Id`` when it is a token of at most 64 safe characters, else a
    new random id."""
    for name, value in headers:
        if name.lower() == b"x-request-id" and _GIVEN_ID.fullmatch(value):
            return value.decode()
    return uuid.uuid4().hex


@dataclass(frozen=True)
class Route:
    """A route of the API: its methods, the scope a key needs, the schema of its JSON body."""

    path: str
    methods: frozenset[str]
    scope: str
    body: type[BaseModel] | None = None


@dataclass(frozen=True)
class Limits:
    """Bounds on one request (``None`` turns a bound off, for measuring what it costs)."""

    max_body_bytes: int | None = 1_048_576
    body_timeout_seconds: float | None = 15.0
    answer_timeout_seconds: float | None = None  # from a valid body to the answer: else 504


def _index_page(routes: Mapping[str, Route]) -> bytes:
    items = "".join(
        f"<li><code>{html.escape('/'.join(sorted(r.methods)))} {html.escape(path)}</code> "
        f"(scope <code>{html.escape(r.scope)}</code>)</li>"
        for path, r in sorted(routes.items())
    )
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8><title>crm-intel API</title>"
        "</head><body><h1>crm-intel scoring API</h1><p>Send "
        "<code>Authorization: Bearer &lt;key&gt;</code>. The OpenAPI description is "
        f'<a href="/docs.json">/docs.json</a>.</p><ul>{items}</ul></body></html>'
    ).encode()


CHALLENGE = (b"www-authenticate", b'Bearer realm="crm-intel"')


def unauthorized(token_given: bool) -> dict[str, Any]:
    """The 401 error: a missing or an invalid key."""
    return api_error(
        "invalid_api_key" if token_given else "missing_api_key",
        "invalid API key" if token_given else "missing API key",
        "Authorization",
        f"send 'Authorization: Bearer <key>' with {KEY_HINT}",
    )


def needs_key(path: str) -> bool:
    """Whether a request to ``path`` needs a key (all but health, and the description, which
    the gate answers by the ``expose_docs`` setting)."""
    return not (path in HEALTH_PATHS or path in DOCS_PATHS or path == INDEX_PATH)


async def answer(
    send: Send,
    status: int,
    body: bytes,
    content_type: bytes = b"application/json",
    headers: list[tuple[bytes, bytes]] | None = None,
    close: bool = False,
) -> None:
    """A whole response: status, ``body`` with its type and length, extra ``headers``."""
    out = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    out += headers or []
    if close:  # the rest of the body is not read: the connection cannot be reused
        out.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": out})
    await send({"type": "http.response.body", "body": body})


class KeyFirst:
    """The key check alone, for the outermost layer of the server: a request without a valid
    key is answered 401 before anything else (BentoML's own middlewares included) spends time
    or memory on it. :class:`Gate` checks again and does the rest.

    Args:
        app: the server's application.
        keys: the configured keys.
        known_paths: the routes' paths (written to the log as they are; others are not).
        metrics: the process's request metrics, counting these refusals too.
    """

    def __init__(
        self,
        app: ASGIApp,
        keys: KeyChecker,
        known_paths: frozenset[str],
        metrics: RequestMetrics | None = None,
    ):
        self.app = app
        self.keys = keys
        self.known_paths = known_paths
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not needs_key(scope.get("path", "")):
            await self.app(scope, receive, send)
            return
        token = bearer_token(scope.get("headers", []))
        if self.keys.find(token) is not None:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        error = unauthorized(token is not None)
        path = scope.get("path", "")
        label = path if path in self.known_paths else "(other path)"  # never a client's path
        rid = request_id(scope.get("headers", []))
        body = json.dumps({"error": error}).encode()
        await answer(send, 401, body, headers=[CHALLENGE, (b"x-request-id", rid.encode())])
        elapsed = time.perf_counter() - started
        access_log(scope.get("method", ""), label, 401, error["code"], elapsed, rid, "-")
        if self.metrics is not None:
            self.metrics.observe(scope.get("path", ""), scope.get("method", ""), 401, elapsed)


class _Answered(Exception):
    """Raised by a step that already answered the request, with the error code it answered."""

    def __init__(self, code: str):
        super().__init__(code)
        self.code = code


class Gate:
    """ASGI middleware in front of the service (see the module docstring).

    Args:
        app: the application behind (BentoML's).
        routes: the API's routes by path.
        keys: the configured keys.
        limits: body size and time bounds.
        metrics: request metrics (``/metrics`` is served only with them).
        expose_docs: serve the API description and index page.
        log_successes: log 2xx answers at INFO (else DEBUG; refusals and errors always INFO
            and ERROR).
    """

    def __init__(
        self,
        app: ASGIApp,
        routes: Mapping[str, Route],
        keys: KeyChecker,
        limits: Limits,
        metrics: RequestMetrics | None = None,
        expose_docs: bool = False,
        log_successes: bool = True,
    ):
        self.app = app
        self.routes = dict(routes)
        self.keys = keys
        self.limits = limits
        self.metrics = metrics
        self.expose_docs = expose_docs
        self.success_level = logging.INFO if log_successes else logging.DEBUG
        self.index = _index_page(self.routes)

    # ------------------------------------------------------------------------------ answers

    async def _problem(
        self,
        scope: Scope,
        send: Send,
        status: int,
        error: dict[str, Any],
        headers: list[tuple[bytes, bytes]] | None = None,
        close: bool = False,
    ) -> None:
        body = json.dumps({"error": error}).encode()
        await answer(send, status, body, headers=headers, close=close)
        raise _Answered(error["code"])  # logged by __call__, with the rest of the request

    def _label(self, path: str) -> str:
        if path in self.routes or path in HEALTH_PATHS or path == METRICS_PATH:
            return path
        return "(docs)" if path in DOCS_PATHS or path == INDEX_PATH else "(other path)"

    # -------------------------------------------------------------------------------- steps

    async def _authorise(self, scope: Scope, send: Send) -> Route | None:
        """The request's route once its key may use it; None for the metrics path."""
        path = scope.get("path", "")
        key = self.keys.find(bearer_token(scope.get("headers", [])))
        if key is None:
            given = bearer_token(scope.get("headers", [])) is not None
            await self._problem(scope, send, 401, unauthorized(given), headers=[CHALLENGE])
        assert key is not None
        scope.setdefault("state", {})["api_key"] = key
        CALLER.set(key.key_id)
        if path == METRICS_PATH and self.metrics is not None:
            needed, route = "metrics", None
        elif path in self.routes:
            route = self.routes[path]
            needed = route.scope
        else:
            await self._problem(
                scope,
                send,
                404,
                api_error(
                    "not_found",
                    "no such route",
                    None,
                    "the routes are " + ", ".join(sorted(self.routes)),
                ),
            )
        if needed not in key.scopes:
            await self._problem(
                scope,
                send,
                403,
                api_error(
                    "missing_scope",
                    f"this key may not use {path}: it needs the {needed!r} scope",
                    "Authorization",
                    f"use a key with the {needed!r} scope, or ask an administrator to add it",
                ),
            )
        await self._only(scope, send, route.methods if route else frozenset({"GET"}))
        return route

    async def _only(self, scope: Scope, send: Send, methods: frozenset[str]) -> None:
        """405 in the API's shape unless the request's method is one of ``methods``."""
        if scope.get("method") in methods:
            return
        allowed = ", ".join(sorted(methods))
        await self._problem(
            scope,
            send,
            405,
            api_error(
                "method_not_allowed",
                f"{scope.get('path', '')} answers {allowed}, not {scope.get('method')}",
                None,
                f"send a {allowed} request",
            ),
            headers=[(b"allow", allowed.encode())],
        )

    def _header(self, scope: Scope, name: bytes) -> str | None:
        for key, value in scope.get("headers", []):
            if key.lower() == name:
                return str(value.decode("latin-1"))
        return None

    async def _read_body(self, scope: Scope, receive: Receive, send: Send) -> bytes:
        """The whole body within the size and time limits."""
        limit = self.limits.max_body_bytes
        too_large = api_error(
            "body_too_large",
            f"the request body is larger than the limit of {limit} bytes",
            None,
            "send fewer items per request (at most 1000)",
        )
        declared = self._header(scope, b"content-length")
        if (
            limit is not None
            and declared is not None
            and declared.isdigit()
            and int(declared) > limit
        ):
            await self._problem(scope, send, 413, too_large, close=True)
        chunks, size = [], 0
        deadline = (
            None
            if self.limits.body_timeout_seconds is None
            else time.monotonic() + self.limits.body_timeout_seconds
        )
        while True:
            try:
                wait = None if deadline is None else max(deadline - time.monotonic(), 0.0)
                message = await asyncio.wait_for(receive(), wait)
            except TimeoutError:
                await self._problem(
                    scope,
                    send,
                    408,
                    api_error(
                        "request_timeout",
                        f"the request body did not arrive within "
                        f"{self.limits.body_timeout_seconds:g} seconds",
                        None,
                        "send the whole body at once",
                    ),
                    close=True,
                )
            if message["type"] == "http.disconnect":
                raise _Answered("client_gone")  # the client went away: nothing to answer
            chunk = message.get("body", b"")
            size += len(chunk)
            if limit is not None and size > limit:
                await self._problem(scope, send, 413, too_large, close=True)
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def _checked_body(
        self, scope: Scope, receive: Receive, send: Send, route: Route
    ) -> bytes:
        media = (self._header(scope, b"content-type") or "").split(";")[0].strip().lower()
        if media not in ("application/json", ""):
            await self._problem(
                scope,
                send,
                415,
                api_error(
                    "unsupported_media_type",
                    f"Content-Type {media!r} is not supported",
                    "Content-Type",
                    "send the body as JSON with 'Content-Type: application/json'",
                ),
            )
        body = await self._read_body(scope, receive, send)
        assert route.body is not None
        try:
            route.body.model_validate_json(body or b"{}")
        except ValidationError as err:
            await self._problem(scope, send, 400, validation_problem(err))
        return body

    # ------------------------------------------------------------------------------- ASGI

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 0
        rid = request_id(scope.get("headers", []))
        REQUEST_ID.set(rid)
        outcome = Outcome()
        failed = False

        async def counted(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", rid.encode())]
            await send(message)

        try:
            await self._handle(scope, receive, counted, outcome)
        except _Answered as done:
            outcome.code = done.code
        except Exception:  # the server logs the traceback; the line says the request failed
            failed = True
            raise
        finally:
            elapsed = time.perf_counter() - start
            self._log(scope, status, outcome, elapsed, rid, failed)
            if self.metrics is not None:
                self.metrics.observe(
                    scope.get("path", ""), scope.get("method", ""), status, elapsed
                )

    def _log(
        self, scope: Scope, status: int, outcome: Outcome, elapsed: float, rid: str, failed: bool
    ) -> None:
        path = scope.get("path", "")
        if failed or status >= 500:
            level = logging.ERROR
        elif status >= 400 or status == 0:
            level = logging.INFO
        elif path in HEALTH_PATHS or path == METRICS_PATH:
            level = logging.DEBUG
        else:
            level = self.success_level
        if not log.isEnabledFor(level):
            return
        key: APIKey | None = scope.get("state", {}).get("api_key")
        access_log(
            scope.get("method", ""),
            self._label(path),
            status,
            outcome.code or ("exception" if failed else ""),
            elapsed,
            rid,
            key.key_id if key else "-",
            level,
            outcome.detail,
        )

    async def _handle(self, scope: Scope, receive: Receive, send: Send, outcome: Outcome) -> None:
        path = scope.get("path", "")
        if path in HEALTH_PATHS:
            # another method is not a health check: its answer must not read as not ready
            await self._only(scope, send, HEALTH_METHODS)
            await self.app(scope, receive, health(send, path, outcome))
            return
        if path in DOCS_PATHS or path == INDEX_PATH:
            if not self.expose_docs:
                await self._problem(
                    scope,
                    send,
                    404,
                    api_error(
                        "not_found",
                        "the API description is not published on this server",
                        None,
                        "an operator can publish it with CRM_INTEL_EXPOSE_DOCS=1",
                    ),
                )
            if path == INDEX_PATH:
                await answer(send, 200, self.index, b"text/html; charset=utf-8")
            else:
                await self.app(scope, receive, shaped(send, outcome))
            return
        route = await self._authorise(scope, send)
        if route is None:  # the metrics path, allowed
            assert self.metrics is not None
            body = self.metrics.exposition()
            await answer(send, 200, body, self.metrics.content_type.encode())
            return
        if route.body is None:
            await self.app(scope, receive, shaped(send, outcome))
            return
        body = await self._checked_body(scope, receive, send, route)
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        answered = False

        async def sent(message: Message) -> None:
            nonlocal answered
            answered = True
            await send(message)

        try:
            async with asyncio.timeout(self.limits.answer_timeout_seconds):
                await self.app(scope, replay, shaped(sent, outcome))
        except TimeoutError:
            if answered:
                raise
            await self._problem(
                scope,
                send,
                504,
                api_error(
                    "timeout",
                    f"the answer took longer than {self.limits.answer_timeout_seconds:g} seconds",
                    None,
                    "retry with fewer items, or later",
                ),
            )
