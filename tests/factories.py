"""Rows the tests need, inserted directly with SQL (the portal owns these tables, not our API)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from rts_monitor.auth import agents
from rts_monitor.ingest.validate import SCALES


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


# Raw metric samples as ingestion writes them (issue 5 tests): the rows, ON CONFLICT DO NOTHING
# (a re-sent sample keeps the stored one), and in the same transaction one metric_ingest_ranges
# row per device with the range written, which the tiers' refresh consumes.
SAMPLE_COLUMNS = (
    "agent_device_id", "collected_at", "cpu_percent", "memory_used_gb", "memory_percent", "disk_used_gb",
    "disk_percent", "load_average_1m", "load_average_5m", "load_average_15m", "uptime_seconds",
    "network_rx_bytes", "network_tx_bytes",
)


def stored_column(name: str) -> str:
    """The column of agent_metrics that holds the wire's ``name`` (gauges are scaled integers)."""
    return f"{name}_x{SCALES[name]}" if name in SCALES else name


def stored_value(name: str, value: Any) -> Any:
    """A wire value as that column stores it (rounded to the agent's precision)."""
    return round(value * SCALES[name]) if name in SCALES and value is not None else value


async def metric_samples(conn: Any, samples: list[dict[str, Any]]) -> int:
    """Insert samples (dicts keyed by SAMPLE_COLUMNS in wire units; missing → NULL) like an ingest flush."""
    if not samples:
        return 0
    cols = ", ".join(stored_column(c) for c in SAMPLE_COLUMNS)
    ranges: dict[Any, list[Any]] = {}
    for s in samples:
        r = ranges.setdefault(s["agent_device_id"], [s["collected_at"], s["collected_at"], 0])
        r[0], r[1], r[2] = min(r[0], s["collected_at"]), max(r[1], s["collected_at"]), r[2] + 1
    async with conn.transaction():
        values = [tuple(stored_value(c, s.get(c)) for c in SAMPLE_COLUMNS) for s in samples]
        placeholders = "(" + ", ".join(["%s"] * len(SAMPLE_COLUMNS)) + ")"
        cur = await conn.execute(
            f"INSERT INTO agent_metrics ({cols}) VALUES "
            + ", ".join([placeholders] * len(values)) + " ON CONFLICT DO NOTHING",
            [v for row in values for v in row],
        )
        written = int(cur.rowcount)
        for dev, (lo, hi, n) in ranges.items():
            await conn.execute(
                "INSERT INTO metric_ingest_ranges (agent_device_id, range_start, range_end, row_count) "
                "VALUES (%s, %s, %s, %s)", (dev, lo, hi, n))
    return written
