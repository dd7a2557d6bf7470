"""What every request handler and job can reach: settings, pool, edition, the concerns' hooks.

Built once per process by ``wiring.runtime`` (the API's lifespan and ``rts-monitor scheduler``);
handlers receive it through the ``ctx`` dependency, jobs as their argument.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from psycopg_pool import AsyncConnectionPool

from rts_monitor.core.edition import DatabaseInfo, Edition
from rts_monitor.core.settings import Settings

CommittedRanges = Mapping[UUID, tuple[datetime, datetime]]
# Runs after an ingest flush committed: the devices of the flush with the (first, last)
# ``collected_at`` each had committed; answers, per device, the names of the alert rules it opened.
AfterIngest = Callable[["AppContext", CommittedRanges], Awaitable[dict[UUID, list[str]]]]


@dataclass
class AppContext:
    settings: Settings
    pool: AsyncConnectionPool
    database: DatabaseInfo
    # The hot standby of RTS_DATABASE_READ_URL (``db.reads.Replica``: its pool and whether reads may
    # use it), None without one. Typed loosely because core sits below db; ``db.reads.replica_of``.
    replica: Any = None
    # What the concerns declared to run after every committed ingest flush (``Concern.after_ingest``).
    after_ingest: tuple[AfterIngest, ...] = ()
    # Long-lived services of each concern (ingest pipeline, command hub, ...), by name.
    services: dict[str, Any] = field(default_factory=dict)
    # Set on SIGTERM before anything stops: /health/ready answers 503 from then on (api/lifespan.py).
    shutting_down: bool = False

    @property
    def edition(self) -> Edition:
        return self.database.edition
