"""Store an agent's software report and read it back (portal, agent detail)."""

from __future__ import annotations

import logging
import re
from typing import Any
from uuid import UUID

import msgspec

from rts_monitor.core.errors import NotFound, ValidationFailed
from rts_monitor.db import Conn, Queries
from rts_monitor.db.rows import fetch_all, fetch_one
from rts_monitor.inventory.structs import InventoryAccepted, InventoryReport, SoftwareInfo, SoftwareItem, SoftwareList

Q = Queries.beside(__file__)
log = logging.getLogger(__name__)

# Names that mark security software when the agent did not say (antivirus, EDR, firewalls, MAC).
_SECURITY = re.compile(
    r"(clamav|crowdstrike|falcon-sensor|sentinel ?one|defender|sophos|eset|kaspersky|bitdefender|"
    r"malwarebytes|mcafee|symantec|trend ?micro|carbon ?black|wazuh|ossec|osquery|fail2ban|ufw|"
    r"firewalld|apparmor|selinux|auditd|aide|rkhunter|chkrootkit)",
    re.IGNORECASE,
)


def _check_unique(items: list[SoftwareItem]) -> None:
    """Each (name, version) once: one row each, and an upsert cannot touch a row twice."""
    seen: dict[tuple[str, str | None], int] = {}
    for i, item in enumerate(items):
        key = (item.name, item.version)
        if key in seen:
            raise ValidationFailed(
                f"software[{i}]: duplicate of software[{seen[key]}] (same name and version)",
                field=f"software[{i}]",
            )
        seen[key] = i


def _columns(items: list[SoftwareItem]) -> dict[str, list[Any]]:
    return {
        "names": [i.name for i in items],
        "versions": [i.version for i in items],
        "vendors": [i.vendor for i in items],
        "install_dates": [i.install_date for i in items],
        "types": [i.software_type for i in items],
        "security": [
            i.is_security_software if i.is_security_software is not None else bool(_SECURITY.search(i.name))
            for i in items
        ],
    }


async def store_report(conn: Conn, *, device_id: UUID, report: InventoryReport) -> InventoryAccepted:
    """Upsert the full list and mark what is no longer installed inactive, in one transaction."""
    _check_unique(report.software)
    async with conn.transaction():
        if await fetch_one(conn, Q.lock_device, {"device_id": device_id}) is None:
            raise NotFound("agent not found")
        rows = await fetch_all(conn, Q.upsert_items, {"device_id": device_id, **_columns(report.software)})
        cur = await conn.execute(Q.deactivate_missing, {"device_id": device_id})
        deactivated = cur.rowcount
        await conn.execute(Q.mark_reported, {"device_id": device_id, "source": report.source})
        active = await fetch_one(conn, Q.count_active, {"device_id": device_id})
    added = sum(1 for r in rows if r["inserted"])
    result = InventoryAccepted(received=len(report.software), added=added, updated=len(rows) - added,
                               deactivated=deactivated, active=int(active["n"]) if active else 0)
    log.info("inventory.stored", extra={"agent_id": str(device_id), "source": report.source,
                                        "received": result.received, "added": added,
                                        "deactivated": deactivated})
    return result


async def list_for_device(conn: Conn, device_id: UUID, *,
                          include_inactive: bool = False) -> list[SoftwareInfo]:
    """The device's software, installed first per name (the agent detail embeds this).

    No tenancy check here: callers pass a device they already resolved for the principal.
    """
    rows = await fetch_all(conn, Q.list_for_device, {"device_id": device_id, "include_inactive": include_inactive})
    return msgspec.convert(rows, list[SoftwareInfo])


async def get_for_portal(conn: Conn, *, scope: UUID | None, device_id: UUID,
                         include_inactive: bool) -> SoftwareList:
    """``GET /api/agents/{id}/inventory``: another business's device is a 404."""
    device = await fetch_one(conn, Q.visible_device, {"device_id": device_id, "scope": scope})
    if device is None:
        raise NotFound("agent not found")
    software = await list_for_device(conn, device_id, include_inactive=include_inactive)
    return SoftwareList(agent_id=str(device_id), reported_at=device["inventory_reported_at"], software=software)
