"""Agent token rotation, without re-enrolling and without losing a request.

A rotation is *requested* (``POST /api/agents/{id}/rotate-token`` by staff, or the
``auth.rotate_agent_tokens`` job once a token is 90% of ``RTS_AGENT_TOKEN_MAX_AGE_DAYS`` old) and
*issued* in the answer to the agent's next heartbeat: the server stores only hashes, so the new
token exists in clear only in that answer. From then on both tokens work until the grace period
(``RTS_AGENT_TOKEN_GRACE_SECONDS``) ends, so samples already on their way with the old token are
accepted. The agent saves the new token (atomically) before it uses it; its next heartbeat, made
with the new token at once, is the acknowledgement. An agent that heartbeats with the old token
again before acknowledging, a third of the grace period after the issue, never got (or never saved)
the answer: it is issued another new token, and the old one's grace starts again, so a lost answer
cannot lock an agent out. (Not sooner: a request with the old token that was already on its way
when the agent switched must not replace the token the agent has just saved.)

The per-process auth cache (auth/agents.py) keeps a replaced token no longer than its grace.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import msgspec

from rts_monitor.audit import service as audit
from rts_monitor.auth import agents
from rts_monitor.auth.principal import AgentPrincipal, Principal
from rts_monitor.core.settings import Settings
from rts_monitor.db import Conn
from rts_monitor.db.rows import fetch_all, fetch_one

Q = agents.Q
# Rotate at this share of the maximum age: the next heartbeat then delivers before the age.
ROTATE_AT = 0.9


class TokenRotation(msgspec.Struct):
    """The answer to a rotation request: the new token goes to the agent in its next heartbeat."""

    agent_id: UUID
    token_issued_at: datetime | None
    rotation_requested_at: datetime
    grace_seconds: int


async def on_heartbeat(conn: Conn, *, settings: Settings, agent: AgentPrincipal) -> str | None:
    """Within the heartbeat's transaction (the device row locked): a new token to hand the
    agent, or None. Also records the agent's acknowledgement of the last one."""
    state = await fetch_one(conn, Q.token_state, {"agent_id": agent.agent_id,
                                                  "redeliver_after": settings.agent_token_grace_seconds / 3})
    if state is None:
        return None
    if agent.previous_token:
        if state["acked"] or not state["redeliverable"]:
            return None  # it switched already, or may be switching now
        return await _issue(conn, settings=settings, agent=agent, state=state, reason="redelivery",
                            keep_previous=True)
    if state["requested"]:
        return await _issue(conn, settings=settings, agent=agent, state=state, reason="requested",
                            keep_previous=False)
    if state["in_grace"] and not state["acked"]:
        await conn.execute(Q.ack_token, {"agent_id": agent.agent_id})
    return None


async def _issue(conn: Conn, *, settings: Settings, agent: AgentPrincipal, state: dict[str, Any], reason: str,
                 keep_previous: bool) -> str:
    token, token_hash = agents.new_token()
    row = await fetch_one(conn, Q.issue_token, {"agent_id": agent.agent_id, "token_hash": token_hash,
                                                "grace": settings.agent_token_grace_seconds,
                                                "keep_previous": keep_previous})
    assert row is not None  # the heartbeat holds the row lock
    await audit.record(conn, principal=None, actor_type="agent", action="agent_token.issue", object_type="agent",
                       object_id=agent.agent_id, business_id=state["business_id"],
                       before={"token_issued_at": state["issued_at"]},
                       after={"token_issued_at": row["issued_at"],
                              "previous_token_valid_until": row["previous_valid_until"]},
                       detail={"reason": reason})
    return token


async def request(conn: Conn, *, settings: Settings, principal: Principal | None, agent_id: UUID,
                  business_id: UUID) -> TokenRotation:
    """Mark the agent's token for rotation (the caller checked tenancy and role)."""
    row = await fetch_one(conn, Q.request_rotation, {"agent_id": agent_id})
    assert row is not None  # the caller holds the row lock
    await audit.record(conn, principal=principal, action="agent_token.rotate", object_type="agent",
                       object_id=agent_id, business_id=business_id,
                       before={"token_issued_at": row["token_issued_at"]},
                       after={"token_issued_at": row["token_issued_at"],
                              "rotation_requested_at": row["rotation_requested_at"]})
    return TokenRotation(grace_seconds=settings.agent_token_grace_seconds, **row)


async def mark_due(conn: Conn, *, settings: Settings) -> int:
    """Request rotation of every token past its rotation age; how many."""
    if settings.agent_token_max_age_days <= 0:
        return 0
    rows = await fetch_all(conn, Q.mark_tokens_due,
                           {"age_seconds": settings.agent_token_max_age_days * 86400 * ROTATE_AT})
    for row in rows:
        await audit.record(conn, principal=None, action="agent_token.rotate", object_type="agent",
                           object_id=row["id"], business_id=row["business_id"],
                           before={"token_issued_at": row["issued_at"]},
                           after={"token_issued_at": row["issued_at"], "rotation_requested_at": row["requested_at"]},
                           detail={"reason": "max_age", "max_age_days": settings.agent_token_max_age_days})
    return len(rows)
