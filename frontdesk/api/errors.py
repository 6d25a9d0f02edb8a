"""One error shape for every API answer: {"error": {"code", "message", "correlation_id"}}."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from frontdesk.logs import get_logger

log = get_logger(__name__)


class ErrorBody(BaseModel):
    code: str
    message: str
    correlation_id: str


class ErrorResponse(BaseModel):
    error: ErrorBody


Responses = dict[int | str, dict[str, Any]]


def error_responses(*statuses: int) -> Responses:
    """OpenAPI entries for the error answers an endpoint gives, all in the one shape."""
    return {status: {"model": ErrorResponse} for status in statuses}


class ApiError(Exception):
    """Raised by endpoints; `message` is shown to the caller, so it carries no patient data."""

    def __init__(
        self, status: int, code: str, message: str, *, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(code)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


def not_found(what: str = "resource") -> ApiError:
    return ApiError(404, "not_found", f"no such {what}")


def correlation_id_of(request: Request) -> str:
    return str(getattr(request.state, "correlation_id", ""))


def error_response(
    request: Request,
    status: int,
    code: str,
    message: str,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    body = {
        "error": {"code": code, "message": message, "correlation_id": correlation_id_of(request)}
    }
    return JSONResponse(body, status_code=status, headers=headers)


STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "too_many_requests",
}


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, error: ApiError) -> JSONResponse:
        return error_response(request, error.status, error.code, error.message, error.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        code = STATUS_CODES.get(error.status_code, "error")
        message = error.detail if isinstance(error.detail, str) else code
        return error_response(request, error.status_code, code, message, error.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        # Only where the problem is and what kind, never the submitted values.
        problems = "; ".join(
            f"{'.'.join(str(part) for part in item.get('loc', ()))}: {item.get('type', 'invalid')}"
            for item in error.errors()
        )
        return error_response(request, 422, "invalid_request", problems[:500] or "invalid request")

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, error: Exception) -> JSONResponse:
        log.error(
            "api_unexpected_error",
            error_class=type(error).__name__,
            route=getattr(request.scope.get("route"), "path", "unmatched"),
            correlation_id=correlation_id_of(request),
        )
        return error_response(request, 500, "internal_error", "something went wrong on our side")


class RejectNulMiddleware:
    """NUL in a path or query string gets 422 before any route sees it (PostgreSQL would fail)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and _carries_nul(scope):
            body = json.dumps(
                {
                    "error": {
                        "code": "invalid_request",
                        "message": "the path or query contains a NUL character",
                        "correlation_id": str(scope.get("state", {}).get("correlation_id", "")),
                    }
                }
            ).encode()
            await send(
                {
                    "type": "http.response.start",
                    "status": 422,
                    "headers": [(b"content-type", b"application/json")],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send)


def _carries_nul(scope: Scope) -> bool:
    query = bytes(scope.get("query_string", b"")).lower()
    return "\x00" in str(scope.get("path", "")) or b"%00" in query or b"\x00" in query
