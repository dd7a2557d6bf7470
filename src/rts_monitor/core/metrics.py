"""The process's own Prometheus instruments, used by every concern (docs/operations.md lists them).

Names follow Prometheus conventions: ``rts_`` prefix, ``_total`` counters, base units
(``_seconds``, rows); labels have a small fixed set of values (route templates, job names,
reasons, tiers), never a device, agent, user or business id.

Several uvicorn workers report as one instance through prometheus-client's multi-process mode:
``rts-monitor serve`` points ``PROMETHEUS_MULTIPROC_DIR`` at ``<state dir>/prometheus`` (emptied at
start) before any worker starts, and each worker's instruments write to memory-mapped files
there that the exposition (``exposition()``) merges. prometheus-client picks its value class when
``prometheus_client.values`` is imported, which happens before ``serve`` sets the directory (the
CLI imports every concern), so the instruments are built on first use (``instruments()``), after
re-reading the environment. Without the variable (tests, ``rts-monitor scheduler``) they are
ordinary in-process values.

Hot paths add to a counter or observe a histogram once per request or flush, never per sample.
"""

from __future__ import annotations

import os
import shutil
from functools import cache
from pathlib import Path

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
    values,
)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = CONTENT_TYPE_LATEST

# Request latencies from 1 ms (a cached read) to 30 s (the graceful-shutdown bound).
_LATENCY = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# Rows per ingest flush: one-sample requests coalesce to hundreds, a full flush is RTS_INGEST_FLUSH_ROWS.
_ROWS = (1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 25000)
# Jobs and alert cycles: milliseconds (an idle tick) to minutes (a tier refresh over a backlog).
_JOB = (0.005, 0.025, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


class Instruments:
    def __init__(self) -> None:
        # --- HTTP (api/observe.py) ---
        self.http_requests = Counter(
            "rts_http_requests_total", "HTTP requests answered, by route template, method and status.",
            ["route", "method", "status"])
        self.http_duration = Histogram(
            "rts_http_request_duration_seconds", "Time from the request's arrival to the end of its answer.",
            ["route", "method"], buckets=_LATENCY)
        # --- ingest (ingest/service.py, ingest/pipeline.py) ---
        self.ingest_received = Counter(
            "rts_ingest_samples_received_total", "Samples stored as new rows (the answers' `received`).")
        self.ingest_duplicates = Counter(
            "rts_ingest_samples_duplicate_total", "Samples already stored or repeated in their request "
            "(the answers' `duplicates`).")
        self.ingest_rejected = Counter(
            "rts_ingest_requests_rejected_total", "Ingest requests refused, by reason (malformed, invalid, "
            "refused, unavailable); bodies over RTS_MAX_BODY_BYTES never reach ingest: HTTP status 413.", ["reason"])
        self.ingest_backpressure = Counter(
            "rts_ingest_backpressure_total", "Ingest requests answered 503 because the queue was full "
            "(RTS_INGEST_QUEUE_ROWS) or the process was shutting down.", ["cause"])
        self.ingest_queue_rows = Gauge(
            "rts_ingest_queue_rows", "Rows admitted and not yet committed (all workers).",
            multiprocess_mode="livesum")
        self.ingest_flush_rows = Histogram(
            "rts_ingest_flush_rows", "Rows per committed or failed flush.", buckets=_ROWS)
        self.ingest_flush_duration = Histogram(
            "rts_ingest_flush_duration_seconds", "Wall time of one flush: write, commit and after-ingest hooks.",
            buckets=_LATENCY)
        self.ingest_flush_failures = Counter(
            "rts_ingest_flush_failures_total", "Flushes that failed as a whole (answered 503).")
        # --- database pool (observability sampler) ---
        self.pool_size = Gauge("rts_db_pool_connections", "Connections open in the pools (all workers).",
                               multiprocess_mode="livesum")
        self.pool_in_use = Gauge("rts_db_pool_in_use_connections", "Connections lent out (all workers).",
                                 multiprocess_mode="livesum")
        self.pool_max = Gauge("rts_db_pool_max_connections", "The pools' maximum size (all workers).",
                              multiprocess_mode="livesum")
        self.pool_waiting = Gauge("rts_db_pool_waiting_requests", "Requests waiting for a connection (all workers).",
                                  multiprocess_mode="livesum")
        self.db_connection_errors = Counter(
            "rts_db_connection_errors_total", "Failed attempts to open a pool connection.")
        self.db_pool_timeouts = Counter(
            "rts_db_pool_timeouts_total", "Requests that got no connection within RTS_DB_ACQUIRE_TIMEOUT_SECONDS.")
        self.db_up = Gauge("rts_db_up", "1 while the database answers this process (db/availability.py), else 0.",
                           multiprocess_mode="livemin")
        # --- the read replica (db/reads.py); absent values without RTS_DATABASE_READ_URL ---
        self.replica_lag = Gauge(
            "rts_db_replica_lag_seconds", "How far the standby of RTS_DATABASE_READ_URL is behind the primary "
            "(0: it has replayed everything the primary had at the last check).", multiprocess_mode="livemax")
        self.replica_in_use = Gauge(
            "rts_db_replica_in_use", "1 while reads go to the standby, 0 while it is bypassed (all workers: min).",
            multiprocess_mode="livemin")
        self.replica_pool_size = Gauge(
            "rts_db_replica_pool_connections", "Connections open in the standby's pools (all workers).",
            multiprocess_mode="livesum")
        self.replica_pool_in_use = Gauge(
            "rts_db_replica_pool_in_use_connections", "Standby connections lent out (all workers).",
            multiprocess_mode="livesum")
        self.replica_pool_waiting = Gauge(
            "rts_db_replica_pool_waiting_requests", "Reads waiting for a standby connection (all workers).",
            multiprocess_mode="livesum")
        self.replica_connection_errors = Counter(
            "rts_db_replica_connection_errors_total", "Failed attempts to open a standby pool connection.")
        self.replica_reads = Counter(
            "rts_db_replica_reads_total", "Reads (one per request) the standby served.")
        self.replica_bypassed = Counter(
            "rts_db_replica_bypassed_reads_total", "Reads that could have gone to the standby and went to the "
            "primary, by reason: lag, down, not_standby, own_write (the caller's own recent write), failed (the "
            "standby's connection failed mid-read, or it had none free, and the read was run again).",
            ["reason"])
        # --- WebSockets and event streams ---
        self.ws_connected = Gauge(
            "rts_websocket_connections", "Open agent WebSockets (kind=agent) and console event streams "
            "(kind=console_sse).", ["kind"], multiprocess_mode="livesum")
        self.ws_pushes = Counter("rts_websocket_pushes_total", "Messages pushed to agents or console pages.",
                                 ["kind"])
        self.notify_lag = Histogram(
            "rts_notify_lag_seconds", "From a command's NOTIFY to this process's listener receiving it.",
            buckets=_LATENCY)
        # --- scheduler (core/scheduler.py) ---
        self.job_runs = Counter("rts_job_runs_total", "Scheduled job runs by outcome (success, failure, skipped).",
                                ["job", "outcome"])
        self.job_duration = Histogram("rts_job_duration_seconds", "Duration of job runs that ran here.",
                                      ["job"], buckets=_JOB)
        self.job_last_success = Gauge(
            "rts_job_last_success_timestamp_seconds", "Unix time of the job's last successful run.",
            ["job"], multiprocess_mode="max")
        # --- alerting (alerts/evaluator.py) ---
        self.alert_cycles = Counter("rts_alert_cycles_total", "Alert evaluation cycles, by outcome.", ["outcome"])
        self.alert_cycle_duration = Histogram("rts_alert_cycle_duration_seconds", "Alert evaluation cycle time.",
                                              buckets=_JOB)
        self.alert_pairs = Counter("rts_alert_pairs_evaluated_total", "(device, rule) pairs evaluated.")
        self.alerts_opened = Counter("rts_alerts_opened_total", "Alert episodes opened.")
        self.alerts_resolved = Counter("rts_alerts_resolved_total", "Alert episodes resolved.")
        # --- read from the database by the sampler (the same answer in every worker) ---
        self.outbox_backlog = Gauge(
            "rts_outbox_backlog", "Notification outbox rows pending delivery, by channel (ticket, webhook, email, "
            "sms).",
            ["channel"], multiprocess_mode="mostrecent")
        self.outbox_oldest = Gauge(
            "rts_outbox_oldest_pending_age_seconds", "Age of the oldest pending outbox row (0: none).",
            multiprocess_mode="mostrecent")
        self.tier_lag = Gauge(
            "rts_tier_refresh_lag_seconds", "How far behind now each rollup tier is materialised.",
            ["tier"], multiprocess_mode="mostrecent")
        # Every known label value exists from the start (at 0): a series that appears only after
        # its first event makes rate() and alerting rules blind until then.
        for reason in ("malformed", "invalid", "refused", "unavailable"):
            self.ingest_rejected.labels(reason)
        for cause in ("queue_full", "shutting_down"):
            self.ingest_backpressure.labels(cause)
        for kind in ("agent", "console_sse"):
            self.ws_connected.labels(kind)
            self.ws_pushes.labels(kind)
        for reason in ("lag", "down", "not_standby", "own_write", "failed"):
            self.replica_bypassed.labels(reason)
        for outcome in ("success", "failure"):
            self.alert_cycles.labels(outcome)
        for channel in ("ticket", "webhook", "email", "sms"):
            self.outbox_backlog.labels(channel)
        self.ready = Gauge("rts_ready", "1 while this process would answer /health/ready with 200 (all workers: "
                           "min); set by each readiness check and every sample.",
                           multiprocess_mode="livemin")


@cache
def instruments() -> Instruments:
    """The instruments, built once per process (after ``PROMETHEUS_MULTIPROC_DIR`` is known)."""
    values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]
    return Instruments()


def multiproc_dir() -> Path | None:
    raw = os.environ.get(MULTIPROC_ENV)
    return Path(raw) if raw else None


def prepare_multiproc_dir(state_dir: Path) -> Path:
    """``<state dir>/prometheus``, emptied: values of a previous run's workers must not be merged."""
    path = state_dir / "prometheus"
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True, exist_ok=True)
    os.environ[MULTIPROC_ENV] = str(path)
    return path


def exposition() -> bytes:
    """The text format of every worker's values (multi-process) or this process's."""
    instruments()
    if multiproc_dir() is None:
        from prometheus_client import REGISTRY

        return generate_latest(REGISTRY)
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return generate_latest(registry)


def process_exited() -> None:
    """A worker's graceful exit: its live gauges (pool, queue, sockets) stop counting."""
    if multiproc_dir() is not None:
        multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]
