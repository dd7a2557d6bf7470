"""Wire contract of the audit log."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import msgspec


class AuditEntry(msgspec.Struct):
    id: int
    at: datetime
    actor_type: str
    actor_user_id: UUID | None
    actor_role: str | None
    action: str
    object_type: str
    object_id: str | None
    business_id: UUID | None
    before: Any
    after: Any
    detail: Any


class AuditPage(msgspec.Struct):
    entries: list[AuditEntry]
    next_before_id: int | None
