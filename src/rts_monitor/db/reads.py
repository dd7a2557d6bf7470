"""Reads a hot standby may serve (``RTS_DATABASE_READ_URL``), and the primary when it may not.

What goes where (docs/operations.md, "Read replicas"):

* **the standby**: what a handler runs through ``Reads.run`` (its ``reads`` dependency): chart
  history, the fleet lists and device detail, reports, the console's list, device and alert pages.
  Those are the heavy reads and tolerate data a moment old;
* **the primary**: everything else. Writes, reads inside a write's transaction, credentials and
  sessions, jobs, the DBA page (the primary's own statistics), and a *caller's reads right after
  its own write*: the answer to a request that may have written (not GET/HEAD/OPTIONS) marks its
  caller with the time (``remember_write``, keyed by the credential it came with, and the cookie
  ``rts_wrote`` for whichever API process answers next), and that caller's routed reads go to the
  primary until the standby covers that time: until a check has sampled the primary's WAL position
  after it and found the standby replayed past it. A caller never reads an answer older than its
  own change; other callers may, by at most ``RTS_READ_MAX_LAG_SECONDS``.

A background check (``Replica``, every ``RTS_READ_CHECK_SECONDS``) measures how far behind the
standby is and takes it out of use while it lags more than ``RTS_READ_MAX_LAG_SECONDS``, is down,
or is not a standby at all; it is used again as soon as a check finds it caught up. Lag is not
``now() - pg_last_xact_replay_timestamp()``: on an idle primary that grows forever although
there is nothing to replay. It is the age of the oldest primary WAL position (sampled at each
check) the standby has not replayed yet: 0 when it has replayed everything the primary had,
else at least that long behind (the estimate errs low by up to one check interval).

A request whose read fails on the standby because the server or the connection went away (or a
query cancelled by a recovery conflict) runs the same read again on the primary, and a connection
failure takes the standby out of use at once: stopping the standby mid-load fails no request
(``tests/test_replicas.py`` kills its postmaster under load). Without ``RTS_DATABASE_READ_URL``
``Reads.run`` is ``db.connection(ctx.pool)`` and nothing else changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Concatenate, ParamSpec, TypeVar

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from rts_monitor.core import metrics
from rts_monitor.core.context import AppContext
from rts_monitor.core.settings import Settings
from rts_monitor.db.availability import CONNECT_TIMEOUT, RECONNECT_TIMEOUT, _describe, connection_lost
from rts_monitor.db.errors import translate
from rts_monitor.db.pool import Conn, _configure, _reset, connection

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

PRIMARY_LSN_SQL = "SELECT (pg_current_wal_lsn() - '0/0')::bigint AS lsn"
STANDBY_SQL = ("SELECT pg_is_in_recovery() AS recovery, "
               "(coalesce(pg_last_wal_replay_lsn(), '0/0') - '0/0')::bigint AS replayed")
# Why a read skipped the standby: the label values of rts_db_replica_bypassed_reads_total.
REASONS = ("lag", "down", "not_standby", "own_write", "failed")
# A connection-level failure, or a query the standby cancelled because replay needed its rows
# (SQLSTATE 40001 "conflict with recovery"): the read is run again on the primary.
_RETRY_STATES = ("40001",)
# Primary positions remembered while the standby is behind (one per check: hours of a stalled
# standby, far beyond any sensible RTS_READ_MAX_LAG_SECONDS, before the oldest is forgotten).
_MAX_SAMPLES = 10_000
# Callers waiting for their write to reach the standby; beyond this (a long standby outage with
# many writers) they are folded into one time everyone waits for.
_MAX_WRITERS = 100_000
# Wall clocks of the API hosts may differ by this much (the cookie's time is the writer's clock,
# ``covered_until`` the reader's); NTP keeps them within milliseconds.
CLOCK_MARGIN = 0.25
# The cookie that carries "I wrote at T" to whichever API process answers the caller's next read.
WRITE_COOKIE = "rts_wrote"


class Replica:
    """The standby's pool and whether reads may use it; see the module docstring."""

    def __init__(self, pool: AsyncConnectionPool, primary: AsyncConnectionPool, *, max_lag: float,
                 interval: float) -> None:
        self.pool = pool
        self.primary = primary
        self.max_lag = max_lag
        self.interval = interval
        self.in_use = False
        self.reason: str = "down"  # why not in use (REASONS); meaningless while in use
        self.detail: str | None = "not checked yet"
        self.lag: float | None = None
        self.replayed = 0  # the standby's replay position at the last check
        # Wall-clock time before which every commit on the primary is on the standby: the time of
        # the newest primary sample whose position the standby has replayed.
        self.covered_until = 0.0
        self.changed_at = time.time()  # when it last went in or out of use (wall clock, /health)
        self.checked_at: float | None = None
        self._changed_mono = time.monotonic()
        self._samples: deque[tuple[float, float, int]] = deque(maxlen=_MAX_SAMPLES)  # (monotonic, wall, lsn)
        self._writes: dict[str, float] = {}  # caller -> when it last wrote through this process
        self._floor = 0.0
        self._monitor: psycopg.AsyncConnection[Any] | None = None
        self._task: asyncio.Task[None] | None = None

    # ---------------------------------------------------------------- per request

    def refusal(self, caller: str | None, wrote_at: float | None = None) -> str | None:
        """None if the read may go to the standby now, else why not (REASONS). ``caller`` wrote
        through this process at the time ``remember_write`` kept, or (``wrote_at``, the cookie
        ``WRITE_COOKIE``) through any process: its reads wait until the standby covers that time."""
        if not self.in_use:
            return self.reason
        latest = max(wrote_at or 0.0, self._floor)
        if caller is not None:
            latest = max(latest, self._writes.get(caller, 0.0))
        if latest and latest + CLOCK_MARGIN >= self.covered_until:
            return "own_write"
        return None

    def remember_write(self, caller: str | None, at: float) -> None:
        """``caller`` may have committed a change before ``at`` (wall clock)."""
        if caller is not None:
            self._writes[caller] = at

    def connection_failed(self, exc: BaseException) -> None:
        """A read lost its standby connection: out of use at once; the check brings it back."""
        self._out("down", _describe(exc))

    # ---------------------------------------------------------------- the check

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="db-replica-check")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                # a standby that stopped answering (not refusing) must not stall the check
                await asyncio.wait_for(self.check(), timeout=CONNECT_TIMEOUT + 2)
            except TimeoutError:
                await self._drop_monitor()
                self._out("down", f"no answer within {CONNECT_TIMEOUT + 2} s")
            except Exception as exc:  # the check must keep running whatever happens
                log.warning("db.replica_check_failed", extra={"error": _describe(exc)})

    async def check(self) -> None:
        """Measure the lag and put the standby in or out of use."""
        # Taken before the primary is asked: a commit answered before this time is at or below
        # the position the primary reports.
        sampled_mono, sampled_wall = time.monotonic(), time.time()
        try:
            async with connection(self.primary) as conn:
                row = await (await conn.execute(PRIMARY_LSN_SQL)).fetchone()
        except Exception:
            return  # the primary is down (db/availability.py answers for it): nothing to compare with
        assert row is not None
        try:
            standby = await self._standby()
        except Exception as exc:
            await self._drop_monitor()
            self._out("down", _describe(exc))
            return
        now = time.monotonic()
        self.checked_at = time.time()
        if not standby["recovery"]:
            self._out("not_standby", "pg_is_in_recovery() is false: RTS_DATABASE_READ_URL is not a hot standby")
            return
        self.replayed = int(standby["replayed"])
        self._samples.append((sampled_mono, sampled_wall, int(row["lsn"])))
        while self._samples and self._samples[0][2] <= self.replayed:
            self.covered_until = max(self.covered_until, self._samples.popleft()[1])
        self.lag = now - self._samples[0][0] if self._samples else 0.0
        metrics.instruments().replica_lag.set(self.lag)
        self._prune_writes()
        if self.lag > self.max_lag:
            self._out("lag", f"{self.lag:.1f} s behind the primary (RTS_READ_MAX_LAG_SECONDS={self.max_lag:g})")
        elif not self.in_use:
            # drop the connections the outage broke before requests use the pool again
            with contextlib.suppress(Exception):
                await self.pool.check()
            self._in()

    async def _standby(self) -> dict[str, Any]:
        if self._monitor is None or self._monitor.closed:
            self._monitor = await psycopg.AsyncConnection.connect(
                _conninfo(self.pool), autocommit=True, connect_timeout=CONNECT_TIMEOUT,
                application_name="rts-monitor:replica-check", row_factory=dict_row)
        row = await (await self._monitor.execute(STANDBY_SQL)).fetchone()
        assert row is not None
        return dict(row)

    def _prune_writes(self) -> None:
        covered = self.covered_until - CLOCK_MARGIN
        self._writes = {c: at for c, at in self._writes.items() if at > covered}
        if len(self._writes) > _MAX_WRITERS:
            self._floor = max(self._floor, *self._writes.values())
            self._writes.clear()

    def _out(self, reason: str, detail: str | None) -> None:
        self.reason, self.detail = reason, detail
        if self.in_use:
            self.in_use = False
            self.changed_at, self._changed_mono = time.time(), time.monotonic()
            metrics.instruments().replica_in_use.set(0)
            log.warning("db.replica_bypassed", extra={"reason": reason, "detail": detail,
                                                      "lag_seconds": self.lag})

    def _in(self) -> None:
        bypassed = time.monotonic() - self._changed_mono
        self.in_use, self.detail = True, None
        self.changed_at, self._changed_mono = time.time(), time.monotonic()
        metrics.instruments().replica_in_use.set(1)
        log.info("db.replica_in_use", extra={"lag_seconds": round(self.lag or 0.0, 3),
                                             "bypassed_seconds": round(bypassed, 2)})

    def snapshot(self) -> dict[str, Any]:
        """For /health: in use or bypassed (and why), the lag, since when."""
        return {"state": "in_use" if self.in_use else "bypassed",
                "reason": None if self.in_use else self.reason,
                "detail": None if self.in_use else self.detail,
                "lag_seconds": None if self.lag is None else round(self.lag, 3),
                "since": self.changed_at, "checked_at": self.checked_at}

    async def _drop_monitor(self) -> None:
        if self._monitor is not None:
            with contextlib.suppress(Exception):
                await self._monitor.close()
        self._monitor = None

    async def close(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        await self._drop_monitor()
        await self.pool.close()


def replica_of(ctx: AppContext) -> Replica | None:
    replica = ctx.replica
    return replica if isinstance(replica, Replica) else None


def reads_for(ctx: AppContext, caller: str | None = None, wrote_at: float | None = None) -> Reads:
    """The ``reads`` of a request (``caller``: its credential; ``wrote_at``: its cookie
    ``WRITE_COOKIE``; see ``Replica.refusal``) or of a job (neither)."""
    return Reads(ctx.pool, replica_of(ctx), caller, wrote_at)


def write_cookie(replica: Replica, at: float) -> str:
    """The Set-Cookie value that tells any API process this caller wrote at ``at``; it lasts as
    long as a standby in use can be behind (the bound plus two checks)."""
    max_age = int(replica.max_lag + 2 * replica.interval) + 2
    return f"{WRITE_COOKIE}={at:.3f}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Lax"


def cookie_time(raw: str | None) -> float | None:
    """The time in a ``WRITE_COOKIE`` (None when absent or not a number: it is only a hint)."""
    try:
        return float(raw) if raw else None
    except ValueError:
        return None


def _conninfo(pool: AsyncConnectionPool) -> str:
    return str(pool.conninfo)


async def open_replica(settings: Settings, primary: AsyncConnectionPool) -> Replica | None:
    """The standby's pool and its check, or None without RTS_DATABASE_READ_URL. Never waits for the
    standby: one that is down at start is bypassed until a check finds it."""
    if not settings.database_read_url:
        return None
    pool = AsyncConnectionPool(
        settings.database_read_url, min_size=min(settings.db_pool_min, settings.db_pool_max),
        max_size=settings.db_pool_max, name="rts-replica", open=False, configure=_configure, reset=_reset,
        timeout=settings.db_acquire_timeout_seconds, reconnect_timeout=RECONNECT_TIMEOUT,
        kwargs={"application_name": "rts-monitor:replica", "connect_timeout": CONNECT_TIMEOUT})
    await pool.open(wait=False)
    replica = Replica(pool, primary, max_lag=settings.read_max_lag_seconds, interval=settings.read_check_seconds)
    metrics.instruments().replica_in_use.set(0)
    try:
        await asyncio.wait_for(replica.check(), timeout=CONNECT_TIMEOUT + 1)
    except Exception as exc:  # a standby that does not answer at start is bypassed, not fatal
        replica._out("down", _describe(exc))
    if not replica.in_use:  # _out logs a change of state; at start there was none to change
        log.warning("db.replica_bypassed", extra={"reason": replica.reason, "detail": replica.detail,
                                                  "lag_seconds": replica.lag})
    replica.start()
    return replica


# A standby that has no connection free within this long is skipped for the primary (which is
# sized for all the reads anyway), rather than making the request wait the whole acquire timeout.
STANDBY_ACQUIRE_SECONDS = 0.5


class Reads:
    """A handler's way to run a read the standby may serve: ``await reads.run(service.fn, **kw)``
    runs ``service.fn(conn, **kw)`` on a standby connection when it is in use, else (or when that
    connection fails) on a primary one. ``work`` must only read, and may run twice."""

    def __init__(self, primary: AsyncConnectionPool, replica: Replica | None, caller: str | None = None,
                 wrote_at: float | None = None) -> None:
        self.primary = primary
        self.replica = replica
        self.caller = caller
        self.wrote_at = wrote_at

    async def run(self, work: Callable[Concatenate[Conn, P], Awaitable[T]], /,
                  *args: P.args, **kwargs: P.kwargs) -> T:
        replica = self.replica
        if replica is not None:
            reason = replica.refusal(self.caller, self.wrote_at)
            if reason is None:
                try:
                    async with connection(replica.pool, acquire_timeout=STANDBY_ACQUIRE_SECONDS,
                                          translate_errors=False) as conn:
                        result = await work(conn, *args, **kwargs)
                    metrics.instruments().replica_reads.inc()
                    return result
                except psycopg.Error as exc:
                    if not (connection_lost(exc) or exc.sqlstate in _RETRY_STATES):
                        domain = translate(exc)
                        if domain is None:
                            raise
                        raise domain from exc
                    if connection_lost(exc) and not isinstance(exc, PoolTimeout):
                        replica.connection_failed(exc)  # a busy standby stays in use; a gone one not
                    log.info("db.replica_read_retried", extra={"error": _describe(exc)})
                    reason = "failed"
            metrics.instruments().replica_bypassed.labels(reason).inc()
        async with connection(self.primary) as conn:
            return await work(conn, *args, **kwargs)
