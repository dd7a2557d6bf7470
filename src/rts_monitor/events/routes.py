"""Agent events: the agent reports (HTTP fallback of the WebSocket ``event`` message), the portal
reads them per device."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from litestar import get, post
from litestar.params import Parameter

from rts_monitor.auth.principal import AgentPrincipal, Principal
from rts_monitor.core.context import AppContext
from rts_monitor.core.types import planned_time
from rts_monitor.db import Conn
from rts_monitor.events import service
from rts_monitor.events import structs as s

TAGS = ["events"]
PATH = "/api/agents/{agent_id:uuid}/events"


@post(PATH, tags=TAGS, status_code=201, security=[{"agent": []}],
      summary="Agent reports an event (same body as the WebSocket event message, without type)")
async def report_event(ctx: AppContext, conn: Conn, agent: AgentPrincipal, agent_id: UUID,
                       data: s.EventIn) -> s.EventAck:
    return await service.record(conn, settings=ctx.settings, agent_id=agent.agent_id, event=data, via="http")


@get(PATH, tags=TAGS, security=[{"portal": []}], summary="Events a device reported, newest first")
async def list_events(
    conn: Conn, principal: Principal, agent_id: UUID,
    event_type: str | None = None,
    before: datetime | None = None,
    limit: int = Parameter(default=100, ge=1, le=1000),
) -> s.EventList:
    planned_time(before, "before")
    return await service.list_for_device(conn, principal=principal, agent_id=agent_id, event_type=event_type,
                                         before=before, limit=limit)


HANDLERS: list[Any] = [report_event, list_events]
