"""Turn a request body into COPY-ready rows, or a 4xx that names the offending field.

Everything about a batch is checked before any of it is queued, so a bad sample means nothing
of that batch is written.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from operator import itemgetter
from typing import Any
from uuid import UUID

import msgspec

from rts_monitor.errors import BadRequest, ValidationFailed
from rts_monitor.ingest.structs import MAX_SAMPLES_PER_REQUEST, MetricsBatch, ServiceSample

# (device, collected_at, cpu%, mem GB, mem%, disk GB, disk%, load 1/5/15, uptime, rx, tx):
# the column order of agent_metrics and of the binary COPY.
Row = tuple[Any, ...]
COPY_TYPES = ["uuid", "timestamptz"] + ["float4"] * 8 + ["int8"] * 3

_JSON = msgspec.json.Decoder(MetricsBatch)
_AT = re.compile(r" - at `\$\.?(?P<path>[^`]*)`")
_LEAF = re.compile(r"([a-z_]+)(?:\[\d+\])?$")
_MISSING = re.compile(r"Object missing required field `([^`]+)`")

_RULES = {
    "metrics": f"must be an array of 1 to {MAX_SAMPLES_PER_REQUEST} samples",
    "collected_at": "must be an RFC 3339 timestamp with a timezone",
    "cpu_percent": "must be between 0 and 100",
    "memory_percent": "must be between 0 and 100",
    "disk_percent": "must be between 0 and 100",
    "memory_used_gb": "must be a non-negative number of GB",
    "disk_used_gb": "must be a non-negative number of GB",
    "load_average": "must be an array of 3 non-negative numbers (1, 5, 15 minutes)",
    "uptime_seconds": "must be a non-negative integer",
    "network_rx_bytes": "must be a non-negative 64-bit integer",
    "network_tx_bytes": "must be a non-negative 64-bit integer",
    "services": "must be an array of {name, status, pid}",
    "name": "must be a string of 1 to 255 characters",
    "status": "must be a string of at most 50 characters",
    "pid": "must be an integer between 0 and 2147483647",
    "display_name": "must be a string of at most 255 characters",
    "type": "must be a string of at most 100 characters",
}


@dataclass(slots=True)
class PreparedBatch:
    """One request's rows, deduplicated within the request and sorted by time (lock order)."""

    device_id: UUID
    rows: list[Row]
    in_request_duplicates: int
    services_at: datetime | None
    services: list[ServiceSample]


def decode(body: bytes) -> MetricsBatch:
    """JSON (whatever the Content-Type says); type and range errors become 422 with a path.

    A msgpack or columnar variant was measured (benchmarks/ingest.py) and did not pay: decoding is
    a small share of a request's server CPU, so only the plan's JSON is accepted.
    """
    try:
        return _JSON.decode(body)
    except msgspec.ValidationError as exc:
        raise _validation_error(str(exc)) from None
    except msgspec.DecodeError as exc:
        raise BadRequest(f"body is not a valid metrics document: {exc}") from None


def _validation_error(detail: str) -> ValidationFailed:
    m = _AT.search(detail)
    if m is None:
        return ValidationFailed(f"body: must be an object with a `metrics` array ({detail})", field="body",
                                extra={"detail": detail})
    path = m["path"] or "body"
    reason = detail[: m.start()].strip()
    missing = _MISSING.match(reason)
    if missing:
        path = f"{path}.{missing.group(1)}"
        return ValidationFailed(f"{path}: is required", field=path, extra={"detail": reason})
    leaf = _LEAF.search(path)
    rule = _RULES.get(leaf.group(1)) if leaf else None
    return ValidationFailed(f"{path}: {rule or reason}", field=path, extra={"detail": reason})


def prepare(batch: MetricsBatch, *, device_id: UUID, now: datetime, max_future: timedelta,
            max_age: timedelta) -> PreparedBatch:
    """Check timestamps against the server clock and build rows in agent_metrics column order."""
    latest, oldest = now + max_future, now - max_age
    rows: list[Row] = []
    newest_services: tuple[datetime, int] | None = None
    for i, s in enumerate(batch.metrics):
        t = s.collected_at
        if t > latest:
            raise ValidationFailed(
                f"metrics[{i}].collected_at: {t.isoformat()} is more than {int(max_future.total_seconds())} s "
                f"in the future (server time {now.isoformat()}); check the agent's clock",
                field=f"metrics[{i}].collected_at")
        if t < oldest:
            raise ValidationFailed(
                f"metrics[{i}].collected_at: {t.isoformat()} is older than the raw retention of "
                f"{max_age.days} days; it would be dropped, so it is rejected",
                field=f"metrics[{i}].collected_at")
        la = s.load_average or (None, None, None)
        rows.append((device_id, t, s.cpu_percent, s.memory_used_gb, s.memory_percent, s.disk_used_gb,
                     s.disk_percent, la[0], la[1], la[2], s.uptime_seconds, s.network_rx_bytes,
                     s.network_tx_bytes))
        if s.services is not None and (newest_services is None or t >= newest_services[0]):
            newest_services = (t, i)
    services: list[ServiceSample] = []
    services_at = None
    if newest_services is not None:
        services_at, index = newest_services
        services = _unique_services(batch.metrics[index].services or [], index)
    rows.sort(key=itemgetter(1))
    unique = _dedupe_sorted(rows)
    return PreparedBatch(device_id, unique, len(rows) - len(unique), services_at, services)


def _unique_services(services: list[ServiceSample], index: int) -> list[ServiceSample]:
    """The upsert touches each (device, name) once per statement: a repeated name is a 422."""
    seen: set[str] = set()
    for j, svc in enumerate(services):
        if svc.name in seen:
            raise ValidationFailed(f"metrics[{index}].services[{j}].name: {svc.name!r} appears twice",
                                   field=f"metrics[{index}].services[{j}].name")
        seen.add(svc.name)
    return services


def _dedupe_sorted(rows: list[Row]) -> list[Row]:
    """Drop repeats of a collected_at inside one request (they would only be duplicates)."""
    if len(rows) < 2:
        return rows
    out = [rows[0]]
    for row in rows[1:]:
        if row[1] != out[-1][1]:
            out.append(row)
    return out
