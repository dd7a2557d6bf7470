"""Scheduled jobs: each concern declares plain async functions; one instance runs each at a time.

Every API process runs an APScheduler ``AsyncIOScheduler``. A job marked ``singleton`` (the
default) first takes a PostgreSQL session advisory lock named after it on a pooled connection;
an instance that does not get it skips that run, so with N processes a job still runs once per
tick. Jobs take the ``AppContext`` and return nothing; failures are logged, never raised.

Each run that took place is counted (``rts_job_runs_total{job,outcome}``, its duration, the time
of the last success: core/metrics.py) and recorded in ``rts_job_runs`` (one row per job, any
process), which ``rts-monitor doctor`` reads to find a job that stopped running or keeps failing.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import psycopg
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from rts_monitor.core import metrics
from rts_monitor.core.context import AppContext
from rts_monitor.core.errors import Unavailable

log = logging.getLogger(__name__)

JobFunc = Callable[[AppContext], Awaitable[None]]
_TASKS: set[asyncio.Task[None]] = set()


@dataclass(frozen=True)
class Job:
    """A scheduled job, declared by its concern (``Concern.jobs``)."""

    name: str
    func: JobFunc
    seconds: Callable[[AppContext], float]
    singleton: bool = True


def lock_key(name: str) -> int:
    return int.from_bytes(hashlib.sha256(f"rts-job:{name}".encode()).digest()[:8], "big", signed=True)


async def run_job(ctx: AppContext, spec: Job) -> bool:
    """Run one job now (under its lock if singleton). True when it ran here.

    While the database is unreachable a run is skipped with one warning (no traceback): the pool
    gives no connection within its acquisition timeout, or the lock's connection breaks. The job
    stays scheduled and its next tick runs once the database is back (db/availability.py)."""
    started = time.monotonic()
    try:
        if not spec.singleton:
            outcome, error = await _call(ctx, spec, started)
            async with ctx.pool.connection() as conn:
                await _record(conn, ctx, spec, outcome, error, time.monotonic() - started)
            return True
        async with ctx.pool.connection() as conn:
            await conn.set_autocommit(True)
            row = await (await conn.execute("SELECT pg_try_advisory_lock(%s) AS got",
                                            (lock_key(spec.name),))).fetchone()
            if not row or not row["got"]:  # type: ignore[call-overload]
                log.debug("job.skipped", extra={"job": spec.name, "reason": "held elsewhere"})
                return False
            try:
                outcome, error = await _call(ctx, spec, started)
                await _record(conn, ctx, spec, outcome, error, time.monotonic() - started)
            finally:
                await conn.execute("SELECT pg_advisory_unlock(%s)", (lock_key(spec.name),))
                await conn.set_autocommit(False)
    except (psycopg.OperationalError, psycopg.InterfaceError, Unavailable) as exc:
        _skipped(spec, exc)
        return False
    return True


async def _call(ctx: AppContext, spec: Job, started: float) -> tuple[str, str | None]:
    """Run the job: ("success"|"failure"|"skipped", error)."""
    try:
        await spec.func(ctx)
        log.debug("job.done", extra={"job": spec.name, "ms": round((time.monotonic() - started) * 1000, 1)})
        return "success", None
    except (psycopg.OperationalError, psycopg.InterfaceError, Unavailable) as exc:
        _skipped(spec, exc)
        return "skipped", None
    except Exception as exc:
        log.exception("job.failed", extra={"job": spec.name})
        return "failure", f"{type(exc).__name__}: {exc}"[:500]


_RECORD = """
INSERT INTO rts_job_runs AS r (name, interval_seconds, last_started_at, last_success_at, last_failure_at,
                               last_error, last_duration_ms, runs, failures, consecutive_failures)
VALUES (%(name)s, %(interval)s, now() - make_interval(secs => %(seconds)s),
        CASE WHEN %(ok)s THEN now() END, CASE WHEN %(ok)s THEN NULL ELSE now() END,
        %(error)s, %(ms)s, 1, CASE WHEN %(ok)s THEN 0 ELSE 1 END, CASE WHEN %(ok)s THEN 0 ELSE 1 END)
