"""Heartbeat, presence and the fleet views.

Every portal-facing query carries the caller's business scope, so another business's agent is
simply not found (404). Status changes are always written to ``agent_status_transitions`` in the
same statement/transaction that makes them, so availability can be computed from that table.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from typing import Any
from uuid import UUID

import msgspec

from rts_monitor.audit import service as audit
from rts_monitor.auth import agents, rotation
from rts_monitor.auth.principal import AgentPrincipal, Principal, require_staff
from rts_monitor.commands import service as commands
from rts_monitor.core.errors import Conflict, Forbidden, NotFound, Unauthorized, ValidationFailed
from rts_monitor.core.settings import Settings
from rts_monitor.db import Conn, Queries
from rts_monitor.db.rows import execute, fetch_all, fetch_one
from rts_monitor.devices.structs import (
    AdminAgent,
    AdminBusinessGroup,
    AdminFleet,
    AdminLocationGroup,
    AgentDetail,
    AgentList,
    AgentListItem,
    AgentPatch,
    BusinessRef,
    HeartbeatRequest,
    HeartbeatResponse,
    LocationRef,
    StatusCounts,
)
from rts_monitor.enrolment.service import agent_config
from rts_monitor.enrolment.structs import AgentConfig
from rts_monitor.inventory import service as inventory

log = logging.getLogger(__name__)
Q = Queries.beside(__file__)

STATUSES = ("online", "offline", "error", "disabled")
# Sort name -> (SQL expression over alias d, its SQL type). NULLs are folded to a sentinel so
# the keyset comparison (expr, id) > (after_key, after_id) is total.
SORTS: dict[str, tuple[str, str]] = {
    "device_name": ("d.device_name", "text"),
    "hostname": ("coalesce(d.hostname, '')", "text"),
    "status": ("d.status", "text"),
    "last_heartbeat": ("coalesce(d.last_heartbeat, '-infinity'::timestamptz)", "timestamptz"),
    "created_at": ("coalesce(d.created_at, '-infinity'::timestamptz)", "timestamptz"),
}
MAX_PAGE = 500


# ---------------------------------------------------------------- agent side


async def heartbeat(conn: Conn, *, agent: AgentPrincipal, request: HeartbeatRequest,
                    settings: Settings | None = None) -> HeartbeatResponse:
    """Proof of life: server time is what counts (agent clocks drift), the body only informs.
    With ``settings`` (the HTTP heartbeat) the answer also carries a new agent token when one is
    due (auth/rotation.py): a request/answer pair, so a token is never lost between two channels."""
    row = await fetch_one(conn, Q.heartbeat, {
        "agent_id": agent.agent_id, "status": request.status, "agent_version": request.agent_version,
        "config_version": request.config_version,
    })
    if row is None:  # deleted or revoked since the (cached) authentication
        agents.forget()
        raise Unauthorized("agent token unknown or revoked")
    answer = msgspec.convert(row, HeartbeatResponse)
    if settings is not None:
        answer.agent_token = await rotation.on_heartbeat(conn, settings=settings, agent=agent)
    return answer


async def get_config(conn: Conn, *, settings: Settings, agent: AgentPrincipal) -> AgentConfig:
    """The agent's current config; fetching it acknowledges that version (config_updated clears)."""
    row = await fetch_one(conn, Q.agent_config_row, {"agent_id": agent.agent_id})
    if row is None:
        raise Unauthorized("agent token unknown or revoked")
    await conn.execute(Q.mark_config_delivered, {"agent_id": agent.agent_id, "config_version": row["config_version"]})
    return agent_config(settings, row)


async def mark_offline(conn: Conn, *, threshold_seconds: float) -> list[UUID]:
    """Mark agents silent for longer than ``threshold_seconds`` offline; returns their ids."""
    rows = await fetch_all(conn, Q.mark_offline, {
        "threshold_seconds": threshold_seconds,
        "reason": f"no heartbeat for {threshold_seconds:g}s",
    })
    return [r["agent_device_id"] for r in rows]


# ---------------------------------------------------------------- fleet list


def parse_statuses(values: list[str] | None, field: str = "status") -> list[str] | None:
    """``?status=online,offline`` (or repeated): every value must be a known status."""
    if not values:
        return None
    out = [v.strip() for raw in values for v in raw.split(",") if v.strip()]
    for i, value in enumerate(out):
        if value not in STATUSES:
            raise ValidationFailed(
                f"{field}[{i}]: {value!r} is not one of {', '.join(STATUSES)}", field=f"{field}[{i}]")
    return out or None


