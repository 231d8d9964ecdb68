"""Errors as JSON that name the bad field: ``{"error": {"field": ..., "message": ...}}``.

Status codes: 401 missing/unknown key, 403 key lacks the scope, 404 unknown id or not
stored (``compute=never``), 406 unsupported ``Accept``, 413 body / region / batch too
large, 422 invalid input (``SpecError``, request validation), 500 unexpected.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from rsembed_db.query.compute import MissingEmbeddings
from rsembed_db.sources.base import TileFailure
from rsembed_db.specs.errors import SpecError

log = logging.getLogger("rsembed_db.service")


class ApiError(Exception):
    """An HTTP error with the field it concerns."""

    def __init__(self, status: int, field: str | None, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.field, self.message, self.extra = status, field, message, extra


def error_response(status: int, field: str | None, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": {"field": field, "message": message, **extra}}, status_code=status)


def spec_error_message(exc: SpecError) -> str:
    """The message of a SpecError without its ``field: `` prefix."""
    text = str(exc)
    return text[len(exc.field) + 2:] if text.startswith(f"{exc.field}: ") else text


def _loc(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    out = ""
    for part in parts:
        out += f"[{part}]" if part.isdigit() else (f".{part}" if out else part)
    return out or "body"


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.field, exc.message, **exc.extra)

    @app.exception_handler(SpecError)
    async def spec_error(_: Request, exc: SpecError) -> JSONResponse:
        extra = {"allowed": list(map(str, exc.allowed))} if exc.allowed is not None else {}
        return error_response(422, exc.field, spec_error_message(exc), **extra)

    @app.exception_handler(MissingEmbeddings)
    async def missing(_: Request, exc: MissingEmbeddings) -> JSONResponse:
        return error_response(404, "key", f"{exc} (compute=never)", keys=exc.keys)

    @app.exception_handler(TileFailure)
    async def tile_failure(_: Request, exc: TileFailure) -> JSONResponse:
        return error_response(422, "spatial", f"cannot compute this embedding: {exc}")

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0]
        return error_response(422, _loc(tuple(first.get("loc", ()))), first.get("msg", "invalid"),
                              details=[{"field": _loc(tuple(e.get("loc", ()))), "message": e.get("msg")}
                                       for e in exc.errors()])

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, exc: HTTPException) -> JSONResponse:
        return error_response(exc.status_code, None, str(exc.detail))

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return error_response(500, None, f"internal error ({type(exc).__name__}); see the server log")
