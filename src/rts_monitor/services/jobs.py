"""The remediation job: restarts for services samples reported down, and retries."""

from __future__ import annotations

from rts_monitor.core.context import AppContext
from rts_monitor.core.scheduler import Job
from rts_monitor.db import connection
from rts_monitor.services import remediation


async def remediate(ctx: AppContext) -> None:
    async with connection(ctx.pool) as conn:
        await remediation.remediate(conn, settings=ctx.settings, trigger="check")


REMEDIATE = Job("services.remediate", remediate, seconds=lambda ctx: ctx.settings.remediation_check_seconds)
