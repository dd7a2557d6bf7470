"""The async connection pool, opened in the app lifespan."""

from __future__ import annotations

from psycopg import AsyncConnection
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from rts_monitor.config import Settings


def resolve_database_url(settings: Settings) -> str:
    """DATABASE_URL, or the local server provisioned by ``rts-monitor db up``."""
    if settings.database_url:
        return settings.database_url
    from rts_monitor import localdb

    return localdb.dsn(localdb.layout(settings))


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
