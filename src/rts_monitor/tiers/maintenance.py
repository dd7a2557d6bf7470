"""Apache-edition maintenance of the tiers: refresh from a watermark, late-row invalidation,
retention by ``drop_chunks``.

On the timescale license continuous aggregates and policies do all of this; here the project
does it with plain SQL in one transaction per run:

1. ``DELETE FROM metric_ingest_ranges … RETURNING`` consumes what ingestion committed since the
   last run. Ranges that reach below a tier's watermark name exactly the (device, bucket) pairs
   whose materialised rows are now stale; those are deleted and re-aggregated from the level
   below, tier by tier. Rows committed after the DELETE keep their range row for the next run.
2. Each tier then advances its watermark to the last complete bucket before ``now()``,
   aggregating ``[old watermark, new watermark)`` per device (PK index probes driven by
   ``agent_devices``, so a run never scans a whole day chunk).

The ``rts_tier_levels`` rows are locked ``FOR UPDATE`` for the whole run, so manual refreshes,
the scheduled refresh and retention never interleave. Everything is idempotent: re-running a
range rebuilds the same rows.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from psycopg import AsyncConnection

from rts_monitor.tiers.definitions import (
    ALL_COLUMNS,
    LEVELS,
    RAW,
    TIER_BY_NAME,
    TIERS,
    Tier,
    combine_partials,
    raw_partials,
)

log = logging.getLogger(__name__)

_COLS = ", ".join(ALL_COLUMNS)


@dataclass
class RefreshResult:
    """What one refresh did, per tier: rows written by invalidation and by the watermark step."""

    invalidated_ranges: int = 0
    rows: dict[str, int] = field(default_factory=dict)
    watermarks: dict[str, datetime | None] = field(default_factory=dict)
    seconds: float = 0.0


def _source_partials(tier: Tier, source_rel: str) -> str:
    """Tier rows computed from ``source_rel`` (same shape as the level below)."""
    if tier.source == RAW:
        return raw_partials(tier.width_sql, "true", source=source_rel)
    return combine_partials(f"SELECT * FROM {source_rel} s0", tier.width_sql)


def _range_source(tier: Tier, *, by_device: bool) -> str:
    """The rows of the level below for buckets in ``[%(lo)s, %(hi)s)``.

    ``by_device`` drives the read by ``agent_devices`` so the raw hypertable is read through its
    (agent_device_id, collected_at) primary key instead of scanning a day chunk.
    """
    if tier.source == RAW:
        if by_device:
            return ("(SELECT m.* FROM agent_devices d JOIN agent_metrics m ON m.agent_device_id = d.id "
                    "AND m.collected_at >= %(lo)s AND m.collected_at < %(hi)s)")
        return "(SELECT * FROM agent_metrics WHERE collected_at >= %(lo)s AND collected_at < %(hi)s)"
    return f"(SELECT * FROM {tier.source} WHERE bucket >= %(lo)s AND bucket < %(hi)s)"


def rebuild_range_sql(tier: Tier, *, by_device: bool = True) -> list[str]:
    """Delete and re-aggregate every bucket of ``tier`` in ``[%(lo)s, %(hi)s)`` (all devices)."""
    src = _source_partials(tier, _range_source(tier, by_device=by_device))
    return [
        f"DELETE FROM {tier.name} WHERE bucket >= %(lo)s AND bucket < %(hi)s",
        f"INSERT INTO {tier.name} ({_COLS}) SELECT {_COLS} FROM ({src}) x",
    ]


def rebuild_invalid_sql(tier: Tier) -> list[str]:
    """Delete and re-aggregate the (device, bucket) pairs listed in the temp table ``_inv_<label>``."""
    inv = f"_inv_{tier.label}"
    if tier.source == RAW:
        rows = (f"(SELECT m.* FROM {inv} i JOIN agent_metrics m ON m.agent_device_id = i.dev "
                f"AND m.collected_at >= i.bucket AND m.collected_at < i.bucket + INTERVAL '{tier.width_sql}')")
    else:
        rows = (f"(SELECT s.* FROM {inv} i JOIN {tier.source} s ON s.agent_device_id = i.dev "
                f"AND s.bucket >= i.bucket AND s.bucket < i.bucket + INTERVAL '{tier.width_sql}')")
    src = _source_partials(tier, rows)
    return [
        f"DELETE FROM {tier.name} t USING {inv} i WHERE t.agent_device_id = i.dev AND t.bucket = i.bucket",
        f"INSERT INTO {tier.name} ({_COLS}) SELECT {_COLS} FROM ({src}) x",
    ]


# Pending ranges → distinct (device, 5m bucket) below the 5m watermark and above what retention
# dropped from raw (re-aggregating a bucket whose raw rows are partly gone would corrupt it).
CONSUME_RANGES = """
WITH consumed AS (
    DELETE FROM metric_ingest_ranges RETURNING agent_device_id, range_start, range_end
), clipped AS (
    SELECT agent_device_id AS dev,
           time_bucket(INTERVAL '5 minutes',
                       greatest(range_start, coalesce(%(floor)s::timestamptz, '-infinity'))) AS lo,
           least(range_end, coalesce(%(wm)s::timestamptz, '-infinity') - INTERVAL '1 microsecond') AS hi
      FROM consumed
)
INSERT INTO _inv_5m (dev, bucket)
SELECT DISTINCT dev, b
  FROM clipped, generate_series(lo, hi, INTERVAL '5 minutes') AS b
 WHERE hi >= lo
