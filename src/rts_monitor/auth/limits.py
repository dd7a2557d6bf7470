"""Rate limits on failed credential checks: registration tokens, agent tokens, portal tokens.

Only failures count, per source address and per token prefix, over a sliding window
(``RTS_AUTH_FAILURE_WINDOW_SECONDS``). Failures are written to ``auth_failures`` (shared by all
API processes) in their own transaction, so the refusal that follows cannot roll them back. A key
over its limit is blocked in this process until its oldest counted failure leaves the window:
further attempts are answered 429 with Retry-After before any check runs, without touching the
database. Another process learns of the block at its own next failure for that key, so across N
processes a key gets at most ``limit + N - 1`` failures per window (documented bound).

A valid credential is never slowed down: checking the in-process block is a dict lookup, and a
success writes nothing.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping

from psycopg_pool import AsyncConnectionPool

from rts_monitor.core.errors import TooManyRequests
from rts_monitor.core.settings import Settings
from rts_monitor.db import Queries, connection
from rts_monitor.db.rows import fetch_all

Q = Queries.beside(__file__)
_blocked: dict[str, float] = {}  # key -> monotonic time when it may try again
_MAX_BLOCKED = 100_000


def address_key(address: str | None) -> str | None:
    return f"addr:{address}" if address else None


def token_key(token: str, prefix_length: int = 12) -> str:
    """The first characters of a token: enough to tell tokens apart, never enough to use one."""
    return f"token:{token[:prefix_length]}"


def check(keys: Iterable[str | None]) -> None:
    """429 if any key is blocked here (no database access)."""
    now = time.monotonic()
    for key in keys:
        until = _blocked.get(key) if key else None
        if key and until is not None:
            if until > now:
                raise TooManyRequests("too many failed attempts; try again later", retry_after=until - now)
            _blocked.pop(key, None)


async def failed(pool: AsyncConnectionPool, settings: Settings, limits: Mapping[str | None, int]) -> None:
    """Record one failure for each key and block the keys now over their limit."""
    keys = {k: n for k, n in limits.items() if k}
    if not keys:
        return
    async with connection(pool) as conn:
        rows = await fetch_all(conn, Q.record_failures, {"keys": list(keys),
                                                          "window": settings.auth_failure_window_seconds})
    now = time.monotonic()
    if len(_blocked) > _MAX_BLOCKED:
        _blocked.clear()  # bounded memory under a spray of addresses; the database still counts
    for row in rows:
        if row["failures"] >= keys[row["key"]]:
            _blocked[row["key"]] = now + max(1.0, float(row["retry_after"]))


def forget() -> None:
    """Tests and operators: lift every in-process block (the database counts expire by themselves)."""
    _blocked.clear()
