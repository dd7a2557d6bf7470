"""The request as every handler sees it: the input rules of ``core/types.py`` applied before
anything is decoded (docs/CONVENTIONS.md, "Input limits").

Litestar decodes a JSON body into plain Python objects first and converts them to the handler's
``data`` type afterwards, so a hostile body would be built in full (a million lists, or a
RecursionError and a traceback per request) before any rule of the contract applies. Here the raw
bytes are checked first: nesting deeper than ``MAX_JSON_DEPTH`` is a 400, more than
``MAX_JSON_VALUES`` values a 413, both named ``body``; then the NUL rule replaces every
``\\u0000`` escape by U+FFFD; then a body is decoded straight into the handler's struct
(``_decode``). A NUL in the query string (``%00``) is replaced the same way.

The ingest route reads its body raw and decodes it into typed structs itself (ingest/validate.py),
so it pays none of this: its contract bounds what is built.
"""

from __future__ import annotations

from types import UnionType
from typing import Any, Union, get_args, get_origin

import msgspec
from litestar import Litestar, Request
from litestar.connection.base import empty_receive, empty_send
from litestar.routes import HTTPRoute
from litestar.serialization import decode_json
from litestar.types import Empty, Message, Receive, Scope, Send

from rts_monitor.api import dependencies
from rts_monitor.core.errors import BadRequest, DomainError, ValidationFailed, error_field
from rts_monitor.core.types import check_json_shape, nesting_error, scrub_json


class GuardedRequest(Request[Any, Any, Any]):
    __slots__ = ()

    def __init__(self, scope: Scope, receive: Receive = empty_receive, send: Send = empty_send) -> None:
        query = scope.get("query_string")
        if query and b"%00" in query:
            scope["query_string"] = query.replace(b"%00", b"%EF%BF%BD")
        super().__init__(scope, receive, send)

    async def json(self) -> Any:
        if self._json is Empty:
            if (cached := self._connection_state.json) is not Empty:
                self._json = cached
            else:
                body = await self.body()
                try:
                    if body:
                        check_json_shape(body)
                        body = scrub_json(body)
                    decoded = _decode(self.route_handler, body or b"null")
                except DomainError:
                    # The body is read before the handler's dependencies run: who is asking is
                    # still answered first (401/403 before 400/422), as for any other mistake.
                    await _authenticate(self)
                    raise
                self._json = self._connection_state.json = decoded
        return self._json


def _decode(handler: Any, body: bytes) -> Any:
    """Straight into the handler's ``data`` struct when it has one: JSON types checked strictly, as
    the OpenAPI document states them (Litestar's own path builds plain objects and converts them
    leniently: ``0`` passed for ``false``, ``"5"`` for ``5``), and unknown fields skipped without
    being built. Litestar then takes the struct as it is."""
    decoder = _decoder_for(handler)
    try:
        if decoder is None:
            return decode_json(body, type_decoders=handler.resolve_type_decoders())
        return decoder.decode(body)
    except RecursionError:  # deeper than Python's recursion limit despite the scan: never a 500
        raise nesting_error() from None
    except msgspec.ValidationError as exc:
        path, message = error_field("", str(exc))
        field = path.lstrip(".")
        if field:
            raise ValidationFailed(f"{field}: {message}", field=field) from None
        raise BadRequest(f"body: {message}", field="body") from None
    except msgspec.DecodeError as exc:
        raise BadRequest(f"body is not valid JSON: {exc}", field="body") from None


async def _authenticate(request: Request[Any, Any, Any]) -> None:
    """Run the handler's own credential check (the ``agent`` or ``principal`` dependency)."""
    params = request.route_handler.parsed_fn_signature.parameters
    if "agent" in params:
        await dependencies.provide_agent(request)
    elif "principal" in params:
        await dependencies.provide_principal(request)


_DECODERS: dict[int, msgspec.json.Decoder[Any] | None] = {}


def _decoder_for(handler: Any) -> msgspec.json.Decoder[Any] | None:
    key = id(handler)
    if key not in _DECODERS:
        data = handler.parsed_fn_signature.parameters.get("data")
        annotation = data.annotation if data is not None else None
        members = get_args(annotation) if get_origin(annotation) in (Union, UnionType) else (annotation,)
        structs = [m for m in members if isinstance(m, type) and issubclass(m, msgspec.Struct)]
        typed = bool(structs) and all(m is type(None) or m in structs for m in members)
        _DECODERS[key] = msgspec.json.Decoder(annotation) if typed else None
    return _DECODERS[key]


class AllowHeaders:
    """``before_send`` hook: an OPTIONS answer lists every method of its path in ``Allow``.

    Litestar builds a path's OPTIONS handler with the first route handler registered for it and
    keeps that one when more methods are added, so ``OPTIONS /api/agents/{id}`` said ``GET, OPTIONS``
    although PATCH and DELETE exist (schemathesis' allow_header_conformance found it). Only
    OPTIONS responses are touched; every other message passes after one comparison.
    """

    def __init__(self) -> None:
        self.methods: dict[str, bytes] = {}

    def learn(self, app: Litestar) -> None:
        for route in app.routes:
            if isinstance(route, HTTPRoute):
                self.methods[route.path_format] = ", ".join(sorted(route.methods)).encode()

    async def __call__(self, message: Message, scope: Scope) -> None:
        if scope.get("method") != "OPTIONS" or message["type"] != "http.response.start":
            return
        allow = self.methods.get(scope.get("path_template", ""))
        if allow is None:
            return
        headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"allow"]
        message["headers"] = [*headers, (b"allow", allow)]
