"""Housekeeping of authentication: failed attempts older than the rate-limit window go; agent
tokens near their maximum age are marked for rotation (auth/rotation.py)."""

from __future__ import annotations

from rts_monitor.auth import rotation
from rts_monitor.auth.limits import Q
from rts_monitor.core.context import AppContext
from rts_monitor.core.scheduler import Job
from rts_monitor.db import connection


async def prune_failures(ctx: AppContext) -> None:
    async with connection(ctx.pool) as conn:
        await conn.execute(Q.prune_failures, {"window": ctx.settings.auth_failure_window_seconds})


PRUNE_FAILURES = Job("auth.prune_failures", prune_failures, seconds=lambda ctx: 300)


async def rotate_agent_tokens(ctx: AppContext) -> None:
    async with connection(ctx.pool) as conn:
        await rotation.mark_due(conn, settings=ctx.settings)


# Ages are counted in days: a check every ten minutes (or sooner for a test's tiny maximum age).
ROTATE_AGENT_TOKENS = Job("auth.rotate_agent_tokens", rotate_agent_tokens,
                          seconds=lambda ctx: max(1.0, min(600.0, ctx.settings.agent_token_max_age_days * 8640)))
