"""DBA view and controls of the tiers, on every edition (CLI ``rts-monitor tiers`` and admin API).

Every control validates before it changes anything and says plainly when the edition lacks a
feature (compression needs the timescale license) instead of surfacing a SQL error. On the
postgres edition "chunks" are the declarative partitions the project makes (``chunk_interval``
is their width for new partitions).
"""

from __future__ import annotations

import re
import time
from datetime import datetime, timedelta
from typing import Any

from psycopg import AsyncConnection

from rts_monitor.audit import service as audit
from rts_monitor.auth.principal import Principal
from rts_monitor.core.edition import Edition
from rts_monitor.core.errors import Conflict, ValidationFailed
from rts_monitor.db import Queries
from rts_monitor.tiers import maintenance
from rts_monitor.tiers.definitions import LEVELS, RAW, TIER_BY_NAME, TIERS

Q = Queries.beside(__file__)
COMPRESSION_UNAVAILABLE = (
    "compression (columnstore) needs the TimescaleDB timescale (TSL/Community) license; this server runs "
    "the Apache edition, where raw chunks stay uncompressed and retention keeps disk bounded"
)
POSTGRES_COMPRESSION_UNAVAILABLE = (
    "compression (columnstore) needs TimescaleDB with the timescale (TSL/Community) license; this database "
    "has no TimescaleDB (plain PostgreSQL, e.g. Aurora or RDS), so raw partitions stay uncompressed and "
    "retention (dropping whole partitions) keeps disk bounded"
)
UNAVAILABLE: dict[Edition, dict[str, str]] = {
    "tsl": {},
    "apache": {
        "compression": COMPRESSION_UNAVAILABLE,
        "continuous_aggregates": "tiers are plain hypertables refreshed by the rts-monitor scheduler (tiers.refresh)",
        "policies": "retention runs as the rts-monitor job tiers.retention (drop_chunks), not as a TimescaleDB "
                    "policy",
    },
    "postgres": {
        "compression": POSTGRES_COMPRESSION_UNAVAILABLE,
        "continuous_aggregates": "tiers are partitioned tables refreshed by the rts-monitor scheduler (tiers.refresh)",
        "policies": "retention runs as the rts-monitor job tiers.retention (dropping partitions); partitions are "
                    "made ahead and on demand by the job tiers.partitions",
        "hypertables": "agent_metrics and the tiers are declaratively partitioned tables (range by time)",
    },
}
APACHE_UNAVAILABLE = UNAVAILABLE["apache"]
_DURATION = re.compile(
    r"^\s*(\d+)\s*(s|secs?|seconds?|m|mins?|minutes?|h|hours?|d|days?|w|weeks?|y|years?)\s*$", re.IGNORECASE
)
MAX_DURATION = timedelta(days=100 * 365)
_UNIT = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


class FeatureUnavailable(Conflict):
    """The database's TimescaleDB edition does not have this feature."""

    code = "feature_unavailable"


def parse_duration(text: str | None, *, field: str, allow_none: bool = True) -> timedelta | None:
    """``30 days``, ``12h``, ``2w``, ``5 years`` → timedelta; ``none``/empty → None (keep forever)."""
    if text is None or text.strip().lower() in ("", "none", "null", "off"):
        if allow_none:
            return None
        raise ValidationFailed(f"{field}: required", field=field)
    m = _DURATION.match(text)
    if not m or int(m[1]) <= 0:
        raise ValidationFailed(f"{field}: {text!r} is not a positive duration such as '30 days' or '12h'", field=field)
    unit = m[2][0].lower()
    try:  # a year of retention is 365 days (interval arithmetic stays exact)
        value = timedelta(days=365 * int(m[1])) if unit == "y" else timedelta(**{_UNIT[unit]: int(m[1])})
    except OverflowError:
        value = MAX_DURATION + MAX_DURATION
    if value > MAX_DURATION:
        raise ValidationFailed(f"{field}: {text!r} is longer than {MAX_DURATION.days // 365} years", field=field)
    return value


def _pretty_bytes(n: int | None) -> str:
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1024 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


def _age(now: datetime, t: datetime | None) -> str:
    return "-" if t is None else str(now - t).split(".")[0]


