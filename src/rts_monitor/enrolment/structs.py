"""Wire contract of enrolment (the API contract's "Agent Registration & Authentication" section).

Field names follow the API contract verbatim; additions extend it (never rename).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

import msgspec
from msgspec import Meta

from rts_monitor.core.types import Name50, Name255, Numeric10_2, Text17, Text20, Text50, Text64, Text100, Text255
from rts_monitor.services.structs import ServiceChoice

# agent_devices columns: VARCHAR(255) names, VARCHAR(50) versions and types, NUMERIC(10,2) sizes.
Name = Name255
Short = Text50
Gigabytes = Numeric10_2


class RegistrationTokenCreate(msgspec.Struct):
    """``POST /api/agents/registration-tokens`` body."""

    business_id: UUID
    service_location_id: UUID | None = None
    device_name: Name | None = None
    expires_in_hours: Annotated[float, Meta(gt=0, le=24 * 30)] = 24


class RegistrationTokenCreated(msgspec.Struct):
    """Returned once: the only time the plaintext ``token`` is ever shown."""

    id: UUID
    token: str
    expires_at: datetime
    business_id: UUID
    service_location_id: UUID | None
    device_name: str | None
    install_command_linux: str
    install_command_windows: str
    # The API contract's registration-flow example names a single `install_command` (Linux/macOS).
    install_command: str


class RegistrationTokenInfo(msgspec.Struct):
    """A token as listed: never the token itself, only its hint and state."""

    id: UUID
    token_hint: str
    business_id: UUID
    service_location_id: UUID | None
    device_name: str | None
    state: str  # active | used | expired | revoked
    created_at: datetime
    created_by: UUID | None
    expires_at: datetime
    used_at: datetime | None
    used_by_agent_id: UUID | None
    revoked_at: datetime | None


class RegistrationTokenList(msgspec.Struct):
    registration_tokens: list[RegistrationTokenInfo]


class SystemInfo(msgspec.Struct, kw_only=True):
    """System facts an agent may send at top level or inside ``system_info`` (plan shows both)."""

    os_version: Text100 | None = None
    os_architecture: Text20 | None = None
    ip_address: Text64 | None = None  # INET: checked to be an address by the service
    mac_address: Text17 | None = None
    cpu_model: Text255 | None = None
    total_memory_gb: Gigabytes | None = None
    total_disk_gb: Gigabytes | None = None
    agent_version: Short | None = None
    device_type: Short | None = None


class RegisterRequest(SystemInfo, kw_only=True):
    """``POST /api/agents/register`` body: both plan examples decode, the flat one (the system
    facts of ``SystemInfo`` at top level) and the nested one (``system_info``)."""

    token: Annotated[str, Meta(min_length=1, max_length=200)]
    hostname: Name
    os_type: Name50
    system_info: dict[str, Any] | None = None


class AgentConfig(msgspec.Struct):
    """What an agent needs to run; ``config_version`` drives heartbeat's ``config_updated``."""

    heartbeat_interval_seconds: int
    metrics_interval_seconds: int
    api_url: str
    websocket_url: str
    config_version: int
    monitoring_enabled: bool
    alerts_enabled: bool
    auto_remediation_enabled: bool
    # Addition (docs/services.md): the services to watch, chosen in the portal. The agent's own
    # --services / RTS_AGENT_SERVICES pin wins over this list.
    monitored_services: list[ServiceChoice] = []


class RegisterResponse(msgspec.Struct):
    """Both plan shapes at once: the flat fields of the flow example and the nested ``config``."""

    agent_id: UUID
    agent_token: str
    business_id: UUID
    service_location_id: UUID | None
    api_url: str
    websocket_url: str
    heartbeat_interval_seconds: int
    metrics_interval_seconds: int
    config: AgentConfig
