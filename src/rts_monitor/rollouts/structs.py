"""Wire contract of staged agent rollouts."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

import msgspec

from rts_monitor.commands.structs import PipSource, Version

RolloutStatus = Literal["awaiting_approval", "running", "paused", "halted", "aborted", "completed"]
DeviceState = Literal["planned", "sent", "succeeded", "failed", "skipped"]
DEVICE_STATES: tuple[DeviceState, ...] = ("planned", "sent", "succeeded", "failed", "skipped")
# A rollout's devices come a page at a time: a rollout may hold a whole fleet.
DEVICES_PAGE = 1000
DEVICES_PAGE_MAX = 5000
DEVICES_OFFSET_MAX = 1_000_000


class RolloutCreate(msgspec.Struct, forbid_unknown_fields=True):
    """``business_ids`` empty or absent: every business that has not opted out."""

    target_version: Version
    source: PipSource | None = None
    business_ids: Annotated[list[UUID], msgspec.Meta(max_length=10_000)] | None = None
    canary_percent: Annotated[int, msgspec.Meta(ge=1, le=100)] = 5
    wave_percent: Annotated[int, msgspec.Meta(ge=1, le=100)] = 25
    max_failure_percent: Annotated[int, msgspec.Meta(ge=0, le=100)] = 10
    command_timeout_seconds: Annotated[int, msgspec.Meta(ge=60, le=86_400)] = 900


class Decision(msgspec.Struct, forbid_unknown_fields=True):
    reason: Annotated[str, msgspec.Meta(max_length=1000)] | None = None


class WaveProgress(msgspec.Struct):
    wave: int  # 0 is the canary
    devices: int
    planned: int
    sent: int
    succeeded: int
    failed: int
    skipped: int


class RolloutDevice(msgspec.Struct):
    agent_id: UUID
    device_name: str
    business_id: UUID
    wave: int
    state: str
    from_version: str | None
    command_id: UUID | None
    error: str | None
    finished_at: datetime | None
    # the update_agent command's own status (pending, sent, executing, completed, ...): ahead of
    # ``state``, which takes the outcome when the advance job next runs
    command_status: str | None = None


class Rollout(msgspec.Struct):
    id: UUID
    target_version: str
    source: str | None
    business_ids: list[UUID] | None
    canary_percent: int
    wave_percent: int
    max_failure_percent: int
    command_timeout_seconds: int
    status: str
    status_reason: str | None
    current_wave: int
    waves: int
    requested_by: UUID
    approved_by: UUID | None
    approved_at: datetime | None
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None
    progress: list[WaveProgress] = msgspec.field(default_factory=list)
    # One page of the devices (``device_state``, ``device_limit``, ``device_offset``), ordered by
    # wave and name; ``devices_matching`` counts every device in that state (or all of them).
    devices: list[RolloutDevice] | None = None
    devices_matching: int | None = None


class RolloutList(msgspec.Struct):
    rollouts: list[Rollout]


class OptOut(msgspec.Struct):
    business_id: UUID
    opted_out_by: UUID | None
    opted_out_at: datetime
    reason: str | None