ON CONFLICT (name) DO UPDATE SET
    interval_seconds = excluded.interval_seconds,
    last_started_at = excluded.last_started_at,
    last_success_at = coalesce(excluded.last_success_at, r.last_success_at),
    last_failure_at = coalesce(excluded.last_failure_at, r.last_failure_at),
    last_error = CASE WHEN %(ok)s THEN r.last_error ELSE excluded.last_error END,
    last_duration_ms = excluded.last_duration_ms,
    runs = r.runs + 1,
    failures = r.failures + excluded.failures,
    consecutive_failures = CASE WHEN %(ok)s THEN 0 ELSE r.consecutive_failures + 1 END
"""


_REGISTER = """
INSERT INTO rts_job_runs (name, interval_seconds, registered_at)
SELECT * FROM unnest(%(names)s::text[], %(intervals)s::float8[]), now()
ON CONFLICT (name) DO UPDATE SET interval_seconds = excluded.interval_seconds, registered_at = now()
"""


async def _register(ctx: AppContext, jobs: Sequence[Job]) -> None:
    """Say that a scheduler runs these jobs from now on (doctor: not run yet is fine until the first
    tick is due); best effort, the jobs run either way."""
    try:
        async with ctx.pool.connection() as conn:
            await conn.execute(_REGISTER, {"names": [j.name for j in jobs],
                                           "intervals": [float(j.seconds(ctx)) for j in jobs]})
    except Exception as exc:
        log.warning("scheduler.register_failed", extra={"error": f"{type(exc).__name__}: {exc}"[:200]})


async def _record(conn: psycopg.AsyncConnection[object], ctx: AppContext, spec: Job, outcome: str,
                  error: str | None, seconds: float) -> None:
    """Count the run and keep its record; a skipped run (database unavailable) is only counted."""
    m = metrics.instruments()
    m.job_runs.labels(spec.name, outcome).inc()
    if outcome == "skipped":
        return
    m.job_duration.labels(spec.name).observe(seconds)
    if outcome == "success":
        m.job_last_success.labels(spec.name).set(time.time())
    try:
        await conn.execute(_RECORD, {"name": spec.name, "interval": spec.seconds(ctx), "seconds": seconds,
                                     "ok": outcome == "success", "error": error, "ms": round(seconds * 1000, 1)})
        if not conn.autocommit:
            await conn.commit()
    except psycopg.Error as exc:  # the record is for doctor; the job itself ran
        log.warning("job.record_failed", extra={"job": spec.name, "error": f"{type(exc).__name__}: {exc}"[:200]})
        if not conn.autocommit:
            await conn.rollback()


def _skipped(spec: Job, exc: BaseException) -> None:
    log.warning("job.skipped", extra={"job": spec.name, "reason": "database unavailable",
                                      "error": f"{type(exc).__name__}: {str(exc)[:200]}"})


def start(ctx: AppContext, jobs: Sequence[Job]) -> AsyncIOScheduler:
    sched = AsyncIOScheduler(timezone="UTC")
    m = metrics.instruments()
    for spec in jobs:
        for outcome in ("success", "failure", "skipped"):
            m.job_runs.labels(spec.name, outcome)  # every job's series from the start, at 0
        m.job_last_success.labels(spec.name)  # 0 until it succeeds: "never" (or not since the start)
        m.job_duration.labels(spec.name)
        sched.add_job(
            run_job, "interval", seconds=spec.seconds(ctx), args=(ctx, spec), id=spec.name,
            max_instances=1, coalesce=True, misfire_grace_time=30,
        )
    sched.start()
    task = asyncio.get_running_loop().create_task(_register(ctx, jobs), name="scheduler-register")
    _TASKS.add(task)
    task.add_done_callback(_TASKS.discard)
    log.info("scheduler.started", extra={"jobs": [s.name for s in jobs]})
    return sched
