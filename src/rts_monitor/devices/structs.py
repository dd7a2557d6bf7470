"""Wire contract of the fleet (the API contract's "Agent Operations" and "Portal/Admin Endpoints").

Field names follow the API contract verbatim; additions extend it (never rename). Input fields
are built from ``core/types.py`` (what the columns store).
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from uuid import UUID

import msgspec
from msgspec import UNSET, UnsetType

from rts_monitor.core.types import Name50, Name255, NonNegativeInt32, reported_time
from rts_monitor.inventory.structs import SoftwareInfo


class HeartbeatRequest(msgspec.Struct):
    """The API contract's body. ``config_version`` (optional) is the config the agent runs."""

    timestamp: datetime | None = None
    # An agent reports itself online, in error, or offline when shutting down cleanly.
    status: Literal["online", "error", "offline"] = "online"
    agent_version: Name50 | None = None
    config_version: NonNegativeInt32 | None = None

    def __post_init__(self) -> None:
        reported_time(self.timestamp, "timestamp")


class HeartbeatResponse(msgspec.Struct):
    config_updated: bool
    pending_commands: int
    config_version: int
    status: str
    server_time: datetime
    # Commands cancelled in the portal after the agent received them: stop them if running.
    cancel_commands: list[UUID] = []
    # A new agent token (rotation, auth/rotation.py): save it, then use it from the next request on.
    agent_token: str | None = None


class BusinessRef(msgspec.Struct):
    id: UUID
    business_name: str


class LocationRef(msgspec.Struct):
    id: UUID
    location_name: str


class AgentListItem(msgspec.Struct):
    id: UUID
    device_name: str
    business: BusinessRef
    service_location: LocationRef | None
    status: str
    last_heartbeat: datetime | None
    os_type: str
    cpu_percent: float | None
    memory_percent: float | None
    disk_percent: float | None
    # Extensions: what the portal needs to search, label and judge staleness.
    hostname: str | None
    os_version: str | None
    agent_version: str
    metrics_collected_at: datetime | None


class AgentList(msgspec.Struct):
    agents: list[AgentListItem]
    next_cursor: str | None


class CurrentMetrics(msgspec.Struct):
    collected_at: datetime
    cpu_percent: float | None
    memory_used_gb: float | None
    memory_percent: float | None
    disk_used_gb: float | None
    disk_percent: float | None
    load_average: list[float | None]
    uptime_seconds: int | None
    network_rx_bytes: int | None
    network_tx_bytes: int | None


class MonitoredService(msgspec.Struct):
    name: str
    status: str | None
    display_name: str | None
    pid: int | None
    last_checked: datetime | None


class AgentDetail(msgspec.Struct):
    id: UUID
    business_id: UUID
    service_location_id: UUID | None
    device_name: str
    os_type: str
    os_version: str | None
    agent_version: str
    status: str
    last_heartbeat: datetime | None
    current_metrics: CurrentMetrics | None
    active_alerts: int
    monitored_services: list[MonitoredService]
    # Extensions beyond the API contract's example.
    business: BusinessRef
    service_location: LocationRef | None
    hostname: str | None
    device_type: str
    os_architecture: str | None
    cpu_model: str | None
    total_memory_gb: float | None
    total_disk_gb: float | None
    ip_address: str | None
    mac_address: str | None
    status_changed_at: datetime | None
    last_metrics_received: datetime | None
    monitoring_enabled: bool
    alerts_enabled: bool
    auto_remediation_enabled: bool
    config_version: int
    created_at: datetime | None
    # Installed software as the agent last reported it (POST /api/agents/{id}/inventory); the
    # history of removed versions is at GET /api/agents/{id}/inventory?include_inactive=true.
    software: list[SoftwareInfo] = msgspec.field(default_factory=list)


class AgentPatch(msgspec.Struct):
    """Only the fields present change. ``service_location_id: null`` unassigns the location;
    ``disabled`` true parks the agent (never marked offline), false returns it to presence."""

    device_name: Name255 | UnsetType = UNSET
    service_location_id: UUID | UnsetType | None = UNSET
    monitoring_enabled: bool | UnsetType = UNSET
    alerts_enabled: bool | UnsetType = UNSET
    auto_remediation_enabled: bool | UnsetType = UNSET
    disabled: bool | UnsetType = UNSET


class StatusCounts(msgspec.Struct):
    total: int = 0
    online: int = 0
    offline: int = 0
    error: int = 0
    disabled: int = 0


class AdminAgent(msgspec.Struct):
    id: UUID
    device_name: str
    hostname: str | None
    status: str
    last_heartbeat: datetime | None
    os_type: str
    agent_version: str


class AdminLocationGroup(msgspec.Struct):
    service_location: LocationRef | None
    counts: StatusCounts
    agents: list[AdminAgent]


class AdminBusinessGroup(msgspec.Struct):
    business: BusinessRef
    counts: StatusCounts
    locations: list[AdminLocationGroup]


class AdminFleet(msgspec.Struct):
    counts: StatusCounts
    businesses: list[AdminBusinessGroup]
