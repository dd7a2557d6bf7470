"""Start-up and shutdown of the API process: the runtime of every concern (``wiring.runtime``).

Graceful shutdown, in this order (docs/operations.md "Shutdown"):

1. SIGTERM (or SIGINT): ``ctx.shutting_down`` is set at once, so ``/health/ready`` answers 503
   while every request, new or in flight, is still served, for ``RTS_SHUTDOWN_GRACE_SECONDS``
   (3 s): long enough for a load balancer probing readiness to stop sending traffic here;
2. then uvicorn's own handling: the listener closes, in-flight requests get up to 30 s
   (``timeout_graceful_shutdown``), console event streams are ended (console/live.py);
3. then this lifespan exits: the scheduler stops, components close in reverse order (the ingest
   pipeline writes everything it admitted, up to 60 s), the pool closes.

A second signal during the grace period skips the rest of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

from litestar import Litestar

from rts_monitor import wiring
from rts_monitor.core import heap, metrics
from rts_monitor.core.context import AppContext
from rts_monitor.core.settings import Settings

log = logging.getLogger(__name__)


def make_lifespan(settings: Settings) -> Callable[[Litestar], AbstractAsyncContextManager[None]]:
    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        try:
            async with wiring.runtime(settings) as ctx:
                app.state.ctx = ctx
                heap.freeze_startup_heap()
                _ready_goes_first(ctx)
                db = ctx.database
                log.info("api.started", extra={"edition": db.edition, "timescaledb": db.timescaledb_version,
                                               "postgres": db.postgres_version})
                yield
                ctx.shutting_down = True
            log.info("api.stopped")
        finally:
            metrics.process_exited()

    return lifespan


def _ready_goes_first(ctx: AppContext) -> None:
    """Wrap the installed SIGTERM/SIGINT handlers (uvicorn's, the console's): flip readiness now,
    hand the signal on after the grace period. Only possible from the main thread."""
    if threading.current_thread() is not threading.main_thread():
        return
    loop = asyncio.get_running_loop()
    grace = max(0.0, ctx.settings.shutdown_grace_seconds)
    for sig in (signal.SIGTERM, signal.SIGINT):
        previous = signal.getsignal(sig)
        if not callable(previous):
            continue

        def handler(signum: int, frame: Any, previous: Callable[[int, Any], Any] = previous) -> None:
            if ctx.shutting_down or grace == 0:
                ctx.shutting_down = True
                previous(signum, frame)
                return
            ctx.shutting_down = True
            log.info("api.draining", extra={"signal": signum, "grace_seconds": grace})
            loop.call_soon_threadsafe(loop.call_later, grace, previous, signum, None)

        with contextlib.suppress(ValueError, OSError):
            signal.signal(sig, handler)
