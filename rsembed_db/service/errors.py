"""Errors as JSON that name the bad field: ``{"error": {"field": ..., "message": ...}}``.

Expected failures (``rsembed_db.errors``) map to statuses through one table,
``STATUS_CODES``, looked up along each error's bases. Besides those: 401 missing or
unknown key, 403 key lacks the scope, 405 method not allowed (with ``Allow``), 406
unsupported ``Accept``, 413 body / batch too large, 422 request validation, 500
unexpected. ``errors(...)`` documents an endpoint's statuses in the OpenAPI schema.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException
from starlette.routing import Match

from rsembed_db.errors import (
    MissingWeights,
    NotFound,
    ResourceLimit,
    RsembedError,
    SpecError,
    SqlTimeout,
    StorageError,
    TileFailure,
    Unavailable,
    WriteConflict,
)

log = logging.getLogger("rsembed_db.service")
HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")

STATUS_CODES: dict[type[RsembedError], int] = {
    SpecError: 422,
    TileFailure: 422,
    NotFound: 404,
    WriteConflict: 409,
    ResourceLimit: 413,
    Unavailable: 503,
    MissingWeights: 503,
    SqlTimeout: 504,
    StorageError: 507,
    RsembedError: 500,
}
MEANINGS = {
    401: "No API key, or an unknown one.",
    403: "The key lacks the scope (write) this needs.",
    404: "No such model, table, key, job or label set (`field` says which).",
    406: "`Accept` names no format this endpoint produces.",
    409: "A commit lost to concurrent writers more often than its retries allow: run it again.",
    413: "Too large: the body, a batch, a region's tiles, or a result / the memory a query needs.",
    422: "Invalid input: `field` names it (and `allowed` lists the choices, where finite).",
    503: "Imagery, weights or an upstream service are not available.",
    504: "The query ran past its time limit.",
    507: "The database cannot be written (read-only, permission denied, no space left).",
}


class ErrorDetail(BaseModel):
    field: str | None
    message: str
    allowed: list[str] | None = None


class ErrorBody(BaseModel):
    """Every error answer: ``{"error": {"field": ..., "message": ...}}``."""

    error: ErrorDetail


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for these error statuses (their JSON body and meaning)."""
    return {code: {"model": ErrorBody, "description": MEANINGS[code]} for code in codes}


def status_code(exc: RsembedError) -> int:
    """The status of the nearest class in ``exc``'s bases that ``STATUS_CODES`` lists."""
    return next(STATUS_CODES[cls] for cls in type(exc).__mro__ if cls in STATUS_CODES)


class ApiError(Exception):
    """An HTTP error with the field it concerns."""

    def __init__(self, status: int, field: str | None, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.field, self.message, self.extra = status, field, message, extra


def error_response(status: int, field: str | None, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": {"field": field, "message": message, **extra}}, status_code=status)


def error_message(exc: RsembedError) -> str:
    """The message of an error without its ``field: `` prefix."""
    text = getattr(exc, "message", None) or str(exc)
    return text[len(exc.field) + 2:] if exc.field and text.startswith(f"{exc.field}: ") else text


def _loc(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    out = ""
    for part in parts:
        out += f"[{part}]" if part.isdigit() else (f".{part}" if out else part)
    return out or "body"


def allowed_methods(request: Request) -> list[str]:
    """The methods some route of the app serves at the request's path (each asked of the
    routes as a request with that method would be: included routers hide their routes)."""
    routes = request.app.router.routes
    return [method for method in HTTP_METHODS
            if any(route.matches({**request.scope, "method": method})[0] == Match.FULL for route in routes)]


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.field, exc.message, **exc.extra)

    @app.exception_handler(RsembedError)
    async def expected(_: Request, exc: RsembedError) -> JSONResponse:
        extra: dict[str, Any] = {}
        if isinstance(exc, SpecError) and exc.allowed is not None:
            extra["allowed"] = list(map(str, exc.allowed))
        if isinstance(exc, NotFound) and exc.keys:
            extra["keys"] = exc.keys
        if isinstance(exc, TileFailure):
            return error_response(422, "spatial", f"cannot compute this embedding: {exc}")
        return error_response(status_code(exc), exc.field, error_message(exc), **extra)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0]
        return error_response(422, _loc(tuple(first.get("loc", ()))), first.get("msg", "invalid"),
                              details=[{"field": _loc(tuple(e.get("loc", ()))), "message": e.get("msg")}
                                       for e in exc.errors()])

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        response = error_response(exc.status_code, None, str(exc.detail))
        response.headers.update(exc.headers or {})
        if exc.status_code == 405:  # Starlette names the methods of the first route of the path only
            response.headers["Allow"] = ", ".join(allowed_methods(request))
        return response

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return error_response(500, None, f"internal error ({type(exc).__name__}); see the server log")
