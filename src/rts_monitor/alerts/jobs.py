"""Scheduled alerting work: the evaluation cycle, tickets, notifications; and the after-ingest check.

``alerts.evaluate`` is a singleton job (the scheduler's advisory lock): with several API
processes exactly one evaluates at a time. Its cycles are incremental (only what changed since it
was last judged; an hourly full cycle as a backstop); the after-ingest check judges each flush's
devices as their samples commit, so in steady operation the cycle finds little left to do.
Tickets and notifications are separate jobs, so a slow webhook never holds up evaluation or ticket
creation. After a cycle (or an ingest flush) that enqueued work, the outbox jobs are nudged at
once instead of waiting for their next tick.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any
from uuid import UUID

from rts_monitor.alerts import evaluator, tickets
from rts_monitor.core import scheduler
from rts_monitor.core.context import AppContext, CommittedRanges
from rts_monitor.core.scheduler import Job
from rts_monitor.db import connection
from rts_monitor.notifications import delivery

log = logging.getLogger(__name__)
_background: set[asyncio.Task[bool]] = set()


async def evaluate(ctx: AppContext) -> None:
    async with connection(ctx.pool) as conn:
        scope = await evaluator.periodic_scope(conn)
        result = await evaluator.run_cycle(conn, ctx.settings, scope=scope)
        await evaluator.prune(conn)
    if result.outbox:
        nudge_outbox(ctx)


async def create_tickets(ctx: AppContext) -> None:
    await tickets.process(ctx.pool, ctx.settings)


async def notify(ctx: AppContext) -> None:
    await delivery.drain(ctx.pool, ctx.settings)


def nudge_outbox(ctx: AppContext) -> None:
    """Run the outbox jobs now in the background (each still under its own lock)."""
    if not ctx.settings.scheduler_enabled:
        return
    for job in (TICKETS, NOTIFY):
        task = asyncio.get_running_loop().create_task(scheduler.run_job(ctx, job))
        _background.add(task)
        task.add_done_callback(_background.discard)


class _MetricRuleScopes:
    """Which devices could match a metric rule, refreshed every ``TTL`` seconds per process.

    Most flushes come from devices without a metric rule of their own and from businesses
    without business-wide rules; for those the hook answers without a database round trip, so
    ingestion pays for alerting only where rules exist. A rule created in the last ``TTL``
    seconds is picked up by the periodic cycle in the meantime.
    """

    TTL = 2.0

    def __init__(self) -> None:
        self.expires = 0.0
        self.business_wide = False
        self.devices: frozenset[UUID] = frozenset()

    async def relevant(self, ctx: AppContext, devices: list[UUID]) -> list[UUID]:
        if time.monotonic() >= self.expires:
            async with connection(ctx.pool) as conn:
                cur = await conn.execute(evaluator.Q.metric_rule_scopes)
                row: Any = await cur.fetchone()
            self.business_wide = bool(row and row["business_wide"])
            self.devices = frozenset(row["devices"] if row else ())
            self.expires = time.monotonic() + self.TTL
        if self.business_wide:
            return devices
        return [d for d in devices if d in self.devices]


_scopes = _MetricRuleScopes()


async def on_ingest(ctx: AppContext, ranges: CommittedRanges) -> dict[UUID, list[str]]:
    """Ingest hook: evaluate the metric rules of just the flushed devices (one statement)."""
    devices = await _scopes.relevant(ctx, list(ranges)) if ranges else []
    if not devices:
        return {}
    async with connection(ctx.pool) as conn:
        result = await evaluator.evaluate(conn, ctx.settings, devices=devices, kinds=("metric",))
    if result.outbox:
        nudge_outbox(ctx)
    if result.opened:
        log.info("alerts.opened_on_ingest", extra={"opened": len(result.opened), "devices": len(ranges)})
    return result.opened_by_device()


EVALUATE = Job("alerts.evaluate", evaluate, seconds=lambda ctx: ctx.settings.alert_evaluate_seconds)
TICKETS = Job("alerts.tickets", create_tickets, seconds=lambda ctx: ctx.settings.alert_outbox_seconds)
NOTIFY = Job("alerts.notify", notify, seconds=lambda ctx: ctx.settings.alert_outbox_seconds)
