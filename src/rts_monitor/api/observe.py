"""Every request, outermost: its id, its log fields, its access line and its HTTP metrics.

Wraps the app's ASGI handler (outside Litestar's exception handling, so a 404 for an unknown path
and a 500 are seen with their real status, and the error handlers run inside the request's
context and can put its id into a 5xx body):

* ``X-Request-ID``: the client's (or the load balancer's) value when sane, 1-128 characters of
  ``A-Z a-z 0-9 . _ : + = / -`` (anything else could forge log lines or blow up log storage),
  else a generated one; returned in the answer's ``X-Request-ID`` header, in every log line
  written while the request runs (``core/logs.py``) and in 5xx bodies (``api/errors.py``).
* ``rts_http_requests_total{route,method,status}`` and ``rts_http_request_duration_seconds``:
  labelled by the route *template* (``/api/agents/{agent_id}/metrics``), never the path, so
  no id becomes a label; a path no route matches is ``route="unmatched"``.
* one ``http.request`` line per request (RTS_ACCESS_LOG=all, the default; ``errors``: answers
  >= 400 and slower than 1 s; ``off``): route, method, status, duration_ms, plus the request's
  fields; probes (``/health…``, ``/metrics``) log theirs at DEBUG unless they failed.

Cost per request, measured on this project's shared (contended) development machine where a
``uuid4()`` took 8 µs: the observer 26-35 µs without the access line, about 110 µs more with it.
Scaled by that machine's slowness, roughly 5 and 20 µs, against about 120 µs of server CPU for a
one-sample ingest request (docs/ingest.md): the access line is the part an ingest-heavy
deployment may want as ``errors``. Generated ids avoid ``uuid4`` (a random per-process prefix and
a counter).
"""

from __future__ import annotations

import itertools
import logging
import os
import re
import time
from typing import Any

from litestar.types import ASGIApp, Message, Receive, Scope, Send

from rts_monitor.core import logs, metrics

log = logging.getLogger("rts_monitor.access")

HEADER = b"x-request-id"
_SANE = re.compile(rb"[A-Za-z0-9._:+=/-]{1,128}")
_QUIET = ("/health", "/metrics")


# Generated ids: 16 random hex digits per process, then a counter (32 hex digits in all): unique
# across processes and restarts, and a fraction of uuid4's cost on every request.
_PREFIX = os.urandom(8).hex()
_COUNTER = itertools.count(1)


def _reseed() -> None:  # a forked child must not repeat its parent's ids
    global _PREFIX, _COUNTER
    _PREFIX, _COUNTER = os.urandom(8).hex(), itertools.count(1)


os.register_at_fork(after_in_child=_reseed)


def new_request_id() -> str:
    return f"{_PREFIX}{next(_COUNTER):016x}"


def request_id_from(headers: Any) -> str:
    for name, value in headers:
        if name == HEADER:
            if _SANE.fullmatch(value):
                return str(value.decode("ascii"))
            break
    return new_request_id()


SLOW_SECONDS = 1.0


class RequestObserver:
    def __init__(self, app: ASGIApp, *, access_log: str) -> None:
        self.app = app
        self.access_log = access_log  # all | errors | off (RTS_ACCESS_LOG)
        self._m = metrics.instruments()
        self._counters: dict[tuple[str, str, int], Any] = {}
        self._histograms: dict[tuple[str, str], Any] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind: str = str(scope["type"])
        if kind == "lifespan":
            await self.app(scope, receive, send)
            return
        rid = request_id_from(scope.get("headers", ()))
        fields = logs.begin_request(rid)
        if kind != "http":  # a WebSocket: its id is in the log lines of the whole connection
            try:
                await self.app(scope, receive, send)
            finally:
                logs.end_request()
            return
        started = time.perf_counter()
        status = 500
        header = (HEADER, rid.encode("ascii"))

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            self._record(scope, status, time.perf_counter() - started, fields)
            logs.end_request()

    def _record(self, scope: Scope, status: int, seconds: float, fields: dict[str, Any]) -> None:
        route: str = scope.get("path_template") or "unmatched"
        method = str(scope.get("method", "GET"))
        key = (route, method, status)
        counter = self._counters.get(key)
        if counter is None:
            counter = self._counters[key] = self._m.http_requests.labels(route, method, str(status))
        counter.inc()
        hkey = (route, method)
        histogram = self._histograms.get(hkey)
        if histogram is None:
            histogram = self._histograms[hkey] = self._m.http_duration.labels(route, method)
        histogram.observe(seconds)
        if self.access_log == "all" or (self.access_log == "errors" and (status >= 400 or seconds > SLOW_SECONDS)):
            level = logging.DEBUG if route.startswith(_QUIET) and status < 500 else logging.INFO
            if log.isEnabledFor(level):
                log.log(level, "http.request", extra={"route": route, "method": method, "status": status,
                                                      "duration_ms": round(seconds * 1000, 2)})


def install(app: Any, *, access_log: str) -> None:
    """Wrap the Litestar app's handler (``app.asgi_handler``, the router inside its exception handling)."""
    app.asgi_handler = RequestObserver(app.asgi_handler, access_log=access_log)
