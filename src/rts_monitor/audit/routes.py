"""``GET /api/admin/audit``: the staff audit log, newest first, filterable; read-only by design."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from litestar import get
from litestar.params import Parameter

from rts_monitor.audit import service
from rts_monitor.audit.structs import AuditPage
from rts_monitor.auth.principal import Principal
from rts_monitor.core.types import INT64_MAX, planned_time
from rts_monitor.db import Conn


@get("/api/admin/audit", tags=["audit"], security=[{"portal": []}],
     summary="Staff actions (rules, maintenance, retention, tokens, bulk actions, approvals), newest first")
async def audit_log(
    conn: Conn, principal: Principal, business_id: UUID | None = None, actor_user_id: UUID | None = None,
    action: Annotated[str | None, Parameter(description="e.g. alert_rule.update, or alert_rule for all its verbs",
                                            max_length=100)] = None,
    object_type: Annotated[str | None, Parameter(max_length=100)] = None,
    object_id: Annotated[str | None, Parameter(max_length=100)] = None,
    since: datetime | None = None, until: datetime | None = None,
    before_id: Annotated[int | None, Parameter(description="next_before_id of the previous page", ge=1,
                                               le=INT64_MAX)] = None,
    limit: Annotated[int, Parameter(ge=1, le=1000)] = 100,
) -> AuditPage:
    planned_time(since, "since")
    planned_time(until, "until")
    return await service.list_entries(conn, principal=principal, business_id=business_id,
                                      actor_user_id=actor_user_id, action=action, object_type=object_type,
                                      object_id=object_id, since=since, until=until, before_id=before_id,
                                      limit=limit)


HANDLERS: list[Any] = [audit_log]
