"""Gauges sampled every ``RTS_METRICS_SAMPLE_SECONDS`` in each process, not on hot paths: the pools
(the primary's and the standby's), the ingest queue, open sockets and streams, whether the
database answers; and, read from the database, the outbox backlog and the tiers' refresh lag (the
same answer in every worker: the most recent one is exposed).

The pool's error counts come from ``pop_stats`` (counts since the previous call), so each sample
adds what happened since the last one."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import AsyncIterator

from rts_monitor.commands import hub
from rts_monitor.console import live
from rts_monitor.core import metrics
from rts_monitor.core.context import AppContext
from rts_monitor.db import Queries, availability, connection
from rts_monitor.ingest.pipeline import IngestPipeline
from rts_monitor.tiers import service as tiers
from rts_monitor.tiers.definitions import TIERS

log = logging.getLogger(__name__)
Q = Queries.beside(__file__)
CHANNELS = ("ticket", "webhook", "email", "sms")


def sample_process(ctx: AppContext) -> bool:
    """This process's own state: no I/O. True when the pool has an idle connection to spare."""
    m = metrics.instruments()
    stats = ctx.pool.pop_stats()
    size = stats.get("pool_size", 0)
    m.pool_size.set(size)
    m.pool_in_use.set(max(0, size - stats.get("pool_available", 0)))
    m.pool_max.set(ctx.pool.max_size)
    m.pool_waiting.set(stats.get("requests_waiting", 0))
    m.db_connection_errors.inc(stats.get("connections_errors", 0))
    m.db_pool_timeouts.inc(stats.get("requests_errors", 0))
    replica = getattr(ctx.replica, "pool", None)  # db.reads.Replica; None without RTS_DATABASE_READ_URL
    if replica is not None:
        standby = replica.pop_stats()
        m.replica_pool_size.set(standby.get("pool_size", 0))
        m.replica_pool_in_use.set(max(0, standby.get("pool_size", 0) - standby.get("pool_available", 0)))
        m.replica_pool_waiting.set(standby.get("requests_waiting", 0))
        m.replica_connection_errors.inc(standby.get("connections_errors", 0))
    known = availability(ctx.pool)
    db_up = known is None or known.up
    m.db_up.set(1 if db_up else 0)
    # /health/ready sets it after each full check; between probes: the part known without I/O
    m.ready.set(1 if db_up and not ctx.shutting_down else 0)
    pipeline = ctx.services.get("ingest")
    m.ingest_queue_rows.set(pipeline.pending_rows if isinstance(pipeline, IngestPipeline) else 0)
    commands = ctx.services.get(hub.SERVICE_NAME)
    m.ws_connected.labels("agent").set(commands.connected if isinstance(commands, hub.CommandHub) else 0)
    streams = ctx.services.get(live.SERVICE_NAME)
    m.ws_connected.labels("console_sse").set(len(streams.subscribers) if isinstance(streams, live.LiveHub) else 0)
    return stats.get("pool_available", 0) > 0 and db_up


async def sample_database(ctx: AppContext) -> None:
    """Facts every process reads alike: the outbox backlog by channel, the tiers' lag."""
    m = metrics.instruments()
    async with connection(ctx.pool) as conn:
        rows = await (await conn.execute(Q.outbox_backlog)).fetchall()
        lags = await tiers.refresh_lags(conn, edition=ctx.edition)
    pending = {r["channel"]: int(r["pending"]) for r in rows}
    for channel in CHANNELS:
        m.outbox_backlog.labels(channel).set(pending.get(channel, 0))
    m.outbox_oldest.set(max((float(r["oldest_seconds"] or 0) for r in rows), default=0.0))
    for tier in TIERS:  # NaN: nothing materialised yet (no watermark)
        m.tier_lag.labels(tier.label).set(lags.get(tier.name, math.nan))


async def sample(ctx: AppContext) -> None:
    if not sample_process(ctx):
        # the database facts wait for a calmer moment: sampling never takes a connection a
        # request is waiting for, nor opens one (or queues) while the pool is busy or the database down
        return
    try:
        await sample_database(ctx)
    except Exception as exc:  # the database being down is what rts_db_up says; keep sampling
        log.debug("metrics.sample_failed", extra={"error": f"{type(exc).__name__}: {exc}"[:200]})


@contextlib.asynccontextmanager
async def component(ctx: AppContext) -> AsyncIterator[None]:
    interval = max(0.1, ctx.settings.metrics_sample_seconds)

    async def loop() -> None:
        while True:
            await sample(ctx)
            await asyncio.sleep(interval)

    task = asyncio.create_task(loop(), name="metrics-sampler")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
