"""What every request handler and job can reach: settings, pool, edition.

Stored on ``app.state.ctx`` by the lifespan; handlers receive it through the ``ctx`` dependency.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from psycopg_pool import AsyncConnectionPool

from rts_monitor.config import Settings
from rts_monitor.migrations import Edition


@dataclass
class AppContext:
    settings: Settings
    pool: AsyncConnectionPool
    edition: Edition
    timescaledb_version: str
    postgres_version: str
    # Long-lived services of each concern (ingest pipeline, command hub, ...), by name.
    services: dict[str, Any] = field(default_factory=dict)