async def show(conn: AsyncConnection[Any], *, edition: Edition) -> dict[str, Any]:
    """Each level with chunks, size, compression, retention, refresh lag; and the jobs."""
    now_row = await (await conn.execute(Q.now_plain)).fetchone()
    assert now_row is not None
    now: datetime = now_row["now"]
    levels = list(await (await conn.execute(Q.levels)).fetchall())
    rows: list[dict[str, Any]] = []
    comp = None
    if edition == "tsl":
        comp = await (await conn.execute(Q.compression_stats)).fetchone()
    for lvl in levels:
        name = lvl["name"]
        if edition == "postgres":
            size = await (await conn.execute(Q.partition_sizes, {"name": name})).fetchone()
            kind = "partitioned table" if name == RAW else "partitioned tier table"
            watermark = lvl["watermark"]
        elif name == RAW or edition == "apache":
            size = await (await conn.execute(Q.level_sizes, {"name": name})).fetchone()
            kind = "hypertable" if name == RAW else "tier table"
            watermark = lvl["watermark"]
        else:
            size = await (await conn.execute(Q.cagg_sizes, {"name": name})).fetchone()
            kind = "continuous aggregate"
            watermark = size["watermark"] if size else None
        if name != RAW:
            compression = "n/a"
        elif edition != "tsl":
            compression = f"unavailable ({edition})"
        elif comp is not None and comp["before"]:
            compression = f"{comp['before'] / max(comp['after'] or 1, 1):.1f}x ({comp['compressed_chunks']} chunks)"
        else:
            compression = f"after {lvl['compress_after']}" if lvl["compress_after"] else "off"
        rows.append({
            "level": name,
            "kind": kind,
            "bucket": str(lvl["bucket_width"]) if lvl["bucket_width"] else "raw",
            "chunks": int(size["chunks"]) if size else 0,
            "chunk_interval": str(size["chunk_interval"]) if size and size["chunk_interval"] else "-",
            "size": _pretty_bytes(size["bytes"] if size else None),
            "bytes": int(size["bytes"] or 0) if size else 0,
            "compression": compression,
            "compress_after": str(lvl["compress_after"]) if lvl["compress_after"] else "-",
            "retention": str(lvl["retention"]) if lvl["retention"] else "forever",
            "watermark": watermark.isoformat() if watermark else "-",
            "refresh_lag": "-" if name == RAW else _age(now, watermark),
        })
    jobs = await _jobs(conn, edition=edition, now=now)
    return {"edition": edition, "levels": rows, "jobs": jobs, "unavailable": UNAVAILABLE[edition]}


async def _jobs(conn: AsyncConnection[Any], *, edition: Edition, now: datetime) -> list[dict[str, Any]]:
    if edition == "tsl":
        out = []
        for j in await (await conn.execute(Q.tsl_jobs)).fetchall():
            out.append({"job": f"{j['proc_name']}[{j['job_id']}]", "target": j["hypertable_name"],
                        "every": str(j["schedule_interval"]), "last_run": _ts(j["last_run_started_at"]),
                        "last_status": j["last_run_status"] or "-", "next_run": _ts(j["next_start"]),
                        "runs": j["total_runs"] or 0, "failures": j["total_failures"] or 0, "last_error": "-"})
        return out
    out = []
    for j in await (await conn.execute(Q.apache_jobs)).fetchall():
        out.append({"job": j["name"], "target": "all tiers", "every": f"{j['interval_seconds']}s",
                    "last_run": _ts(j["last_started_at"]), "last_status": j["last_status"] or "-",
                    "next_run": _ts(j["next_run_at"]), "runs": j["total_runs"], "failures": j["total_failures"],
                    "last_error": (j["last_error"] or "-")[:120]})
    return out


def _ts(t: datetime | None) -> str:
    return t.isoformat(timespec="seconds") if t else "-"


def _shown(value: timedelta | None, none: str) -> str:
    """A duration as ``GET /api/admin/tiers`` shows it (what the audit log's before/after hold)."""
    return str(value) if value else none


async def set_retention(conn: AsyncConnection[Any], *, edition: Edition, level: str,
                        retention: timedelta | None, principal: Principal | None = None) -> None:
    """Set how long a level keeps data; refuse what would drop rows the tier above still needs.
    Audited: ``principal`` is the admin (the API), None the operator's ``rts-monitor tiers`` CLI."""
    maintenance.tier_or_raw(level)
    idx = LEVELS.index(level)
    levels = {r["name"]: r for r in await (await conn.execute(Q.levels)).fetchall()}
    if retention is not None and idx + 1 < len(LEVELS):
        above = TIER_BY_NAME[LEVELS[idx + 1]]
        if retention < 2 * above.width:
            raise ValidationFailed(f"retention: {level} must keep at least {2 * above.width} so that {above.name} "
                             f"can aggregate complete buckets", field="retention")
        if edition != "tsl":
            wm = levels[above.name]["watermark"]
            row = await (await conn.execute(Q.retention_cutoff, {"r": retention})).fetchone()
            assert row is not None
            if wm is None or row["cutoff"] > wm:
                raise Conflict(
                    f"retention: {retention} on {level} would drop data that {above.name} has not materialised "
                    f"yet (its watermark is {wm.isoformat() if wm else 'unset'}); run `rts-monitor tiers refresh` "
                    "first or choose a longer retention",
                    field="retention",
                )
        else:
            window = await _refresh_window(conn, above.name)
            if window is not None and retention <= window:
                raise Conflict(f"retention: {retention} on {level} is inside the refresh window ({window}) of "
                               f"{above.name}'s policy; dropped chunks would erase materialised buckets",
                               field="retention")
    async with conn.transaction():
        if edition == "tsl":
            await conn.execute(Q.remove_retention_policy, {"n": level})
            if retention is not None:
                await conn.execute(Q.add_retention_policy, {"n": level, "r": retention})
        await conn.execute(Q.set_retention, {"retention": retention, "name": level})
        await audit.record(conn, principal=principal, actor_type=None if principal else "cli",
                           action="tier.retention", object_type="tier", object_id=level,
                           before={"level": level, "retention": _shown(levels[level]["retention"], "forever")},
                           after={"level": level, "retention": _shown(retention, "forever")})


