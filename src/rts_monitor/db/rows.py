"""Typed fetch helpers: pool connections return dict rows (``db.pool._configure``), but the
pool's static type says tuples; these say ``dict[str, Any]`` once instead of an ignore per use."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

from psycopg import AsyncConnection

Row = dict[str, Any]


async def fetch_one(conn: AsyncConnection[Any], query: str, params: Mapping[str, Any] | None = None) -> Row | None:
    cur = await conn.execute(query, params)
    return cast(Row | None, await cur.fetchone())


async def fetch_all(conn: AsyncConnection[Any], query: str, params: Mapping[str, Any] | None = None) -> list[Row]:
    cur = await conn.execute(query, params)
    return cast(list[Row], await cur.fetchall())


async def execute(conn: AsyncConnection[Any], query: str, params: Mapping[str, Any] | None = None) -> int:
    """Run a statement that returns no rows; the affected row count."""
    cur = await conn.execute(query, params)
    return cur.rowcount
