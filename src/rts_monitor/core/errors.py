"""Domain errors: what went wrong, in the domain's words; they know nothing of HTTP.

Services raise these; ``api/errors.py`` alone maps each class to a status code and the one error
body ``{status, code, message, field?}``; the agent WebSocket sends the same ``code``, ``message``
and ``field``. ``code`` is a stable machine-readable name; ``field`` the path of the offending
input (``metrics[3].cpu_percent``). Database errors become these at one boundary
(``db/errors.py``).
"""

from __future__ import annotations

import re
from typing import Any


class DomainError(Exception):
    code = "error"

    def __init__(self, message: str, *, field: str | None = None, extra: dict[str, Any] | None = None,
                 code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.extra = extra or {}
        if code is not None:
            self.code = code


class BadRequest(DomainError):
    """The request cannot be read at all (unparseable body or parameter)."""

    code = "bad_request"


class ValidationFailed(DomainError):
    """A well-formed request with a field that breaks a rule; ``field`` is its path."""

    code = "validation_error"


class Unauthorized(DomainError):
    code = "unauthorized"


class Forbidden(DomainError):
    code = "forbidden"


class NotFound(DomainError):
    """Also what another tenant's object looks like: never confirm that it exists."""

    code = "not_found"


class Conflict(DomainError):
    """The request is valid but the object's state does not allow it now."""

    code = "conflict"


class PayloadTooLarge(DomainError):
    code = "payload_too_large"


class TooManyRequests(DomainError):
    code = "too_many_requests"

    def __init__(self, message: str, *, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Unavailable(DomainError):
    """Back-pressure or a dependency down: the caller should retry after ``retry_after`` seconds."""

    code = "unavailable"

    def __init__(self, message: str, *, retry_after: float = 1.0, extra: dict[str, Any] | None = None) -> None:
        super().__init__(message, extra=extra)
        self.retry_after = retry_after


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
