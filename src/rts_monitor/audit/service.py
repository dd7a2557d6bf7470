"""Recording staff actions, in the transaction of the change, and reading them back.

``record`` takes the caller's connection: the entry commits or rolls back with the change it
describes, so the log never claims what did not happen nor misses what did. ``before`` and
``after`` are the object as the API shows it (msgspec structs or plain data), so a reader sees
exactly what changed.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import msgspec
from psycopg.types.json import Jsonb

from rts_monitor.audit.structs import AuditEntry, AuditPage
from rts_monitor.auth.principal import Principal, require_staff
from rts_monitor.db import Conn, Queries
from rts_monitor.db.rows import fetch_all

Q = Queries.beside(__file__)


def _json(value: Any) -> Jsonb | None:
    return None if value is None else Jsonb(msgspec.to_builtins(value))


async def record(conn: Conn, *, principal: Principal | None, action: str, object_type: str,
                 object_id: object | None = None, business_id: UUID | None = None, before: Any = None,
                 after: Any = None, detail: Any = None, actor_type: str | None = None) -> None:
    """One entry; ``principal`` None means the system itself (or ``actor_type`` says who)."""
    await conn.execute(Q.insert, {
        "actor_type": actor_type or ("user" if principal is not None else "system"),
        "actor_user_id": principal.user_id if principal is not None else None,
        "actor_role": principal.role.value if principal is not None else None,
        "action": action, "object_type": object_type,
        "object_id": None if object_id is None else str(object_id), "business_id": business_id,
        "before": _json(before), "after": _json(after), "detail": _json(detail),
    })


async def list_entries(conn: Conn, *, principal: Principal, business_id: UUID | None, actor_user_id: UUID | None,
                       action: str | None, object_type: str | None, object_id: str | None,
                       since: datetime | None, until: datetime | None, before_id: int | None,
                       limit: int) -> AuditPage:
    """Staff only (the log names businesses and people across the fleet)."""
    require_staff(principal)
    rows = await fetch_all(conn, Q.list, {
        "business_id": business_id, "actor_user_id": actor_user_id, "action": action, "object_type": object_type,
        "object_id": object_id, "since": since, "until": until, "before_id": before_id, "limit": limit + 1,
    })
    more = len(rows) > limit
    entries = msgspec.convert(rows[:limit], list[AuditEntry])
    return AuditPage(entries=entries, next_before_id=entries[-1].id if more and entries else None)