"""
CONSUMED_COUNT = "SELECT count(*) AS n FROM _inv_5m"

DERIVE_INVALID = """
INSERT INTO {inv} (dev, bucket)
SELECT DISTINCT dev, time_bucket(INTERVAL '{width}', bucket) FROM {below}
 WHERE time_bucket(INTERVAL '{width}', bucket) < %(wm)s
"""

NOW = "SELECT coalesce(%(now)s::timestamptz, now()) AS now"
TEMP_INV = "CREATE TEMP TABLE _inv_{label} (dev uuid, bucket timestamptz) ON COMMIT DROP"
# A manual range widened to whole buckets, kept below the watermark and above what retention
# dropped from the source level (rebuilding from partly dropped rows would lose data).
RANGE_BOUNDS = """
SELECT greatest(time_bucket(%(w)s::interval, %(s)s::timestamptz),
                coalesce(time_bucket(%(w)s::interval, %(floor)s::timestamptz - INTERVAL '1 microsecond')
                         + %(w)s::interval, '-infinity')) AS lo,
       least(time_bucket(%(w)s::interval, %(e)s::timestamptz - INTERVAL '1 microsecond') + %(w)s::interval,
             %(wm)s::timestamptz) AS hi
"""
LOCK_LEVELS = "SELECT * FROM rts_tier_levels ORDER BY position FOR UPDATE"
SET_WATERMARK = "UPDATE rts_tier_levels SET watermark = %(wm)s, updated_at = now() WHERE name = %(name)s"
RAW_START = """
SELECT time_bucket(%(w)s::interval, min(range_start)) AS lo FROM timescaledb_information.chunks
 WHERE hypertable_schema = current_schema() AND hypertable_name = 'agent_metrics'
"""
TIER_START = "SELECT time_bucket(%(w)s::interval, min(bucket)) AS lo FROM {name}"


async def _levels(conn: AsyncConnection[Any]) -> dict[str, dict[str, Any]]:
    cur = await conn.execute(LOCK_LEVELS)
    return {row["name"]: row for row in await cur.fetchall()}


async def _exec_rows(conn: AsyncConnection[Any], statements: list[str], params: dict[str, Any]) -> int:
    rows = 0
    for sql in statements:
        cur = await conn.execute(sql.encode(), params)  # generated from constants, never from input
        if sql.startswith("INSERT"):
            rows += max(cur.rowcount, 0)
    return rows


async def _start_of(conn: AsyncConnection[Any], tier: Tier) -> datetime | None:
    """Where a tier with no watermark yet starts: the oldest data of the level below."""
    sql = RAW_START if tier.source == RAW else TIER_START.format(name=tier.source)
    row = await (await conn.execute(sql.encode(), {"w": tier.width})).fetchone()
    return None if row is None else row["lo"]


async def refresh(conn: AsyncConnection[Any], *, now: datetime | None = None,
                  max_span: timedelta | None = None) -> RefreshResult:
    """One maintenance pass over all tiers (apache edition); commits its own transaction.

    ``max_span`` bounds how far the 5m watermark advances in one pass, so a first run over weeks
    of existing data catches up in several short transactions (charts read raw meanwhile).
    """
    started = time.monotonic()
    result = RefreshResult()
    async with conn.transaction():
        levels = await _levels(conn)
        now_row = await (await conn.execute(NOW, {"now": now})).fetchone()
        assert now_row is not None
        t_now: datetime = now_row["now"]
        for tier in TIERS:
            await conn.execute(TEMP_INV.format(label=tier.label).encode())
        first = TIERS[0]
        floor = levels[RAW]["dropped_before"]
        await conn.execute(CONSUME_RANGES, {"wm": levels[first.name]["watermark"], "floor": floor})
        count_row = await (await conn.execute(CONSUMED_COUNT)).fetchone()
        result.invalidated_ranges = int(count_row["n"]) if count_row else 0
        below_wm: datetime | None = None
        for i, tier in enumerate(TIERS):
            old_wm: datetime | None = levels[tier.name]["watermark"]
            if i > 0 and old_wm is not None:
                prev = TIERS[i - 1]
                await conn.execute(DERIVE_INVALID.format(inv=f"_inv_{tier.label}", width=tier.width_sql,
                                                         below=f"_inv_{prev.label}").encode(), {"wm": old_wm})
            rows = await _exec_rows(conn, rebuild_invalid_sql(tier), {}) if old_wm is not None else 0
            # Advance: the last complete bucket before now (5m), or before the tier below's watermark.
            limit_sql = "SELECT time_bucket(%(w)s::interval, %(t)s::timestamptz) AS wm"
            lo = old_wm if old_wm is not None else await _start_of(conn, tier)
            limit = t_now if i == 0 else below_wm
            if i == 0 and max_span is not None and lo is not None and limit is not None:
                limit = min(limit, lo + max_span)
            new_wm = None
            if limit is not None:
                wm_row = await (await conn.execute(limit_sql, {"w": tier.width, "t": limit})).fetchone()
                new_wm = wm_row["wm"] if wm_row else None
            if lo is not None and new_wm is not None and new_wm > lo:
                rows += await _exec_rows(conn, rebuild_range_sql(tier), {"lo": lo, "hi": new_wm})
            if new_wm is not None and (old_wm is None or new_wm > old_wm):
                await conn.execute(SET_WATERMARK, {"wm": new_wm, "name": tier.name})
            else:
                new_wm = old_wm
            result.rows[tier.name] = rows
            result.watermarks[tier.name] = new_wm
            below_wm = new_wm
    result.seconds = time.monotonic() - started
    log.info("tiers.refreshed", extra={"rows": result.rows, "invalidated_buckets": result.invalidated_ranges,
                                        "ms": round(result.seconds * 1000, 1)})
    return result


async def refresh_range(conn: AsyncConnection[Any], *, start: datetime, end: datetime) -> dict[str, int]:
    """Re-aggregate every tier over ``[start, end)`` by hand (widened to whole buckets).

    Only the materialised part (below each watermark) is rebuilt; what lies above is the
    scheduled refresh's job, so a manual refresh never moves a watermark.
    """
    out: dict[str, int] = {}
    async with conn.transaction():
        levels = await _levels(conn)
        for tier in TIERS:
            wm = levels[tier.name]["watermark"]
            if wm is None:
                out[tier.name] = 0
                continue
            floor = levels[tier.source]["dropped_before"]
            row = await (await conn.execute(RANGE_BOUNDS, {"w": tier.width, "s": start, "e": end, "wm": wm,
                                                           "floor": floor})).fetchone()
            assert row is not None
            if row["hi"] <= row["lo"]:
                out[tier.name] = 0
                continue
            out[tier.name] = await _exec_rows(conn, rebuild_range_sql(tier), {"lo": row["lo"], "hi": row["hi"]})
    log.info("tiers.refreshed_range", extra={"start": start, "end": end, "rows": out})
    return out


CHUNKS_BEFORE = """
SELECT max(range_end) AS horizon, count(*) AS n FROM timescaledb_information.chunks
 WHERE hypertable_schema = current_schema() AND hypertable_name = %(name)s AND range_end <= %(cutoff)s
