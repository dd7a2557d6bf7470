"""Domain errors and their one mapping to HTTP.

Every error response has the same shape: ``{"status", "code", "message", "field"?}``. Service
functions raise these; handlers never build error responses themselves.
"""

from __future__ import annotations

import re
from typing import Any


class ApiError(Exception):
    status = 500
    code = "internal_error"

    def __init__(self, message: str, *, field: str | None = None, headers: dict[str, str] | None = None,
                 extra: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.headers = headers or {}
        self.extra = extra or {}

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"status": self.status, "code": self.code, "message": self.message}
        if self.field is not None:
            out["field"] = self.field
        out.update(self.extra)
        return out


class BadRequest(ApiError):
    status = 400
    code = "bad_request"


class ValidationFailed(ApiError):
    """Well-formed body with a field that breaks a rule; ``field`` is its path."""

    status = 422
    code = "validation_error"


class Unauthorized(ApiError):
    status = 401
    code = "unauthorized"


class Forbidden(ApiError):
    status = 403
    code = "forbidden"


class NotFound(ApiError):
    """Also what another tenant's object looks like: never confirm that it exists."""

    status = 404
    code = "not_found"


class Conflict(ApiError):
    status = 409
    code = "conflict"


class PayloadTooLarge(ApiError):
    status = 413
    code = "payload_too_large"


class Unavailable(ApiError):
    """Back-pressure: the caller should retry after ``Retry-After`` seconds."""

    status = 503
    code = "unavailable"

    def __init__(self, message: str, *, retry_after: float = 1.0) -> None:
        super().__init__(message, headers={"Retry-After": str(max(1, round(retry_after)))})


# msgspec's validation messages end with `` - at `$.path.to[3].field` ``.
_PATH = re.compile(r" - at `\$\.?(?P<path>[^`]*)`")
_NAMED = re.compile(r"(?:missing required field|contains unknown field) `(?P<name>[^`]+)`")


def msgspec_message_to_field(message: str) -> tuple[str, str | None]:
    """``Expected `int`, got `str` - at `$.metrics[3].cpu_percent` `` → (message, field)."""
    m = _PATH.search(message)
    if not m:
        return message, None
    return message[: m.start()].strip(), m["path"] or None


def error_field(prefix: str, msgspec_message: str) -> tuple[str, str]:
    """msgspec's message → (``prefix.path.to.field``, message) for a part decoded on its own.
    Missing and unknown keys are reported at their object's path, so their name is appended."""
    message, path = msgspec_message_to_field(msgspec_message)
    field = prefix + ("" if not path else path if path.startswith("[") else "." + path)
    named = _NAMED.search(message)
    if named:
        field += "." + named["name"]
    return field, message
