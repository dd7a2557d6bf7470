"""The command console's data: the approval queue, recent commands, one command with its trail.

Commands come from ``commands.service`` (tenancy there: another business's command or device is a
404); only the people's e-mails, the devices' names and who may approve are read here. The
command's history (``agent_command_events``: created, approved, sent, each result, cancelled,
with who or which agent and over what) is its audit trail.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID

from rts_monitor.auth.principal import Principal
from rts_monitor.commands import service
from rts_monitor.commands.structs import Command
from rts_monitor.core.settings import Settings
from rts_monitor.db import Conn, Queries
from rts_monitor.db.rows import fetch_all, fetch_one
from rts_monitor.devices import service as devices
from rts_monitor.devices.structs import AgentDetail

Q = Queries.beside(__file__)
RECENT = 50
TERMINAL = ("completed", "failed", "timeout", "rejected", "cancelled")


async def emails(conn: Conn, ids: set[UUID]) -> dict[UUID, str]:
    """Portal users' e-mails by id (a token's user may have no row: left out)."""
    if not ids:
        return {}
    return {r["id"]: r["email"] for r in await fetch_all(conn, Q.user_emails, {"ids": list(ids)})}


def _people(commands: list[Command]) -> set[UUID]:
    out: set[UUID] = set()
    for c in commands:
        out.update(u for u in (c.requested_by, c.approved_by, c.rejected_by, c.cancelled_by) if u)
        out.update(h.actor_user_id for h in c.history or [] if h.actor_user_id)
    return out


async def _device_names(conn: Conn, principal: Principal, ids: set[UUID]) -> dict[UUID, str]:
    out = {}
    for agent_id in ids:
        row = await fetch_one(conn, Q.agent_name, {"id": agent_id, "scope": principal.business_scope})
        if row is not None:
            out[agent_id] = str(row["device_name"])
    return out


@dataclass
class CommandsPage:
    awaiting: list[Command]
    recent: list[Command]
    people: dict[UUID, str]
    devices: dict[UUID, str]


async def overview(conn: Conn, *, principal: Principal) -> CommandsPage:
    awaiting = (await service.list_commands(conn, principal=principal, agent_id=None, statuses=None,
                                            awaiting_approval=True, limit=100)).commands
    recent = (await service.list_commands(conn, principal=principal, agent_id=None, statuses=None,
                                          awaiting_approval=False, limit=RECENT)).commands
    both = awaiting + recent
    return CommandsPage(awaiting, recent, await emails(conn, _people(both)),
                        await _device_names(conn, principal, {c.agent_id for c in both}))


@dataclass
class CommandDetail:
    command: Command
    device_name: str
    people: dict[UUID, str]
    approvers: list[str]
    awaiting_approval: bool
    can_decide: bool


async def detail(conn: Conn, *, principal: Principal, agent_id: UUID, command_id: UUID) -> CommandDetail:
    command = await service.detail(conn, principal=principal, agent_id=agent_id, command_id=command_id)
    names = await _device_names(conn, principal, {agent_id})
    awaiting = command.approval_required and command.approved_at is None and command.status == "pending"
    approvers = [r["email"] for r in await fetch_all(conn, Q.approvers, {"requester": command.requested_by})] \
        if awaiting else []
    return CommandDetail(command, names.get(agent_id, ""), await emails(conn, _people([command])), approvers,
                         awaiting, principal.is_staff and principal.user_id != command.requested_by)


async def find_devices(conn: Conn, *, principal: Principal, text: str) -> list[dict[str, Any]]:
    """At most 20 devices whose name or hostname contains ``text`` (LIKE wildcards are literal)."""
    escaped = text.strip()[:200].replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    if not escaped:
        return []
    return await fetch_all(conn, Q.device_search, {"scope": principal.business_scope, "pattern": f"%{escaped}%"})


async def target(conn: Conn, *, principal: Principal, agent_id: UUID) -> AgentDetail:
    """The device a command is being written for (its monitored services fill the picker)."""
    return await devices.get_agent(conn, principal=principal, agent_id=agent_id)


def form_context(settings: Settings) -> dict[str, Any]:
    """What the create form offers: the server's interpreters and whether a type needs approval."""
    interpreters = {i.strip() for i in settings.command_script_interpreters.split(",") if i.strip()}
    return {"interpreters": sorted(interpreters),
            "sensitive": sorted(service.sensitive_types(settings))}
