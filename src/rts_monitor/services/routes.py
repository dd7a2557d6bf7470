"""Monitored-service choices: per device and business-wide (portal JWT; writes by staff)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from litestar import get, put

from rts_monitor.auth.principal import Principal
from rts_monitor.db import Conn
from rts_monitor.services import service
from rts_monitor.services import structs as s

TAGS = ["services"]
PORTAL: list[dict[str, list[str]]] = [{"portal": []}]


@get("/api/agents/{agent_id:uuid}/monitored-services", tags=TAGS, security=PORTAL,
     summary="The device's own service choices and its effective list (with business defaults)")
async def get_device(conn: Conn, principal: Principal, agent_id: UUID) -> s.DeviceServices:
    return await service.device_services(conn, principal=principal, agent_id=agent_id)


@put("/api/agents/{agent_id:uuid}/monitored-services", tags=TAGS, security=PORTAL, opt={"errors": [403]},
     summary="Replace the device's own service choices (admin, technician)")
async def put_device(conn: Conn, principal: Principal, agent_id: UUID, data: s.DeviceServicesIn) -> s.DeviceServices:
    return await service.set_device_services(conn, principal=principal, agent_id=agent_id, body=data)


@get("/api/businesses/{business_id:uuid}/monitored-services", tags=TAGS, security=PORTAL,
     summary="The business-wide default services (optionally per OS type)")
async def get_business(conn: Conn, principal: Principal, business_id: UUID) -> s.BusinessServices:
    return await service.business_services(conn, principal=principal, business_id=business_id)


@put("/api/businesses/{business_id:uuid}/monitored-services", tags=TAGS, security=PORTAL, opt={"errors": [403]},
     summary="Replace the business-wide default services (admin, technician)")
async def put_business(conn: Conn, principal: Principal, business_id: UUID,
                       data: s.BusinessServicesIn) -> s.BusinessServices:
    return await service.set_business_services(conn, principal=principal, business_id=business_id, body=data)


HANDLERS: list[Any] = [get_device, put_device, get_business, put_business]
