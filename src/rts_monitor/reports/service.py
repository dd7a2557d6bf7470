"""The availability report: per device from ``agent_status_transitions`` (one SQL statement with
multiranges, ``queries.sql: availability``), rolled up per location and business here, plus the
alert statistics of each business; as JSON or CSV.

Rolled-up figures are time-weighted: a business's uptime is ``1 - Σ down / Σ measured`` over its
devices, so a device measured for a week weighs less than one measured for the month.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import msgspec

from rts_monitor.auth.principal import Principal
from rts_monitor.core.errors import NotFound, ValidationFailed
from rts_monitor.db import Conn, Queries
from rts_monitor.db.rows import fetch_all, fetch_one
from rts_monitor.devices.scope import visible_agent
from rts_monitor.reports.structs import (
    AlertStats,
    Availability,
    AvailabilityReport,
    BusinessAvailability,
    DeviceAvailability,
    LocationAvailability,
)

Q = Queries.beside(__file__)
MAX_PERIOD = timedelta(days=400)
METHOD = (
    "Measured from each device's first status change (installation time is not counted) to the end of "
    "the period. Down: time offline (no heartbeat within the offline threshold). Excluded from both "
    "measured and down time: time disabled (monitoring paused) and maintenance windows of the device, "
    "its location or its business. Time in 'error' (the agent reachable, reporting a fault) counts as up "
    "and is reported apart. An outage is one uninterrupted offline stretch with downtime outside the "
    "exclusions (its longest counts only that downtime); mean time to recovery is the mean length of the "
    "outages that ended within the period (from the period's start for one that began before it). Deleted "
    "devices are not reported."
)


def _period(start: datetime | None, end: datetime | None) -> tuple[datetime, datetime]:
    end = end or datetime.now(UTC)
    start = start or end - timedelta(days=30)
    for name, value in (("from", start), ("to", end)):
        if value.tzinfo is None:
            raise ValidationFailed(f"{name}: needs a time zone (e.g. 2026-11-01T00:00:00Z)", field=name)
    if end <= start:
        raise ValidationFailed("to: must be after from", field="to")
    if end - start > MAX_PERIOD:
        raise ValidationFailed(f"to: the period is at most {MAX_PERIOD.days} days", field="to")
    return start, end


async def _check_filters(conn: Conn, principal: Principal, business_id: UUID | None, location_id: UUID | None,
                         agent_id: UUID | None) -> None:
    scope = principal.business_scope
    if business_id is not None and await fetch_one(conn, Q.business_visible,
                                                   {"id": business_id, "scope": scope}) is None:
        raise NotFound("business not found", field="business_id")
    if location_id is not None and await fetch_one(conn, Q.location_visible,
                                                   {"id": location_id, "scope": scope}) is None:
        raise NotFound("service location not found", field="location_id")
    if agent_id is not None:
        await visible_agent(conn, scope, agent_id, field="agent_id")


def _figures(rows: Iterable[dict[str, Any]]) -> dict[str, Any]:
    rows = list(rows)
    measured = sum(r["measured_s"] for r in rows)
    down = sum(r["down_s"] for r in rows)
    recovered = sum(r["recovered"] for r in rows)
    return {
        "measured_seconds": measured, "down_seconds": down, "error_seconds": sum(r["error_s"] for r in rows),
        "excluded_seconds": sum(r["disabled_s"] + r["maintenance_s"] for r in rows),
        "uptime_percent": round(100 * (1 - down / measured), 4) if measured > 0 else None,
        "outages": sum(r["outages"] for r in rows),
        "longest_outage_seconds": max((r["longest_outage_s"] for r in rows), default=0.0),
        "mean_time_to_recovery_seconds": sum(r["recovered_s"] for r in rows) / recovered if recovered else None,
    }


async def availability(conn: Conn, *, principal: Principal, start: datetime | None, end: datetime | None,
                       business_id: UUID | None = None, location_id: UUID | None = None,
                       agent_id: UUID | None = None) -> AvailabilityReport:
    start, end = _period(start, end)
    await _check_filters(conn, principal, business_id, location_id, agent_id)
    params = {"from": start, "to": end, "scope": principal.business_scope, "business_id": business_id,
              "location_id": location_id, "agent_id": agent_id}
    rows = await fetch_all(conn, Q.availability, params)
    stats: dict[UUID, list[AlertStats]] = {}
    for s in await fetch_all(conn, Q.alert_stats, params):
        stats.setdefault(s["business_id"], []).append(msgspec.convert(s, AlertStats))
    businesses: list[BusinessAvailability] = []
    by_business: dict[UUID, list[dict[str, Any]]] = {}
    for r in rows:
        by_business.setdefault(r["business_id"], []).append(r)
    for biz_id, biz_rows in by_business.items():
        locations: list[LocationAvailability] = []
        by_location: dict[UUID | None, list[dict[str, Any]]] = {}
        for r in biz_rows:
            by_location.setdefault(r["service_location_id"], []).append(r)
        for loc_id, loc_rows in by_location.items():
            devices = [DeviceAvailability(**_figures([r]), agent_id=r["agent_id"], device_name=r["device_name"],
                                          hostname=r["hostname"], disabled_seconds=r["disabled_s"],
                                          maintenance_seconds=r["maintenance_s"]) for r in loc_rows]
            locations.append(LocationAvailability(**_figures(loc_rows), service_location_id=loc_id,
                                                  location_name=loc_rows[0]["location_name"], devices=devices))
        businesses.append(BusinessAvailability(**_figures(biz_rows), business_id=biz_id,
                                               business_name=biz_rows[0]["business_name"], locations=locations,
                                               alerts=stats.get(biz_id, [])))
    now = datetime.now(UTC)
    return AvailabilityReport(period_start=start, period_end=min(end, now), generated_at=now, method=METHOD,
                              businesses=businesses)


CSV_COLUMNS = ("level", "business", "location", "device", "hostname", "id", "uptime_percent", "measured_seconds",
               "down_seconds", "error_seconds", "excluded_seconds", "outages", "longest_outage_seconds",
               "mean_time_to_recovery_seconds", "alert_episodes", "mean_time_to_acknowledge_seconds",
               "mean_time_to_resolve_seconds", "tickets")


def _row(level: str, a: Availability, **names: Any) -> dict[str, Any]:
    return {"level": level, **names, **{k: getattr(a, k) for k in CSV_COLUMNS if hasattr(a, k)}}


def as_csv(report: AvailabilityReport) -> str:
    """One row per device, then its location and its business (``level`` says which); a spreadsheet
    filters on ``level``. Alert statistics are on business rows, summed over severities."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, extrasaction="ignore", lineterminator="\r\n")
    writer.writeheader()
    for b in report.businesses:
        for loc in b.locations:
            for d in loc.devices:
                writer.writerow(_row("device", d, business=b.business_name, location=loc.location_name or "",
                                     device=d.device_name, hostname=d.hostname or "", id=d.agent_id))
            writer.writerow(_row("location", loc, business=b.business_name, location=loc.location_name or "",
                                 id=loc.service_location_id or ""))
        episodes = sum(s.episodes for s in b.alerts)

        def mean(attr: str, stats: list[AlertStats] = b.alerts) -> float | None:
            pairs = [(getattr(s, attr), s.episodes) for s in stats if getattr(s, attr) is not None]
            weight = sum(n for _, n in pairs)
            return sum(v * n for v, n in pairs) / weight if weight else None

        writer.writerow({**_row("business", b, business=b.business_name, id=b.business_id),
                         "alert_episodes": episodes, "tickets": sum(s.tickets for s in b.alerts),
                         "mean_time_to_acknowledge_seconds": mean("mean_time_to_acknowledge_seconds"),
                         "mean_time_to_resolve_seconds": mean("mean_time_to_resolve_seconds")})
    return out.getvalue()
