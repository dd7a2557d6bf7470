"""``GET /health``: liveness, what the database is (edition, versions), and which dependency is down.

Answered at once whatever the database does: while it is known to be down (``db/availability.py``)
nothing waits on the pool, and otherwise one ``SELECT 1`` gets the pool's acquisition timeout.
503 (with Retry-After) means this instance cannot serve requests that need the database;
``down`` names every dependency that is not working, ``dependencies`` says how each one is.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec
from litestar import Response, get

from rts_monitor import __version__
from rts_monitor.commands import hub
from rts_monitor.core.context import AppContext
from rts_monitor.db import availability, connection
from rts_monitor.ingest.pipeline import IngestPipeline


class DatabaseHealth(msgspec.Struct):
    ok: bool
    postgres: str
    timescaledb: str
    edition: str
    license: str
    error: str | None = None


class DependencyHealth(msgspec.Struct):
    ok: bool
    detail: str | None = None
    # when it was found down (the database), as the server's clock says
    down_since: datetime | None = None


class Health(msgspec.Struct):
    status: str  # ok | degraded
    version: str
    database: DatabaseHealth
    down: list[str] = msgspec.field(default_factory=list)
    dependencies: dict[str, DependencyHealth] = msgspec.field(default_factory=dict)


async def _database(ctx: AppContext) -> DependencyHealth:
    known = availability(ctx.pool)
    if known is not None and not known.up:
        since = datetime.fromtimestamp(known.down_at, UTC) if known.down_at else None
        return DependencyHealth(False, known.last_error, since)
    try:
        async with connection(ctx.pool) as conn:
            await conn.execute("SELECT 1")
    except Exception as exc:  # health must answer whatever the database does
        return DependencyHealth(False, f"{type(exc).__name__}: {exc}"[:200])
    return DependencyHealth(True)


def _components(ctx: AppContext) -> dict[str, DependencyHealth]:
    """The long-lived parts that can be down while the process answers."""
    out: dict[str, DependencyHealth] = {}
    ingest = ctx.services.get("ingest")
    if not isinstance(ingest, IngestPipeline):
        out["ingest"] = DependencyHealth(False, "not running in this process")
    else:
        out["ingest"] = DependencyHealth(not ingest.closing, "shutting down" if ingest.closing else None)
    commands = ctx.services.get(hub.SERVICE_NAME)
    if isinstance(commands, hub.CommandHub):
        ok = commands.listening.is_set()
        out["command_listener"] = DependencyHealth(
            ok, None if ok else "LISTEN connection lost: commands reach agents by polling until it reconnects")
    return out


@get("/health", summary="Service health: the database and the components that depend on it", tags=["health"],
     exclude_from_auth=True)
async def health(ctx: AppContext) -> Response[Health]:
    db = await _database(ctx)
    deps = {"database": db, **_components(ctx)}
    down = [name for name, dep in deps.items() if not dep.ok]
    body = Health(
        status="ok" if not down else "degraded",
        version=__version__,
        database=DatabaseHealth(
            ok=db.ok,
            postgres=ctx.database.postgres_version,
            timescaledb=ctx.database.timescaledb_version,
            edition=ctx.edition,
            license="timescale" if ctx.edition == "tsl" else "apache",
            error=db.detail,
        ),
        down=down,
        dependencies=deps,
    )
    headers = {"Retry-After": "1"} if not db.ok else None
    return Response(body, status_code=200 if db.ok else 503, headers=headers)


HANDLERS: list[Any] = [health]
