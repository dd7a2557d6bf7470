"""Start-up and shutdown: pool, edition, each concern's long-lived services, scheduler."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager

from litestar import Litestar

from rts_monitor import runtime, scheduler
from rts_monitor.alerts import jobs as alerts_jobs
from rts_monitor.api.context import AppContext
from rts_monitor.commands import hub as commands_hub
from rts_monitor.config import Settings
from rts_monitor.db import open_pool
from rts_monitor.ingest import pipeline as ingest_pipeline

log = logging.getLogger(__name__)

# Long-lived services of each concern: called with the context after the pool opens, closed in
# reverse order at shutdown (so e.g. the ingest pipeline drains before the pool closes).
Component = Callable[[AppContext], AbstractAsyncContextManager[None]]
COMPONENTS: list[Component] = [
    alerts_jobs.component,  # first in, last out: the ingest hook outlives the pipeline drain
    ingest_pipeline.component,
    commands_hub.component,
]


async def _describe_database(ctx_pool: object) -> tuple[str, str, str]:
    from psycopg_pool import AsyncConnectionPool

    assert isinstance(ctx_pool, AsyncConnectionPool)
    async with ctx_pool.connection() as conn:
        cur = await conn.execute(
            "SELECT current_setting('server_version') AS pg, "
            "(SELECT extversion FROM pg_extension WHERE extname = 'timescaledb') AS ts, "
            "current_setting('timescaledb.license', true) AS license"
        )
        row = await cur.fetchone()
    assert row is not None
    return row["pg"], row["ts"] or "absent", row["license"] or "apache"


async def build_context(settings: Settings) -> AppContext:
    """Open the pool and describe the database: what both the API and the scheduler need."""
    pool = await open_pool(settings)
    try:
        pg, ts, license_name = await _describe_database(pool)
    except BaseException:
        await pool.close()
        raise
    return AppContext(
        settings=settings, pool=pool, edition="tsl" if license_name == "timescale" else "apache",
        timescaledb_version=ts, postgres_version=pg,
    )


def make_lifespan(settings: Settings) -> Callable[[Litestar], AbstractAsyncContextManager[None]]:
    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        ctx = await build_context(settings)
        try:
            app.state.ctx = ctx
            async with contextlib.AsyncExitStack() as stack:
                for component in COMPONENTS:
                    await stack.enter_async_context(component(ctx))
                sched = scheduler.start(ctx) if settings.scheduler_enabled else None
                runtime.freeze_startup_heap()
                log.info("api.started", extra={"edition": ctx.edition, "timescaledb": ctx.timescaledb_version,
                                               "postgres": ctx.postgres_version})
                try:
                    yield
                finally:
                    if sched is not None:
                        sched.shutdown(wait=False)
        finally:
            await ctx.pool.close()
            log.info("api.stopped")

    return lifespan
