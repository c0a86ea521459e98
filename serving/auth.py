"""API keys with scopes: ``Authorization: Bearer <key>``, compared in constant time.

Keys come from the settings, never logged or echoed; each has a *key id* that is logged instead:

* ``CRM_INTEL_API_KEYS``: comma-separated entries. ``KEY`` alone may do everything (every scope);
  ``KEY:score|attribution`` only what those scopes allow. Its key id is ``env-`` and the first
  8 hex digits of the key's SHA-256 (``env-3a7bd3e2``).
* ``CRM_INTEL_API_KEYS_FILE``: YAML that holds only SHA-256 digests, so the file reveals no key::

      keys:
        - id: crm-sync                     # logged with every request the key makes
          sha256: 3a7bd3e2360a3d29eea436fcfb7e44c735d117c42d1c1835420b6b9942dd4f1b
          scopes: [score]

  ``crm-intel keys new --id ID --scopes score`` prints a new key once and the entry to add.

Scopes (:data:`SCOPES`): ``score`` (``/score_leads``, ``/score_accounts``), ``attribution``
(``/attribution``), ``models:read`` (``/model_info``), ``models:write`` (promotions, rollbacks),
``metrics`` (``/metrics``). Plain ASGI (no BentoML import), tested without a server.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

SCOPES: tuple[str, ...] = ("score", "attribution", "models:read", "models:write", "metrics")
ALL_SCOPES = frozenset(SCOPES)


class KeyConfigError(ValueError):
    """The configured keys cannot be used (the message names the entry, never the key)."""


@dataclass(frozen=True)
class APIKey:
    """A configured key: its id (logged), the SHA-256 digest of the key, what it may do."""

    key_id: str
    digest: bytes
    scopes: frozenset[str]


def digest(key: str) -> bytes:
    """SHA-256 of a key's UTF-8 bytes (what a key file stores, in hex)."""
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()


def parse_scopes(text: Iterable[str], where: str) -> frozenset[str]:
    """The scopes named in ``text``; ``where`` names the entry in the error.

    Raises:
        KeyConfigError: an unknown scope, or none.
    """
    scopes = frozenset(s.strip() for s in text if s.strip())
    unknown = sorted(scopes - ALL_SCOPES)
    if unknown:
        raise KeyConfigError(
            f"{where}: unknown scope {unknown[0]!r}; scopes are {', '.join(SCOPES)}"
        )
    if not scopes:
        raise KeyConfigError(f"{where}: no scopes; give one or more of {', '.join(SCOPES)}")
    return scopes


def keys_from_entries(entries: Sequence[SecretStr | str]) -> list[APIKey]:
    """Keys from ``CRM_INTEL_API_KEYS`` entries (``KEY`` or ``KEY:scope|scope``).

    Raises:
        KeyConfigError: an entry with an unknown scope (named by position, not by key).
    """
    keys = []
    for n, entry in enumerate(entries, start=1):
        text = entry.get_secret_value() if isinstance(entry, SecretStr) else entry
        secret, sep, scope_text = text.partition(":")
        scopes = (
            parse_scopes(scope_text.split("|"), f"CRM_INTEL_API_KEYS entry {n}")
            if sep
            else ALL_SCOPES
        )
        hashed = digest(secret.strip())
        keys.append(APIKey(f"env-{hashed.hex()[:8]}", hashed, scopes))
    return keys


class _KeyEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:@-]+$")]
    sha256: Annotated[str, Field(pattern=r"^[0-9a-fA-F]{64}$")]
    scopes: Annotated[list[str], Field(min_length=1)]


class _KeyFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    keys: list[_KeyEntry]


def read_key_file(path: Path) -> list[APIKey]:
    """Keys from a YAML key file (see the module's docstring).

    Raises:
        KeyConfigError: the file is missing, not YAML, or an entry is malformed (named by its
            position and id).
    """
    try:
        # every scalar as text: an unquoted digest of digits would otherwise become a number
        data = yaml.load(Path(path).read_text(encoding="utf-8"), Loader=yaml.BaseLoader)
    except OSError as err:
        raise KeyConfigError(f"API key file {path} cannot be read: {err.strerror}") from None
    except yaml.YAMLError as err:
        raise KeyConfigError(f"API key file {path} is not valid YAML: {err}") from None
    try:
        parsed = _KeyFile.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise KeyConfigError(f"API key file {path}: {where}: {first['msg']}") from None
    keys, seen = [], set()
    for n, entry in enumerate(parsed.keys):
        where = f"API key file {path}: keys[{n}] (id {entry.id!r})"
        if entry.id in seen:
            raise KeyConfigError(f"{where}: the id is used twice")
        seen.add(entry.id)
        keys.append(
            APIKey(entry.id, bytes.fromhex(entry.sha256), parse_scopes(entry.scopes, where))
        )
    return keys


def configured_keys(
    entries: Sequence[SecretStr | str], key_file: Path | None = None
) -> list[APIKey]:
    """Every configured key: the environment's entries, then the key file's.

    Raises:
        KeyConfigError: none configured, or a malformed entry.
    """
    keys = keys_from_entries(entries)
    if key_file is not None:
        keys += read_key_file(key_file)
    if not keys:
        raise KeyConfigError(
            "no API keys configured: set CRM_INTEL_API_KEYS (comma-separated) or "
            "CRM_INTEL_API_KEYS_FILE"
        )
    return keys


class KeyChecker:
    """Finds the key a bearer token is, comparing its digest with every key's in constant time."""

    def __init__(self, keys: Sequence[APIKey]):
        if not keys:
            raise KeyConfigError("no API keys configured")
        self.keys = tuple(keys)

    def find(self, token: str | None) -> APIKey | None:
        """The key ``token`` is, or None; the same work whichever key matches (or none)."""
        given = digest(token or "")
        found: APIKey | None = None
        for key in self.keys:
            if hmac.compare_digest(given, key.digest) and found is None:
                found = key
        return found if token is not None else None


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
