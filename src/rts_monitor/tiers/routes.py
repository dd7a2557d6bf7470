"""Admin API for the rollup tiers (DBA controls): ``/api/admin/tiers…``, admin role only."""

from __future__ import annotations

from typing import Any

from litestar import get, post, put

from rts_monitor.auth.principal import Principal, Role, require_role
from rts_monitor.core.context import AppContext
from rts_monitor.db import Conn
from rts_monitor.tiers import service
from rts_monitor.tiers.structs import ChunkIntervalBody, CompressionBody, RefreshBody, RetentionBody, TiersView

_TAGS = ["tiers"]
_SEC: list[dict[str, list[str]]] = [{"portal": []}]


async def _view(ctx: AppContext, conn: Conn) -> TiersView:
    return TiersView(**await service.show(conn, edition=ctx.edition))


@get("/api/admin/tiers", summary="Tiers and raw table: chunks, size, compression, retention, lag, jobs",
     tags=_TAGS, security=_SEC)
async def show_tiers(ctx: AppContext, conn: Conn, principal: Principal) -> TiersView:
    require_role(principal, Role.admin)
    return await _view(ctx, conn)


@put("/api/admin/tiers/{name:str}/retention", summary="Set a level's retention (null: keep forever)",
     opt={"errors": [409]},  # api/openapi.py: refused on this edition, or data not yet materialised
     tags=_TAGS, security=_SEC)
async def put_retention(ctx: AppContext, conn: Conn, principal: Principal, name: str, data: RetentionBody) -> TiersView:
    require_role(principal, Role.admin)
    retention = service.parse_duration(data.retention, field="retention")
    await conn.set_autocommit(True)
    await service.set_retention(conn, edition=ctx.edition, level=name, retention=retention, principal=principal)
    return await _view(ctx, conn)


@put("/api/admin/tiers/compression", summary="Compress raw chunks older than compress_after (timescale license)",
     opt={"errors": [409]},  # api/openapi.py: refused on this edition, or data not yet materialised
     tags=_TAGS, security=_SEC)
async def put_compression(ctx: AppContext, conn: Conn, principal: Principal, data: CompressionBody) -> TiersView:
    require_role(principal, Role.admin)
    after = service.parse_duration(data.compress_after, field="compress_after")
    await conn.set_autocommit(True)
    await service.set_compression(conn, edition=ctx.edition, after=after, principal=principal)
    return await _view(ctx, conn)


@put("/api/admin/tiers/{name:str}/chunk-interval", summary="Chunk interval of new chunks of a level",
     tags=_TAGS, security=_SEC)
async def put_chunk_interval(ctx: AppContext, conn: Conn, principal: Principal, name: str,
                             data: ChunkIntervalBody) -> TiersView:
    require_role(principal, Role.admin)
    interval = service.parse_duration(data.chunk_interval, field="chunk_interval", allow_none=False)
    assert interval is not None
    await conn.set_autocommit(True)
    await service.set_chunk_interval(conn, edition=ctx.edition, level=name, interval=interval)
    return await _view(ctx, conn)


@post("/api/admin/tiers/refresh", status_code=200, summary="Refresh tiers now (a range, or one scheduled pass)",
      tags=_TAGS, security=_SEC)
async def post_refresh(ctx: AppContext, conn: Conn, principal: Principal, data: RefreshBody) -> dict[str, Any]:
    require_role(principal, Role.admin)
    await conn.set_autocommit(True)
    return await service.refresh(conn, edition=ctx.edition, start=data.start, end=data.end)


HANDLERS: list[Any] = [show_tiers, put_retention, put_compression, put_chunk_interval, post_refresh]
