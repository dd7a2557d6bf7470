"""Credentials as they arrive on a request: ``Authorization: Bearer <token>`` for portal users and
agents. Framework-free: the web layer's dependencies (``api/dependencies.py``) and the few
handlers that authenticate by hand (the hot metrics route, the agent-or-portal command poll) call
these with the header's value."""

from __future__ import annotations

import functools
import ipaddress
from uuid import UUID

from psycopg_pool import AsyncConnectionPool

from rts_monitor.auth import agents, limits, portal
from rts_monitor.auth.principal import AgentPrincipal, Principal
from rts_monitor.core import logs
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
    principal = portal.verify(settings, token)
    logs.annotate(user_id=str(principal.user_id))  # in this request's later log lines
    return principal


async def agent(pool: AsyncConnectionPool, authorization: str | None, *,
                path_agent_id: UUID | str | None = None, source: str | None = None,
                settings: Settings | None = None) -> AgentPrincipal:
    """The agent behind the token; on ``/agents/{agent_id}/…`` paths it must be that agent. With
    ``settings``, failures from ``source`` are rate limited (auth/limits.py): a blocked address is
    refused before its token is looked up, unless that token is one this process knows valid, so
    agents behind the same NAT as a misbehaving one keep working."""
    token = bearer_token(authorization)
    key = limits.address_key(source) if settings is not None else None
    if agents.cached(token) is None:
        limits.check([key])
    try:
        principal = await agents.authenticate(pool, token)
    except Unauthorized:
        if settings is not None:
            await limits.failed(pool, settings, {key: settings.auth_failures_per_address})
        raise
    if path_agent_id is not None:
        agents.require_own_path(
            principal, path_agent_id if isinstance(path_agent_id, UUID) else UUID(str(path_agent_id)))
    logs.annotate(agent_id=str(principal.agent_id))  # in this request's later log lines
    return principal


def client_address(settings: Settings, peer: str | None, forwarded_for: str | None) -> str | None:
    """The client's address: the TCP peer, or, when the peer is a trusted proxy
    (RTS_TRUSTED_PROXIES), the last address in X-Forwarded-For that is not one of them."""
    proxies = _trusted(settings.trusted_proxies)
    if not proxies or not _within(peer, proxies):
        return peer
    hops = [h.strip() for h in (forwarded_for or "").split(",") if h.strip()]
    for hop in reversed(hops):
        if not _within(hop, proxies):
            return hop
    return peer


@functools.lru_cache(maxsize=8)
def _trusted(spec: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(x.strip(), strict=False) for x in spec.split(",") if x.strip())


def _within(address: str | None, networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address or "")
    except ValueError:
        return False
    return any(ip in n for n in networks if n.version == ip.version)
