"""The OpenAPI document as the contract: every status an operation can answer, once, for every
concern's handlers; and the few corrections Litestar's generated schema needs to say exactly what
the API accepts and answers (checked by schemathesis against a live server, tests/test_contract.py).

``document_errors(app)`` runs in the app factory after all routes are registered (and before
the schema is first built, which Litestar does lazily). For each handler it derives which
errors can happen from its signature, so no handler repeats ``responses=…``:

* every operation: 500, and 503 with ``Retry-After`` (the database unreachable, ingestion
  saturated, the server shutting down: db/availability.py);
* needs ``principal`` or ``agent``, or declares ``security``: 401 (no/expired/tampered token),
  403 (role, other agent) and 429 with ``Retry-After`` (too many failed credentials from this
  address or with this token: auth/limits.py);
* has path parameters: 404 (also what another business's object looks like) and 400;
* a query parameter or body field naming an object (``business_id``, ``agent_device_id``, …): 404
  when it is unknown;
* takes a body or query parameters: 400 (malformed) and 422 (a field breaks a rule, ``field``
  names it); a body also 413;
* what a handler's service raises beyond that is declared on the route: ``opt={"errors": [409]}``
  (a state that does not allow it now), ``[401]`` (register: the token is in the body); and
  ``opt={"media_types": ["text/csv"]}`` when the 200 can also be another media type.

A handler's own ``responses`` win for the same status. ``ContractJson`` serves the document with
``finish`` applied: a response that is one of several shapes is ``anyOf`` them (``oneOf`` fails
when a value fits both, like ``{"commands": []}``), a body that refuses unknown fields says
``additionalProperties: false``, and every 429 and 503 documents its ``Retry-After`` header.
"""

from __future__ import annotations

from typing import Any, get_args, get_origin, get_type_hints

import msgspec
from litestar import Litestar, Request
from litestar.handlers import HTTPRouteHandler
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.plugins import JsonRenderPlugin
from litestar.routes import HTTPRoute

AUTH_DEPENDENCIES = ("principal", "agent")
_WRITE = {"POST", "PUT", "PATCH"}
_NOT_QUERY = {"ctx", "principal", "agent", "data", "request", "state", "headers", "cookies", "scope", "socket"}


class ErrorBody(msgspec.Struct, omit_defaults=True):
    """Every error response: ``{status, code, message, field?, request_id?}`` (see ``api/errors.py``)."""

    status: int
    code: str
    message: str
    field: str | None = None
    # 5xx answers: the request's X-Request-ID, which every log line of the request carries
    request_id: str | None = None


DESCRIPTIONS = {
    400: "Malformed request (unparseable body or parameter, JSON nested deeper than 32 levels)",
    401: "Missing, expired, tampered or revoked credential",
    403: "Authenticated but not allowed (role, or another agent's path)",
    404: "Not found, or an id given as a filter names nothing (another business's object is reported the "
         "same way)",
    409: "The object's state does not allow this now (e.g. already resolved, not awaiting approval)",
    413: "Request body too large (bytes, or more than 500,000 JSON values)",
    422: "A field breaks a rule; `field` is its path, e.g. `metrics[3].cpu_percent`",
    429: "Too many failed credential checks from this address or with this token: retry after "
         "`Retry-After` seconds",
    500: "Internal error",
    503: "Unavailable for now (database unreachable, ingestion saturated, shutting down): retry after "
         "`Retry-After` seconds",
}
# Other media types an operation's 200 can be, beside the handler's own (``opt={"media_types": …}``,
# e.g. a report as CSV); documented as text.
EXTRA_MEDIA_TYPES: dict[tuple[str, str], set[str]] = {}
RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before retrying", "required": True,
                               "schema": {"type": "integer", "minimum": 1}}}


