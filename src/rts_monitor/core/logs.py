"""Structured logging: one JSON object per line, extra fields kept as keys.

Every line has ``time``, ``level``, ``logger`` and ``event``; a line written while a request is
being answered also has that request's fields (``request_id``, and ``agent_id`` or ``user_id``
once the credential is known), kept in a context variable the web layer sets per request
(api/observe.py) and the credential checks add to (``annotate``). The access line of each
request adds ``route``, ``method``, ``status`` and ``duration_ms`` (docs/operations.md).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from contextvars import ContextVar
from typing import Any

_STD_ATTRS = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}

# The fields of the request being answered; one dict per request, shared by everything running
# in its context (mutated by ``annotate``), None outside requests.
_REQUEST: ContextVar[dict[str, Any] | None] = ContextVar("rts_request_log_fields", default=None)


def begin_request(request_id: str) -> dict[str, Any]:
    """Start a request's log fields (the web layer, once per request); returns the dict."""
    fields: dict[str, Any] = {"request_id": request_id}
    _REQUEST.set(fields)
    return fields


def end_request() -> None:
    _REQUEST.set(None)


def annotate(**fields: Any) -> None:
    """Add fields (``agent_id``, ``user_id``) to every later log line of the current request."""
    current = _REQUEST.get()
    if current is not None:
        current.update(fields)


def request_id() -> str | None:
    current = _REQUEST.get()
    return None if current is None else current.get("request_id")


def request_fields() -> dict[str, Any]:
    current = _REQUEST.get()
    return {} if current is None else dict(current)


class JsonFormatter(logging.Formatter):
    _second = -1
    _prefix = ""

    def format(self, record: logging.LogRecord) -> str:
        second = int(record.created)
        if second != self._second:  # one strftime per second, not per line
            self._second, self._prefix = second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        out: dict[str, Any] = {
            "time": f"{self._prefix}.{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        context = _REQUEST.get()
        if context:
            out.update(context)
        for key, value in record.__dict__.items():
            if key not in _STD_ATTRS and key[0] != "_":
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields = {**(_REQUEST.get() or {}),
                  **{k: v for k, v in vars(record).items() if k not in _STD_ATTRS and not k.startswith("_")}}
        extras = " ".join(f"{k}={v}" for k, v in fields.items())
        base = f"{self.formatTime(record)} {record.levelname:<7} {record.name}: {record.getMessage()}"
        text = f"{base} {extras}".rstrip()
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


def setup(level: str = "INFO", fmt: str = "json") -> None:
    # Neither format prints the caller's file and line, thread or process: skip finding them for
    # every record (the caller lookup walks the stack; together about half of a log call's cost,
    # which matters for the access line of every ingest request).
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("uvicorn.access", "apscheduler.executors.default", "apscheduler.scheduler"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
