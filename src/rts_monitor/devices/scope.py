"""Tenancy for device-scoped requests, in one place: another business's agent (or a deleted one)
is "not found", never "forbidden", so its existence is not confirmed (README, Standards)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from psycopg import AsyncConnection

from rts_monitor.core.errors import NotFound
from rts_monitor.db import Queries
from rts_monitor.db.rows import Row, fetch_one

Q = Queries.beside(__file__)


async def visible_agent(conn: AsyncConnection[Any], scope: UUID | None, agent_id: UUID, *,
                        field: str | None = None) -> Row:
    """The agent's ``id``, ``business_id`` and ``service_location_id`` if ``scope`` (a business id,
    or None for MSP staff) may see it; else a 404 (naming ``field`` when it came from a body)."""
    row = await fetch_one(conn, Q.visible_agent, {"agent_id": agent_id, "scope": scope})
    if row is None:
        raise NotFound("agent not found", field=field)
    return row
