"""Housekeeping: ended sessions and old sign-in attempts are deleted a day after they stop
mattering (the attempts only count within the sign-in window)."""

from __future__ import annotations

import logging

from rts_monitor.core.context import AppContext
from rts_monitor.core.scheduler import Job
from rts_monitor.db import Queries, connection
from rts_monitor.db.rows import fetch_one

log = logging.getLogger(__name__)
Q = Queries.beside(__file__)


async def cleanup(ctx: AppContext) -> None:
    async with connection(ctx.pool) as conn:
        row = await fetch_one(conn, Q.cleanup, {
            "idle_seconds": ctx.settings.console_session_idle_minutes * 60,
            "window_seconds": ctx.settings.console_sign_in_window_minutes * 60,
        })
    if row and (row["sessions"] or row["attempts"]):
        log.info("console.cleanup", extra={"sessions": row["sessions"], "attempts": row["attempts"]})


CLEANUP = Job("console.cleanup", cleanup, seconds=lambda ctx: 3600.0)
