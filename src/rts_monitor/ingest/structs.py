"""The wire contract of ``POST /api/agents/{agent_id}/metrics`` (the API contract's request and response).

Range rules live in the types (``Meta``) so msgspec checks them in C while decoding: validating
a 500-sample batch in Python would cost more than decoding it. ``validate.py`` turns msgspec's
messages into ``metrics[3].cpu_percent: must be between 0 and 100``. Unknown fields are ignored
so a newer agent can send more than this server stores.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec

MAX_SAMPLES_PER_REQUEST = 10_000
INT64_MAX = 2**63 - 1
INT32_MAX = 2**31 - 1
# Sizes are REAL columns: anything finite up to a petabyte is plausible; above is a bug.
MAX_GB = 1e6
MAX_LOAD = 1e6

Percent = Annotated[float, msgspec.Meta(ge=0, le=100)]
Gigabytes = Annotated[float, msgspec.Meta(ge=0, le=MAX_GB)]
Load = Annotated[float, msgspec.Meta(ge=0, le=MAX_LOAD)]
Counter = Annotated[int, msgspec.Meta(ge=0, le=INT64_MAX)]
AwareTime = Annotated[datetime, msgspec.Meta(tz=True)]
NO_SERVICES = msgspec.Raw(b"null")


class ServiceSample(msgspec.Struct, frozen=True, gc=False):
    """One monitored service as the agent saw it at ``collected_at``."""

    name: Annotated[str, msgspec.Meta(min_length=1, max_length=255)]
    status: Annotated[str, msgspec.Meta(max_length=50)] | None = None
    pid: Annotated[int, msgspec.Meta(ge=0, le=INT32_MAX)] | None = None
    display_name: Annotated[str, msgspec.Meta(max_length=255)] | None = None
    type: Annotated[str, msgspec.Meta(max_length=100)] | None = None


class MetricSample(msgspec.Struct, frozen=True, gc=False):
    collected_at: AwareTime
    cpu_percent: Percent | None = None
    memory_used_gb: Gigabytes | None = None
    memory_percent: Percent | None = None
    disk_used_gb: Gigabytes | None = None
    disk_percent: Percent | None = None
    load_average: tuple[Load, Load, Load] | None = None
    uptime_seconds: Counter | None = None
    network_rx_bytes: Counter | None = None
    network_tx_bytes: Counter | None = None
    # ``list[ServiceSample] | null`` on the wire, kept as raw JSON while the batch is decoded: only
    # the newest sample's services are stored and agents repeat the same list in every sample, so
    # validate.py decodes (and so validates) each distinct list once instead of building ~9
    # objects per sample (measured: a third of the objects a 500-sample request allocated).
    services: msgspec.Raw = NO_SERVICES


ServiceList = list[ServiceSample] | None  # the type of ``MetricSample.services`` on the wire


class MetricsBatch(msgspec.Struct, frozen=True, gc=False):
    metrics: Annotated[list[MetricSample], msgspec.Meta(min_length=1, max_length=MAX_SAMPLES_PER_REQUEST)]


class MetricsAccepted(msgspec.Struct):
    """Answered only once the rows are committed: ``received`` new rows, ``duplicates`` already
    stored (a replay or retry), and the alert rules this batch opened."""

    received: int
    duplicates: int
    alerts_triggered: list[str]
