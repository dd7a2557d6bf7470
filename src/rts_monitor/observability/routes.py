"""``GET /metrics``: Prometheus text format, never public by default (docs/operations.md).

With ``RTS_METRICS_TOKEN`` the endpoint on the API port answers a request that carries it as a
bearer token (401 otherwise); without it the endpoint does not exist (404), whether or not
``RTS_METRICS_BIND`` serves the metrics on a separate listener (``observability/listener.py``).
Every worker's values are merged (core/metrics.py), so any worker answers for the instance.
"""

from __future__ import annotations

import hmac
from typing import Any

from litestar import Request, Response, get

from rts_monitor.core import metrics
from rts_monitor.core.context import AppContext
from rts_monitor.core.errors import NotFound, Unauthorized


@get("/metrics", summary="Prometheus metrics (bearer RTS_METRICS_TOKEN; 404 when not configured)",
     tags=["health"], include_in_schema=False, exclude_from_auth=True)
async def get_metrics(request: Request[Any, Any, Any]) -> Response[bytes]:
    ctx: AppContext = request.app.state.ctx
    expected = ctx.settings.metrics_token
    if not expected:
        raise NotFound("not found")
    scheme, _, token = (request.headers.get("authorization") or "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), expected.encode()):
        raise Unauthorized("the metrics need the bearer token RTS_METRICS_TOKEN")
    return Response(metrics.exposition(), media_type=metrics.CONTENT_TYPE)


HANDLERS: list[Any] = [get_metrics]
