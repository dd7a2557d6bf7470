"""Agent events: the API contract's ``{"type": "event", "event_type", "timestamp", "data"}`` without
the tag (HTTP) and what the portal reads back."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

import msgspec

from rts_monitor.core.types import (
    MAX_EVENT_DATA_BYTES,
    Int32,
    Name255,
    NonNegativeInt32,
    check_json_size,
    reported_time,
)

EventType = Annotated[str, msgspec.Meta(pattern=r"^[a-z][a-z0-9_]{0,99}$")]


class EventIn(msgspec.Struct):  # unknown fields ignored: agents are upgraded one by one
    event_type: EventType
    timestamp: datetime | None = None
    data: dict[str, Any] = {}
    event_id: UUID | None = None

    def __post_init__(self) -> None:
        reported_time(self.timestamp, "timestamp")
        check_json_size(self.data, "data", MAX_EVENT_DATA_BYTES)


class ServiceEventData(msgspec.Struct):
    """``data`` of service_crashed / service_stopped / service_started (other keys are kept)."""

    service_name: Name255
    pid: NonNegativeInt32 | None = None
    exit_code: Int32 | None = None


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
