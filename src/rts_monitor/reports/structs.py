"""Wire contract of the reports."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

import msgspec


class Availability(msgspec.Struct):
    """One device, location or business over the period. ``uptime_percent`` is
    ``1 - down / measured`` (time-weighted over devices); None when nothing was measured."""

    measured_seconds: float
    down_seconds: float
    error_seconds: float
    excluded_seconds: float  # disabled + maintenance windows (both stated, never counted as down)
    uptime_percent: float | None
    outages: int
    longest_outage_seconds: float
    mean_time_to_recovery_seconds: float | None  # over the outages that ended within the period


class DeviceAvailability(Availability):
    agent_id: UUID = msgspec.field(default_factory=lambda: UUID(int=0))
    device_name: str = ""
    hostname: str | None = None
    disabled_seconds: float = 0.0
    maintenance_seconds: float = 0.0


class AlertStats(msgspec.Struct):
    severity: str
    episodes: int
    mean_time_to_acknowledge_seconds: float | None
    mean_time_to_resolve_seconds: float | None
    tickets: int


class LocationAvailability(Availability):
    service_location_id: UUID | None = None
    location_name: str | None = None
    devices: list[DeviceAvailability] = msgspec.field(default_factory=list)


class BusinessAvailability(Availability):
    business_id: UUID = msgspec.field(default_factory=lambda: UUID(int=0))
    business_name: str = ""
    locations: list[LocationAvailability] = msgspec.field(default_factory=list)
    alerts: list[AlertStats] = msgspec.field(default_factory=list)


class AvailabilityReport(msgspec.Struct):
    period_start: datetime
    period_end: datetime  # the requested end, or now when that is later
    generated_at: datetime
    method: str
    businesses: list[BusinessAvailability]
