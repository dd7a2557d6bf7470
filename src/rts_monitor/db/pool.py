"""The async connection pool, opened in the app lifespan."""

from __future__ import annotations

import json

from psycopg import AsyncConnection
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from rts_monitor.core.settings import Settings

# Written by ``rts-monitor db up`` (devtools/localdb.py) in the state dir: {"url": …, "port": …}.
LOCAL_SERVER_RECORD = "db.json"


class NoDatabaseConfigured(RuntimeError):
    """Neither DATABASE_URL nor a local server: the message says what to do."""


def resolve_database_url(settings: Settings) -> str:
    """DATABASE_URL, or the local server that ``rts-monitor db up`` recorded in the state dir."""
    if settings.database_url:
        return settings.database_url
    try:
        record = json.loads((settings.state_dir / LOCAL_SERVER_RECORD).read_text())
    except (OSError, ValueError):
        record = {}
    url = record.get("url") if isinstance(record, dict) else None
    if not url:
        raise NoDatabaseConfigured("DATABASE_URL is empty and no local server is provisioned in "
                                   f"{settings.state_dir}: run `rts-monitor db up` (or `./dev run`)")
    return str(url)


async def _configure(conn: AsyncConnection) -> None:
    conn.row_factory = dict_row  # type: ignore[assignment]


async def open_pool(settings: Settings, *, name: str = "rts", max_size: int | None = None) -> AsyncConnectionPool:
    pool = AsyncConnectionPool(
        resolve_database_url(settings),
        min_size=min(settings.db_pool_min, max_size or settings.db_pool_max),
        max_size=max_size or settings.db_pool_max,
        name=name,
        open=False,
        configure=_configure,
        kwargs={"application_name": f"rts-monitor:{name}"},
    )
    await pool.open(wait=True, timeout=30)
    return pool
