"""The service's front door: every request passes here before BentoML sees it.

In order, each step answering in the API's error shape and keeping no state per raw path:

1. health and readiness (``/healthz``, ``/livez``, ``/readyz``) pass, without a key;
2. the API's description (``/docs.json``, ``/schema.json``, the index page ``/``) only with
   ``CRM_INTEL_EXPOSE_DOCS=1``, else 404; BentoML's bundled UI assets never;
3. a key (401), a route that exists (404), the key's scope for it (403, naming the scope), the
   method (405);
4. for the API's POST routes: JSON only (415), the body's size (413, naming the limit, read no
   further) and time to arrive (408), then the body validated against the route's request
   schema (400 naming the field, in the project's words); a valid body is handed on as read.

Any 4xx is one INFO log line (route, status, code, key id; never the key, never a traceback).
A response BentoML itself produces for an error (its own wording, possibly a library's) is
rewritten into the API's shape, its text going to the server log only. ``/metrics`` is
answered here, by route template (:mod:`serving.metrics`).

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
DOCS_PATHS = frozenset({"/docs.json", "/schema.json"})
INDEX_PATH = "/"
METRICS_PATH = "/metrics"
KEY_HINT = "a key from CRM_INTEL_API_KEYS or CRM_INTEL_API_KEYS_FILE"

REQUEST_ID: ContextVar[str] = ContextVar("request_id", default="")
CALLER: ContextVar[str] = ContextVar("caller", default="")  # the API key's id
_GIVEN_ID = re.compile(rb"[A-Za-z0-9._:-]{1,64}")


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


def _field(loc: tuple[int | str, ...]) -> str:
    """A pydantic error location as the request field: ``leads[0].features.touches_7d``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _plain(error: Mapping[str, Any]) -> str:
    """A validation error in plain words (pydantic's own message, minus its prefixes)."""
    kind, message = error["type"], str(error["msg"])
    if kind == "extra_forbidden":
        return "is not a field of this request"
    if kind == "missing":
        return "is required"
    if kind == "json_invalid":
        return "the body is not valid JSON: " + message.removeprefix("Invalid JSON: ")
    if kind == "model_type" or kind == "model_attributes_type":
        return "the body must be a JSON object"
    message = message.removeprefix("Value error, ").replace(" after validation", "")
    for subject in ("Input", "List", "String", "Dictionary", "Value"):
        message = message.replace(f"{subject} should", "should")
    return message


def validation_problem(err: ValidationError) -> dict[str, Any]:
    """The API error for a request body that fails its schema: the first problem, and how many
    more there are."""
    errors = err.errors(include_url=False)
    first = errors[0]
    field = _field(tuple(first["loc"])) or None
    if first["type"] == "json_invalid":
        code, fix = "invalid_json", "send one JSON object with 'Content-Type: application/json'"
    else:
        code, fix = "invalid_field", "see /docs.json for each field's type and allowed values"
    message = _plain(first)
    if field and first["type"] != "json_invalid":
        message = f"{field} {message}" if not message.startswith(field) else message
    if len(errors) > 1:
        message += f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})"
    return api_error(code, message, field, fix)


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
        log.info("%s %s 401 %s key=-", scope.get("method"), label, error["code"])
        await answer(send, 401, json.dumps({"error": error}).encode(), headers=[CHALLENGE])
        if self.metrics is not None:
            elapsed = time.perf_counter() - started
            self.metrics.observe(scope.get("path", ""), scope.get("method", ""), 401, elapsed)


class _Answered(Exception):
    """Raised by a step that already answered the request."""


