"""``alert_outbox``: the work that alert episodes leave behind (tickets, webhooks, e-mail), and the
one set of rules for working it off.

The evaluator enqueues rows in the transaction that opens or resolves an episode
(``alerts/queries.sql``). Workers ``claim`` due rows; an attempt is counted when a row is claimed.
Success marks it ``done``; a failure goes through ``retry``, which records the claimed attempt
count, schedules the next attempt with exponential backoff and marks the row ``failed`` once
``RTS_NOTIFY_MAX_ATTEMPTS`` attempts were made. Two ways to hold a claimed row:

* inside the caller's transaction (tickets, ``alerts/tickets.py``): the claim's row lock lasts
  until commit, so a crash releases it at once and the attempt count rolls back with the work;
  ``retry`` then counts the attempt again in its own transaction;
* committed with a ``lease`` (notifications, ``delivery.py``): delivery happens outside any
  transaction, so the row is not due again until the lease expires — a worker that dies
  mid-delivery leaves it to be retried, never lost.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import msgspec

from rts_monitor.core.settings import Settings
from rts_monitor.db import Conn, Queries
from rts_monitor.db.rows import fetch_all

Q = Queries.beside(__file__)
MAX_BACKOFF_SECONDS = 3600.0
NO_LEASE = timedelta(0)


class OutboxJob(msgspec.Struct, frozen=True):
    id: int
    alert_history_id: Any
    channel: str
    event: str
    attempts: int  # including this one


def backoff(settings: Settings, attempts: int) -> timedelta:
    """30 s, 60 s, 120 s, … (base doubles per attempt), capped at an hour."""
    return timedelta(seconds=min(MAX_BACKOFF_SECONDS, settings.notify_backoff_seconds * 2 ** max(0, attempts - 1)))


async def claim(conn: Conn, *, channels: list[str], limit: int, lease: timedelta = NO_LEASE) -> list[OutboxJob]:
    """Due rows of ``channels``, oldest first, locked (others skip them) and counted as an attempt."""
    rows = await fetch_all(conn, Q.claim, {"channels": channels, "limit": limit, "lease": lease})
    return msgspec.convert(rows, list[OutboxJob])


async def done(conn: Conn, *, job: OutboxJob) -> None:
    await conn.execute(Q.done, {"id": job.id})


async def retry(conn: Conn, *, settings: Settings, job: OutboxJob, error: str, final: bool = False) -> None:
    """The claimed attempt failed: try again after the backoff, or give up at the attempt limit
    (at once when ``final``: the same request can never succeed, e.g. a refused destination)."""
    await conn.execute(Q.retry, {"id": job.id, "attempts": job.attempts,
                                 "max_attempts": job.attempts if final else settings.notify_max_attempts,
                                 "backoff": backoff(settings, job.attempts), "error": error[:2000]})


async def prune(conn: Conn) -> None:
    """Finished rows (and, by cascade, their delivery log) are kept 30 days."""
    await conn.execute(Q.prune)
