"""``RTS_METRICS_BIND``: the metrics on a separate address, without a token (for a network only
Prometheus reaches). Opened by ``rts-monitor serve`` in the process that supervises the workers
(it reads every worker's values from the multi-process directory) and by ``rts-monitor
scheduler``; a plain HTTP server thread from prometheus-client."""

from __future__ import annotations

import logging
from typing import Any

from prometheus_client import CollectorRegistry, multiprocess, start_http_server

from rts_monitor.core import metrics
from rts_monitor.core.settings import ConfigurationError

log = logging.getLogger(__name__)


def parse_bind(bind: str) -> tuple[str, int]:
    host, sep, port = bind.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ConfigurationError(f"RTS_METRICS_BIND={bind!r}: expected HOST:PORT (e.g. 127.0.0.1:9464)")
    return host.strip("[]"), int(port)


def start(bind: str) -> Any:
    """Serve the metrics on ``bind`` from a daemon thread; returns the server (``shutdown()``)."""
    host, port = parse_bind(bind)
    registry: Any
    if metrics.multiproc_dir() is not None:
        # only the workers' files: instruments built here, in the supervising process, would add
        # a process whose gauges stay 0 (and win every `livemin`, e.g. rts_db_up)
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        from prometheus_client import REGISTRY

        metrics.instruments()  # built now, so an idle process still exposes every metric
        registry = REGISTRY
    server, _thread = start_http_server(port, addr=host, registry=registry)
    log.info("metrics.listening", extra={"bind": f"{host}:{port}"})
    return server