"""
PENDING_MIN = "SELECT min(range_start) AS lo FROM metric_ingest_ranges"
SET_DROPPED = """
UPDATE rts_tier_levels SET dropped_before = greatest(dropped_before, %(horizon)s), updated_at = now()
 WHERE name = %(name)s
"""


async def retention_cutoffs(conn: AsyncConnection[Any], levels: dict[str, dict[str, Any]],
                            now: datetime) -> dict[str, datetime]:
    """Per level, the time before which chunks may go: ``now - retention`` clamped so that no
    level loses data the tier above has not materialised (its watermark), and raw keeps every
    row a pending ingest range still has to re-aggregate."""
    out: dict[str, datetime] = {}
    pending = await (await conn.execute(PENDING_MIN)).fetchone()
    for i, name in enumerate(LEVELS):
        retention = levels[name]["retention"]
        if retention is None:
            continue
        cutoff = now - retention
        if i + 1 < len(LEVELS):
            above_wm = levels[LEVELS[i + 1]]["watermark"]
            if above_wm is None:
                continue  # nothing above is materialised yet: keep everything
            cutoff = min(cutoff, above_wm)
        if name == RAW and pending is not None and pending["lo"] is not None:
            cutoff = min(cutoff, pending["lo"])
        out[name] = cutoff
    return out


async def apply_retention(conn: AsyncConnection[Any], *, now: datetime | None = None) -> dict[str, int]:
    """Drop whole chunks older than each level's retention (never row DELETEs)."""
    dropped: dict[str, int] = {}
    async with conn.transaction():
        levels = await _levels(conn)
        row = await (await conn.execute(NOW, {"now": now})).fetchone()
        assert row is not None
        for name, cutoff in (await retention_cutoffs(conn, levels, row["now"])).items():
            info = await (await conn.execute(CHUNKS_BEFORE, {"name": name, "cutoff": cutoff})).fetchone()
            if info is None or not info["n"]:
                dropped[name] = 0
                continue
            cur = await conn.execute("SELECT drop_chunks(%(name)s::regclass, older_than => %(cutoff)s::timestamptz)",
                                     {"name": name, "cutoff": cutoff})
            dropped[name] = len(await cur.fetchall())
            await conn.execute(SET_DROPPED, {"horizon": info["horizon"], "name": name})
    log.info("tiers.retention", extra={"dropped_chunks": dropped})
    return dropped


def tier_or_raw(name: str) -> str:
    """Validate a level name (raw table or a tier) coming from a CLI or API caller."""
    if name != RAW and name not in TIER_BY_NAME:
        from rts_monitor.core.errors import NotFound

        raise NotFound(f"unknown tier {name!r}; known: {', '.join(LEVELS)}")
    return name
