"""Presence: agents whose heartbeats stopped are marked offline, with a recorded transition."""

from __future__ import annotations

import logging

from rts_monitor import scheduler
from rts_monitor.api.context import AppContext
from rts_monitor.devices import service

log = logging.getLogger(__name__)


def offline_threshold_seconds(ctx: AppContext) -> float:
    """Missed intervals x interval: one late heartbeat must not flap an agent offline."""
    return float(ctx.settings.offline_after_intervals * ctx.settings.heartbeat_interval_seconds)


@scheduler.job("devices.presence", seconds=lambda ctx: ctx.settings.presence_job_seconds)
async def presence(ctx: AppContext) -> None:
    async with ctx.pool.connection() as conn:
        marked = await service.mark_offline(conn, threshold_seconds=offline_threshold_seconds(ctx))
    if marked:
        log.info("devices.marked_offline", extra={"count": len(marked), "agents": [str(a) for a in marked[:50]]})
