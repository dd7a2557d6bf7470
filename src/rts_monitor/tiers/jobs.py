"""Scheduled maintenance of the tiers where the project does it (apache and postgres editions; the
timescale license has policies), and the partitions of the postgres edition."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from psycopg import AsyncConnection

from rts_monitor.core.context import AppContext
from rts_monitor.core.scheduler import Job
from rts_monitor.db import connection
from rts_monitor.tiers import maintenance, service

log = logging.getLogger(__name__)
MAX_SPAN_PER_RUN = timedelta(days=1)


async def _run(ctx: AppContext, name: str, seconds: int, work: object) -> None:
    if ctx.edition == "tsl":
        return
    async with connection(ctx.pool) as conn:
        await conn.set_autocommit(True)  # each step commits its own transaction
        assert isinstance(conn, AsyncConnection)
        await service.run_tracked(conn, name=name, interval_seconds=seconds, work=work)


async def refresh_job(ctx: AppContext) -> None:
    """Advance the watermarks and re-aggregate buckets touched by late rows (apache, postgres); on
    the timescale license only drain the ingest ranges (the refresh policies do the rest)."""
    if ctx.edition == "tsl":
        async with connection(ctx.pool) as conn:
            await conn.execute(service.Q.discard_ranges)
        return

    async def bounded(conn: AsyncConnection[Any]) -> maintenance.RefreshResult:
        # At most a day of new data per pass: catching up on weeks never holds one long transaction.
        return await maintenance.refresh(conn, edition=ctx.edition, max_span=MAX_SPAN_PER_RUN)

    await _run(ctx, "tiers.refresh", ctx.settings.tiers_refresh_seconds, bounded)


async def retention_job(ctx: AppContext) -> None:
    """Drop chunks or partitions past each level's retention, never past what the tier above has
    materialised."""

    async def drop(conn: AsyncConnection[Any]) -> dict[str, int]:
        return await maintenance.apply_retention(conn, edition=ctx.edition)

    await _run(ctx, "tiers.retention", ctx.settings.tiers_retention_seconds, drop)


async def partitions_job(ctx: AppContext) -> None:
    """Postgres edition: make every level's partitions for the coming days, and a partition for
    each row waiting in a DEFAULT partition (a late spool, a backfill), moving it there."""
    if ctx.edition != "postgres":
        return

    async def make(conn: AsyncConnection[Any]) -> dict[str, int]:
        ahead = timedelta(days=ctx.settings.partitions_ahead_days)
        row = await (await conn.execute(maintenance.Q.partitions_maintain, {"ahead": ahead})).fetchone()
        return {"partitions": int(row["made"]) if row else 0}

    await _run(ctx, "tiers.partitions", ctx.settings.partitions_job_seconds, make)


REFRESH = Job("tiers.refresh", refresh_job, seconds=lambda ctx: ctx.settings.tiers_refresh_seconds)
RETENTION = Job("tiers.retention", retention_job, seconds=lambda ctx: ctx.settings.tiers_retention_seconds)
PARTITIONS = Job("tiers.partitions", partitions_job, seconds=lambda ctx: ctx.settings.partitions_job_seconds)
