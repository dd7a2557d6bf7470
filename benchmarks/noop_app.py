"""The ceilings: for benchmarks/ingest.py the same route and body decoding, no auth, no database;
for benchmarks/ws_scale.py a ``/ws`` that accepts and waits (what a held socket costs uvicorn and
Litestar alone); ``/health`` to know it is up.

Served by uvicorn with the settings ``rts-monitor serve`` uses (uvloop, httptools, no access
log), so the difference to the real endpoint is exactly what ingestion costs.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from litestar import Litestar, Request, WebSocket, get, post, websocket

from rts_monitor.ingest.structs import MetricsAccepted, MetricsBatch

_DECODE = __import__("msgspec").json.Decoder(MetricsBatch)


@post("/api/agents/{agent_id:uuid}/metrics", status_code=200)
async def noop_metrics(request: Request[Any, Any, Any], agent_id: UUID) -> MetricsAccepted:
    batch = _DECODE.decode(await request.body())
    return MetricsAccepted(received=len(batch.metrics), duplicates=0, alerts_triggered=[])


@websocket("/ws")
async def noop_ws(socket: WebSocket[Any, Any, Any]) -> None:
    await socket.accept()
    while (await socket.receive())["type"] != "websocket.disconnect":
        pass


@get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


def create_app() -> Litestar:
    return Litestar(route_handlers=[noop_metrics, noop_ws, health], logging_config=None, debug=False)
