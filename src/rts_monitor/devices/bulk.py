"""``POST /api/agents/bulk``: one action on many agents (the console's bulk actions, and scripts).

Actions: pause or resume monitoring, set the reporting intervals (``null`` = the server default),
delete (soft, token revoked). MSP staff only. Every requested id gets its own result: ``ok`` with
what happened (``updated``, ``unchanged``, ``deleted``), or an error shaped like the API's error
body (an id that does not exist, was deleted or belongs to no visible business is ``not_found``).
The whole request is one transaction: set-based statements over the locked rows, so 10,000
agents cost a few statements, not 10,000 round trips. Each agent that changed gets its audit entry
(``agent.update`` or ``agent.deleted``, as PATCH and DELETE write them) in the same transaction,
sent in one pipeline.
"""

from __future__ import annotations

import logging
from typing import Annotated, Literal
from uuid import UUID

import msgspec
from msgspec import Meta

from rts_monitor.audit import service as audit
from rts_monitor.auth import agents
from rts_monitor.auth.principal import Principal, require_staff
from rts_monitor.core.errors import ValidationFailed
from rts_monitor.core.settings import Settings
from rts_monitor.db import Conn, Queries
from rts_monitor.db.rows import Row, fetch_all

log = logging.getLogger(__name__)
Q = Queries.beside(__file__, "bulk.sql")

MAX_AGENTS = 10_000
MIN_INTERVAL_SECONDS = 10  # the finest the history tiers and the agent's collector support
Action = Literal["pause_monitoring", "resume_monitoring", "set_intervals", "delete"]


class BulkRequest(msgspec.Struct, forbid_unknown_fields=True):
    action: Action
    agent_ids: Annotated[list[UUID], Meta(min_length=1, max_length=MAX_AGENTS)]
    # set_intervals only; null (or absent) resets to the server default.
    metrics_interval_seconds: int | None = None
    heartbeat_interval_seconds: int | None = None


class BulkError(msgspec.Struct):
    status: int
    code: str
    message: str


class BulkResult(msgspec.Struct, omit_defaults=True):
    agent_id: UUID
    ok: bool
    outcome: str | None = None  # updated | unchanged | deleted
    error: BulkError | None = None


class BulkResponse(msgspec.Struct):
    action: str
    requested: int
    succeeded: int
    failed: int
    results: list[BulkResult]


async def _audit(conn: Conn, principal: Principal, body: BulkRequest, rows: list[Row]) -> None:
    detail = {"bulk": True, "agents": len(rows)}
    async with conn.pipeline():
        for row in rows:
            if body.action == "delete":
                await audit.record(conn, principal=principal, action="agent.deleted", object_type="agent",
                                   object_id=row["id"], business_id=row["business_id"], detail=detail)
                continue
            if body.action == "set_intervals":
                before = {k: row[k] for k in ("metrics_interval_seconds", "heartbeat_interval_seconds")}
                after = {"metrics_interval_seconds": body.metrics_interval_seconds,
                         "heartbeat_interval_seconds": body.heartbeat_interval_seconds}
            else:
                before = {"monitoring_enabled": row["monitoring_enabled"]}
                after = {"monitoring_enabled": body.action == "resume_monitoring"}
            await audit.record(conn, principal=principal, action="agent.update", object_type="agent",
                               object_id=row["id"], business_id=row["business_id"], before=before, after=after,
                               detail=detail)


def _check_intervals(settings: Settings, body: BulkRequest) -> None:
    """Intervals between 10 s and the server's default: presence marks an agent offline after
    RTS_OFFLINE_AFTER_INTERVALS of the server's heartbeat interval, and alert rules count a window
    as covered only without gaps longer than RTS_ALERT_MAX_SAMPLE_GAP_SECONDS, so an agent may
    report more often than the default, never less."""
    if body.action != "set_intervals":
        if body.metrics_interval_seconds is not None or body.heartbeat_interval_seconds is not None:
            name = "metrics_interval_seconds" if body.metrics_interval_seconds is not None else \
                "heartbeat_interval_seconds"
            raise ValidationFailed(f"{name}: only set_intervals takes intervals", field=name)
        return
    limits = {"metrics_interval_seconds": settings.metrics_interval_seconds,
              "heartbeat_interval_seconds": settings.heartbeat_interval_seconds}
    for name, most in limits.items():
        value = getattr(body, name)
        if value is not None and not MIN_INTERVAL_SECONDS <= value <= most:
            raise ValidationFailed(f"{name}: must be between {MIN_INTERVAL_SECONDS} and {most} seconds "
                                   "(the server's default), or null for the default", field=name)


async def run(conn: Conn, *, settings: Settings, principal: Principal,
              body: BulkRequest) -> BulkResponse:
    require_staff(principal)
    _check_intervals(settings, body)
    ids = list(dict.fromkeys(body.agent_ids))
    async with conn.transaction():
        found = {r["id"]: r for r in await fetch_all(conn, Q.lock_visible, {
            "ids": ids, "scope": principal.business_scope})}
        targets = list(found)
        if body.action in ("pause_monitoring", "resume_monitoring"):
            rows = await fetch_all(conn, Q.set_monitoring, {
                "ids": targets, "enabled": body.action == "resume_monitoring"})
        elif body.action == "set_intervals":
            rows = await fetch_all(conn, Q.set_intervals, {
                "ids": targets, "metrics": body.metrics_interval_seconds,
                "heartbeat": body.heartbeat_interval_seconds})
        else:
            rows = await fetch_all(conn, Q.soft_delete, {"ids": targets})
        changed = {r["id"] for r in rows}
        await _audit(conn, principal, body, [found[a] for a in targets if a in changed])
    if body.action == "delete":
        for row in found.values():
            if row["agent_token_hash"]:
                agents.forget(row["agent_token_hash"])
    done = "deleted" if body.action == "delete" else "updated"
    missing = BulkError(404, "not_found", "agent not found")
    results = [
        BulkResult(agent_id, True, done if agent_id in changed else "unchanged") if agent_id in found
        else BulkResult(agent_id, False, error=missing)
        for agent_id in ids
    ]
    ok = sum(1 for r in results if r.ok)
    log.info("devices.bulk", extra={"action": body.action, "by": str(principal.user_id), "requested": len(ids),
                                    "succeeded": ok, "changed": len(changed)})
    return BulkResponse(action=body.action, requested=len(ids), succeeded=ok, failed=len(ids) - ok, results=results)