def _encode_cursor(sort: str, key: str, agent_id: UUID) -> str:
    raw = json.dumps([sort, key, str(agent_id)], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str, sort: str) -> tuple[str, UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        c_sort, key, agent_id = json.loads(raw)
        parsed = UUID(agent_id)
    except (binascii.Error, ValueError, TypeError):
        raise ValidationFailed("cursor: not a cursor from this endpoint", field="cursor") from None
    if c_sort != sort or not isinstance(key, str):
        raise ValidationFailed("cursor: was issued for another sort order", field="cursor")
    return key, parsed


def _page_query(sort: str) -> tuple[str, str]:
    """(SQL of the page for this sort, the bare sort name). ``-name`` sorts descending."""
    desc = sort.startswith("-")
    name = sort.removeprefix("-")
    if name not in SORTS:
        raise ValidationFailed(f"sort: must be one of {', '.join(SORTS)} (prefix - for descending)",
                               field="sort")
    expr, sql_type = SORTS[name]
    sql = Q.fleet_page.format(sort=expr, sort_type=sql_type, cmp="<" if desc else ">",
                              dir="DESC" if desc else "ASC")
    return sql, sort


def _like(q: str | None) -> str | None:
    if q is None or not q.strip():
        return None
    escaped = q.strip().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


async def _require_business_visible(conn: Conn, principal: Principal, business_id: UUID) -> None:
    row = await fetch_one(conn, Q.business_visible, {"business_id": business_id, "scope": principal.business_scope})
    if row is None:
        raise NotFound("business not found")


async def list_agents(
    conn: Conn, *, principal: Principal, settings: Settings, business_id: UUID | None,
    statuses: list[str] | None, location_id: UUID | None, q: str | None, sort: str, cursor: str | None, limit: int,
) -> AgentList:
    sql, sort = _page_query(sort)
    after_key, after_id = _decode_cursor(cursor, sort) if cursor else (None, None)
    if business_id is not None:
        await _require_business_visible(conn, principal, business_id)
    rows = await fetch_all(conn, sql, {  # sql: a whitelisted format of a named query, see SORTS
        "scope": principal.business_scope, "business_id": business_id, "location_id": location_id,
        "statuses": statuses, "q": _like(q), "after_key": after_key, "after_id": after_id,
        "limit": limit + 1, "lookback_hours": settings.latest_metrics_lookback_hours,
    })
    more = len(rows) > limit
    rows = rows[:limit]
    items = msgspec.convert(rows, list[AgentListItem])
    next_cursor = _encode_cursor(sort, rows[-1]["sort_key"], rows[-1]["id"]) if more and rows else None
    return AgentList(agents=items, next_cursor=next_cursor)


# ---------------------------------------------------------------- one agent


async def get_agent(conn: Conn, *, principal: Principal, agent_id: UUID) -> AgentDetail:
    d = await fetch_one(conn, Q.agent_detail, {"agent_id": agent_id, "scope": principal.business_scope})
    if d is None:
        raise NotFound("agent not found")
    d["current_metrics"] = await fetch_one(conn, Q.latest_metrics, {"agent_id": agent_id})
    d["monitored_services"] = await fetch_all(conn, Q.monitored_services, {"agent_id": agent_id})
    d["software"] = await inventory.list_for_device(conn, agent_id)
    return msgspec.convert(d, AgentDetail)


async def _lock_visible(conn: Conn, principal: Principal, agent_id: UUID) -> dict[str, Any]:
    row = await fetch_one(conn, Q.lock_visible_agent, {"agent_id": agent_id, "scope": principal.business_scope})
    if row is None:
        raise NotFound("agent not found")
    return dict(row)


def _new_status(current: str, disabled: bool | msgspec.UnsetType) -> str | None:
    if disabled is msgspec.UNSET:
        return None
    if disabled and current != "disabled":
        return "disabled"
    if not disabled and current == "disabled":
        return "offline"  # back under presence; the next heartbeat makes it online
    return None


async def patch_agent(conn: Conn, *, principal: Principal, agent_id: UUID, patch: AgentPatch) -> AgentDetail:
    """Customers may rename and relocate their own agents; flags and disabling are staff-only."""
    staff_only = ("monitoring_enabled", "alerts_enabled", "auto_remediation_enabled", "disabled")
    async with conn.transaction():
        agent = await _lock_visible(conn, principal, agent_id)
        if not principal.is_staff:
            for name in staff_only:
                if getattr(patch, name) is not msgspec.UNSET:
                    raise Forbidden(f"{name}: only admins and technicians may change it")
        location = patch.service_location_id
        if isinstance(location, UUID):
            ok = await fetch_one(conn, Q.location_of_business, {
                "location_id": location, "business_id": agent["business_id"]})
            if ok is None:
                raise ValidationFailed("service_location_id: not a location of this agent's business",
                                       field="service_location_id")
        new_status = _new_status(agent["status"], patch.disabled)

        def value(v: Any) -> Any:
            return None if v is msgspec.UNSET else v

        await conn.execute(Q.patch_agent, {
            "agent_id": agent_id, "device_name": value(patch.device_name),
            "set_location": location is not msgspec.UNSET, "location_id": value(location),
            "monitoring_enabled": value(patch.monitoring_enabled), "alerts_enabled": value(patch.alerts_enabled),
            "auto_remediation_enabled": value(patch.auto_remediation_enabled), "new_status": new_status,
        })
        if new_status is not None:
            await conn.execute(Q.insert_transition, {
                "agent_id": agent_id, "from_status": agent["status"], "to_status": new_status,
                "reason": f"{'disabled' if new_status == 'disabled' else 'enabled'} by {principal.user_id}",
            })
        changed = {f: getattr(patch, f) for f in AgentPatch.__struct_fields__ if getattr(patch, f) is not msgspec.UNSET}
        if principal.is_staff:
            await audit.record(conn, principal=principal, action="agent.update", object_type="agent",
                               object_id=agent_id, business_id=agent["business_id"],
                               before={"status": agent["status"]}, after=changed)
    log.info("devices.patched", extra={"agent_id": str(agent_id), "by": str(principal.user_id),
                                       "fields": [f for f in AgentPatch.__struct_fields__
                                                  if getattr(patch, f) is not msgspec.UNSET]})
    return await get_agent(conn, principal=principal, agent_id=agent_id)


async def delete_agent(conn: Conn, *, principal: Principal, agent_id: UUID) -> None:
    """Soft delete; the token dies with it (401 on every agent endpoint from then on)."""
    await _staff_write(conn, principal=principal, agent_id=agent_id, query=Q.soft_delete_agent, event="deleted")


async def revoke_agent_token(conn: Conn, *, principal: Principal, agent_id: UUID) -> None:
    """Cut the agent off without deleting it; it must be re-enrolled with a new token."""
    await _staff_write(conn, principal=principal, agent_id=agent_id, query=Q.revoke_agent_token,
                       event="token_revoked")


async def rotate_agent_token(conn: Conn, *, settings: Settings, principal: Principal,
                             agent_id: UUID) -> rotation.TokenRotation:
    """Staff: the agent gets a new token in its next heartbeat answer; the current one keeps
    working through the grace period after that (auth/rotation.py)."""
    async with conn.transaction():
        agent = await _lock_visible(conn, principal, agent_id)  # 404 first: never confirm existence
        if not principal.is_staff:
            raise Forbidden("admin or technician role required")
        if not agent["agent_token_hash"]:
            raise Conflict("this agent's token is revoked: enrol it again instead")
        answer = await rotation.request(conn, settings=settings, principal=principal, agent_id=agent_id,
                                        business_id=agent["business_id"])
        await commands.notify_token_rotation(conn, agent_id)  # a connected agent heartbeats at once
    log.info("devices.token_rotation_requested", extra={"agent_id": str(agent_id), "by": str(principal.user_id)})
    return answer


async def _staff_write(conn: Conn, *, principal: Principal, agent_id: UUID, query: str, event: str) -> None:
    async with conn.transaction():
        agent = await _lock_visible(conn, principal, agent_id)  # 404 first: never confirm existence
        if not principal.is_staff:
            raise Forbidden("admin or technician role required")
        await execute(conn, query, {"agent_id": agent_id})
        await audit.record(conn, principal=principal, action=f"agent.{event}", object_type="agent",
                           object_id=agent_id, business_id=agent["business_id"])
    for token_hash in (agent["agent_token_hash"], agent["agent_token_previous_hash"]):
        if token_hash:
            agents.forget(token_hash)
    log.info(f"devices.{event}", extra={"agent_id": str(agent_id), "by": str(principal.user_id)})


# ---------------------------------------------------------------- admin view


def _count(counts: StatusCounts, status: str) -> None:
    counts.total += 1
    if status in STATUSES:
        setattr(counts, status, getattr(counts, status) + 1)


async def admin_fleet(
    conn: Conn, *, principal: Principal, business_id: UUID | None, location_id: UUID | None,
    statuses: list[str] | None, limit: int,
) -> AdminFleet:
    """All businesses' agents grouped by business, then location, with status counts (staff only)."""
    require_staff(principal)
    rows = await fetch_all(conn, Q.admin_fleet, {
        "business_id": business_id, "location_id": location_id, "statuses": statuses, "limit": limit,
    })
    total = StatusCounts()
    groups: dict[UUID, AdminBusinessGroup] = {}
    locations: dict[tuple[UUID, UUID | None], AdminLocationGroup] = {}
    for r in rows:
        biz = groups.get(r["business_id"])
        if biz is None:
            biz = groups[r["business_id"]] = AdminBusinessGroup(
                BusinessRef(r["business_id"], r["business_name"]), StatusCounts(), [])
        key = (r["business_id"], r["service_location_id"])
        loc = locations.get(key)
        if loc is None:
            ref = LocationRef(r["service_location_id"], r["location_name"]) if r["service_location_id"] else None
            loc = locations[key] = AdminLocationGroup(ref, StatusCounts(), [])
            biz.locations.append(loc)
        loc.agents.append(AdminAgent(r["id"], r["device_name"], r["hostname"], r["status"], r["last_heartbeat"],
                                     r["os_type"], r["agent_version"]))
        for counts in (total, biz.counts, loc.counts):
            _count(counts, r["status"])
    return AdminFleet(counts=total, businesses=list(groups.values()))

