"""API keys with ``read`` and ``write`` scopes (``write`` includes read).

Keys come from ``RSEMBED_API_KEYS`` (``"key1:read,key2:write"``) or a file named by
``RSEMBED_API_KEYS_FILE`` (one ``key:scope`` per line, ``#`` comments). A request sends
its key as ``X-API-Key: <key>`` or ``Authorization: Bearer <key>``.

Policy: with no keys configured the service is open (``serve`` then only binds to a
loopback address). With keys, write endpoints (ingest, computing a missing embedding)
need a write key and reads need any valid key, unless ``public_reads`` is set.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from rsembed_db.errors import SpecError
from rsembed_db.service.errors import ApiError

SCOPES = ("read", "write")
KEY_HEADER = "X-API-Key"


@dataclass(frozen=True)
class ApiKeys:
    """Configured keys: key -> scope."""

    scopes: Mapping[str, str] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.scopes)

    @classmethod
    def parse(cls, text: str, source: str) -> ApiKeys:
        """``key:scope`` items separated by commas or newlines; SpecError naming ``source``."""
        scopes: dict[str, str] = {}
        items = [raw.split("#", 1)[0].strip() for raw in text.replace(",", "\n").splitlines()]
        for n, item in enumerate(filter(None, items), 1):
            key, sep, scope = item.rpartition(":")
            if not sep or not key.strip() or scope.strip() not in SCOPES:
                raise SpecError(source, f"item {n}: expected key:scope with scope read or write")
            scopes[key.strip()] = scope.strip()
        return cls(scopes)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ApiKeys:
        keys = cls.parse(env.get("RSEMBED_API_KEYS", ""), "RSEMBED_API_KEYS")
        path = env.get("RSEMBED_API_KEYS_FILE")
        if path:
            try:
                text = Path(path).read_text(encoding="utf-8")
            except OSError as exc:
                raise SpecError("RSEMBED_API_KEYS_FILE", f"cannot read {path}: {exc}") from None
            keys = cls({**keys.scopes, **cls.parse(text, "RSEMBED_API_KEYS_FILE").scopes})
        return keys

    def scope_of(self, key: str) -> str | None:
        """The scope of ``key`` (compared in constant time), or None."""
        found = None
        for known, scope in self.scopes.items():
            if hmac.compare_digest(known.encode(), key.encode()):
                found = scope
        return found


@dataclass(frozen=True)
class Principal:
    """Who is calling: the scope of their key (``None`` when they sent no key) and
    ``key_id``, ``key:`` + the first 8 hex digits of the key's SHA-256 (``open`` on a
    service without keys): recorded as who wrote, never the key itself."""

    scope: str | None
    key_id: str | None = None

    @property
    def can_write(self) -> bool:
        return self.scope == "write"


def key_id(key: str) -> str:
    return "key:" + hashlib.sha256(key.encode()).hexdigest()[:8]


_key_header = APIKeyHeader(name=KEY_HEADER, auto_error=False, description="API key (read or write scope).")
_bearer = HTTPBearer(auto_error=False, description="The API key as a bearer token.")


# The dependencies are coroutines (they only read headers and settings): FastAPI runs a
# plain ``def`` dependency in its thread pool, a hop per dependency per request.
async def principal(request: Request,
                    key: Annotated[str | None, Security(_key_header)],
                    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)]) -> Principal:
    """The caller's scope; 401 for an unknown key. An open service grants write to all."""
    keys: ApiKeys = request.app.state.ctx.settings.api_keys
    if not keys:
        return Principal("write", "open")
    given = key or (bearer.credentials if bearer is not None else None)
    if not given:
        return Principal(None)
    scope = keys.scope_of(given)
    if scope is None:
        raise ApiError(401, KEY_HEADER, "unknown API key")
    return Principal(scope, key_id(given))


async def require_read(request: Request, who: Annotated[Principal, Depends(principal)]) -> Principal:
    if who.scope is None and not request.app.state.ctx.settings.public_reads:
        raise ApiError(401, KEY_HEADER, f"an API key is required: send {KEY_HEADER} or Authorization: Bearer")
    return who


async def require_write(who: Annotated[Principal, Depends(principal)]) -> Principal:
    if who.scope is None:
        raise ApiError(401, KEY_HEADER, f"a write API key is required: send {KEY_HEADER} or Authorization: Bearer")
    if not who.can_write:
        raise ApiError(403, KEY_HEADER, "this key has read scope; this endpoint needs write scope")
    return who


Reader = Annotated[Principal, Depends(require_read)]
Writer = Annotated[Principal, Depends(require_write)]
