"""Agent credentials: an opaque high-entropy token per agent, stored only as its SHA-256.

Looking the hash up is one index probe, but on the ingest hot path even that costs a pooled
connection per request, so answers are cached per process (``CACHE_SECONDS``). A token that stops
being valid is evicted everywhere at once: a trigger on ``agent_devices`` (migration 0070)
notifies ``AUTH_CHANNEL`` in the revoking transaction and each process's LISTEN connection (the
command hub's) calls ``forget``; when that connection (re)connects the whole cache is dropped, so
the TTL only bounds staleness while a process cannot listen.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from uuid import UUID

from psycopg_pool import AsyncConnectionPool

from rts_monitor.auth.principal import AgentPrincipal
from rts_monitor.core.errors import Forbidden, Unauthorized
from rts_monitor.db import Queries, connection

Q = Queries.beside(__file__)
TOKEN_PREFIX = "rtsa_"
REGISTRATION_PREFIX = "AGT-"
CACHE_SECONDS = 60.0
AUTH_CHANNEL = "rts_agent_auth"
_NEGATIVE_SECONDS = 1.0

_cache: dict[str, tuple[float, AgentPrincipal | None]] = {}


def new_token() -> tuple[str, str]:
    """(token to hand to the agent once, hash to store)."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    return token, hash_token(token)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def forget(token_hash: str | None = None) -> None:
    """Drop cached answers (one token, or all): call after revoking or deleting an agent."""
    if token_hash is None:
        _cache.clear()
    else:
        _cache.pop(token_hash, None)


def cached(token: str) -> AgentPrincipal | None:
    """The agent of a token this process recently found valid (no database access), else None."""
    hit = _cache.get(hash_token(token))
    return hit[1] if hit is not None and hit[0] > time.monotonic() else None


async def authenticate(pool: AsyncConnectionPool, token: str) -> AgentPrincipal:
    if token.startswith(REGISTRATION_PREFIX):
        raise Unauthorized("a registration token cannot be used as an agent credential")
    if not token.startswith(TOKEN_PREFIX):
        raise Unauthorized("not an agent token")
    token_hash = hash_token(token)
    now = time.monotonic()
    hit = _cache.get(token_hash)
    if hit is not None and hit[0] > now:
        principal = hit[1]
    else:
        async with connection(pool) as conn:
            # One read, so autocommit: one round trip instead of BEGIN, SELECT, COMMIT (an agent
            # posting once a minute misses the 60 s cache on nearly every request; measured
            # 410-510 -> 180-220 us of API CPU per lookup, docs/ingest.md). The connection
            # returns to transaction mode before going back to the pool.
            await conn.set_autocommit(True)
            try:
                cur = await conn.execute(Q.agent_by_token_hash, {"token_hash": token_hash})
                row = await cur.fetchone()
            finally:
                await conn.set_autocommit(False)
        principal = None
        ttl = _NEGATIVE_SECONDS
        if row is not None:
            principal = AgentPrincipal(row["id"], row["business_id"], row["service_location_id"],
                                       previous_token=row["previous_token"])
            # A rotated-out token is cached no longer than its grace period lasts: past it, the
            # next request looks it up again and is refused (the NOTIFY of 0070/0170 evicts it
            # early when it is revoked).
            ttl = CACHE_SECONDS if row["seconds_left"] is None else max(0.0, min(CACHE_SECONDS, row["seconds_left"]))
        if len(_cache) > 100_000:
            _cache.clear()
        _cache[token_hash] = (now + ttl, principal)
    if principal is None:
        raise Unauthorized("agent token unknown or revoked")
    return principal


def require_own_path(principal: AgentPrincipal, agent_id: UUID) -> None:
    """An agent may only act on its own ``/api/agents/{agent_id}/…`` paths."""
    if principal.agent_id != agent_id:
        raise Forbidden("this agent token belongs to another agent")
