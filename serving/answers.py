"""Answers in the API's error shape where others wrote them: a request body's validation errors
in plain words (:func:`validation_problem`), and BentoML's own answers (its error texts, its bare
health checks) rewritten as the API answers (:func:`shaped`, :func:`health`). The gate
(:mod:`serving.gate`) puts them in front of every request.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any, Final

from pydantic import ValidationError

from serving.status import api_error

Message = MutableMapping[str, Any]
Send = Callable[[Message], Awaitable[None]]

log = logging.getLogger("crm_intel.serving")

NOT_READY: Final = api_error(
    "not_ready",
    "this server cannot score yet: its models or features are not loaded",
    None,
    "retry shortly",
)


@dataclass
class Outcome:
    """What a request's log line tells besides its status: the error code of an error answer
    and, for a 5xx, what went wrong."""

    code: str = ""
    detail: str = ""


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


def shaped(send: Send, outcome: Outcome) -> Send:
    """``send`` with any error response not in the API's shape rewritten into it; the error's
    code noted in ``outcome`` for the log line.

    BentoML answers some failures itself (an exception in a handler: 500 with the exception's
    text; its own 404 and 405 in plain text). Those bodies may name a library or a file, so they
    go to the server log (the request's line) and the client gets the API's shape.
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
        code = _api_code(body)
        if code is not None:
            outcome.code = code
            await send(start)
            for part in parts:
                await send(part)
            return
        status = start["status"]
        if status == 503:  # not ready (BentoML's own refusal under load)
            error = NOT_READY
        elif status >= 500:
            outcome.detail = body[:2000].decode("utf-8", "replace")
            error = api_error(
                "internal_error",
                "the request could not be completed",
                None,
                "retry; if it persists, tell the operator (the server log has the details)",
            )
        else:
            error = api_error("bad_request", "the request could not be handled", None, None)
        outcome.code = error["code"]
        await _replace(send, start, status, {"error": error})

    return shaped


def health(send: Send, path: str, outcome: Outcome) -> Send:
    """``send`` with BentoML's health answers (a bare newline, or its own error text) in JSON:
    ``/readyz`` 200 ``{"ready": true}`` or 503 ``{"ready": false, "error": {...}}``;
    ``/healthz`` and ``/livez`` ``{"alive": true}`` (or ``false`` with the error)."""
    held: list[Message] = []

    async def health(message: Message) -> None:
        if message["type"] == "http.response.start":
            held.append(message)
            return
        if not held or message.get("more_body", False):  # BentoML's body is never kept
            return
        start = held.pop()
        status = start["status"]
        ok = 200 <= status < 300
        if path == "/readyz":
            status = status if ok else 503  # BentoML says 500 before its own start-up ends
            body: dict[str, Any] = {"ready": True} if ok else {"ready": False, "error": NOT_READY}
        else:
            alive = api_error("not_alive", "this server cannot answer", None, "restart it")
            body = {"alive": True} if ok else {"alive": False, "error": alive}
        if not ok:
            outcome.code = body["error"]["code"]
        await _replace(send, start, status, body)

    return health


async def _replace(send: Send, start: Message, status: int, payload: dict[str, Any]) -> None:
    """Answer ``payload`` as JSON with ``status`` in place of the response begun by ``start``
    (its other headers kept)."""
    new_body = json.dumps(payload).encode()
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


def _api_code(body: bytes) -> str | None:
    """The error code of a body in the API's error shape; None for any other body."""
    try:
        parsed = json.loads(body)
    except ValueError:
        return None
    error = parsed.get("error") if isinstance(parsed, dict) else None
    if isinstance(error, dict) and {"code", "message"} <= set(error):
        return str(error["code"])
    return None
