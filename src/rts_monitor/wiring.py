"""One wiring: the list of concerns, and the runtime every process builds from it.

The app factory (``api/app.py``), ``rts-monitor scheduler`` and the CLI read ``CONCERNS`` and
nothing else: each concern says in its own ``concern.py`` which routes, long-lived components,
scheduled jobs, CLI subcommands and after-ingest hooks it brings.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from rts_monitor.alerts.concern import CONCERN as ALERTS
from rts_monitor.audit.concern import CONCERN as AUDIT
from rts_monitor.auth.concern import CONCERN as AUTH
from rts_monitor.commands.concern import CONCERN as COMMANDS
from rts_monitor.console.concern import CONCERN as CONSOLE
from rts_monitor.core import scheduler
from rts_monitor.core.concern import Concern, SubParsers
from rts_monitor.core.context import AppContext
from rts_monitor.core.edition import DESCRIBE_SQL, DatabaseInfo
from rts_monitor.core.scheduler import Job
from rts_monitor.core.settings import Settings
from rts_monitor.db import availability, open_pool
from rts_monitor.db.reads import open_replica, replica_of
from rts_monitor.devices.concern import CONCERN as DEVICES
from rts_monitor.enrolment.concern import CONCERN as ENROLMENT
from rts_monitor.events.concern import CONCERN as EVENTS
from rts_monitor.history.concern import CONCERN as HISTORY
from rts_monitor.ingest.concern import CONCERN as INGEST
from rts_monitor.installers.concern import CONCERN as INSTALLERS
from rts_monitor.inventory.concern import CONCERN as INVENTORY
from rts_monitor.observability.concern import CONCERN as OBSERVABILITY
from rts_monitor.reports.concern import CONCERN as REPORTS
from rts_monitor.rollouts.concern import CONCERN as ROLLOUTS
from rts_monitor.services.concern import CONCERN as SERVICES
from rts_monitor.tiers.concern import CONCERN as TIERS

log = logging.getLogger(__name__)

# Components are entered in this order and closed in reverse.
CONCERNS: tuple[Concern, ...] = (
    AUTH, ENROLMENT, DEVICES, INGEST, INVENTORY, INSTALLERS, COMMANDS, EVENTS, HISTORY, TIERS, ALERTS, AUDIT, REPORTS,
    ROLLOUTS, SERVICES, CONSOLE, OBSERVABILITY,
)


def routes() -> list[Any]:
    return [handler for concern in CONCERNS for handler in concern.routes]


def jobs() -> list[Job]:
    return [job for concern in CONCERNS for job in concern.jobs]


def register_cli(subparsers: SubParsers) -> None:
    for concern in CONCERNS:
        if concern.cli is not None:
            concern.cli(subparsers)


async def open_context(settings: Settings, *, replica: bool = True) -> AppContext:
    """Open the pool and describe the database: what the API and the scheduler both start from.
    ``replica``: also the standby's pool (RTS_DATABASE_READ_URL) for the reads it may serve."""
    settings.require_runnable()
    if not settings.production:
        log.warning("runtime.not_production", extra={
            "env": settings.env, "note": "secrets not set are generated in the state dir; webhooks may use http "
                                         "and private addresses (RTS_ENV=production for a real deployment)"})
    pool = await open_pool(settings)
    try:
        async with pool.connection() as conn:
            row = await (await conn.execute(DESCRIBE_SQL)).fetchone()
    except BaseException:
        await pool.close()
        raise
    assert row is not None
    try:
        # never waits for the standby (db/reads.py)
        standby = await open_replica(settings, pool) if replica else None
    except BaseException:
        await pool.close()
        raise
    return AppContext(settings=settings, pool=pool, database=DatabaseInfo.from_row(row),  # type: ignore[arg-type]
                      after_ingest=tuple(hook for c in CONCERNS for hook in c.after_ingest), replica=standby)


@contextlib.asynccontextmanager
async def runtime(settings: Settings, *, components: bool = True, run_jobs: bool | None = None
                  ) -> AsyncIterator[AppContext]:
    """The context with every concern's components entered and, if ``run_jobs`` (default: the
    ``RTS_SCHEDULER_ENABLED`` setting), the scheduled jobs running; all closed on exit."""
    # Only the API's requests read from the standby; the scheduler's jobs (components=False) need none.
    ctx = await open_context(settings, replica=components)
    try:
        async with contextlib.AsyncExitStack() as stack:
            if components:
                for concern in CONCERNS:
                    for component in concern.components:
                        await stack.enter_async_context(component(ctx))
            run = settings.scheduler_enabled if run_jobs is None else run_jobs
            sched = scheduler.start(ctx, jobs()) if run else None
            try:
                yield ctx
            finally:
                if sched is not None:
                    sched.shutdown(wait=False)
    finally:
        known = availability(ctx.pool)
        if known is not None:
            await known.close()
        replica = replica_of(ctx)
        if replica is not None:
            await replica.close()
        await ctx.pool.close()
