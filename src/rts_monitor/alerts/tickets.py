"""Auto-tickets: one service request per alert episode, exactly once.

The evaluator enqueues a ``ticket`` outbox row in the same transaction that opens the episode.
Here, one transaction locks that row, inserts the service request, links it to the episode and
marks the row done; a crash anywhere in between rolls all of it back and the row is simply
processed again (``RTS_ALERT_FAULT_INJECT`` drills exactly that). A ticket that keeps failing
(e.g. a portal constraint) is retried with backoff and never blocks alerting.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from rts_monitor.core.settings import Settings
from rts_monitor.db import Queries
from rts_monitor.notifications.outbox import backoff

log = logging.getLogger(__name__)
Q = Queries.beside(__file__)
MAX_PER_RUN = 500
_fault_fired = False


class InjectedFault(RuntimeError):
    """Raised by the ``ticket_once`` drill between the ticket insert and its commit."""


def _maybe_fault(settings: Settings) -> None:
    global _fault_fired
    if settings.alert_fault_inject == "ticket_exit":
        log.error("alerts.fault_injected", extra={"fault": "ticket_exit"})
        os._exit(70)  # a crash: no rollback handler, no cleanup, the server just dies
    if settings.alert_fault_inject == "ticket_once" and not _fault_fired:
        _fault_fired = True
        log.error("alerts.fault_injected", extra={"fault": "ticket_once"})
        raise InjectedFault("injected failure between service request insert and commit")


async def process(pool: AsyncConnectionPool, settings: Settings) -> int:
    """Create/annotate tickets for every due outbox row; returns how many were done."""
    done = 0
    for _ in range(MAX_PER_RUN):
        outcome = await _one(pool, settings)
        if outcome is None:
            break
        done += outcome
    return done


async def _one(pool: AsyncConnectionPool, settings: Settings) -> int | None:
    """One ticket row in one transaction. None when nothing is due; 0 when it failed (retry later)."""
    job: dict[str, Any] | None = None
    try:
        async with pool.connection() as conn, conn.transaction():
            job = await _fetchone(conn, Q.ticket_claim, {})
            if job is None:
                return None
            if job["event"] == "opened":
                sr = await _fetchone(conn, Q.ticket_create, {"id": job["alert_history_id"]})
                _maybe_fault(settings)
                if sr is not None:
                    await conn.execute(Q.ticket_link, {"id": job["alert_history_id"], "sr": sr["id"]})
                    log.info("alerts.ticket_created", extra={"alert_id": str(job["alert_history_id"]),
                                                             "service_request_id": str(sr["id"])})
            else:
                await conn.execute(Q.ticket_annotate, {"id": job["alert_history_id"]})
            await conn.execute(Q.outbox_done, {"id": job["id"]})
        return 1
    except Exception as exc:
        if job is None:
            raise
        log.warning("alerts.ticket_failed", extra={"outbox_id": job["id"], "error": f"{type(exc).__name__}: {exc}"})
        async with pool.connection() as conn, conn.transaction():
            await conn.execute(Q.outbox_retry, {"id": job["id"], "max_attempts": settings.notify_max_attempts,
                                                "backoff": backoff(settings, job["attempts"] + 1),
                                                "error": f"{type(exc).__name__}: {exc}"})
        return 0


async def _fetchone(conn: AsyncConnection[Any], query: str, params: dict[str, Any]) -> dict[str, Any] | None:
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(query, params)
    return await cur.fetchone()
