"""``GET /health``: liveness plus what the database is (edition, versions); no auth."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Response, get

from rts_monitor import __version__
from rts_monitor.core.context import AppContext


class DatabaseHealth(msgspec.Struct):
    ok: bool
    postgres: str
    timescaledb: str
    edition: str
    license: str
    error: str | None = None


class Health(msgspec.Struct):
    status: str
    version: str
    database: DatabaseHealth


@get("/health", summary="Service and database health", tags=["health"], exclude_from_auth=True)
async def health(ctx: AppContext) -> Response[Health]:
    ok, error = True, None
    try:
        async with ctx.pool.connection(timeout=5) as conn:
            await conn.execute("SELECT 1")
    except Exception as exc:  # health must answer whatever the database does
        ok, error = False, type(exc).__name__
    db = DatabaseHealth(
        ok=ok,
        postgres=ctx.database.postgres_version,
        timescaledb=ctx.database.timescaledb_version,
        edition=ctx.edition,
        license="timescale" if ctx.edition == "tsl" else "apache",
        error=error,
    )
    body = Health(status="ok" if ok else "degraded", version=__version__, database=db)
    return Response(body, status_code=200 if ok else 503)


HANDLERS: list[Any] = [health]
