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

MAX_ITEMS = 50_000


class SoftwareItem(msgspec.Struct, frozen=True):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=255)]
    version: Annotated[str, msgspec.Meta(max_length=100)] | None = None
    vendor: Annotated[str, msgspec.Meta(max_length=255)] | None = None
    install_date: date | None = None
    software_type: Annotated[str, msgspec.Meta(max_length=100)] | None = None
    is_security_software: bool | None = None


class InventoryReport(msgspec.Struct, frozen=True):
    software: Annotated[list[SoftwareItem], msgspec.Meta(min_length=1, max_length=MAX_ITEMS)]
    collected_at: Annotated[datetime, msgspec.Meta(tz=True)] | None = None
    # Where the list came from on the agent (dpkg, rpm, windows-registry): logged only.
    source: Annotated[str, msgspec.Meta(max_length=50)] | None = None


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
