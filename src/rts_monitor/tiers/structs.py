"""Wire contract of the tiers admin API."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec


class TiersView(msgspec.Struct):
    edition: str
    levels: list[dict[str, Any]]
    jobs: list[dict[str, Any]]
    unavailable: dict[str, str]


class RetentionBody(msgspec.Struct, forbid_unknown_fields=True):
    retention: str | None  # "30 days", "12h", or null to keep forever


class CompressionBody(msgspec.Struct, forbid_unknown_fields=True):
    compress_after: str | None


class ChunkIntervalBody(msgspec.Struct, forbid_unknown_fields=True):
    chunk_interval: str


class RefreshBody(msgspec.Struct, forbid_unknown_fields=True):
    start: datetime | None = None
    end: datetime | None = None
