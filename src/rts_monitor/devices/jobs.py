"""Presence: agents whose heartbeats stopped are marked offline, with a recorded transition."""

from __future__ import annotations

import logging

from rts_monitor.core.context import AppContext
from rts_monitor.core.scheduler import Job
from rts_monitor.db import connection
from rts_monitor.devices import service

log = logging.getLogger(__name__)


def offline_threshold_seconds(ctx: AppContext) -> float:
    """Missed intervals x interval: one late heartbeat must not flap an agent offline."""
    return float(ctx.settings.offline_after_intervals * ctx.settings.heartbeat_interval_seconds)


async def presence(ctx: AppContext) -> None:
    async with connection(ctx.pool) as conn:
        marked = await service.mark_offline(conn, threshold_seconds=offline_threshold_seconds(ctx))
    if marked:
        log.info("devices.marked_offline", extra={"count": len(marked), "agents": [str(a) for a in marked[:50]]})


PRESENCE = Job("devices.presence", presence, seconds=lambda ctx: ctx.settings.presence_job_seconds)
