"""The single mapping from exceptions to the error shape ``{status, code, message, field?}``."""

from __future__ import annotations

import logging
from typing import Any

from litestar import MediaType, Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR

from rts_monitor.core.errors import ApiError, msgspec_message_to_field

log = logging.getLogger(__name__)

_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "too_many_requests",
    503: "unavailable",
}


def _respond(body: dict[str, Any], headers: dict[str, str] | None = None) -> Response[Any]:
    return Response(content=body, status_code=int(body["status"]), headers=headers,
                    media_type=MediaType.JSON)


def api_error_handler(_: Request[Any, Any, Any], exc: ApiError) -> Response[Any]:
    return _respond(exc.body(), exc.headers)


def validation_handler(_: Request[Any, Any, Any], exc: ValidationException) -> Response[Any]:
    message, field = str(exc.detail), None
    extra = exc.extra if isinstance(exc.extra, list) else []
    for item in extra:
        if isinstance(item, dict):
            msg = str(item.get("message", message))
            message, field = msgspec_message_to_field(msg)
            key = item.get("key")
            if field is None and key:
                field = str(key)
            break
    if field is None:
        message, field = msgspec_message_to_field(message)
    body: dict[str, Any] = {"status": 400, "code": "bad_request", "message": message}
    if field:
        body["field"] = field
        body["status"], body["code"] = 422, "validation_error"
        body["message"] = f"{field}: {message}"
    return _respond(body)


def http_error_handler(_: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    status = exc.status_code
    body = {"status": status, "code": _CODES.get(status, "error"), "message": str(exc.detail)}
    return _respond(body, exc.headers)


def internal_error_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    log.exception("request.failed", extra={"path": request.url.path, "method": request.method})
    return _respond(
        {"status": HTTP_500_INTERNAL_SERVER_ERROR, "code": "internal_error",
         "message": "internal server error"}
    )


EXCEPTION_HANDLERS: dict[type[Exception] | int, Any] = {
    ApiError: api_error_handler,
    ValidationException: validation_handler,
    HTTPException: http_error_handler,
    Exception: internal_error_handler,
}
