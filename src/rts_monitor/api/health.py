"""``GET /health``: liveness, what the database is (edition, versions), and which dependency is down.

Answered at once whatever the database does: while it is known to be down (``db/availability.py``)
nothing waits on the pool, and otherwise one ``SELECT 1`` gets the pool's acquisition timeout.
503 (with Retry-After) means this instance cannot serve requests that need the database;
``down`` names every dependency that is not working, ``dependencies`` says how each one is.

For load balancers and orchestrators (docs/operations.md):

* ``GET /health/live``: 200 while the process's event loop answers; nothing else is checked (a
  database outage must not get every replica restarted).
* ``GET /health/ready``: 200 when this process should get traffic: not shutting down (SIGTERM
  flips it first, api/lifespan.py), the database reachable, its schema at least at the newest
  migration this code knows, the pool not exhausted. Else 503 with the failing ``checks``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec
from litestar import Response, get
from litestar.openapi.datastructures import ResponseSpec

from rts_monitor import __version__
from rts_monitor.commands import hub
from rts_monitor.core import metrics
from rts_monitor.core.context import AppContext
from rts_monitor.core.edition import Edition
from rts_monitor.db import availability, connection
from rts_monitor.db.migrations import plan
from rts_monitor.db.reads import replica_of
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


class ReplicaHealth(msgspec.Struct):
    """The hot standby of RTS_DATABASE_READ_URL (db/reads.py). A bypassed standby costs the primary
    its reads, not a request: it does not make the service degraded."""

    state: str  # in_use | bypassed
    reason: str | None  # lag | down | not_standby (while bypassed)
    detail: str | None
    lag_seconds: float | None
    since: datetime  # when it went into (or out of) use
    checked_at: datetime | None


class Health(msgspec.Struct):
    status: str  # ok | degraded
    version: str
    database: DatabaseHealth
    down: list[str] = msgspec.field(default_factory=list)
    dependencies: dict[str, DependencyHealth] = msgspec.field(default_factory=dict)
    # None without RTS_DATABASE_READ_URL
    replica: ReplicaHealth | None = None


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


def _replica(ctx: AppContext) -> ReplicaHealth | None:
    replica = replica_of(ctx)
    if replica is None:
        return None
    snap = replica.snapshot()
    checked = snap["checked_at"]
    return ReplicaHealth(state=snap["state"], reason=snap["reason"], detail=snap["detail"],
                         lag_seconds=snap["lag_seconds"], since=datetime.fromtimestamp(snap["since"], UTC),
                         checked_at=datetime.fromtimestamp(checked, UTC) if checked else None)


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
        replica=_replica(ctx),
    )
    headers = {"Retry-After": "1"} if not db.ok else None
    return Response(body, status_code=200 if db.ok else 503, headers=headers)


class Check(msgspec.Struct):
    ok: bool
    detail: str | None = None


class Readiness(msgspec.Struct):
    ready: bool
    checks: dict[str, Check]


class Liveness(msgspec.Struct):
    live: bool


@get("/health/live", summary="Liveness: the process answers", tags=["health"], exclude_from_auth=True)
async def live() -> Liveness:
    return Liveness(True)


_EXPECTED: dict[str, int] = {}


def expected_version(edition: Edition) -> int:
    """The newest versioned migration this code ships for the edition (read once per process)."""
    if edition not in _EXPECTED:
        _EXPECTED[edition] = max((f.version or 0 for f in plan(edition)), default=0)
    return _EXPECTED[edition]


async def readiness(ctx: AppContext) -> Readiness:
    checks: dict[str, Check] = {"shutdown": Check(not ctx.shutting_down,
                                                  "shutting down" if ctx.shutting_down else None)}
    stats = ctx.pool.get_stats()
    exhausted = (stats.get("pool_available", 0) == 0 and stats.get("pool_size", 0) >= ctx.pool.max_size
                 and stats.get("requests_waiting", 0) > 0)
    checks["pool"] = Check(not exhausted, f"{stats.get('requests_waiting', 0)} requests waiting for a connection"
                           if exhausted else None)
    expected = expected_version(ctx.edition)
    known = availability(ctx.pool)
    if known is not None and not known.up:
        checks["database"] = Check(False, known.last_error)
        checks["migrations"] = Check(False, "database unreachable")
    elif not exhausted:
        try:
            async with connection(ctx.pool) as conn:
                row = await (await conn.execute(
                    "SELECT max(version) AS v FROM rts_migrations WHERE kind = 'versioned'")).fetchone()
            checks["database"] = Check(True)
            applied = int(row["v"] or 0) if row else 0
            # newer is fine: a rolling upgrade migrates before the old processes are replaced
            checks["migrations"] = Check(applied >= expected, None if applied >= expected
                                         else f"schema at {applied:04d}, this code needs {expected:04d}")
        except Exception as exc:  # readiness must answer whatever the database does
            checks["database"] = Check(False, f"{type(exc).__name__}: {exc}"[:200])
            checks["migrations"] = Check(False, "database unreachable")
    ready = all(c.ok for c in checks.values())
    metrics.instruments().ready.set(1 if ready else 0)
    return Readiness(ready, checks)


@get("/health/ready", summary="Readiness: send traffic to this process (200) or not (503)", tags=["health"],
     exclude_from_auth=True,
     responses={503: ResponseSpec(Readiness, description="Not ready: `checks` says which check failed",
                                  generate_examples=False)})
async def ready(ctx: AppContext) -> Response[Readiness]:
    body = await readiness(ctx)
    return Response(body, status_code=200 if body.ready else 503,
                    headers=None if body.ready else {"Retry-After": "1"})


HANDLERS: list[Any] = [health, live, ready]
