"""The single mapping from exceptions to HTTP: status codes and the body ``{status, code, message, field?}``.

Domain errors (``core/errors.py``) carry no status; this table gives it. One answer for one
mistake on every endpoint (docs/CONVENTIONS.md): a body or parameter that cannot be parsed at all
is 400; a well-formed request whose field breaks a rule is 422 naming the field; a database that
cannot be reached is 503 with Retry-After. Database errors that escape a service are translated
by the same function the connection boundary uses (``db/errors.py``). A 5xx body also carries the
request's ``request_id`` (api/observe.py), the one its log lines carry, so a user's report of a
failure leads to its traceback.
"""

from __future__ import annotations

import logging
from typing import Any

import psycopg
from litestar import MediaType, Request, Response
from litestar.exceptions import HTTPException, ValidationException

from rts_monitor.core import logs
from rts_monitor.core.errors import (
    BadRequest,
    Conflict,
    DomainError,
    Forbidden,
    NotFound,
    PayloadTooLarge,
    TooManyRequests,
    Unauthorized,
    Unavailable,
    ValidationFailed,
    error_field,
)
from rts_monitor.db.errors import translate

log = logging.getLogger(__name__)

STATUS: dict[type[DomainError], int] = {
    BadRequest: 400,
    Unauthorized: 401,
    Forbidden: 403,
    NotFound: 404,
    Conflict: 409,
    PayloadTooLarge: 413,
    ValidationFailed: 422,
    TooManyRequests: 429,
    Unavailable: 503,
}
_HTTP_CODES = {
    400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
    409: "conflict", 413: "payload_too_large", 415: "unsupported_media_type", 422: "validation_error",
    429: "too_many_requests", 503: "unavailable",
}


def status_of(exc: DomainError) -> int:
    for cls in type(exc).__mro__:
        status = STATUS.get(cls)
        if status is not None:
            return status
    return 500


def error_body(exc: DomainError) -> dict[str, Any]:
    out: dict[str, Any] = {"status": status_of(exc), "code": exc.code, "message": exc.message}
    if exc.field is not None:
        out["field"] = exc.field
    out.update(exc.extra)
    return out


def _respond(body: dict[str, Any], headers: dict[str, str] | None = None) -> Response[Any]:
    if int(body["status"]) >= 500:
        rid = logs.request_id()
        if rid is not None:
            body["request_id"] = rid
    return Response(content=body, status_code=int(body["status"]), headers=headers, media_type=MediaType.JSON)


def domain_error_handler(_: Request[Any, Any, Any], exc: DomainError) -> Response[Any]:
    retry_after = getattr(exc, "retry_after", None)
    headers = {"Retry-After": str(max(1, round(retry_after)))} if retry_after is not None else None
    return _respond(error_body(exc), headers)


def validation_handler(request: Request[Any, Any, Any], exc: ValidationException) -> Response[Any]:
    """Litestar's own parameter and body decoding: a named field is 422, an unreadable body 400.

    A body error names the path inside the body (``conditions.metric``, a missing key by its
    name), a parameter error the parameter."""
    message = str(exc.detail)
    item = next((i for i in (exc.extra if isinstance(exc.extra, list) else []) if isinstance(i, dict)), None)
    key = None
    if item is not None:
        message, key = str(item.get("message", message)), item.get("key")
    # Litestar's key is the field's path, or "data" for the body itself (a missing key at the top)
    path, message = error_field("" if key in (None, "data") else str(key), message)
    field = path.lstrip(".") or None
    if field:
        return domain_error_handler(request, ValidationFailed(f"{field}: {message}", field=field))
    return domain_error_handler(request, BadRequest(message))


def database_error_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """A database error a service did not expect: the same translation as the connection boundary."""
    domain = translate(exc)
    if domain is None:
        return internal_error_handler(request, exc)
    return domain_error_handler(request, domain)


def exception_group_handler(request: Request[Any, Any, Any], exc: ExceptionGroup[Exception]) -> Response[Any]:
    """Litestar wraps what a dependency raised while cleaning up (after the handler failed) in an
    ExceptionGroup: answer for the first exception inside it as if it had been raised alone."""
    inner = exc.exceptions[0] if exc.exceptions else exc
    while isinstance(inner, ExceptionGroup) and inner.exceptions:
        inner = inner.exceptions[0]
    if isinstance(inner, DomainError):
        return domain_error_handler(request, inner)
    if isinstance(inner, psycopg.Error):
        return database_error_handler(request, inner)
    if isinstance(inner, HTTPException):
        return http_error_handler(request, inner)
    return internal_error_handler(request, exc)


def http_error_handler(_: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    status = exc.status_code
    body = {"status": status, "code": _HTTP_CODES.get(status, "error"), "message": str(exc.detail)}
    return _respond(body, exc.headers)


def internal_error_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    log.exception("request.failed", extra={"path": request.url.path, "method": request.method})
    return _respond({"status": 500, "code": "internal_error", "message": "internal server error"})


EXCEPTION_HANDLERS: dict[type[Exception] | int, Any] = {
    DomainError: domain_error_handler,
    ValidationException: validation_handler,
    psycopg.Error: database_error_handler,
    ExceptionGroup: exception_group_handler,
    HTTPException: http_error_handler,
    Exception: internal_error_handler,
}