async def _refresh_window(conn: AsyncConnection[Any], cagg: str) -> timedelta | None:
    row = await (await conn.execute(Q.refresh_window, {"n": cagg})).fetchone()
    return row["w"] if row else None


async def set_compression(conn: AsyncConnection[Any], *, edition: Edition, after: timedelta | None,
                          principal: Principal | None = None) -> None:
    """Compress raw chunks older than ``after`` (None: stop compressing new chunks). Audited as
    ``set_retention`` is."""
    if edition != "tsl":
        raise FeatureUnavailable(UNAVAILABLE[edition]["compression"])
    levels = {r["name"]: r for r in await (await conn.execute(Q.levels)).fetchall()}
    async with conn.transaction():
        await conn.execute(Q.remove_compression_policy)
        if after is not None:
            await conn.execute(Q.add_compression_policy, {"a": after})
        await conn.execute(Q.set_compress_after, {"after": after})
        await audit.record(conn, principal=principal, actor_type=None if principal else "cli",
                           action="tier.compression", object_type="tier", object_id=RAW,
                           before={"level": RAW, "compress_after": _shown(levels[RAW]["compress_after"], "off")},
                           after={"level": RAW, "compress_after": _shown(after, "off")})


async def set_chunk_interval(conn: AsyncConnection[Any], *, edition: Edition, level: str,
                             interval: timedelta) -> None:
    """New chunks of ``level`` span ``interval`` (existing chunks keep theirs)."""
    maintenance.tier_or_raw(level)
    if interval < timedelta(hours=1):
        raise ValidationFailed("chunk_interval: at least 1 hour", field="chunk_interval")
    if edition == "postgres":
        await conn.execute(Q.set_partition_interval, {"name": level, "interval": interval})
        return
    await conn.execute(Q.set_chunk_interval, {"name": level, "interval": interval})


async def refresh(conn: AsyncConnection[Any], *, edition: Edition, start: datetime | None,
                  end: datetime | None) -> dict[str, Any]:
    """Refresh by hand: a time range (re-aggregated in every tier), or one scheduled pass (apache, postgres)."""
    if start is not None and end is not None and end <= start:
        raise ValidationFailed("end: must be after start", field="end")
    started = time.monotonic()
    if edition == "tsl":
        await conn.set_autocommit(True)
        for tier in TIERS:  # refresh_continuous_aggregate refuses to run inside a transaction
            await conn.execute(Q.refresh_cagg, {"n": tier.name, "s": start, "e": end})
        return {"mode": "continuous aggregates", "seconds": round(time.monotonic() - started, 3)}
    if start is None and end is None:
        res = await maintenance.refresh(conn, edition=edition)
        return {"mode": "scheduled pass", "rows": res.rows, "invalidated_buckets": res.invalidated_ranges,
                "watermarks": {k: v.isoformat() if v else None for k, v in res.watermarks.items()},
                "seconds": round(res.seconds, 3)}
    if start is None or end is None:
        raise ValidationFailed("start: give both start and end, or neither", field="start" if start is None else "end")
    rows = await maintenance.refresh_range(conn, edition=edition, start=start, end=end)
    return {"mode": "range", "rows": rows, "seconds": round(time.monotonic() - started, 3)}


async def run_tracked(conn: AsyncConnection[Any], *, name: str, interval_seconds: int, work: Any) -> Any:
    """Run a maintenance job and record start, end, rows and failure in ``rts_tier_jobs``."""
    await conn.execute(Q.job_started, {"name": name, "interval": interval_seconds})
    started = time.monotonic()
    try:
        result = await work(conn)
    except Exception as exc:
        await conn.execute(Q.job_finished, {"name": name, "status": "failed", "error": f"{type(exc).__name__}: {exc}",
                                            "ms": int((time.monotonic() - started) * 1000), "rows": None})
        raise
    rows = sum(result.rows.values()) if hasattr(result, "rows") else sum(result.values())
    await conn.execute(Q.job_finished, {"name": name, "status": "success", "error": None,
                                        "ms": int((time.monotonic() - started) * 1000), "rows": rows})
    return result