class Gate:
    """ASGI middleware in front of the service (see the module docstring).

    Args:
        app: the application behind (BentoML's).
        routes: the API's routes by path.
        keys: the configured keys.
        limits: body size and time bounds.
        metrics: request metrics (``/metrics`` is served only with them).
        expose_docs: serve the API description and index page.
    """

    def __init__(
        self,
        app: ASGIApp,
        routes: Mapping[str, Route],
        keys: KeyChecker,
        limits: Limits,
        metrics: RequestMetrics | None = None,
        expose_docs: bool = False,
    ):
        self.app = app
        self.routes = dict(routes)
        self.keys = keys
        self.limits = limits
        self.metrics = metrics
        self.expose_docs = expose_docs
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
        key: APIKey | None = scope.get("state", {}).get("api_key")
        log.info(
            "%s %s %d %s key=%s",
            scope.get("method"),
            self._label(scope.get("path", "")),
            status,
            error["code"],
            key.key_id if key else "-",
        )
        body = json.dumps({"error": error}).encode()
        await answer(send, status, body, headers=headers, close=close)
        raise _Answered

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
        methods = route.methods if route else frozenset({"GET"})
        if scope.get("method") not in methods:
            allowed = ", ".join(sorted(methods))
            await self._problem(
                scope,
                send,
                405,
                api_error(
                    "method_not_allowed",
                    f"{path} answers {allowed}, not {scope.get('method')}",
                    None,
                    f"send a {allowed} request",
                ),
                headers=[(b"allow", allowed.encode())],
            )
        return route

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
                raise _Answered  # the client went away: nothing to answer
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

        async def counted(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", rid.encode())]
            await send(message)

        try:
            await self._handle(scope, receive, counted)
        except _Answered:
            pass
        finally:
            if self.metrics is not None:
                elapsed = time.perf_counter() - start
                self.metrics.observe(
                    scope.get("path", ""), scope.get("method", ""), status, elapsed
                )

    async def _handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if path in HEALTH_PATHS:
            await self.app(scope, receive, _shaped(send, path))
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
                await self.app(scope, receive, _shaped(send, path))
            return
        route = await self._authorise(scope, send)
        if route is None:  # the metrics path, allowed
            assert self.metrics is not None
            body = self.metrics.exposition()
            await answer(send, 200, body, self.metrics.content_type.encode())
            return
        if route.body is None:
            await self.app(scope, receive, _shaped(send, path))
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
                await self.app(scope, replay, _shaped(sent, path))
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


def _shaped(send: Send, path: str) -> Send:
    """``send`` with any error response not in the API's shape rewritten into it.

    BentoML answers some failures itself (an exception in a handler: 500 with the exception's
    text; its own 404 and 405 in plain text). Those bodies may name a library or a file, so they
    go to the server log and the client gets the API's shape.
    """
    held: list[Message] = []

    async def shaped(message: Message) -> None:
        if message["type"] == "http.response.start" and message["status"] >= 400:
            held.append(message)
            return
        if not held:
            await send(message)
            return
        held.append(message)
        if message.get("more_body", False):
            return
        start, parts = held[0], held[1:]
        held.clear()
        body = b"".join(p.get("body", b"") for p in parts)
        if _in_api_shape(body):
            await send(start)
            for part in parts:
                await send(part)
            return
        status = start["status"]
        if status == 503:  # not ready (readiness, or BentoML's own refusal under load)
            log.info("%s answered 503", path)
            error = api_error(
                "not_ready",
                "this server cannot score yet: its models or features are still loading",
                None,
                "retry shortly",
            )
        elif status >= 500:
            log.error("%s answered %d: %s", path, status, body[:2000].decode("utf-8", "replace"))
            error = api_error(
                "internal_error",
                "the request could not be completed",
                None,
                "retry; if it persists, tell the operator (the server log has the details)",
            )
        else:
            log.info("%s answered %d", path, status)
            error = api_error("bad_request", "the request could not be handled", None, None)
        new_body = json.dumps({"error": error}).encode()
        headers = [
            (k, v)
            for k, v in start.get("headers", [])
            if k.lower() not in (b"content-length", b"content-type")
        ]
        headers += [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(new_body)).encode()),
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": new_body})

    return shaped


def _in_api_shape(body: bytes) -> bool:
    try:
        parsed = json.loads(body)
    except ValueError:
        return False
    error = parsed.get("error") if isinstance(parsed, dict) else None
    return isinstance(error, dict) and {"code", "message"} <= set(error)
