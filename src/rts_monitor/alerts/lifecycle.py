"""Alert episodes as users see them: lists with filters, acknowledge, resolve (with notes).

The evaluator opens and auto-resolves episodes; people acknowledge ("I'm on it") and resolve
("fixed"). A manual resolve while the condition still holds does not reopen at the next cycle:
the evaluator only opens a new episode whose evidence window starts after that resolve.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import msgspec
from psycopg import AsyncConnection

from rts_monitor.alerts.structs import Delivery, Episode
from rts_monitor.auth.principal import Principal
from rts_monitor.core.errors import Conflict, NotFound, ValidationFailed
from rts_monitor.db import Queries

Q = Queries.beside(__file__)
STATUSES = ("active", "acknowledged", "resolved", "auto_resolved")
SEVERITIES = ("info", "warning", "critical")


def parse_csv(value: str | None, allowed: tuple[str, ...], field: str) -> list[str] | None:
    """``a,b`` query filter → list, rejecting unknown values by name."""
    if not value:
        return None
    items = [v.strip() for v in value.split(",") if v.strip()]
    for item in items:
        if item not in allowed:
            raise ValidationFailed(f"{field}: unknown value {item!r}; one of {', '.join(allowed)}", field=field)
    return items


async def list_episodes(conn: AsyncConnection[Any], *, principal: Principal, business_id: UUID | None = None,
                        agent_id: UUID | None = None, rule_id: UUID | None = None, status: str | None = None,
                        severity: str | None = None, since: datetime | None = None, until: datetime | None = None,
                        limit: int = 100, offset: int = 0) -> tuple[list[Episode], int]:
    if not 1 <= limit <= 1000:
        raise ValidationFailed("limit: must be between 1 and 1000", field="limit")
    if offset < 0:
        raise ValidationFailed("offset: must be >= 0", field="offset")
    if since is not None and until is not None and until <= since:
        raise ValidationFailed("until: must be after since", field="until")
    params = {
        "scope": principal.business_scope, "business_id": business_id, "agent_id": agent_id, "rule_id": rule_id,
        "statuses": parse_csv(status, STATUSES, "status"), "severities": parse_csv(severity, SEVERITIES, "severity"),
        "since": since, "until": until, "limit": limit, "offset": offset,
    }
    cur = await conn.execute(Q.episode_list, params)
    rows = await cur.fetchall()
    total = int(rows[0]["total"]) if rows else 0
    return [msgspec.convert({k: v for k, v in r.items() if k != "total"}, Episode) for r in rows], total


async def get_episode(conn: AsyncConnection[Any], *, principal: Principal, alert_id: UUID) -> Episode:
    cur = await conn.execute(Q.episode_get, {"id": alert_id, "scope": principal.business_scope})
    row = await cur.fetchone()
    if row is None:
        raise NotFound("alert not found")
    return msgspec.convert(row, Episode)


async def acknowledge(conn: AsyncConnection[Any], *, principal: Principal, alert_id: UUID,
                      notes: str | None) -> Episode:
    """active → acknowledged; anything else is a 409 saying what it is."""
    async with conn.transaction():
        status = await _lock(conn, principal, alert_id)
        if status != "active":
            raise Conflict(f"alert is {status}; only an active alert can be acknowledged")
        await conn.execute(Q.episode_acknowledge, {"id": alert_id, "user_id": principal.user_id, "notes": notes})
    return await get_episode(conn, principal=principal, alert_id=alert_id)


async def resolve(conn: AsyncConnection[Any], *, principal: Principal, alert_id: UUID, notes: str | None) -> Episode:
    """active/acknowledged → resolved, with the follow-up work (ticket note, notifications) enqueued."""
    async with conn.transaction():
        status = await _lock(conn, principal, alert_id)
        if status not in ("active", "acknowledged"):
            raise Conflict(f"alert is already {status}")
        await conn.execute(Q.episode_resolve, {"id": alert_id, "user_id": principal.user_id, "notes": notes})
        await conn.execute(Q.enqueue_resolved, {"ids": [alert_id]})
        await conn.execute(Q.rejudge_device, {"ids": [alert_id]})
    return await get_episode(conn, principal=principal, alert_id=alert_id)


async def deliveries(conn: AsyncConnection[Any], *, principal: Principal, alert_id: UUID) -> list[Delivery]:
    await get_episode(conn, principal=principal, alert_id=alert_id)
    cur = await conn.execute(Q.deliveries, {"id": alert_id})
    return [msgspec.convert(r, Delivery) for r in await cur.fetchall()]


async def _lock(conn: AsyncConnection[Any], principal: Principal, alert_id: UUID) -> str:
    cur = await conn.execute(Q.episode_lock, {"id": alert_id, "scope": principal.business_scope})
    row = await cur.fetchone()
    if row is None:
        raise NotFound("alert not found")
    return str(row["status"])


