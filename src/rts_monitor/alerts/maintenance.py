"""Maintenance windows: while one covers a device (its business, its location or itself), no
alert opens for it. Alerts that were already open keep their lifecycle; since nothing opens
during the window, leaving it cannot produce resolutions for alerts that never opened."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import msgspec
from psycopg import AsyncConnection

from rts_monitor.alerts.rules import require_rule_writer
from rts_monitor.alerts.structs import Maintenance, MaintenanceCreate, MaintenanceUpdate
from rts_monitor.audit import service as audit
from rts_monitor.auth.principal import Principal
from rts_monitor.core.errors import NotFound, ValidationFailed
from rts_monitor.core.settings import Settings
from rts_monitor.db import Queries
from rts_monitor.devices.scope import visible_agent

Q = Queries.beside(__file__)


async def _business_for(conn: AsyncConnection[Any], principal: Principal, data: MaintenanceCreate) -> UUID:
    """The window's business, checked against the location/device it names (404 outside scope)."""
    scope = principal.business_scope
    business_id = data.business_id
    if data.agent_device_id is not None:
        dev = await visible_agent(conn, scope, data.agent_device_id, field="agent_device_id")
        if business_id is not None and business_id != dev["business_id"]:
            raise ValidationFailed("agent_device_id: belongs to another business", field="agent_device_id")
        business_id = dev["business_id"]
    if data.service_location_id is not None:
        cur = await conn.execute(Q.location_business, {"id": data.service_location_id, "scope": scope})
        loc = await cur.fetchone()
        if loc is None:
            raise NotFound("service location not found", field="service_location_id")
        if business_id is not None and business_id != loc["business_id"]:
            raise ValidationFailed("service_location_id: belongs to another business", field="service_location_id")
        business_id = loc["business_id"]
    business_id = business_id or principal.business_id
    if business_id is None:
        raise ValidationFailed("business_id: required (or service_location_id / agent_device_id)",
                               field="business_id")
    cur = await conn.execute(Q.business_exists, {"id": business_id, "scope": scope})
    if await cur.fetchone() is None:
        raise NotFound("business not found", field="business_id")
    return business_id


def _check_range(starts_at: Any, ends_at: Any) -> None:
    if starts_at.tzinfo is None or ends_at.tzinfo is None:
        raise ValidationFailed("starts_at: times need a time zone (e.g. Z)", field="starts_at")
    if ends_at <= starts_at:
        raise ValidationFailed("ends_at: must be after starts_at", field="ends_at")


async def create(conn: AsyncConnection[Any], *, principal: Principal, settings: Settings,
                 data: MaintenanceCreate) -> Maintenance:
    require_rule_writer(principal, settings)
    _check_range(data.starts_at, data.ends_at)
    business_id = await _business_for(conn, principal, data)
    async with conn.transaction():
        cur = await conn.execute(Q.maintenance_insert, {
            "business_id": business_id, "service_location_id": data.service_location_id,
            "agent_device_id": data.agent_device_id, "starts_at": data.starts_at, "ends_at": data.ends_at,
            "reason": data.reason, "created_by": principal.user_id})
        row = await cur.fetchone()
        assert row is not None
        window = await get(conn, principal=principal, window_id=row["id"])
        await _audit(conn, principal, "create", window.id, business_id, None, window)
    return window


async def _audit(conn: AsyncConnection[Any], principal: Principal, verb: str, window_id: UUID,
                 business_id: UUID | None, before: Maintenance | None, after: Maintenance | None) -> None:
    await audit.record(conn, principal=principal, action=f"maintenance_window.{verb}",
                       object_type="maintenance_window", object_id=window_id, business_id=business_id,
                       before=before, after=after)


async def get(conn: AsyncConnection[Any], *, principal: Principal, window_id: UUID) -> Maintenance:
    cur = await conn.execute(Q.maintenance_get, {"id": window_id, "scope": principal.business_scope})
    row = await cur.fetchone()
    if row is None:
        raise NotFound("maintenance window not found")
    return msgspec.convert(row, Maintenance)


async def list_windows(conn: AsyncConnection[Any], *, principal: Principal, business_id: UUID | None,
                       current: bool, include_past: bool) -> list[Maintenance]:
    cur = await conn.execute(Q.maintenance_list, {"scope": principal.business_scope, "business_id": business_id,
                                                  "current": current, "include_past": include_past})
    return [msgspec.convert(r, Maintenance) for r in await cur.fetchall()]


async def update(conn: AsyncConnection[Any], *, principal: Principal, settings: Settings, window_id: UUID,
                 data: MaintenanceUpdate) -> Maintenance:
    """Move or end a window early (set ends_at to now)."""
    require_rule_writer(principal, settings)
    cur_w = await get(conn, principal=principal, window_id=window_id)
    starts = cur_w.starts_at if data.starts_at is msgspec.UNSET else data.starts_at
    ends = cur_w.ends_at if data.ends_at is msgspec.UNSET else data.ends_at
    reason = cur_w.reason if data.reason is msgspec.UNSET else data.reason
    _check_range(starts, ends)
    async with conn.transaction():
        await conn.execute(Q.maintenance_update, {"id": window_id, "starts_at": starts, "ends_at": ends,
                                                  "reason": reason})
        window = await get(conn, principal=principal, window_id=window_id)
        await _audit(conn, principal, "update", window_id, window.business_id, cur_w, window)
    return window


async def delete(conn: AsyncConnection[Any], *, principal: Principal, settings: Settings, window_id: UUID) -> None:
    require_rule_writer(principal, settings)
    async with conn.transaction():
        before = await get(conn, principal=principal, window_id=window_id)
        cur = await conn.execute(Q.maintenance_delete, {"id": window_id, "scope": principal.business_scope})
        if await cur.fetchone() is None:
            raise NotFound("maintenance window not found")
        await _audit(conn, principal, "delete", window_id, before.business_id, before, None)
