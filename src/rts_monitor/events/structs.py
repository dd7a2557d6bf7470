"""Agent events: the API contract's ``{"type": "event", "event_type", "timestamp", "data"}`` without
the tag (HTTP) and what the portal reads back."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

import msgspec

EventType = Annotated[str, msgspec.Meta(pattern=r"^[a-z][a-z0-9_]{0,99}$")]


class EventIn(msgspec.Struct):  # unknown fields ignored: agents are upgraded one by one
    event_type: EventType
    timestamp: datetime | None = None
    data: dict[str, Any] = {}
    event_id: UUID | None = None


class ServiceEventData(msgspec.Struct):
    """``data`` of service_crashed / service_stopped / service_started (other keys are kept)."""

    service_name: Annotated[str, msgspec.Meta(min_length=1, max_length=255)]
    pid: int | None = None
    exit_code: int | None = None


class EventAck(msgspec.Struct):
    id: int
    event_type: str
    duplicate: bool
    event_id: UUID | None = None


class AgentEvent(msgspec.Struct):
    id: int
    agent_id: UUID
    event_type: str
    occurred_at: datetime
    received_at: datetime
    data: dict[str, Any]
    event_id: UUID | None
    via: str | None


class EventList(msgspec.Struct):
    events: list[AgentEvent]
