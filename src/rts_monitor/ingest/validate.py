"""Turn a request body into COPY-ready rows, or a 4xx that names the offending field.

Everything about a batch is checked before any of it is queued, so a bad sample means nothing
of that batch is written. The body is decoded straight into the typed structs (no generic JSON
first): unknown fields are skipped without being built, so the size of what is allocated is
bounded by the contract (``MAX_SAMPLES_PER_REQUEST``, ``MAX_SERVICES_PER_SAMPLE``) and no
generic depth/size scan (``core.types.check_json_shape``) is paid on the hottest path; nesting a
decoder would recurse into (an unknown field, a services list) is caught as the same 400.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from math import floor
from operator import itemgetter
from typing import Any
from uuid import UUID

import msgspec

from rts_monitor.core.errors import BadRequest, ValidationFailed
from rts_monitor.core.types import nesting_error, scrub
from rts_monitor.ingest.copy_format import encode_rows
from rts_monitor.ingest.structs import (
    MAX_SAMPLES_PER_REQUEST,
    MAX_SERVICES_PER_SAMPLE,
    NO_SERVICES,
    MetricSample,
    MetricsBatch,
    ServiceList,
    ServiceSample,
)

# (device, collected_at, cpu%, mem GB, mem%, disk GB, disk%, load 1/5/15, uptime, rx, tx):
# the column order of agent_metrics and of the binary COPY (copy_format.COPY_TYPES), with the
# gauges as the integers the table stores: the wire value times its scale, rounded (migration
# 0220: integers compress by delta-of-delta, REAL by Gorilla at 2-3x the bytes). The scales are
# the agent's own precision (psutil's one-decimal percentages, GB with three decimals, the
# kernel's two-decimal load averages), so nothing an agent measures is lost.
Row = tuple[Any, ...]
# in column order (stored_row relies on it)
SCALES: dict[str, int] = {"cpu_percent": 10, "memory_used_gb": 1000, "memory_percent": 10, "disk_used_gb": 1000,
                          "disk_percent": 10, "load_average_1m": 100, "load_average_5m": 100,
                          "load_average_15m": 100}


def _scaled(value: float | None, scale: int) -> int | None:
    """Half up (every gauge is >= 0); ``floor(x + 0.5)`` costs 60% of ``round(x)`` (measured)."""
    return None if value is None else floor(value * scale + 0.5)


def stored_row(device_id: UUID, collected_at: datetime, cpu_percent: float | None, memory_used_gb: float | None,
               memory_percent: float | None, disk_used_gb: float | None, disk_percent: float | None,
               load_1m: float | None, load_5m: float | None, load_15m: float | None, uptime_seconds: int | None,
               network_rx_bytes: int | None, network_tx_bytes: int | None) -> Row:
    """One sample in wire units as the row the table stores (for writers other than the API:
    benchmarks, tests, tools)."""
    gauges = (cpu_percent, memory_used_gb, memory_percent, disk_used_gb, disk_percent, load_1m, load_5m, load_15m)
    return (device_id, collected_at, *(_scaled(v, s) for v, s in zip(gauges, SCALES.values(), strict=True)),
            uptime_seconds, network_rx_bytes, network_tx_bytes)


def _row(device_id: UUID, s: MetricSample) -> Row:
    la = s.load_average or _NO_LOAD
    return stored_row(device_id, s.collected_at, s.cpu_percent, s.memory_used_gb, s.memory_percent,
                      s.disk_used_gb, s.disk_percent, la[0], la[1], la[2], s.uptime_seconds,
                      s.network_rx_bytes, s.network_tx_bytes)


_JSON = msgspec.json.Decoder(MetricsBatch)
_SERVICES = msgspec.json.Decoder(ServiceList)
# Below this many rows a request keeps its row tuples (a small flush binds them as arrays);
# larger ones keep only the encoded COPY data and the timestamps, so the tuples are freed while
# still in cache instead of after the commit.
KEEP_ROWS_BELOW = 256
_NO_LOAD = (None, None, None)
_EARLIEST = datetime.min.replace(tzinfo=UTC)
_NOTHING_VALID_YET = msgspec.Raw(b"")  # equal to no JSON value, not even an explicit null
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
    "services": f"must be an array of {{name, status, pid}} (at most {MAX_SERVICES_PER_SAMPLE})",
    "name": "must be a string of 1 to 255 characters",
    "status": "must be a string of at most 50 characters",
    "pid": "must be an integer between 0 and 2147483647",
    "display_name": "must be a string of at most 255 characters",
    "type": "must be a string of at most 100 characters",
}


@dataclass(slots=True)
class PreparedBatch:
    """One request's samples, deduplicated within the request and sorted by time (lock order).

    ``copy_data`` is the rows in binary COPY format (what a large flush sends); ``times`` their
    timestamps (ranges, and which rows a replay actually wrote); ``rows`` the tuples themselves,
    kept only for small requests (see ``KEEP_ROWS_BELOW``).
    """

    device_id: UUID
    times: list[datetime]
    copy_data: bytearray
    rows: list[Row] | None
    in_request_duplicates: int
    services_at: datetime | None
    services: list[ServiceSample]
    # The request body, kept only by reference (the handler holds it anyway until it answers): if
    # the database refuses this batch, the pipeline decodes it again to name the sample.
    body: bytes = b""


def decode(body: bytes) -> MetricsBatch:
    """JSON (whatever the Content-Type says); type and range errors become 422 with a path.

    A msgpack or columnar variant was measured (benchmarks/ingest.py) and did not pay enough for a
    second wire format, so only the API contract's JSON is accepted (docs/ingest.md).
    """
    try:
        return _JSON.decode(body)
    except msgspec.ValidationError as exc:
        raise _validation_error(str(exc)) from None
    except msgspec.DecodeError as exc:
        raise BadRequest(f"body is not a valid metrics document: {exc}") from None
    except RecursionError:  # nesting in an unknown field: skipped, but still walked
        raise nesting_error() from None


def _validation_error(detail: str, prefix: str = "") -> ValidationFailed:
    """msgspec's ``… - at `$.metrics[3].cpu_percent``` as ``metrics[3].cpu_percent: <rule>``;
    ``prefix`` is where a separately decoded part sits in the body."""
    m = _AT.search(detail)
    if m is None and not prefix:
        return ValidationFailed(f"body: must be an object with a `metrics` array ({detail})", field="body",
                                extra={"detail": detail})
    if m is None:
        path, reason = prefix, detail
    else:
        path = prefix + m["path"] if prefix else (m["path"] or "body")
        reason = detail[: m.start()].strip()
    missing = _MISSING.match(reason)
    if missing:
        path = f"{path}.{missing.group(1)}"
        return ValidationFailed(f"{path}: is required", field=path, extra={"detail": reason})
    leaf = _LEAF.search(path)
    rule = _RULES.get(leaf.group(1)) if leaf else None
    return ValidationFailed(f"{path}: {rule or reason}", field=path, extra={"detail": reason})


def _services(raw: msgspec.Raw, index: int) -> list[ServiceSample] | None:
    field = f"metrics[{index}].services"
    try:
        services: list[ServiceSample] | None = _SERVICES.decode(raw)
    except msgspec.ValidationError as exc:
        raise _validation_error(str(exc), prefix=field) from None
    except msgspec.DecodeError as exc:  # the first pass only found where the list ends (e.g. bad UTF-8)
        raise BadRequest(f"{field}: not valid JSON: {exc}", field=field) from None
    except RecursionError:
        raise BadRequest(f"{field}: JSON nested too deeply", field=field) from None
    return services


def prepare(batch: MetricsBatch, *, device_id: UUID, now: datetime, max_future: timedelta,
            max_age: timedelta) -> PreparedBatch:
    """Check timestamps against the server clock and services lists, and build the rows.

    Every sample's services list is validated, but a list equal byte for byte to the previous
    valid one (the usual case: agents repeat it) is not decoded again. The hottest loop of the
    API (once per sample): rows are built inline, and a batch already in strictly increasing time
    (what agents send) is neither sorted nor searched for repeats, and has its timestamps checked
    at both ends only.
    """
    rows: list[Row] = []
    append = rows.append
    newest: tuple[datetime, int, list[ServiceSample]] | None = None
    valid, valid_list = _NOTHING_VALID_YET, []
    prev, ordered, no_load = _EARLIEST, True, _NO_LOAD
    for i, s in enumerate(batch.metrics):
        t = s.collected_at
        if t <= prev:
            ordered = False
        prev = t
        la = s.load_average or no_load
        try:  # the usual sample has every value: no per-value None test (SCALES, _scaled)
            append((device_id, t, floor(s.cpu_percent * 10 + 0.5), floor(s.memory_used_gb * 1000 + 0.5),  # type: ignore[operator]
                    floor(s.memory_percent * 10 + 0.5), floor(s.disk_used_gb * 1000 + 0.5),  # type: ignore[operator]
                    floor(s.disk_percent * 10 + 0.5), floor(la[0] * 100 + 0.5), floor(la[1] * 100 + 0.5),  # type: ignore[operator]
                    floor(la[2] * 100 + 0.5), s.uptime_seconds, s.network_rx_bytes, s.network_tx_bytes))  # type: ignore[operator]
        except TypeError:
            append(_row(device_id, s))
        raw = s.services
        if raw is NO_SERVICES:
            continue
        if raw != valid:
            decoded = _services(raw, i)
            if decoded is None:
                continue  # an explicit null: no services in this sample
            valid, valid_list = raw, decoded
        if newest is None or t >= newest[0]:
            newest = (t, i, valid_list)
    _check_times(rows, ordered, now, max_future, max_age)
    services: list[ServiceSample] = []
    services_at = None
    if newest is not None:
        services_at, index, newest_list = newest
        services = _unique_services(newest_list, index)
    unique = rows
    if not ordered:
        rows.sort(key=itemgetter(1))
        unique = _dedupe_sorted(rows)
    return PreparedBatch(device_id, [r[1] for r in unique], encode_rows(unique),
                         unique if len(unique) < KEEP_ROWS_BELOW else None, len(rows) - len(unique),
                         services_at, services)


def _check_times(rows: list[Row], ordered: bool, now: datetime, max_future: timedelta, max_age: timedelta) -> None:
    """Every sample within the server's window, or a 422 naming the first one outside it."""
    if not rows:
        return
    latest, oldest = now + max_future, now - max_age
    if ordered:
        lo, hi = rows[0][1], rows[-1][1]
    else:
        lo, hi = min(r[1] for r in rows), max(r[1] for r in rows)
    if lo >= oldest and hi <= latest:
        return
    for i, row in enumerate(rows):
        t = row[1]
        if t > latest or t < oldest:
            raise _timestamp_error(i, t, now, max_future, max_age)


