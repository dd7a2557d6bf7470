"""``POST /api/agents/{agent_id}/metrics``: an agent uploads a batch of samples (plan contract)."""

from __future__ import annotations

from typing import Any

from litestar import Request, post

from rts_monitor.auth import credentials
from rts_monitor.core.context import AppContext
from rts_monitor.ingest import service
from rts_monitor.ingest.structs import MetricsAccepted


@post(
    "/api/agents/{agent_id:uuid}/metrics",
    status_code=200,
    summary="Upload metric samples (answered after they are committed)",
    description=(
        "Body: `{\"metrics\": [{collected_at, cpu_percent, memory_used_gb, memory_percent, disk_used_gb, "
        "disk_percent, load_average: [1m, 5m, 15m], uptime_seconds, network_rx_bytes, network_tx_bytes, "
        "services: [{name, status, pid}]}]}` as JSON. Re-sent samples are "
        "counted as `duplicates`, never stored twice. 422 names the field (`metrics[3].cpu_percent`); "
        "503 with Retry-After when ingestion is saturated."
    ),
    tags=["ingest"],
    security=[{"agent": []}],
)
async def post_metrics(request: Request[Any, Any, Any]) -> MetricsAccepted:
    # The hottest route takes nothing by injection: the agent is authenticated by the same function
    # the ``agent`` dependency uses, and ctx is read from app state. Litestar's dependency and
    # signature resolution cost ~10% of a one-sample request's CPU (py-spy, docs/ingest.md).
    ctx: AppContext = request.app.state.ctx
    agent = await credentials.agent(
        ctx.pool, request.headers.get("authorization"), path_agent_id=request.path_params.get("agent_id"),
        source=credentials.client_address(ctx.settings, request.client.host if request.client else None,
                                          request.headers.get("x-forwarded-for")),
        settings=ctx.settings)
    body = await request.body()
    return await service.ingest_metrics(ctx, agent_id=agent.agent_id, body=body)


HANDLERS: list[Any] = [post_metrics]