def error_statuses(handler: HTTPRouteHandler) -> list[int]:
    """The error statuses this handler can answer, from its signature and paths."""
    params = set(handler.parsed_fn_signature.parameters)
    path_params = {p for path in handler.paths for p in _path_params(path)}
    query = params - _NOT_QUERY - path_params
    statuses = {500, 503}
    if params & set(AUTH_DEPENDENCIES) or handler.security:  # declared security: authenticates itself
        statuses |= {401, 403, 429}
    if 401 in handler.opt.get("errors", ()):  # authenticates from its body (register)
        statuses.add(429)
    if path_params:
        statuses |= {400, 404}  # a malformed path parameter is a 400 (Litestar documents one too)
    if any(name.endswith("_id") for name in query | _body_fields(handler)):
        statuses.add(404)
    # A raw-body handler (takes ``request`` and decodes itself) on a write method has a body too.
    has_body = "data" in params or ("request" in params and bool(handler.http_methods & _WRITE))
    if has_body or query:
        statuses |= {400, 422}
    if has_body:
        statuses.add(413)
    statuses |= set(handler.opt.get("errors", ()))
    return sorted(statuses)


def _body_fields(handler: HTTPRouteHandler) -> set[str]:
    """Top-level field names of the handler's body struct (ids there name objects too)."""
    data = handler.parsed_fn_signature.parameters.get("data")
    if data is None:
        return set()
    names: set[str] = set()
    for tp in (data.annotation, *get_args(data.annotation)):
        if isinstance(tp, type) and issubclass(tp, msgspec.Struct):
            names |= set(tp.__struct_fields__)
    return names


def _path_params(path: str) -> list[str]:
    return [seg[1:-1].split(":")[0] for seg in path.split("/") if seg.startswith("{") and seg.endswith("}")]


def document_errors(app: Litestar) -> None:
    """Add the error responses to every HTTP operation of ``app`` (idempotent)."""
    for route in app.routes:
        if not isinstance(route, HTTPRoute):
            continue
        for handler in route.route_handlers:
            for method in handler.http_methods:
                for media_type in handler.opt.get("media_types", ()):
                    EXTRA_MEDIA_TYPES.setdefault((method.lower(), route.path_format), set()).add(media_type)
            defaults: dict[int, Any] = {
                status: ResponseSpec(data_container=ErrorBody, description=DESCRIPTIONS[status],
                                     generate_examples=False)
                for status in error_statuses(handler)
            }
            handler.responses = {**defaults, **(handler.responses or {})}


def strict_bodies(app: Litestar) -> set[str]:
    """Names of the request body structs (and the structs inside them) that refuse unknown fields."""
    found: set[str] = set()

    def visit(tp: Any) -> None:
        if isinstance(tp, type) and issubclass(tp, msgspec.Struct):
            if tp.__name__ in found:
                return
            if tp.__struct_config__.forbid_unknown_fields:
                found.add(tp.__name__)
            for hint in get_type_hints(tp, include_extras=True).values():
                visit(hint)
            return
        if get_origin(tp) is not None or get_args(tp):
            for arg in get_args(tp):
                visit(arg)

    for route in app.routes:
        if isinstance(route, HTTPRoute):
            for handler in route.route_handlers:
                data = handler.parsed_fn_signature.parameters.get("data")
                if data is not None:
                    visit(data.annotation)
    return found


def finish(schema: dict[str, Any], strict: set[str]) -> None:
    """The corrections of the generated document (see the module docstring); idempotent."""
    for name, component in schema.get("components", {}).get("schemas", {}).items():
        if name in strict and "properties" in component:
            component["additionalProperties"] = False
    for path, item in schema.get("paths", {}).items():
        for method, operation in item.items():
            if not isinstance(operation, dict):
                continue
            ok = operation.get("responses", {}).get("200")
            for media_type in sorted(EXTRA_MEDIA_TYPES.get((method, path), ())):
                if ok is not None:
                    ok.setdefault("content", {}).setdefault(media_type, {"schema": {"type": "string"}})
            for status, response in operation.get("responses", {}).items():
                if status in ("429", "503"):
                    response["headers"] = {**response.get("headers", {}), **RETRY_AFTER}
                for content in response.get("content", {}).values():
                    body = content.get("schema", {})
                    if "oneOf" in body and all("$ref" in alt for alt in body["oneOf"]):
                        body["anyOf"] = body.pop("oneOf")


class ContractJson(JsonRenderPlugin):
    """``/schema/openapi.json`` with ``finish`` applied once, when the document is first asked for."""

    def __init__(self) -> None:
        super().__init__()
        self.strict: set[str] = set()  # strict_bodies(app), set by the app factory
        self._finished: int | None = None

    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        if self._finished != id(openapi_schema):
            finish(openapi_schema, self.strict)
            self._finished = id(openapi_schema)
        return super().render(request, openapi_schema)