def sample_rows(body: bytes, device_id: UUID) -> list[tuple[int, Row]]:
    """(index in the request, row) of every sample, in request order, unchecked: for naming the
    sample of a batch the database refused (the batch passed ``decode`` and ``prepare`` before)."""
    if not body:
        return []
    out = []
    for i, s in enumerate(decode(body).metrics):
        out.append((i, _row(device_id, s)))
    return out


def services_index(body: bytes) -> int | None:
    """Index of the sample whose services list is stored (the newest with one), as ``prepare`` picks it."""
    newest: tuple[datetime, int] | None = None
    for i, s in enumerate(decode(body).metrics if body else ()):
        if s.services != NO_SERVICES and (newest is None or s.collected_at >= newest[0]):
            newest = (s.collected_at, i)
    return None if newest is None else newest[1]


def _timestamp_error(i: int, t: datetime, now: datetime, max_future: timedelta,
                     max_age: timedelta) -> ValidationFailed:
    if t > now:
        return ValidationFailed(
            f"metrics[{i}].collected_at: {t.isoformat()} is more than {int(max_future.total_seconds())} s "
            f"in the future (server time {now.isoformat()}); check the agent's clock",
            field=f"metrics[{i}].collected_at")
    return ValidationFailed(
        f"metrics[{i}].collected_at: {t.isoformat()} is older than the raw retention of "
        f"{max_age.days} days; it would be dropped, so it is rejected",
        field=f"metrics[{i}].collected_at")


