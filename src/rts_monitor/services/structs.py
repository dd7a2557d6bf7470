"""The wire contract of monitored-service configuration (docs/services.md)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from uuid import UUID

import msgspec

# What the agent itself accepts (rts_agent.services.SERVICE_NAME): a name it would skip must not
# be stored as watched. Never starts like a command-line option.
WatchedName = Annotated[str, msgspec.Meta(min_length=1, max_length=255,
                                          pattern=r"^[A-Za-z0-9@_:][A-Za-z0-9@._:\-]{0,254}$")]
OsType = Annotated[str, msgspec.Meta(min_length=1, max_length=50, pattern=r"^[A-Za-z0-9_.\-]+$")]
MAX_SERVICES = 200


class ServiceChoice(msgspec.Struct, forbid_unknown_fields=True):
    service_name: WatchedName
    should_be_running: bool = True
    auto_restart: bool = False


class DefaultChoice(msgspec.Struct, forbid_unknown_fields=True):
    """A business-wide default; ``os_type`` (an agent's ``os_type``, e.g. ``linux``) limits it to
    devices of that OS, none means every device."""

    service_name: WatchedName
    os_type: OsType | None = None
    should_be_running: bool = True
    auto_restart: bool = False


class DeviceServicesIn(msgspec.Struct, forbid_unknown_fields=True):
    services: Annotated[list[ServiceChoice], msgspec.Meta(max_length=MAX_SERVICES)]


class BusinessServicesIn(msgspec.Struct, forbid_unknown_fields=True):
    services: Annotated[list[DefaultChoice], msgspec.Meta(max_length=MAX_SERVICES)]


class WatchedService(msgspec.Struct):
    """One entry of a device's effective list, with the state last seen."""

    service_name: str
    should_be_running: bool
    auto_restart: bool
    status: str | None
    pid: int | None
    last_state_change: datetime | None
    last_checked: datetime | None
    restart_count: int | None


class DeviceServices(msgspec.Struct):
    """``services``: the device's own entries; ``effective``: those plus its business's defaults
    for its OS, what the agent watches."""

    agent_id: str
    services: list[ServiceChoice]
    effective: list[WatchedService]


class BusinessServices(msgspec.Struct):
    business_id: str
    services: list[DefaultChoice]


class RemediationAttempt(msgspec.Struct):
    """One restart the server issued for a down service, with its command's outcome."""

    service_name: str
    command_id: UUID
    trigger: str  # 'event' (a crash event) or 'check' (the periodic job)
    requested_at: datetime
    status: str
    exit_code: int | None
    completed_at: datetime | None
    error_message: str | None
