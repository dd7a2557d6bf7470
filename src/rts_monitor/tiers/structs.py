"""Wire contract of the tiers admin API."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from rts_monitor.core.types import Text50, planned_time


class TiersView(msgspec.Struct):
    edition: str
    levels: list[dict[str, Any]]
    jobs: list[dict[str, Any]]
    unavailable: dict[str, str]


class RetentionBody(msgspec.Struct, forbid_unknown_fields=True):
    retention: Text50 | None  # "30 days", "12h", or null to keep forever


class CompressionBody(msgspec.Struct, forbid_unknown_fields=True):
    compress_after: Text50 | None


class ChunkIntervalBody(msgspec.Struct, forbid_unknown_fields=True):
    chunk_interval: Text50


class RefreshBody(msgspec.Struct, forbid_unknown_fields=True):
    start: datetime | None = None
    end: datetime | None = None

    def __post_init__(self) -> None:
        planned_time(self.start, "start")
        planned_time(self.end, "end")
