"""``GET /api/agents/{agent_id}/metrics/history`` (plan contract) and the fleet variant."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from litestar import get

from rts_monitor.auth.principal import Principal
from rts_monitor.core.context import AppContext
from rts_monitor.core.errors import ValidationFailed
from rts_monitor.core.types import planned_time
from rts_monitor.db import Reads
from rts_monitor.history import planning, service
from rts_monitor.history.structs import HistoryResponse

_DOC = (
    "Query: `start`, `end` (ISO 8601 with zone; default the last 24 h), `metric=a,b` (default "
    "cpu_percent,memory_percent,disk_percent; also network_rx_rate, network_tx_rate in bytes/s), "
    "`interval` (10s..1d, e.g. 5m; default 5m), `stats=avg,min,max` (default avg). Buckets overlapping "
    "[start, end) are returned; at most 2,000. Answered from the coarsest rollup tier whose bucket divides "
    "the interval, with the newest minutes from raw samples."
)


def _time(name: str, value: str | None) -> datetime | None:
    if value is None or value == "":
        return None
    try:
        parsed = datetime.fromisoformat(value.replace(" ", "+"))
    except ValueError:
        raise ValidationFailed(f"{name}: {value!r} is not an ISO 8601 time such as 2025-10-09T10:30:00Z",
                         field=name) from None
    planned_time(parsed, name)
    return parsed


def _plan(start: str | None, end: str | None, interval: str | None, metric: str | None,
          stats: str | None) -> planning.Plan:
    return planning.plan(start=_time("start", start), end=_time("end", end), now=datetime.now(UTC),
                         interval=interval, metric=metric, stats=stats)


def _response(plan: planning.Plan, rows: list[dict[str, Any]], interval: str | None) -> HistoryResponse:
    return HistoryResponse(metrics=rows, interval=interval or "5m", start=plan.start, end=plan.end, source=plan.source)


@get("/api/agents/{agent_id:uuid}/metrics/history", summary="Metric history of one device", description=_DOC,
     tags=["history"], security=[{"portal": []}])
async def agent_history(ctx: AppContext, reads: Reads, principal: Principal, agent_id: UUID, start: str | None = None,
                        end: str | None = None, metric: str | None = None, interval: str | None = None,
                        stats: str | None = None) -> HistoryResponse:
    plan = _plan(start, end, interval, metric, stats)
    rows = await reads.run(service.device_history, plan=plan, edition=ctx.edition, device_id=agent_id,
                           scope=principal.business_scope)
    return _response(plan, rows, interval)


@get("/api/fleet/metrics/history", summary="Metric history aggregated over a business or location",
     description=_DOC + " Fleet: `business_id` or `service_location_id` (customers default to their own "
     "business); averages over all samples of all devices, min/max across devices, rates summed, `devices` "
     "per bucket.", tags=["history"], security=[{"portal": []}])
async def fleet_history(ctx: AppContext, reads: Reads, principal: Principal,
                        business_id: UUID | None = None,
                        service_location_id: UUID | None = None,
                        start: str | None = None, end: str | None = None, metric: str | None = None,
                        interval: str | None = None, stats: str | None = None) -> HistoryResponse:
    plan = _plan(start, end, interval, metric, stats)
    rows = await reads.run(service.fleet_chart, plan=plan, edition=ctx.edition, business_id=business_id,
                           location_id=service_location_id, scope=principal.business_scope)
    return _response(plan, rows, interval)


HANDLERS: list[Any] = [agent_history, fleet_history]
