"""Software inventory: the agent reports its installed software; the portal reads it."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from litestar import get, post
from litestar.params import Parameter

from rts_monitor.auth.principal import AgentPrincipal, Principal
from rts_monitor.db import Conn
from rts_monitor.inventory import search, service
from rts_monitor.inventory.structs import (
    InventoryAccepted,
    InventoryReport,
    OutdatedAgents,
    SoftwareList,
    SoftwareSearch,
)


@post("/api/agents/{agent_id:uuid}/inventory", status_code=200, tags=["inventory"], security=[{"agent": []}],
      summary="Report the complete list of installed software (upsert; what is missing becomes inactive)",
      description="Body: `{\"software\": [{name, version, vendor, install_date, software_type, "
                  "is_security_software}], \"collected_at\", \"source\"}`. 422 names the field "
                  "(`software[3].name`); a (name, version) listed twice is a 422.")
async def post_inventory(conn: Conn, agent: AgentPrincipal, agent_id: UUID,
                         data: InventoryReport) -> InventoryAccepted:
    return await service.store_report(conn, device_id=agent.agent_id, report=data)


@get("/api/agents/{agent_id:uuid}/inventory", tags=["inventory"], security=[{"portal": []}],
     summary="Installed software of one agent (customers: their own agents only)")
async def get_inventory(
    conn: Conn, principal: Principal, agent_id: UUID,
    include_inactive: Annotated[bool, Parameter(description="Also list software no longer installed")] = False,
) -> SoftwareList:
    return await service.get_for_portal(conn, scope=principal.business_scope, device_id=agent_id,
                                        include_inactive=include_inactive)


@get("/api/software", tags=["inventory"], security=[{"portal": []}],
     summary="Which devices run a package (customers: their own), optionally within a version range",
     description="`name` is case-insensitive, `*` a wildcard. `version_lt`/`version_gte` compare the way each "
                 "device's package manager orders versions (dpkg, rpm; dpkg's general rules otherwise).")
async def software_search(
    conn: Conn, principal: Principal,
    # optional here so a caller without credentials gets 401 before a missing name is a 422
    name: Annotated[str | None, Parameter(min_length=1, max_length=255)] = None,
    version_lt: Annotated[str | None, Parameter(max_length=100)] = None,
    version_gte: Annotated[str | None, Parameter(max_length=100)] = None,
    business_id: UUID | None = None,
) -> SoftwareSearch:
    return await search.search(conn, principal=principal, name=name, version_lt=version_lt,
                               version_gte=version_gte, business_id=business_id)


@get("/api/software/outdated-agents", tags=["inventory"], security=[{"portal": []}],
     summary="Agents running an rts-agent older than the one this server serves")
async def outdated_agents(conn: Conn, principal: Principal, business_id: UUID | None = None) -> OutdatedAgents:
    return await search.outdated_agents(conn, principal=principal, business_id=business_id)


HANDLERS: list[Any] = [post_inventory, get_inventory, software_search, outdated_agents]
