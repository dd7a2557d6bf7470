"""Scheduled work of the commands concern: commands past their deadline become 'timeout'."""

from __future__ import annotations

from rts_monitor.commands import service
from rts_monitor.core.context import AppContext
from rts_monitor.core.scheduler import Job
from rts_monitor.db import connection


async def mark_timeouts(ctx: AppContext) -> None:
    """A singleton across instances (advisory lock); a late result never reopens what it closes."""
    async with connection(ctx.pool) as conn:
        await conn.set_autocommit(True)  # each batch commits on its own (service.expire_overdue)
        try:
            await service.expire_overdue(conn)
        finally:
            await conn.set_autocommit(False)


TIMEOUTS = Job("commands.timeouts", mark_timeouts, seconds=lambda ctx: ctx.settings.command_timeout_job_seconds)
