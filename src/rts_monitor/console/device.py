"""The device page's data, from the services the API uses (tenancy and shapes written once there).

``devices.service.get_agent`` answers the header, current values, services and software and is
the page's tenancy check (another business's or an unknown device is its 404). Alerts come from
``alerts.lifecycle``, commands from ``commands.service``; only the status timeline and the
agent's reporting intervals are read here (no service offers them yet).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from rts_monitor.alerts import lifecycle
from rts_monitor.alerts.structs import Episode
from rts_monitor.auth.principal import Principal
from rts_monitor.commands import service as commands
from rts_monitor.commands.structs import Command
from rts_monitor.core.errors import ValidationFailed
from rts_monitor.core.settings import Settings
from rts_monitor.db import Conn, Queries
from rts_monitor.db.rows import Row, fetch_all, fetch_one
from rts_monitor.devices import service as devices
from rts_monitor.devices.scope import visible_agent
from rts_monitor.devices.structs import AgentDetail

Q = Queries.beside(__file__)
TIMELINE_LIMIT = 5000
RECENT_ALERTS_DAYS = 30


@dataclass
class DevicePage:
    agent: AgentDetail
    metrics_interval_seconds: int
    heartbeat_interval_seconds: int
    open_alerts: list[Episode]
    recent_alerts: list[Episode]
    commands: list[Command]
    timeline: list[Row]
    people: dict[UUID, str]


async def load(conn: Conn, *, settings: Settings, principal: Principal, agent_id: UUID) -> DevicePage:
    agent = await devices.get_agent(conn, principal=principal, agent_id=agent_id)
    now = datetime.now(UTC)
    extras = await fetch_one(conn, Q.device_extras, {"agent_id": agent_id}) or {}
    open_alerts, _ = await lifecycle.list_episodes(conn, principal=principal, agent_id=agent_id,
                                                   status="active,acknowledged", limit=100)
    recent, _ = await lifecycle.list_episodes(conn, principal=principal, agent_id=agent_id,
                                              status="resolved,auto_resolved",
                                              since=now - timedelta(days=RECENT_ALERTS_DAYS), limit=20)
    timeline = await _timeline(conn, agent_id, now - timedelta(days=1), now)
    listed = await commands.list_commands(conn, principal=principal, agent_id=agent_id, statuses=None,
                                          awaiting_approval=False, limit=10)
    return DevicePage(
        agent=agent,
        metrics_interval_seconds=extras.get("metrics_interval_seconds") or settings.metrics_interval_seconds,
        heartbeat_interval_seconds=extras.get("heartbeat_interval_seconds") or settings.heartbeat_interval_seconds,
        open_alerts=open_alerts, recent_alerts=recent, commands=listed.commands, timeline=timeline,
        people={r["id"]: r["email"] for r in await fetch_all(conn, Q.user_emails, {
            "ids": list({c.requested_by for c in listed.commands})})},
    )


async def _timeline(conn: Conn, agent_id: UUID, start: datetime, end: datetime) -> list[Row]:
    return await fetch_all(conn, Q.status_timeline, {"agent_id": agent_id, "start": start, "end": end,
                                                     "limit": TIMELINE_LIMIT})


def _time(name: str, value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace(" ", "+").replace("Z", "+00:00"))
    except ValueError:
        raise ValidationFailed(f"{name}: {value[:60]!r} is not an ISO 8601 time", field=name) from None
    if parsed.tzinfo is None:
        raise ValidationFailed(f"{name}: needs a time zone (e.g. 2025-10-09T10:30:00Z)", field=name)
    return parsed


async def timeline(conn: Conn, *, principal: Principal, agent_id: UUID, start: str | None,
                   end: str | None) -> dict[str, Any]:
    """Status changes of one device within [start, end) (default: the last 24 hours), with the
    status it had at start; for the device page's online/offline bar."""
    hi = _time("end", end) or datetime.now(UTC)
    lo = _time("start", start) or hi - timedelta(days=1)
    if hi <= lo:
        raise ValidationFailed("end: must be after start", field="end")
    if hi - lo > timedelta(days=400):
        raise ValidationFailed("start: at most 400 days before end", field="start")
    await visible_agent(conn, principal.business_scope, agent_id)
    rows = await _timeline(conn, agent_id, lo, hi)
    now = await fetch_one(conn, Q.device_status, {"agent_id": agent_id})
    return {"start": lo, "end": hi, "transitions": rows, "truncated": len(rows) >= TIMELINE_LIMIT, "current": now}
