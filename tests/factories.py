"""Rows the tests need, inserted directly with SQL (the portal owns these tables, not our API)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from rts_monitor.auth import agents


async def business(conn: Any, name: str | None = None) -> UUID:
    cur = await conn.execute(
        "INSERT INTO businesses (business_name) VALUES (%s) RETURNING id",
        (name or f"Biz {secrets.token_hex(3)}",),
    )
    return (await cur.fetchone())["id"]  # type: ignore[no-any-return]


async def location(conn: Any, business_id: UUID, name: str | None = None) -> UUID:
    cur = await conn.execute(
        "INSERT INTO service_locations (business_id, location_name) VALUES (%s, %s) RETURNING id",
        (business_id, name or f"Site {secrets.token_hex(3)}"),
    )
    return (await cur.fetchone())["id"]  # type: ignore[no-any-return]


async def user(conn: Any, business_id: UUID | None, role: str = "customer") -> UUID:
    cur = await conn.execute(
        "INSERT INTO users (business_id, email, role) VALUES (%s, %s, %s) RETURNING id",
        (business_id, f"u{secrets.token_hex(4)}@example.test", role),
    )
    return (await cur.fetchone())["id"]  # type: ignore[no-any-return]


@dataclass(frozen=True)
class Agent:
    id: UUID
    token: str
    business_id: UUID
    service_location_id: UUID | None

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


async def agent(conn: Any, business_id: UUID, location_id: UUID | None = None, *,
                name: str | None = None, status: str = "online") -> Agent:
    """An enrolled agent device with a live token (as registration would leave it)."""
    token, token_hash = agents.new_token()
    cur = await conn.execute(
        """
        INSERT INTO agent_devices (business_id, service_location_id, agent_token_hash, device_name,
                                   os_type, agent_version, hostname, status, status_changed_at)
        VALUES (%s, %s, %s, %s, 'linux', '1.0.0', %s, %s, now())
        RETURNING id
        """,
        (business_id, location_id, token_hash, name or f"dev-{secrets.token_hex(3)}",
         f"host-{secrets.token_hex(3)}", status),
    )
    row = await cur.fetchone()
    return Agent(row["id"], token, business_id, location_id)


@dataclass(frozen=True)
class Tenant:
    """A business with one location, a customer user and one agent: the usual test world."""

    business_id: UUID
    location_id: UUID
    customer_id: UUID
    agent: Agent


async def tenant(conn: Any) -> Tenant:
    b = await business(conn)
    loc = await location(conn, b)
    cust = await user(conn, b, "customer")
    ag = await agent(conn, b, loc)
    return Tenant(b, loc, cust, ag)
