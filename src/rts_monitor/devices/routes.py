"""Heartbeat and config (agent token) and the fleet views (portal JWT)."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from litestar import delete, get, patch, post
from litestar.params import Parameter
from litestar.status_codes import HTTP_202_ACCEPTED, HTTP_204_NO_CONTENT

from rts_monitor.auth.principal import AgentPrincipal, Principal
from rts_monitor.auth.rotation import TokenRotation
from rts_monitor.core.context import AppContext
from rts_monitor.db import Conn, Reads
from rts_monitor.devices import bulk, service
from rts_monitor.devices.structs import (
    AdminFleet,
    AgentDetail,
    AgentList,
    AgentPatch,
    HeartbeatRequest,
    HeartbeatResponse,
)
from rts_monitor.enrolment.structs import AgentConfig

AGENT_TAGS = ["agent"]
FLEET_TAGS = ["fleet"]
AGENT: list[dict[str, list[str]]] = [{"agent": []}]
PORTAL: list[dict[str, list[str]]] = [{"portal": []}]
StatusFilter = Annotated[list[str] | None, Parameter(
    description="Comma-separated and/or repeated: online, offline, error, disabled")]


@post("/api/agents/{agent_id:uuid}/heartbeat", status_code=200, tags=AGENT_TAGS, security=AGENT,
      summary="Agent check-in: status and version; answers config_updated, pending_commands and a new "
              "agent_token when its token is rotated")
async def heartbeat(ctx: AppContext, conn: Conn, agent: AgentPrincipal, agent_id: UUID,
                    data: HeartbeatRequest) -> HeartbeatResponse:
    return await service.heartbeat(conn, agent=agent, request=data, settings=ctx.settings)


@get("/api/agents/{agent_id:uuid}/config", tags=AGENT_TAGS, security=AGENT,
     summary="The agent's current config; fetching it acknowledges config_version")
async def agent_config(ctx: AppContext, conn: Conn, agent: AgentPrincipal, agent_id: UUID) -> AgentConfig:
    return await service.get_config(conn, settings=ctx.settings, agent=agent)


@get("/api/agents", tags=FLEET_TAGS, security=PORTAL,
     summary="List agents (customers: their business only) with the latest cpu/memory/disk")
async def list_agents(
    ctx: AppContext, reads: Reads, principal: Principal, business_id: UUID | None = None,
    status: StatusFilter = None, service_location_id: UUID | None = None,
    q: Annotated[str | None, Parameter(description="Substring of device name or hostname", max_length=200)] = None,
    sort: Annotated[str, Parameter(description="device_name | hostname | status | last_heartbeat | "
                                   "created_at; prefix - for descending")] = "device_name",
    cursor: Annotated[str | None, Parameter(description="next_cursor of the previous page", max_length=2000)] = None,
    limit: Annotated[int, Parameter(ge=1, le=service.MAX_PAGE)] = 100,
) -> AgentList:
    return await reads.run(
        service.list_agents, principal=principal, settings=ctx.settings, business_id=business_id,
        statuses=service.parse_statuses(status), location_id=service_location_id, q=q, sort=sort, cursor=cursor,
        limit=limit,
    )


@get("/api/agents/{agent_id:uuid}", tags=FLEET_TAGS, security=PORTAL,
     summary="Agent detail: current metrics, active alert count, monitored services")
async def get_agent(reads: Reads, principal: Principal, agent_id: UUID) -> AgentDetail:
    return await reads.run(service.get_agent, principal=principal, agent_id=agent_id)


@patch("/api/agents/{agent_id:uuid}", tags=FLEET_TAGS, security=PORTAL,
       summary="Rename, relocate, set flags (staff), disable/enable (staff)")
async def patch_agent(conn: Conn, principal: Principal, agent_id: UUID, data: AgentPatch) -> AgentDetail:
    return await service.patch_agent(conn, principal=principal, agent_id=agent_id, patch=data)


@delete("/api/agents/{agent_id:uuid}", status_code=HTTP_204_NO_CONTENT, tags=FLEET_TAGS, security=PORTAL,
        summary="Soft-delete an agent and revoke its token (admin, technician)")
async def delete_agent(conn: Conn, principal: Principal, agent_id: UUID) -> None:
    await service.delete_agent(conn, principal=principal, agent_id=agent_id)


@post("/api/agents/{agent_id:uuid}/token/revoke", status_code=HTTP_204_NO_CONTENT, tags=FLEET_TAGS,
      security=PORTAL, summary="Revoke the agent's token without deleting it (admin, technician)")
async def revoke_agent_token(conn: Conn, principal: Principal, agent_id: UUID) -> None:
    await service.revoke_agent_token(conn, principal=principal, agent_id=agent_id)


@post("/api/agents/{agent_id:uuid}/rotate-token", status_code=HTTP_202_ACCEPTED, tags=FLEET_TAGS,
      security=PORTAL, opt={"errors": [409]},
      summary="Rotate the agent's token (admin, technician): the agent gets a new one in its next heartbeat "
              "answer; the old one works for RTS_AGENT_TOKEN_GRACE_SECONDS after that")
async def rotate_agent_token(ctx: AppContext, conn: Conn, principal: Principal, agent_id: UUID) -> TokenRotation:
    return await service.rotate_agent_token(conn, settings=ctx.settings, principal=principal, agent_id=agent_id)


@get("/api/admin/agents", tags=FLEET_TAGS, security=PORTAL,
     summary="Every business's agents grouped by business and location (admin, technician)")
async def admin_agents(
    reads: Reads, principal: Principal, business_id: UUID | None = None, status: StatusFilter = None,
    service_location_id: UUID | None = None, limit: Annotated[int, Parameter(ge=1, le=50_000)] = 10_000,
) -> AdminFleet:
    return await reads.run(service.admin_fleet, principal=principal, business_id=business_id,
                                     location_id=service_location_id,
                                     statuses=service.parse_statuses(status), limit=limit)


@post("/api/agents/bulk", status_code=200, tags=FLEET_TAGS, security=PORTAL,
      summary="One action on many agents (pause/resume monitoring, set intervals, delete), a result per agent "
              "(admin, technician)")
async def bulk_agents(ctx: AppContext, conn: Conn, principal: Principal, data: bulk.BulkRequest) -> bulk.BulkResponse:
    return await bulk.run(conn, settings=ctx.settings, principal=principal, body=data)


HANDLERS: list[Any] = [heartbeat, agent_config, list_agents, get_agent, patch_agent, delete_agent,
                       revoke_agent_token, rotate_agent_token, admin_agents, bulk_agents]
