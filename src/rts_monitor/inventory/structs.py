"""Wire contract of the software inventory (the API contract has the table, not the endpoint).

``POST /api/agents/{agent_id}/inventory``: the agent's complete list of installed software.
Item fields are the table's columns with the ``software_`` prefix dropped where the API contract's
other payloads do the same (``name``, ``version``). A report is always the full list, so
anything active and not in it is marked inactive; an empty list is refused rather than read as
"everything was uninstalled" (more likely a broken package query on the agent).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated
from uuid import UUID

import msgspec

from rts_monitor.core.types import AwareTime, Name255, Text50, Text100, Text255, reported_time

MAX_ITEMS = 50_000


class SoftwareItem(msgspec.Struct, frozen=True):
    """Columns of agent_software_inventory. ``install_date`` is any calendar date: a DATE column
    and Python both hold years 1-9999, and package databases carry odd ones."""

    name: Name255
    version: Text100 | None = None
    vendor: Text255 | None = None
    install_date: date | None = None
    software_type: Text100 | None = None
    is_security_software: bool | None = None


class InventoryReport(msgspec.Struct, frozen=True):
    software: Annotated[list[SoftwareItem], msgspec.Meta(min_length=1, max_length=MAX_ITEMS)]
    collected_at: AwareTime | None = None
    # Where the list came from on the agent (dpkg, rpm, windows-registry): logged only.
    source: Text50 | None = None

    def __post_init__(self) -> None:
        reported_time(self.collected_at, "collected_at")


class InventoryAccepted(msgspec.Struct):
    """``added``: new package/version rows; ``updated``: already known (seen again);
    ``deactivated``: active before and missing from this report; ``active``: now installed."""

    received: int
    added: int
    updated: int
    deactivated: int
    active: int


class SoftwareInfo(msgspec.Struct):
    name: str
    version: str | None
    vendor: str | None
    install_date: date | None
    software_type: str | None
    is_security_software: bool
    is_active: bool
    first_seen: datetime
    last_seen: datetime


class SoftwareList(msgspec.Struct):
    agent_id: str
    reported_at: datetime | None
    software: list[SoftwareInfo]


# --- fleet software search -------------------------------------------------------------------


class SoftwareHit(msgspec.Struct):
    agent_id: UUID
    device_name: str
    hostname: str | None
    business_id: UUID
    business_name: str
    service_location_id: UUID | None
    location_name: str | None
    name: str
    version: str | None
    vendor: str | None
    last_seen: datetime
    version_scheme: str  # how this device's versions were ordered: deb, rpm or generic


class SoftwareSearch(msgspec.Struct):
    devices: int  # distinct devices among the hits
    hits: list[SoftwareHit]
    truncated: bool  # more packages matched the name than were examined (narrow the name or business)


class AgentVersion(msgspec.Struct):
    agent_id: UUID
    device_name: str
    hostname: str | None
    business_id: UUID
    business_name: str
    agent_version: str
    status: str
    last_heartbeat: datetime | None


class OutdatedAgents(msgspec.Struct):
    served_version: str  # what this server serves (/agent/package): the version agents should run
    agents: list[AgentVersion]
