"""Scheduled maintenance of the tiers on the Apache edition (the timescale license has policies)."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from psycopg import AsyncConnection

from rts_monitor.core.context import AppContext
from rts_monitor.core.scheduler import Job
from rts_monitor.tiers import maintenance, service

log = logging.getLogger(__name__)
MAX_SPAN_PER_RUN = timedelta(days=1)


async def _run(ctx: AppContext, name: str, seconds: int, work: object) -> None:
    if ctx.edition != "apache":
        return
    async with ctx.pool.connection() as conn:
        await conn.set_autocommit(True)  # each step commits its own transaction
        assert isinstance(conn, AsyncConnection)
        await service.run_tracked(conn, name=name, interval_seconds=seconds, work=work)


async def refresh_job(ctx: AppContext) -> None:
    """Advance the watermarks and re-aggregate buckets touched by late rows (apache); on the
    timescale license only drain the ingest ranges (the refresh policies do the rest)."""
    if ctx.edition == "tsl":
        async with ctx.pool.connection() as conn:
            await conn.execute(service.Q.discard_ranges)
        return
    await _run(ctx, "tiers.refresh", ctx.settings.tiers_refresh_seconds, _bounded_refresh)


async def _bounded_refresh(conn: AsyncConnection[Any]) -> maintenance.RefreshResult:
    """At most a day of new data per pass: catching up on weeks never holds one long transaction."""
    return await maintenance.refresh(conn, max_span=MAX_SPAN_PER_RUN)


async def retention_job(ctx: AppContext) -> None:
    """Drop chunks past each level's retention, never past what the tier above has materialised."""
    await _run(ctx, "tiers.retention", ctx.settings.tiers_retention_seconds, maintenance.apply_retention)


REFRESH = Job("tiers.refresh", refresh_job, seconds=lambda ctx: ctx.settings.tiers_refresh_seconds)
RETENTION = Job("tiers.retention", retention_job, seconds=lambda ctx: ctx.settings.tiers_retention_seconds)
