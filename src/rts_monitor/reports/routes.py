"""``GET /api/reports/availability``: uptime per device, location and business; JSON or CSV."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from litestar import Response, get
from litestar.params import Parameter, QueryParameter

from rts_monitor.auth.principal import Principal
from rts_monitor.core.types import planned_time
from rts_monitor.db import Reads
from rts_monitor.reports import service
from rts_monitor.reports.structs import AvailabilityReport


@get("/api/reports/availability", tags=["reports"], security=[{"portal": []}],
     opt={"media_types": ["text/csv"]},  # api/openapi.py: format=csv answers the same report as CSV
     summary="Availability (uptime %, outages, MTTR) per device, location and business, and alert statistics",
     description=service.METHOD)
async def availability(
    reads: Reads, principal: Principal, business_id: UUID | None = None, location_id: UUID | None = None,
    agent_id: UUID | None = None,
    start: Annotated[datetime | None, QueryParameter(name="from", description="default: 30 days before `to`")] = None,
    end: Annotated[datetime | None, QueryParameter(name="to", description="default: now")] = None,
    format: Annotated[Literal["json", "csv"], Parameter(description="json (default) or csv")] = "json",
) -> Response[Any]:
    planned_time(start, "from")
    planned_time(end, "to")
    report = await reads.run(service.availability, principal=principal, start=start, end=end,
                             business_id=business_id, location_id=location_id, agent_id=agent_id)
    if format == "csv":
        name = f"availability-{report.period_start:%Y%m%d}-{report.period_end:%Y%m%d}.csv"
        # Litestar appends "; charset=utf-8" to text/* itself (naming it here sent it twice)
        return Response(service.as_csv(report), media_type="text/csv",
                        headers={"Content-Disposition": f'attachment; filename="{name}"'})
    return Response[AvailabilityReport](report)


HANDLERS: list[Any] = [availability]
