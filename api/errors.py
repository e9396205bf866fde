"""Errors the API answers with: always JSON, always a clear message, never a bare 500."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import InterfaceError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException
from temporalio.service import RPCError, RPCStatusCode

from herald.dataerrors import describe, is_data_error

log = logging.getLogger(__name__)


class ApiError(Exception):
    """An answer other than success; ``field`` names the offending input for a 422."""

    def __init__(
        self,
        status_code: int,
        message: str,
        *,
        field: str | None = None,
        where: str = "body",
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message
        self.field = field
        self.where = where
        self.headers = headers


def not_found(what: str) -> ApiError:
    """A 404 for something that does not exist or belongs to another tenant."""
    return ApiError(404, f"{what} not found")


def unprocessable(field: str, message: str, where: str = "body") -> ApiError:
    """A 422 naming the field at fault (in the body, or the query with ``where``)."""
    return ApiError(422, message, field=field, where=where)


def _body(request: Request, detail: Any) -> dict[str, Any]:
    return {"detail": detail, "request_id": getattr(request.state, "request_id", None)}


def _refused_value(request: Request, exc: Exception) -> JSONResponse:
    """A value the database could not take (NUL, invalid UTF-8, out of range): a ``422``
    naming the query or path parameter that carried it when one did, else the body."""
    params = {**request.path_params, **request.query_params}
    problem = describe(exc, params)
    where = "path" if problem.field in request.path_params else "query"
    if problem.field is None:
        where = "body"
    log.info("refused a value the database cannot store: %s", problem.reason)
    detail = [
        {
            "loc": [where, problem.field] if problem.field else [where],
            "msg": problem.reason,
            "type": "value_error",
        }
    ]
    return JSONResponse(_body(request, detail), 422)


SEND_JSON = (
    "the request body must be a JSON object: send 'Content-Type: application/json' "
    "(curl sends a form unless told otherwise)"
)


def _form_instead_of_json(request: Request, exc: RequestValidationError) -> bool:
    """Whether a JSON route refused a whole body sent without a JSON content type (curl's
    ``-d`` sends a form), which FastAPI therefore never parsed as JSON."""
    declared = request.headers.get("content-type", "")
    media = declared.split(";", 1)[0].strip().lower()
    if media == "application/json" or (media.startswith("application/") and "+json" in media):
        return False
    return any(
        tuple(err.get("loc", ())) == ("body",) and err.get("type") != "missing"
        for err in exc.errors()
    )


def install_error_handlers(app: FastAPI) -> None:
    """Map every failure to a JSON answer with the right status."""

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        detail: Any = exc.message
        if exc.field is not None:
            detail = [{"loc": [exc.where, exc.field], "msg": exc.message, "type": "value_error"}]
        return JSONResponse(_body(request, detail), exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        if _form_instead_of_json(request, exc):
            return JSONResponse(_body(request, SEND_JSON), 415)
        errors = [
            {"loc": list(err.get("loc", ())), "msg": err.get("msg", ""), "type": err.get("type")}
            for err in exc.errors()
        ]
        return JSONResponse(_body(request, errors), 422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(_body(request, exc.detail), exc.status_code, headers=exc.headers)

    @app.exception_handler(RPCError)
    async def _temporal(request: Request, exc: RPCError) -> JSONResponse:
        log.error("temporal unavailable: %s", exc)
        if exc.status in (RPCStatusCode.NOT_FOUND,):
            return JSONResponse(_body(request, "notification workflow not found"), 404)
        return JSONResponse(
            _body(request, "workflow service unavailable, nothing was accepted; retry"),
            503,
            headers={"Retry-After": "5"},
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        if is_data_error(exc):
            return _refused_value(request, exc)
        log.exception("unexpected error")
        if isinstance(exc, (OSError, TimeoutError, OperationalError, InterfaceError)):
            return JSONResponse(
                _body(request, "a backing service is unavailable; retry"),
                503,
                headers={"Retry-After": "5"},
            )
        return JSONResponse(_body(request, "internal error; it has been logged"), 500)
