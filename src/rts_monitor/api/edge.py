"""The request as every handler sees it: the input rules of ``core/types.py`` applied before
anything is decoded (docs/CONVENTIONS.md, "Input limits").

Litestar decodes a JSON body into plain Python objects first and converts them to the handler's
``data`` type afterwards, so a hostile body would be built in full (a million lists, or a
RecursionError and a traceback per request) before any rule of the contract applies. Here the raw
bytes are checked first: nesting deeper than ``MAX_JSON_DEPTH`` is a 400, more than
``MAX_JSON_VALUES`` values a 413, both named ``body``; then the NUL rule replaces every
``\\u0000`` escape by U+FFFD. A NUL in the query string (``%00``) is replaced the same way.

The ingest route reads its body raw and decodes it into typed structs itself (ingest/validate.py),
so it pays none of this: its contract bounds what is built.
"""

from __future__ import annotations

from typing import Any

from litestar import Request
from litestar.connection.base import empty_receive, empty_send
from litestar.serialization import decode_json
from litestar.types import Empty, Receive, Scope, Send

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
                if body:
                    check_json_shape(body)
                    body = scrub_json(body)
                try:
                    decoded = decode_json(body or b"null", type_decoders=self.route_handler.resolve_type_decoders())
                except RecursionError:  # deeper than Python's recursion limit despite the scan: never a 500
                    raise nesting_error() from None
                self._json = self._connection_state.json = decoded
        return self._json
