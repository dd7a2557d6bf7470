"""Start-up and shutdown of the API process: the runtime of every concern (``wiring.runtime``)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager

from litestar import Litestar

from rts_monitor import wiring
from rts_monitor.core import heap
from rts_monitor.core.settings import Settings

log = logging.getLogger(__name__)


def make_lifespan(settings: Settings) -> Callable[[Litestar], AbstractAsyncContextManager[None]]:
    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        async with wiring.runtime(settings) as ctx:
            app.state.ctx = ctx
            heap.freeze_startup_heap()
            db = ctx.database
            log.info("api.started", extra={"edition": db.edition, "timescaledb": db.timescaledb_version,
                                           "postgres": db.postgres_version})
            yield
        log.info("api.stopped")

    return lifespan
