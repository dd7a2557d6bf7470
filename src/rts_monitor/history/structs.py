"""Wire contract of the history endpoints (the API contract's ``{"metrics": [...]}``, extended)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec


class HistoryResponse(msgspec.Struct):
    """``metrics``: one object per bucket with data: ``timestamp``, ``<metric>`` (average),
    ``<metric>_min``/``_max`` when asked with ``stats``, ``network_rx_rate``/``network_tx_rate``
    in bytes per second, and ``devices`` (fleet charts)."""

    metrics: list[dict[str, Any]]
    interval: str
    start: datetime
    end: datetime
    source: str
