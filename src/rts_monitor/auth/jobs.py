"""Housekeeping of authentication: failed attempts older than the rate-limit window go."""

from __future__ import annotations

from rts_monitor.auth.limits import Q
from rts_monitor.core.context import AppContext
from rts_monitor.core.scheduler import Job
from rts_monitor.db import connection


async def prune_failures(ctx: AppContext) -> None:
    async with connection(ctx.pool) as conn:
        await conn.execute(Q.prune_failures, {"window": ctx.settings.auth_failure_window_seconds})


PRUNE_FAILURES = Job("auth.prune_failures", prune_failures, seconds=lambda ctx: 300)
