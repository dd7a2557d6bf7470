"""Who is calling: portal users (JWT) and agents (per-agent token), and what they may see."""

from rts_monitor.auth.principal import AgentPrincipal, Principal, Role

__all__ = ["AgentPrincipal", "Principal", "Role"]
