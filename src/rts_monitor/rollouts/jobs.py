"""The rollouts' scheduled work: advance every open rollout (a singleton across processes)."""

from __future__ import annotations

from rts_monitor.core.context import AppContext
from rts_monitor.core.scheduler import Job
from rts_monitor.db import connection
from rts_monitor.rollouts import service


async def advance(ctx: AppContext) -> None:
    async with connection(ctx.pool) as conn:
        await service.advance_all(conn, settings=ctx.settings)


ADVANCE = Job("rollouts.advance", advance, seconds=lambda ctx: ctx.settings.rollout_job_seconds)
