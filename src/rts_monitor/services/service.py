"""Choosing the services each device watches: per device and as business-wide defaults.

The effective list (device entries over business defaults for the device's OS over defaults for
every OS) is materialised into ``agent_monitored_services`` by ``sync_devices``, in the same
transaction as the change: the ``service_down`` rule reads ``should_be_running`` there, the agent
config (``GET …/config``) its list, and every device whose list changed gets a new
``config_version`` so its next heartbeat answers ``config_updated``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from uuid import UUID

import msgspec

from rts_monitor.audit import service as audit
from rts_monitor.auth.principal import Principal
from rts_monitor.core.errors import Forbidden, NotFound, ValidationFailed
from rts_monitor.db import Conn, Queries
from rts_monitor.db.rows import fetch_all, fetch_one
from rts_monitor.devices.scope import visible_agent
from rts_monitor.services import structs as s

Q = Queries.beside(__file__)
log = logging.getLogger(__name__)


def _no_duplicates(keys: Sequence[tuple[str | None, str]]) -> None:
    seen: set[tuple[str | None, str]] = set()
    for i, key in enumerate(keys):
        if key in seen:
            raise ValidationFailed(f"services[{i}].service_name: {key[1]!r} is listed twice",
                                   field=f"services[{i}].service_name")
        seen.add(key)


async def sync_devices(conn: Conn, device_ids: list[UUID]) -> list[UUID]:
    """Re-materialise the effective lists of ``device_ids``; returns the devices whose list changed."""
    if not device_ids:
        return []
    rows = await fetch_all(conn, Q.sync_devices, {"ids": device_ids})
    return [r["id"] for r in rows]


async def config_services(conn: Conn, agent_id: UUID) -> list[s.ServiceChoice]:
    """The list an agent gets with its config."""
    rows = await fetch_all(conn, Q.effective_services, {"agent_id": agent_id})
    return [s.ServiceChoice(r["service_name"], r["should_be_running"], r["auto_restart"]) for r in rows]


async def device_services(conn: Conn, *, principal: Principal, agent_id: UUID) -> s.DeviceServices:
    await visible_agent(conn, principal.business_scope, agent_id)
    return await _device(conn, agent_id)


async def _device(conn: Conn, agent_id: UUID) -> s.DeviceServices:
    own = await fetch_all(conn, Q.device_entries, {"agent_id": agent_id})
    effective = await fetch_all(conn, Q.effective_services, {"agent_id": agent_id})
    return s.DeviceServices(agent_id=str(agent_id), services=msgspec.convert(own, list[s.ServiceChoice]),
                            effective=msgspec.convert(effective, list[s.WatchedService]))


async def set_device_services(conn: Conn, *, principal: Principal, agent_id: UUID,
                              body: s.DeviceServicesIn) -> s.DeviceServices:
    """Replace the device's own entries (staff): what it watches beyond, or instead of, the
    business defaults (an entry with ``should_be_running: false`` silences a default)."""
    device = await visible_agent(conn, principal.business_scope, agent_id)
    if not principal.is_staff:
        raise Forbidden("only an admin or technician can choose monitored services")
    _no_duplicates([(None, c.service_name) for c in body.services])
    async with conn.transaction():
        before = await fetch_all(conn, Q.device_entries, {"agent_id": agent_id})
        await conn.execute(Q.delete_device_entries, {"agent_id": agent_id})
        await conn.execute(Q.insert_device_entries, {
            "agent_id": agent_id, "names": [c.service_name for c in body.services],
            "running": [c.should_be_running for c in body.services],
            "restart": [c.auto_restart for c in body.services]})
        changed = await sync_devices(conn, [agent_id])
        await audit.record(conn, principal=principal, action="monitored_services.set", object_type="agent",
                           object_id=agent_id, business_id=device["business_id"], before=before,
                           after=msgspec.to_builtins(body.services))
    log.info("services.device_set", extra={"agent_id": str(agent_id), "services": len(body.services),
                                           "config_bumped": bool(changed)})
    return await _device(conn, agent_id)


async def _visible_business(conn: Conn, principal: Principal, business_id: UUID) -> None:
    if await fetch_one(conn, Q.visible_business, {"business_id": business_id,
                                                  "scope": principal.business_scope}) is None:
        raise NotFound("business not found")


async def business_services(conn: Conn, *, principal: Principal, business_id: UUID) -> s.BusinessServices:
    await _visible_business(conn, principal, business_id)
    rows = await fetch_all(conn, Q.business_entries, {"business_id": business_id})
    return s.BusinessServices(business_id=str(business_id), services=msgspec.convert(rows, list[s.DefaultChoice]))


async def set_business_services(conn: Conn, *, principal: Principal, business_id: UUID,
                                body: s.BusinessServicesIn) -> s.BusinessServices:
    """Replace the business-wide defaults (staff); every device of the business is re-synced."""
    await _visible_business(conn, principal, business_id)
    if not principal.is_staff:
        raise Forbidden("only an admin or technician can choose monitored services")
    _no_duplicates([((c.os_type or "").lower(), c.service_name) for c in body.services])
    async with conn.transaction():
        before = await fetch_all(conn, Q.business_entries, {"business_id": business_id})
        await conn.execute(Q.delete_business_entries, {"business_id": business_id})
        await conn.execute(Q.insert_business_entries, {
            "business_id": business_id, "os_types": [c.os_type or "" for c in body.services],
            "names": [c.service_name for c in body.services],
            "running": [c.should_be_running for c in body.services],
            "restart": [c.auto_restart for c in body.services]})
        devices = [r["id"] for r in await fetch_all(conn, Q.business_devices, {"business_id": business_id})]
        changed = await sync_devices(conn, devices)
        await audit.record(conn, principal=principal, action="monitored_services.set_default", object_type="business",
                           object_id=business_id, business_id=business_id, before=before,
                           after=msgspec.to_builtins(body.services))
    log.info("services.business_set", extra={"business_id": str(business_id), "services": len(body.services),
                                             "devices_changed": len(changed)})
    return await business_services(conn, principal=principal, business_id=business_id)
