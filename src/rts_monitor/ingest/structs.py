"""The wire contract of ``POST /api/agents/{agent_id}/metrics`` (the API contract's request and response).

Range rules live in the types (``core/types.py``, what the columns store) so msgspec checks them
in C while decoding: validating a 500-sample batch in Python would cost more than decoding it.
``validate.py`` turns msgspec's messages into ``metrics[3].cpu_percent: must be between 0 and 100``.
Unknown fields are ignored so a newer agent can send more than this server stores.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from rts_monitor.core.types import (
    AwareTime,
    Count64,
    Gigabytes,
    Load,
    NonNegativeInt32,
    Percent,
    Text50,
    Text100,
    Text255,
)
from rts_monitor.core.types import Name255 as ServiceName

MAX_SAMPLES_PER_REQUEST = 10_000
MAX_SERVICES_PER_SAMPLE = 1_000
NO_SERVICES = msgspec.Raw(b"null")


class ServiceSample(msgspec.Struct, frozen=True, gc=False):
    """One monitored service as the agent saw it at ``collected_at``."""

    name: ServiceName
    status: Text50 | None = None
    pid: NonNegativeInt32 | None = None
    display_name: Text255 | None = None
    type: Text100 | None = None


class MetricSample(msgspec.Struct, frozen=True, gc=False):
    collected_at: AwareTime
    cpu_percent: Percent | None = None
    memory_used_gb: Gigabytes | None = None
    memory_percent: Percent | None = None
    disk_used_gb: Gigabytes | None = None
    disk_percent: Percent | None = None
    load_average: tuple[Load, Load, Load] | None = None
    uptime_seconds: Count64 | None = None
    network_rx_bytes: Count64 | None = None
    network_tx_bytes: Count64 | None = None
    # ``list[ServiceSample] | null`` on the wire, kept as raw JSON while the batch is decoded: only
    # the newest sample's services are stored and agents repeat the same list in every sample, so
    # validate.py decodes (and so validates) each distinct list once instead of building ~9
    # objects per sample (measured: a third of the objects a 500-sample request allocated).
    services: msgspec.Raw = NO_SERVICES


# the type of ``MetricSample.services`` on the wire
ServiceList = Annotated[list[ServiceSample], msgspec.Meta(max_length=MAX_SERVICES_PER_SAMPLE)] | None


class MetricsBatch(msgspec.Struct, frozen=True, gc=False):
    metrics: Annotated[list[MetricSample], msgspec.Meta(min_length=1, max_length=MAX_SAMPLES_PER_REQUEST)]


class MetricsAccepted(msgspec.Struct):
    """Answered only once the rows are committed: ``received`` new rows, ``duplicates`` already
    stored (a replay or retry), and the alert rules this batch opened."""

    received: int
    duplicates: int
    alerts_triggered: list[str]
