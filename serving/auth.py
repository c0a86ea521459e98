"""API-key authentication: ``Authorization: Bearer <key>``, compared in constant time.

Keys come from settings (``CRM_INTEL_API_KEYS``, comma-separated) as ``SecretStr`` and are never
logged or echoed. Health, readiness and the API docs stay open. A plain ASGI middleware (no
BentoML import) so that it runs before the body is read and is tested without a server.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

from pydantic import SecretStr

from serving.status import api_error

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

OPEN_PATHS = frozenset({"/healthz", "/livez", "/readyz", "/metrics", "/docs.json", "/docs", "/"})
OPEN_PREFIXES = ("/static_content/",)


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()


class KeyChecker:
    """Holds SHA-256 digests of the keys; :meth:`valid` compares against every one of them."""

    def __init__(self, keys: Iterable[SecretStr | str]):
        self._digests = tuple(
            _digest(k.get_secret_value() if isinstance(k, SecretStr) else k) for k in keys
        )
        if not self._digests:
            raise ValueError("no API keys configured: set CRM_INTEL_API_KEYS (comma-separated)")

    def valid(self, key: str | None) -> bool:
        """Whether ``key`` is one of the keys; same work whichever key matches (or none)."""
        given = _digest(key or "")
        found = False
        for digest in self._digests:
            found |= hmac.compare_digest(given, digest)
        return found and key is not None


def bearer_token(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """The token of an ``Authorization: Bearer …`` header, None when absent or malformed."""
    for name, value in headers:
        if name.lower() == b"authorization":
            text = value.decode("latin-1")
            scheme, _, token = text.partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
            return None
    return None


class APIKeyMiddleware:
    """Answers 401 to any request outside the open paths without a valid bearer key."""

    def __init__(self, app: ASGIApp, keys: Iterable[SecretStr | str]):
        self.app = app
        self.checker = KeyChecker(keys)

    def is_open(self, path: str) -> bool:
        return path in OPEN_PATHS or path.startswith(OPEN_PREFIXES)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.is_open(scope.get("path", "")):
            await self.app(scope, receive, send)
            return
        token = bearer_token(scope.get("headers", []))
        if self.checker.valid(token):
            await self.app(scope, receive, send)
            return
        error = (
            api_error(
                "missing_api_key",
                "missing API key",
                "Authorization",
                "send 'Authorization: Bearer <key>' with a key from CRM_INTEL_API_KEYS",
            )
            if token is None
            else api_error(
                "invalid_api_key",
                "invalid API key",
                "Authorization",
                "use a key from CRM_INTEL_API_KEYS",
            )
        )
        body = json.dumps({"error": error}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"www-authenticate", b'Bearer realm="crm-intel"'),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


class JSONOnlyMiddleware:
    """Answers 415 to a POST whose body is not JSON, before BentoML tries other decoders.

    BentoML would otherwise parse ``multipart/form-data`` (and others) itself and answer a
    malformed one with a 500.
    """

    def __init__(self, app: ASGIApp, paths: Iterable[str]):
        self.app = app
        self.paths = frozenset(paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope.get("method") != "POST"
            or scope.get("path") not in self.paths
        ):
            await self.app(scope, receive, send)
            return
        media_type = "application/json"
        for name, value in scope.get("headers", []):
            if name.lower() == b"content-type":
                media_type = value.decode("latin-1").split(";")[0].strip().lower()
                break
        if media_type in ("application/json", ""):
            await self.app(scope, receive, send)
            return
        error = api_error(
            "unsupported_media_type",
            f"Content-Type {media_type!r} is not supported",
            "Content-Type",
            "send the body as JSON with 'Content-Type: application/json'",
        )
        body = json.dumps({"error": error}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 415,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
