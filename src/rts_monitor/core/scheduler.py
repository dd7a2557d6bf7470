"""Scheduled jobs: each concern declares plain async functions; one instance runs each at a time.

Every API process runs an APScheduler ``AsyncIOScheduler``. A job marked ``singleton`` (the
default) first takes a PostgreSQL session advisory lock named after it on a pooled connection;
an instance that does not get it skips that run, so with N processes a job still runs once per
tick. Jobs take the ``AppContext`` and return nothing; failures are logged, never raised.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import psycopg
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from rts_monitor.core.context import AppContext
from rts_monitor.core.errors import Unavailable

log = logging.getLogger(__name__)

JobFunc = Callable[[AppContext], Awaitable[None]]


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
            await _call(ctx, spec, started)
            return True
        async with ctx.pool.connection() as conn:
            await conn.set_autocommit(True)
            row = await (await conn.execute("SELECT pg_try_advisory_lock(%s) AS got",
                                            (lock_key(spec.name),))).fetchone()
            if not row or not row["got"]:  # type: ignore[call-overload]
                log.debug("job.skipped", extra={"job": spec.name, "reason": "held elsewhere"})
                return False
            try:
                await _call(ctx, spec, started)
            finally:
                await conn.execute("SELECT pg_advisory_unlock(%s)", (lock_key(spec.name),))
                await conn.set_autocommit(False)
    except (psycopg.OperationalError, psycopg.InterfaceError, Unavailable) as exc:
        _skipped(spec, exc)
        return False
    return True


async def _call(ctx: AppContext, spec: Job, started: float) -> None:
    try:
        await spec.func(ctx)
        log.debug("job.done", extra={"job": spec.name, "ms": round((time.monotonic() - started) * 1000, 1)})
    except (psycopg.OperationalError, psycopg.InterfaceError, Unavailable) as exc:
        _skipped(spec, exc)
    except Exception:
        log.exception("job.failed", extra={"job": spec.name})


def _skipped(spec: Job, exc: BaseException) -> None:
    log.warning("job.skipped", extra={"job": spec.name, "reason": "database unavailable",
                                      "error": f"{type(exc).__name__}: {str(exc)[:200]}"})


def start(ctx: AppContext, jobs: Sequence[Job]) -> AsyncIOScheduler:
    sched = AsyncIOScheduler(timezone="UTC")
    for spec in jobs:
        sched.add_job(
            run_job, "interval", seconds=spec.seconds(ctx), args=(ctx, spec), id=spec.name,
            max_instances=1, coalesce=True, misfire_grace_time=30,
        )
    sched.start()
    log.info("scheduler.started", extra={"jobs": [s.name for s in jobs]})
    return sched
