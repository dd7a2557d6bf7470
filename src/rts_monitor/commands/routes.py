"""Command endpoints: the portal creates, approves, rejects, cancels and reads; the agent polls and
reports results. Thin: parse, authorize, call ``commands.service``.

``GET /api/agents/{agent_id}/commands`` is the API contract's agent poll *and* the portal's list: which one
is decided by the bearer token (agent tokens start with ``rtsa_``).
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from litestar import Request, get, post
from litestar.params import Parameter

from rts_monitor.auth import credentials
from rts_monitor.auth.principal import AgentPrincipal, Principal
from rts_monitor.commands import service
from rts_monitor.commands import structs as s
from rts_monitor.core.context import AppContext
from rts_monitor.core.errors import ValidationFailed
from rts_monitor.db import Conn

TAGS = ["commands"]
STATUSES = ("pending", "sent", "executing", "completed", "failed", "timeout", "rejected", "cancelled")
AGENT_PATH = "/api/agents/{agent_id:uuid}/commands"
CONFLICT = {"errors": [409]}  # api/openapi.py: the command's state may not allow it


@post(AGENT_PATH, tags=TAGS, summary="Create a command for an agent (portal)", status_code=201,
      security=[{"portal": []}])
async def create_command(ctx: AppContext, conn: Conn, principal: Principal, agent_id: UUID,
                         data: s.CreateCommand) -> s.Command:
    return await service.create(conn, settings=ctx.settings, principal=principal, agent_id=agent_id, body=data)


@get(AGENT_PATH, tags=TAGS, security=[{"agent": []}, {"portal": []}],
     summary="Agent token: fetch deliverable commands (marks them sent). Portal token: list commands.")
async def poll_or_list(
    request: Request[Any, Any, Any], ctx: AppContext, conn: Conn, agent_id: UUID,
    status: str | None = Parameter(default=None, description="portal: comma-separated statuses"),
    limit: int = Parameter(default=50, ge=1, le=500),
) -> s.AgentCommands | s.CommandList:
    authorization = request.headers.get("authorization")
    if credentials.is_agent_token(credentials.bearer_token(authorization)):
        agent = await credentials.agent(
            ctx.pool, authorization, path_agent_id=agent_id, settings=ctx.settings,
            source=credentials.client_address(ctx.settings, request.client.host if request.client else None,
                                              request.headers.get("x-forwarded-for")))
        return s.AgentCommands(await service.claim(conn, settings=ctx.settings, agent_id=agent.agent_id,
                               via="poll", limit=min(limit, 100)))
    principal = credentials.portal_user(ctx.settings, authorization)
    return await service.list_commands(conn, principal=principal, agent_id=agent_id, statuses=_statuses(status),
                                       awaiting_approval=False, limit=limit)


@get("/api/commands", tags=TAGS, summary="Commands across agents (e.g. the approval queue)",
     security=[{"portal": []}])
async def list_all(
    conn: Conn, principal: Principal,
    agent_id: UUID | None = None,
    status: str | None = Parameter(default=None, description="comma-separated statuses"),
    awaiting_approval: bool = False,
    limit: int = Parameter(default=50, ge=1, le=500),
) -> s.CommandList:
    return await service.list_commands(conn, principal=principal, agent_id=agent_id, statuses=_statuses(status),
                                       awaiting_approval=awaiting_approval, limit=limit)


@get(AGENT_PATH + "/{command_id:uuid}", tags=TAGS, summary="A command with its full state history",
     security=[{"portal": []}])
async def command_detail(conn: Conn, principal: Principal, agent_id: UUID, command_id: UUID) -> s.Command:
    return await service.detail(conn, principal=principal, agent_id=agent_id, command_id=command_id)


@post([AGENT_PATH + "/{command_id:uuid}/result", AGENT_PATH + "/{command_id:uuid}"], tags=TAGS, status_code=200,
      opt=CONFLICT,
      summary="Agent reports a command's progress or result", security=[{"agent": []}])
async def command_result(ctx: AppContext, conn: Conn, agent: AgentPrincipal, agent_id: UUID, command_id: UUID,
                         data: s.CommandResult) -> s.ResultAck:
    return await service.record_result(conn, settings=ctx.settings, agent=agent, command_id=command_id,
                                       result=data, via="poll")


@post(AGENT_PATH + "/{command_id:uuid}/approve", tags=TAGS, status_code=200, security=[{"portal": []}],
      opt=CONFLICT,
      summary="Approve a command awaiting approval (admin/technician other than the requester)")
async def approve(ctx: AppContext, conn: Conn, principal: Principal, agent_id: UUID, command_id: UUID,
                  data: s.Decision | None = None) -> s.Command:
    return await service.approve(conn, settings=ctx.settings, principal=principal, agent_id=agent_id,
                                 command_id=command_id, body=data)


@post(AGENT_PATH + "/{command_id:uuid}/reject", tags=TAGS, status_code=200, security=[{"portal": []}],
      opt=CONFLICT,
      summary="Reject a command awaiting approval (admin/technician)")
async def reject(conn: Conn, principal: Principal, agent_id: UUID, command_id: UUID,
                 data: s.Decision | None = None) -> s.Command:
    return await service.reject(conn, principal=principal, agent_id=agent_id, command_id=command_id, body=data)


@post(AGENT_PATH + "/{command_id:uuid}/cancel", tags=TAGS, status_code=200, security=[{"portal": []}],
      opt=CONFLICT,
      summary="Cancel a pending or sent command (requester or admin/technician)")
async def cancel(conn: Conn, principal: Principal, agent_id: UUID, command_id: UUID,
                 data: s.Decision | None = None) -> s.Command:
    return await service.cancel(conn, principal=principal, agent_id=agent_id, command_id=command_id, body=data)


def _statuses(raw: str | None) -> list[str] | None:
    if not raw:
        return None
    values = [v.strip() for v in raw.split(",") if v.strip()]
    for v in values:
        if v not in STATUSES:
            raise ValidationFailed(f"status: unknown status {v!r}", field="status")
    return values


HANDLERS: list[Any] = [create_command, poll_or_list, list_all, command_detail, command_result, approve, reject,
                       cancel]