def _unique_services(services: list[ServiceSample], index: int) -> list[ServiceSample]:
    """The list that is stored, with the NUL rule applied (core/types.py); the upsert touches each
    (device, name) once per statement, so a repeated name is a 422."""
    services = [_scrubbed(svc) for svc in services]
    seen: set[str] = set()
    for j, svc in enumerate(services):
        if svc.name in seen:
            raise ValidationFailed(f"metrics[{index}].services[{j}].name: {svc.name!r} appears twice",
                                   field=f"metrics[{index}].services[{j}].name")
        seen.add(svc.name)
    return services


def _scrubbed(svc: ServiceSample) -> ServiceSample:
    texts = (svc.name, svc.status, svc.display_name, svc.type)
    if not any(t and "\x00" in t for t in texts):
        return svc
    return msgspec.structs.replace(svc, name=scrub(svc.name), status=svc.status and scrub(svc.status),
                                   display_name=svc.display_name and scrub(svc.display_name),
                                   type=svc.type and scrub(svc.type))


def _dedupe_sorted(rows: list[Row]) -> list[Row]:
    """Drop repeats of a collected_at inside one request (they would only be duplicates)."""
    if len(rows) < 2:
        return rows
    out = [rows[0]]
    for row in rows[1:]:
        if row[1] != out[-1][1]:
            out.append(row)
    return out
