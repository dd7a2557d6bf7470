"""The async connection pool, opened by the runtime, and ``connection()``: the one way code gets a
connection, so that database errors are translated in one place (``db/errors.py``) and an outage
is noticed, answered fast and recovered from in one place (``db/availability.py``)."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from psycopg import AsyncConnection
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from rts_monitor.core.settings import Settings
from rts_monitor.db.availability import CONNECT_TIMEOUT, RECONNECT_TIMEOUT, Availability
from rts_monitor.db.errors import translate

Conn = AsyncConnection[Any]

# Written by ``rts-monitor db up`` (devtools/localdb.py) in the state dir: {"url": …, "port": …}.
LOCAL_SERVER_RECORD = "db.json"


class NoDatabaseConfigured(RuntimeError):
    """Neither DATABASE_URL nor a local server: the message says what to do."""


def resolve_database_url(settings: Settings) -> str:
    """DATABASE_URL, or the local server that ``rts-monitor db up`` recorded in the state dir."""
    if settings.database_url:
        return settings.database_url
    try:
        record = json.loads((settings.state_dir / LOCAL_SERVER_RECORD).read_text())
    except (OSError, ValueError):
        record = {}
    url = record.get("url") if isinstance(record, dict) else None
    if not url:
        raise NoDatabaseConfigured("DATABASE_URL is empty and no local server is provisioned in "
                                   f"{settings.state_dir}: run `rts-monitor db up` (or `./dev run`)")
    return str(url)


async def _configure(conn: AsyncConnection) -> None:
    conn.row_factory = dict_row  # type: ignore[assignment]


async def _reset(conn: AsyncConnection) -> None:
    """Back in the pool: whoever borrowed it may have switched to autocommit (DDL, jobs that
    commit per batch); the next borrower expects a transaction that ends with the block."""
    if conn.autocommit:
        await conn.set_autocommit(False)
    setattr(conn, _IDLE_SINCE, time.monotonic())


# A connection that sat in the pool longer than this is tested (one empty statement) before it is
# handed out: a database restarted while nobody asked leaves only broken connections behind, and
# the first requests after it would each meet one. Busy connections are reused within
# milliseconds and pay nothing.
IDLE_CHECK_SECONDS = 2.0
_IDLE_SINCE = "_rts_idle_since"


class Pool(AsyncConnectionPool):
    """The pool with what ``connection()`` needs to know about its server's availability."""

    availability: Availability


async def open_pool(settings: Settings, *, name: str = "rts", max_size: int | None = None) -> Pool:
    pool = Pool(
        resolve_database_url(settings),
        min_size=min(settings.db_pool_min, max_size or settings.db_pool_max),
        max_size=max_size or settings.db_pool_max,
        name=name,
        open=False,
        configure=_configure,
        reset=_reset,
        timeout=settings.db_acquire_timeout_seconds,
        reconnect_timeout=RECONNECT_TIMEOUT,
        kwargs={"application_name": f"rts-monitor:{name}", "connect_timeout": CONNECT_TIMEOUT},
    )
    pool.availability = Availability(pool, probe_interval=settings.db_probe_interval_seconds)
    await pool.open(wait=True, timeout=30)
    return pool


def availability(pool: AsyncConnectionPool) -> Availability | None:
    return getattr(pool, "availability", None)


def ensure_available(pool: AsyncConnectionPool) -> None:
    """Raise Unavailable at once while the pool's database is known to be down."""
    known = availability(pool)
    if known is not None:
        known.check()


async def _checkout(pool: AsyncConnectionPool, known: Availability | None, wait: float | None) -> Conn:
    """A connection from the pool; one idle for a while is tested first (``IDLE_CHECK_SECONDS``).
    A broken one goes back (the pool replaces it), the pool drops every other broken idle
    connection at once (``check``), and the next one is taken."""
    deadline = time.monotonic() + (pool.timeout if wait is None else wait)
    conn: Conn = await pool.getconn(wait)
    idle_since = getattr(conn, _IDLE_SINCE, None)
    if idle_since is None or time.monotonic() - idle_since < IDLE_CHECK_SECONDS:
        return conn
    try:
        await AsyncConnectionPool.check_connection(conn)
    except psycopg.Error as exc:
        await pool.putconn(conn)
        if known is not None:
            known.suspect(exc)
        await pool.check()
        return await pool.getconn(max(0.05, deadline - time.monotonic()))
    return conn


@asynccontextmanager
async def connection(pool: AsyncConnectionPool, *, acquire_timeout: float | None = None,
                     translate_errors: bool = True) -> AsyncIterator[Conn]:
    """A pooled connection for one unit of work: committed when the block ends normally, rolled back
    when it raises; a database error (including no connection within ``acquire_timeout``, by
    default ``RTS_DB_ACQUIRE_TIMEOUT_SECONDS``) leaves as the domain error ``db.errors.translate``
    gives it (503 for an unreachable server, 422 for a value the database refuses, …). Services
    catch the psycopg errors they expect inside the block; ``translate_errors=False`` leaves them
    all to the caller (the ingest pipeline sorts a refused flush out itself).

    While the database is known to be down this raises Unavailable without touching the pool; a
    connection-level failure starts the probe that finds out (``db/availability.py``)."""
    known = availability(pool)
    if known is not None:
        known.check()
    try:
        conn = await _checkout(pool, known, acquire_timeout)
        try:
            async with conn:  # commit, or roll back on an exception
                yield conn
        finally:
            await pool.putconn(conn)
    except psycopg.Error as exc:
        if known is not None:
            known.suspect(exc)
        if not translate_errors:
            raise
        domain = translate(exc)
        if domain is None:
            raise
        raise domain from exc
