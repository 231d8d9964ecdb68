"""Request limits: the body size (413), text that is Unicode (422), and the ``Accept``
negotiation of result formats (406)."""

from __future__ import annotations

import json
import re
from typing import Any

from fastapi import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rsembed_db.errors import SpecError
from rsembed_db.service.errors import ApiError


class BodySizeLimit:
    """ASGI middleware answering 413 when a body exceeds ``max_bytes``.

    A declared ``Content-Length`` is refused before reading; a chunked body is counted
    as it streams, and the application sees a disconnect once the limit is passed.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers", ()))
        declared = headers.get(b"content-length", b"").decode() or None
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(send)
            return
        received = 0
        refused = False

        async def limited_receive() -> Message:
            nonlocal received, refused
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes and not refused:
                    refused = True
                    await self._refuse(send)
            return {"type": "http.disconnect"} if refused else message

        async def guarded_send(message: Message) -> None:
            if not refused:  # after our 413 the application's response is dropped
                await send(message)

        await self.app(scope, limited_receive, guarded_send)

    async def _refuse(self, send: Send) -> None:
        body = json.dumps({"error": {"field": "body", "message":
                                     f"request body larger than the limit of {self.max_bytes} bytes"}}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


# Where a surrogate can enter a UTF-8 body: a ``\\uD800``-``\\uDFFF`` escape, or the bytes
# ED A0-BF .. (``json.loads`` decodes bytes with ``surrogatepass``). A UTF-8 body with
# neither is not walked (the walk costs ~0.05 ms for a 128-number vector).
_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F]|\xed[\xa0-\xbf]")


async def unicode_body(request: Request) -> None:
    """Refuse (422 naming the field) a JSON body with a lone surrogate such as ``"\\ud800"``:
    JSON allows the escape, but such a string cannot be encoded, hashed or stored."""
    if request.method not in ("POST", "PUT", "PATCH"):
        return
    raw = await request.body()
    if not raw or (json.detect_encoding(raw) == "utf-8" and _SURROGATE.search(raw) is None):
        return
    try:
        body = await request.json()
    except Exception:  # noqa: BLE001 - malformed bodies are answered by the route's own parsing
        return
    bad = _lone_surrogate(body)
    if bad is not None:
        raise SpecError(bad, "text must be valid Unicode: it holds a lone surrogate (\\ud800-\\udfff)")


def _lone_surrogate(value: Any) -> str | None:
    """The path (``spatials[0].h3``) of the first string or key holding a lone surrogate."""
    stack: list[tuple[str, Any]] = [("", value)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, str) and not _encodes(item):
            return path or "body"
        if isinstance(item, dict):
            for key, child in item.items():
                name = f"{path}.{key}" if path else str(key)
                if not _encodes(str(key)):
                    return path or "body"
                stack.append((name, child))
        elif isinstance(item, list):
            stack += [(f"{path}[{i}]", child) for i, child in enumerate(item)]
    return None


def _encodes(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def negotiate(accept: str | None, offered: tuple[str, ...]) -> str:
    """The offered media type ``Accept`` prefers: highest q, then the most specific range,
    then the order of ``Accept``, then of ``offered`` (the first for an empty header).
    406 naming ``Accept`` when it accepts none of them."""
    if not accept or not accept.strip():
        return offered[0]
    ranges = [_media_range(part, position) for position, part in enumerate(accept.split(","))]
    ranked: list[tuple[tuple[float, int, int, int], str]] = []
    for index, candidate in enumerate(offered):
        matching = [r for r in ranges if _specificity(r[0], candidate) >= 0]
        if not matching:
            continue
        media, quality, position = max(matching, key=lambda r: _specificity(r[0], candidate))
        if quality > 0:
            ranked.append(((-quality, -_specificity(media, candidate), position, index), candidate))
    if not ranked:
        raise ApiError(406, "Accept", f"cannot produce {accept!r}", allowed=list(offered))
    return min(ranked)[1]


def _media_range(part: str, position: int) -> tuple[str, float, int]:
    media, *params = (p.strip() for p in part.split(";"))
    quality = 1.0
    for param in params:
        name, _, value = param.partition("=")
        if name.strip().lower() == "q":
            try:
                quality = float(value)
            except ValueError:
                quality = 0.0
    return media.lower(), quality, position


def _specificity(pattern: str, media: str) -> int:
    """2: exact match, 1: ``type/*``, 0: ``*/*``, -1: no match."""
    if pattern == media:
        return 2
    if pattern == "*/*":
        return 0
    major, _, minor = pattern.partition("/")
    return 1 if minor == "*" and media.startswith(major + "/") else -1
