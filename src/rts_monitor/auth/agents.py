"""Agent credentials: an opaque high-entropy token per agent, stored only as its SHA-256.

Looking the hash up is one index probe, but on the ingest hot path even that costs a pooled
connection per request, so answers are cached per process (``CACHE_SECONDS``). A token that stops
being valid is evicted everywhere at once: a trigger on ``agent_devices`` (migration 0070)
notifies ``AUTH_CHANNEL`` in the revoking transaction and each process's LISTEN connection (the
command hub's) calls ``forget``; when that connection (re)connects the whole cache is dropped, so
the TTL only bounds staleness while a process cannot listen.

Lookups that miss the cache at the same moment share one statement (``_Lookups``): after an API
restart every agent's first request misses at once (a reconnect storm of thousands of sockets
within seconds), and one query per token would take a pooled connection each, starving the pool
and everything else waiting on it. At most one such statement per pool runs at a time; the tokens
that arrive meanwhile go together in the next one, so a quiet process still answers a lone miss
with one query and a storm costs one connection instead of the pool.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
import weakref
from typing import Any
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
_BATCH_MAX = 1000  # hashes per statement: one statement stays a few milliseconds

_cache: dict[str, tuple[float, AgentPrincipal | None]] = {}
_forgotten = 0  # bumped by forget(): an answer read before a revocation must not be cached after it


def new_token() -> tuple[str, str]:
    """(token to hand to the agent once, hash to store)."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    return token, hash_token(token)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def forget(token_hash: str | None = None) -> None:
    """Drop cached answers (one token, or all): call after revoking or deleting an agent."""
    global _forgotten
    _forgotten += 1
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
    hit = _cache.get(token_hash)
    if hit is not None and hit[0] > time.monotonic():
        principal = hit[1]
    else:
        principal = await _lookups(pool).find(pool, token_hash)
    if principal is None:
        raise Unauthorized("agent token unknown or revoked")
    return principal


class _Lookups:
    """The token hashes waiting for the database, answered together (module docstring)."""

    def __init__(self) -> None:
        self.waiting: dict[str, asyncio.Future[AgentPrincipal | None]] = {}
        self.task: asyncio.Task[None] | None = None

    async def find(self, pool: AsyncConnectionPool, token_hash: str) -> AgentPrincipal | None:
        fut = self.waiting.get(token_hash)
        if fut is None:
            fut = self.waiting[token_hash] = asyncio.get_running_loop().create_future()
            fut.add_done_callback(_retrieve)
            if self.task is None or self.task.done():
                self.task = asyncio.create_task(self._run(pool))
        # shielded: a caller that goes away (a dropped socket) must not cancel the others' answer
        return await asyncio.shield(fut)

    async def _run(self, pool: AsyncConnectionPool) -> None:
        await asyncio.sleep(0)  # the lookups started in this turn of the loop join the first statement
        while self.waiting:
            batch = dict(list(self.waiting.items())[:_BATCH_MAX])
            for token_hash in batch:
                del self.waiting[token_hash]
            try:
                answers = await _query(pool, list(batch))
            except asyncio.CancelledError:  # shutting down: nobody gets an answer
                for fut in [*batch.values(), *self.waiting.values()]:
                    fut.cancel()
                raise
            except Exception as exc:  # the database unreachable, the pool dry: every waiter hears it
                for fut in batch.values():
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            for token_hash, fut in batch.items():
                if not fut.done():
                    fut.set_result(answers.get(token_hash))


def _retrieve(fut: asyncio.Future[Any]) -> None:
    """An answer nobody awaits any more (its caller went away) is not an unretrieved error."""
    if not fut.cancelled():
        fut.exception()


_per_pool: weakref.WeakKeyDictionary[AsyncConnectionPool, _Lookups] = weakref.WeakKeyDictionary()


def _lookups(pool: AsyncConnectionPool) -> _Lookups:
    found = _per_pool.get(pool)
    if found is None:
        found = _per_pool[pool] = _Lookups()  # holds no reference to the pool: the entry goes with it
    return found


async def _query(pool: AsyncConnectionPool, token_hashes: list[str]) -> dict[str, AgentPrincipal | None]:
    """Look the hashes up, cache every answer (a miss briefly), return them by hash."""
    generation = _forgotten
    async with connection(pool) as conn:
        # One read, so autocommit: one round trip instead of BEGIN, SELECT, COMMIT (an agent
        # posting once a minute misses the 60 s cache on nearly every request; measured
        # 410-510 -> 180-220 us of API CPU per lookup, docs/ingest.md). The connection
        # returns to transaction mode before going back to the pool.
        await conn.set_autocommit(True)
        try:
            cur = await conn.execute(Q.agents_by_token_hashes, {"token_hashes": token_hashes})
            rows = await cur.fetchall()
        finally:
            await conn.set_autocommit(False)
    found = {}
    for row in rows:
        if row["token_hash"] in found and row["previous_token"]:
            continue  # the current token wins (a hash is never both, but be sure)
        found[row["token_hash"]] = row
    now = time.monotonic()
    if len(_cache) + len(token_hashes) > 100_000:
        _cache.clear()
    answers: dict[str, AgentPrincipal | None] = {}
    for token_hash in token_hashes:
        row = found.get(token_hash)
        principal = None
        ttl = _NEGATIVE_SECONDS
        if row is not None:
            principal = AgentPrincipal(row["id"], row["business_id"], row["service_location_id"],
                                       previous_token=row["previous_token"])
            # A rotated-out token is cached no longer than its grace period lasts: past it, the
            # next request looks it up again and is refused (the NOTIFY of 0070/0170 evicts it
            # early when it is revoked).
            ttl = CACHE_SECONDS if row["seconds_left"] is None else max(0.0, min(CACHE_SECONDS, row["seconds_left"]))
        answers[token_hash] = principal
        if generation == _forgotten:  # else a revocation arrived while we read: do not keep the answer
            _cache[token_hash] = (now + ttl, principal)
    return answers


def require_own_path(principal: AgentPrincipal, agent_id: UUID) -> None:
    """An agent may only act on its own ``/api/agents/{agent_id}/…`` paths."""
    if principal.agent_id != agent_id:
        raise Forbidden("this agent token belongs to another agent")
