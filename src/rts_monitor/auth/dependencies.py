"""Litestar dependencies that authenticate a request: ``principal`` (portal) and ``agent``."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from litestar import Request
from litestar.di import Provide

from rts_monitor.api.context import AppContext
from rts_monitor.auth import agents, portal
from rts_monitor.auth.principal import AgentPrincipal, Principal, Role
from rts_monitor.errors import Forbidden, Unauthorized


def bearer(request: Request[Any, Any, Any]) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("missing bearer token")
    return token.strip()


async def provide_principal(request: Request[Any, Any, Any]) -> Principal:
    ctx: AppContext = request.app.state.ctx
    token = bearer(request)
    if token.startswith((agents.TOKEN_PREFIX, agents.REGISTRATION_PREFIX)):
        raise Unauthorized("portal endpoints need a portal user token")
    return portal.verify(ctx.settings, token)


async def provide_agent(request: Request[Any, Any, Any]) -> AgentPrincipal:
    """The agent behind the token; on ``/agents/{agent_id}/…`` paths it must be that agent."""
    ctx: AppContext = request.app.state.ctx
    principal = await agents.authenticate(ctx.pool, bearer(request))
    path_agent = request.path_params.get("agent_id")
    if path_agent is not None:
        agents.require_own_path(principal, path_agent if isinstance(path_agent, UUID) else UUID(str(path_agent)))
    return principal


def require_staff(principal: Principal) -> None:
    if not principal.is_staff:
        raise Forbidden("admin or technician role required")


def require_role(principal: Principal, *roles: Role) -> None:
    if principal.role not in roles:
        raise Forbidden("requires role " + " or ".join(r.value for r in roles))


DEPENDENCIES = {
    "principal": Provide(provide_principal),
    "agent": Provide(provide_agent),
}
