"""Auto-tickets: one service request per alert episode, exactly once.

The evaluator enqueues a ``ticket`` outbox row in the same transaction that opens the episode.
Here, one transaction claims that row, inserts the service request, links it to the episode and
marks the row done; a crash anywhere in between rolls all of it back and the row is simply
processed again (``RTS_ALERT_FAULT_INJECT`` drills exactly that). A ticket that keeps failing
(e.g. a portal constraint) is retried with the outbox's backoff (``notifications/outbox.py``) and
never blocks alerting.
"""

from __future__ import annotations

import logging
import os

from psycopg_pool import AsyncConnectionPool

from rts_monitor.core.settings import Settings
from rts_monitor.db import Queries, connection
from rts_monitor.db.rows import fetch_one
from rts_monitor.notifications import outbox

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
    """One ticket row in one transaction (its claim included: a crash rolls all of it back and
    releases the row at once). None when nothing is due; 0 when it failed (retried later)."""
    job: outbox.OutboxJob | None = None
    try:
        async with connection(pool) as conn:
            claimed = await outbox.claim(conn, channels=["ticket"], limit=1)
            if not claimed:
                return None
            job = claimed[0]
            if job.event == "opened":
                sr = await fetch_one(conn, Q.ticket_create, {"id": job.alert_history_id})
                _maybe_fault(settings)
                if sr is not None:
                    await conn.execute(Q.ticket_link, {"id": job.alert_history_id, "sr": sr["id"]})
                    log.info("alerts.ticket_created", extra={"alert_id": str(job.alert_history_id),
                                                             "service_request_id": str(sr["id"])})
            else:
                await conn.execute(Q.ticket_annotate, {"id": job.alert_history_id})
            await outbox.done(conn, job=job)
        return 1
    except Exception as exc:
        if job is None:
            raise
        error = f"{type(exc).__name__}: {exc}"
        log.warning("alerts.ticket_failed", extra={"outbox_id": job.id, "error": error})
        async with connection(pool) as conn:
            await outbox.retry(conn, settings=settings, job=job, error=error)
        return 0
