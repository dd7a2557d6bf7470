"""Document the one error shape on every operation, once, for every concern's handlers.

``document_errors(app)`` runs in the app factory after all routes are registered (and before
the schema is first built, which Litestar does lazily). For each handler it derives which
errors can happen from its signature, so no handler repeats ``responses=…``:

* every operation: 500;
* needs ``principal`` or ``agent``, or declares ``security``: 401 (no/expired/tampered token)
  and 403 (role, other agent);
* has path parameters: 404 (also what another business's object looks like) and 400;
* takes a body or query parameters: 400 (malformed) and 422 (a field breaks a rule, ``field``
  names it); a body also 413.

A handler's own ``responses`` win for the same status.
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Litestar
from litestar.handlers import HTTPRouteHandler
from litestar.openapi.datastructures import ResponseSpec
from litestar.routes import HTTPRoute

AUTH_DEPENDENCIES = ("principal", "agent")
_WRITE = {"POST", "PUT", "PATCH"}
_NOT_QUERY = {"ctx", "principal", "agent", "data", "request", "state", "headers", "cookies", "scope", "socket"}


class ErrorBody(msgspec.Struct, omit_defaults=True):
    """Every error response: ``{status, code, message, field?}`` (see ``api/errors.py``)."""

    status: int
    code: str
    message: str
    field: str | None = None


DESCRIPTIONS = {
    400: "Malformed request (unparseable body or parameter)",
    401: "Missing, expired, tampered or revoked credential",
    403: "Authenticated but not allowed (role, or another agent's path)",
    404: "Not found (another business's object is reported the same way)",
    413: "Request body too large",
    422: "A field breaks a rule; `field` is its path, e.g. `metrics[3].cpu_percent`",
    500: "Internal error",
}


def error_statuses(handler: HTTPRouteHandler) -> list[int]:
    """The error statuses this handler can answer, from its signature and paths."""
    params = set(handler.parsed_fn_signature.parameters)
    path_params = {p for path in handler.paths for p in _path_params(path)}
    statuses = {500}
    if params & set(AUTH_DEPENDENCIES) or handler.security:  # declared security: authenticates itself
        statuses |= {401, 403}
    if path_params:
        statuses |= {400, 404}  # a malformed path parameter is a 400 (Litestar documents one too)
    # A raw-body handler (takes ``request`` and decodes itself) on a write method has a body too.
    has_body = "data" in params or ("request" in params and bool(handler.http_methods & _WRITE))
    if has_body or params - _NOT_QUERY - path_params:
        statuses |= {400, 422}
    if has_body:
        statuses.add(413)
    return sorted(statuses)


def _path_params(path: str) -> list[str]:
    return [seg[1:-1].split(":")[0] for seg in path.split("/") if seg.startswith("{") and seg.endswith("}")]


def document_errors(app: Litestar) -> None:
    """Add the error responses to every HTTP operation of ``app`` (idempotent)."""
    for route in app.routes:
        if not isinstance(route, HTTPRoute):
            continue
        for handler in route.route_handlers:
            defaults: dict[int, Any] = {
                status: ResponseSpec(data_container=ErrorBody, description=DESCRIPTIONS[status],
                                     generate_examples=False)
                for status in error_statuses(handler)
            }
            handler.responses = {**defaults, **(handler.responses or {})}
