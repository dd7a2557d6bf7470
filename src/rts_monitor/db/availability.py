"""Fail fast while the database is gone; come back as soon as it accepts connections again.

psycopg_pool on its own waits for a connection up to its timeout (30 s) whatever the server's
state, and after an outage refills slot by slot with exponential backoff (1, 2, 4 … s), so during
an outage requests hung for as long as it lasted and service returned 4-40 s after the server
did (psycopg_pool's ``AttemptWithBackoff``; docs/CONVENTIONS.md "Database outages"). Here:

* ``db.connection`` asks the pool for a connection for at most ``RTS_DB_ACQUIRE_TIMEOUT_SECONDS``
  (1 s): a busy or unreachable database is a 503 then, not a 30 s wait;
* a connection-level failure (no connection in time, one broken mid-request, the server refusing
  or shutting down) makes ``suspect`` start a probe: a fresh connection outside the pool, every
  ``RTS_DB_PROBE_INTERVAL_SECONDS`` (0.25 s). While the probe fails the database is *down*:
  ``check`` answers every request that needs it with a 503 at once, and ingestion refuses
  batches before queueing them, instead of stacking waits and retries on a dead server;
* the first probe that connects has the pool test its idle connections, drop the broken ones and
  open new ones at once (``AsyncConnectionPool.check``), and only then marks the database *up*;
* the pool itself gives up a failed reconnection after ``RECONNECT_TIMEOUT`` instead of
  backing off for minutes, so when the probe sees the server back, the pool's slots are free for
  an immediate attempt rather than waiting out a backoff.

Scheduled jobs meet the same 503 (``Unavailable``) and skip their turn; the next tick runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from rts_monitor.core.errors import Unavailable

log = logging.getLogger(__name__)

# The pool's own reconnection attempts for a slot stop after this long (psycopg_pool default: 5
# minutes of exponential backoff); the probe takes over.
RECONNECT_TIMEOUT = 1.0
# What a connection attempt (pool or probe) waits for a server that does not answer at all.
CONNECT_TIMEOUT = 2


def connection_lost(exc: BaseException) -> bool:
    """Whether ``exc`` says the server (or the way to it) failed, rather than one statement: no
    connection in time (PoolTimeout), a connection that broke, the server shutting down or
    starting up (SQLSTATE class 08 and 57P01-57P03)."""
    if not isinstance(exc, psycopg.OperationalError):
        return isinstance(exc, psycopg.InterfaceError)
    state = exc.sqlstate
    return state is None or state.startswith("08") or state in ("57P01", "57P02", "57P03")


class Availability:
    """Whether the database of one pool answers; see the module docstring."""

    def __init__(self, pool: AsyncConnectionPool, *, probe_interval: float = 0.25) -> None:
        self.pool = pool
        self.probe_interval = probe_interval
        self.up = True
        self.down_since: float | None = None  # monotonic
        self.down_at: float | None = None  # wall clock, for /health
        self.last_error: str | None = None
        self.outages = 0
        self._probe: asyncio.Task[None] | None = None

    def check(self) -> None:
        """Raise Unavailable at once while the database is known to be down."""
        if not self.up:
            raise Unavailable(f"the database is unreachable ({self.last_error}); retry shortly",
                              retry_after=1, extra={"dependency": "database"})

    def suspect(self, exc: BaseException) -> None:
        """A request saw ``exc``; if it says the connection or server failed, probe."""
        if connection_lost(exc):
            self.last_error = _describe(exc)
            self.probe()

    def probe(self) -> None:
        if self._probe is None or self._probe.done():
            self._probe = asyncio.get_running_loop().create_task(self._run(), name="db-probe")

    async def _run(self) -> None:
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(
                    await self._conninfo(), connect_timeout=CONNECT_TIMEOUT, autocommit=True,
                    application_name="rts-monitor:probe")
                await conn.close()
            except Exception as exc:
                self._mark_down(exc)
                await asyncio.sleep(self.probe_interval)
                continue
            break
        try:
            # drop the connections the outage broke and refill now, before requests come back
            await self.pool.check()
        except Exception as exc:  # the pool is closing: nothing to refill
            log.debug("db.pool_check_failed", extra={"error": repr(exc)})
        self._mark_up()

    async def _conninfo(self) -> str:
        info = self.pool.conninfo
        return str(await info() if callable(info) else info)  # type: ignore[misc]

    def _mark_down(self, exc: BaseException) -> None:
        self.last_error = _describe(exc)
        if self.up:
            self.up = False
            self.outages += 1
            self.down_since, self.down_at = time.monotonic(), time.time()
            log.error("db.down", extra={"error": self.last_error})

    def _mark_up(self) -> None:
        if not self.up:
            seconds = time.monotonic() - (self.down_since or time.monotonic())
            log.warning("db.up", extra={"down_seconds": round(seconds, 2)})
        self.up = True
        self.down_since = self.down_at = None

    def snapshot(self) -> dict[str, Any]:
        return {"up": self.up, "down_since": self.down_at, "last_error": None if self.up else self.last_error,
                "outages": self.outages}

    async def close(self) -> None:
        if self._probe is not None and not self._probe.done():
            self._probe.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._probe


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ''}".rstrip(": ")
