"""Credentials as they arrive on a request: ``Authorization: Bearer <token>`` for portal users and
agents. Framework-free: the web layer's dependencies (``api/dependencies.py``) and the few
handlers that authenticate by hand (the hot metrics route, the agent-or-portal command poll) call
these with the header's value."""

from __future__ import annotations

from uuid import UUID

from psycopg_pool import AsyncConnectionPool

from rts_monitor.auth import agents, portal
from rts_monitor.auth.principal import AgentPrincipal, Principal
from rts_monitor.core.errors import Unauthorized
from rts_monitor.core.settings import Settings


def bearer_token(authorization: str | None) -> str:
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("missing bearer token")
    return token.strip()


def is_agent_token(token: str) -> bool:
    return token.startswith(agents.TOKEN_PREFIX)


def portal_user(settings: Settings, authorization: str | None) -> Principal:
    token = bearer_token(authorization)
    if token.startswith((agents.TOKEN_PREFIX, agents.REGISTRATION_PREFIX)):
        raise Unauthorized("portal endpoints need a portal user token")
    return portal.verify(settings, token)


async def agent(pool: AsyncConnectionPool, authorization: str | None, *,
                path_agent_id: UUID | str | None = None) -> AgentPrincipal:
    """The agent behind the token; on ``/agents/{agent_id}/…`` paths it must be that agent."""
    principal = await agents.authenticate(pool, bearer_token(authorization))
    if path_agent_id is not None:
        agents.require_own_path(
            principal, path_agent_id if isinstance(path_agent_id, UUID) else UUID(str(path_agent_id)))
    return principal
