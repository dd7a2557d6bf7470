"""Storing agent events and the device state some of them change.

``service_crashed`` (and ``service_stopped``) set the service's row in
``agent_monitored_services`` to 'stopped' with ``last_state_change`` = the event time, in the
same transaction as the event: that is what the alerting concern's ``service_down`` rule reads.
``service_started`` and ``service_recovered`` (what the agent's watch loop sends when a crashed
service runs again) set it back to 'running'. Other event types are stored as they come.

A service event is judged at once (docs/services.md): the device's ``service_down`` rules are
evaluated in the same unit of work, so a recovery resolves its episode without waiting for the
next sample or cycle, and a rule with ``duration_minutes: 0`` opens on the crash itself.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any
from uuid import UUID

import msgspec
from psycopg.types.json import Jsonb

from rts_monitor.alerts import evaluator
from rts_monitor.auth.principal import Principal
from rts_monitor.core.errors import ValidationFailed, error_field
from rts_monitor.core.settings import Settings
from rts_monitor.db import Conn, Queries
from rts_monitor.db.rows import fetch_all, fetch_one
from rts_monitor.devices.scope import visible_agent
from rts_monitor.events import structs as s
from rts_monitor.services import remediation

Q = Queries.beside(__file__)
log = logging.getLogger(__name__)

# Event type → the status it gives the named service.
SERVICE_STATUS = {"service_crashed": "stopped", "service_stopped": "stopped", "service_started": "running",
                  "service_recovered": "running"}


def _service_data(event: s.EventIn) -> s.ServiceEventData | None:
    if event.event_type not in SERVICE_STATUS:
        return None
    try:
        return msgspec.convert(event.data, type=s.ServiceEventData)
    except msgspec.ValidationError as exc:
        field, message = error_field("data", str(exc))
        raise ValidationFailed(f"{field}: {message}", field=field) from None


async def record(conn: Conn, *, settings: Settings, agent_id: UUID, event: s.EventIn, via: str) -> s.EventAck:
    """Store one event (once per ``event_id``) and apply its effect on service state."""
    service = _service_data(event)
    data = {k: v for k, v in event.data.items()}
    async with conn.transaction():
        row = await fetch_one(conn, Q.insert_event, {
            "agent_id": agent_id, "event_type": event.event_type, "occurred_at": event.timestamp,
            "data": Jsonb(_clean(data)), "event_id": event.event_id, "via": via,
        })
        if row is None:  # a re-sent event_id: already stored, its effect already applied
            dup = await fetch_one(conn, Q.event_by_event_id, {"agent_id": agent_id, "event_id": event.event_id})
            return s.EventAck(id=dup["id"] if dup else 0, event_type=event.event_type, duplicate=True,
                              event_id=event.event_id)
        if service is not None:
            await conn.execute(Q.set_service_status, {
                "agent_id": agent_id, "service_name": service.service_name,
                "status": SERVICE_STATUS[event.event_type],
                "pid": service.pid if SERVICE_STATUS[event.event_type] == "running" else None,
                "at": event.timestamp or datetime.now().astimezone(),
            })
    log.info("agent.event", extra={"agent_id": str(agent_id), "event_type": event.event_type, "via": via,
                                   "event_row": row["id"]})
    if service is not None:
        if SERVICE_STATUS[event.event_type] == "stopped":
            await remediation.remediate(conn, settings=settings, trigger="event", agent_id=agent_id,
                                        service_name=service.service_name)
        await evaluator.evaluate(conn, settings, devices=[agent_id], kinds=("service_down",))
    return s.EventAck(id=row["id"], event_type=event.event_type, duplicate=False, event_id=event.event_id)


def _clean(value: Any) -> Any:
    """PostgreSQL JSONB cannot hold U+0000: replace it wherever it hides."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, dict):
        return {_clean(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


async def list_for_device(conn: Conn, *, principal: Principal, agent_id: UUID, event_type: str | None,
                          before: datetime | None, limit: int) -> s.EventList:
    await visible_agent(conn, principal.business_scope, agent_id)
    rows = await fetch_all(conn, Q.list_events, {"agent_id": agent_id, "scope": principal.business_scope,
                                                 "event_type": event_type, "before": before, "limit": limit})
    return s.EventList(msgspec.convert(rows, list[s.AgentEvent]))
