"""Maintenance of the tiers where the project does it itself (apache and postgres editions):
refresh from a watermark, late-row invalidation, retention by dropping whole chunks/partitions.

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
range rebuilds the same rows. Retention drops chunks (``drop_chunks``, apache) or partitions
(``rts_partitions_drop``, postgres, after moving rows waiting in a DEFAULT partition into
partitions of their own); never row DELETEs. The static SQL is in ``queries.sql``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from psycopg import AsyncConnection

from rts_monitor.core.edition import Edition
from rts_monitor.db import Queries
from rts_monitor.tiers.definitions import (
    ALL_COLUMNS,
    LEVELS,
    RAW,
    RAW_VALUES,
    TIER_BY_NAME,
    TIERS,
    Tier,
    bucket,
    combine_partials,
    raw_partials,
)

log = logging.getLogger(__name__)
Q = Queries.beside(__file__)

_COLS = ", ".join(ALL_COLUMNS)


@dataclass
class RefreshResult:
    """What one refresh did, per tier: rows written by invalidation and by the watermark step."""

    invalidated_ranges: int = 0
    rows: dict[str, int] = field(default_factory=dict)
    watermarks: dict[str, datetime | None] = field(default_factory=dict)
    seconds: float = 0.0


def _source_partials(tier: Tier, source_rel: str, edition: Edition) -> str:
    """Tier rows computed from ``source_rel`` (same shape as the level below)."""
    if tier.source == RAW:
        return raw_partials(tier.width_sql, "true", source=source_rel, edition=edition)
    return combine_partials(f"SELECT * FROM {source_rel} s0", tier.width_sql, edition=edition)


def _range_source(tier: Tier, *, by_device: bool) -> str:
    """The rows of the level below for buckets in ``[%(lo)s, %(hi)s)``.

    ``by_device`` drives the read by ``agent_devices`` so the raw hypertable is read through its
    (agent_device_id, collected_at) primary key instead of scanning a day chunk.
    """
    if tier.source == RAW:
        if by_device:
            return (f"(SELECT m.* FROM agent_devices d JOIN {RAW_VALUES} m ON m.agent_device_id = d.id "
                    "AND m.collected_at >= %(lo)s AND m.collected_at < %(hi)s)")
        return f"(SELECT * FROM {RAW_VALUES} WHERE collected_at >= %(lo)s AND collected_at < %(hi)s)"
    return f"(SELECT * FROM {tier.source} WHERE bucket >= %(lo)s AND bucket < %(hi)s)"


def rebuild_range_sql(tier: Tier, edition: Edition, *, by_device: bool = True) -> list[str]:
    """Delete and re-aggregate every bucket of ``tier`` in ``[%(lo)s, %(hi)s)`` (all devices)."""
    src = _source_partials(tier, _range_source(tier, by_device=by_device), edition)
    return [
        f"DELETE FROM {tier.name} WHERE bucket >= %(lo)s AND bucket < %(hi)s",
        f"INSERT INTO {tier.name} ({_COLS}) SELECT {_COLS} FROM ({src}) x",
    ]


def rebuild_invalid_sql(tier: Tier, edition: Edition) -> list[str]:
    """Delete and re-aggregate the stale buckets of ``tier``: the ranges of whole buckets per device
    in the temp table ``_inv_ranges`` (one PK range probe per device and run of consecutive stale
    buckets, not one per bucket), all inside ``[%(lo)s, %(hi)s)`` so that only the chunks or
    partitions holding stale buckets are planned and read."""
    src_table, col = (RAW_VALUES, "collected_at") if tier.source == RAW else (tier.source, "bucket")
    rows = (f"(SELECT s.* FROM _inv_ranges r JOIN {src_table} s ON s.agent_device_id = r.dev "
            f"AND s.{col} >= r.lo AND s.{col} < r.hi AND s.{col} >= %(lo)s AND s.{col} < %(hi)s)")
    src = _source_partials(tier, rows, edition)
    return [
        f"DELETE FROM {tier.name} t USING _inv_ranges r WHERE t.agent_device_id = r.dev AND t.bucket >= r.lo "
        "AND t.bucket < r.hi AND t.bucket >= %(lo)s AND t.bucket < %(hi)s",
        f"INSERT INTO {tier.name} ({_COLS}) SELECT {_COLS} FROM ({src}) x",
    ]


def _tier_start_sql(tier: Tier) -> str:
    """Where the level below a tier starts (its oldest bucket, in the tier's width)."""
    return f"SELECT {bucket(tier.width_sql, 'min(bucket)')} AS lo FROM {tier.source}"


async def _levels(conn: AsyncConnection[Any]) -> dict[str, dict[str, Any]]:
    cur = await conn.execute(Q.lock_levels)
    return {row["name"]: row for row in await cur.fetchall()}


async def _exec_rows(conn: AsyncConnection[Any], statements: list[str], params: dict[str, Any]) -> int:
    rows = 0
    for sql in statements:
        # Generated from constants, never from input. Never prepared: a generic plan would plan and
        # open every chunk or partition; with the bounds as values only the ones in range are.
        cur = await conn.execute(sql.encode(), params, prepare=False)
        if sql.startswith("INSERT"):
            rows += max(cur.rowcount, 0)
    return rows


async def _start_of(conn: AsyncConnection[Any], tier: Tier, edition: Edition) -> datetime | None:
    """Where a tier with no watermark yet starts: the oldest data of the level below."""
    if tier.source == RAW:
        sql = Q.raw_start_chunks if edition == "apache" else Q.raw_start_partitions
    else:
        sql = _tier_start_sql(tier)
    row = await (await conn.execute(sql.encode(), {"w": tier.width})).fetchone()
    return None if row is None else row["lo"]


async def _rebuild_invalid(conn: AsyncConnection[Any], tier: Tier, edition: Edition) -> int:
    """Re-aggregate the stale buckets of ``tier`` listed in ``_inv`` (nothing to do: no statement)."""
    await conn.execute(Q.clear_invalid_ranges)
    await conn.execute(Q.fill_invalid_ranges, {"level": tier.name, "w": tier.width})
    bounds = await (await conn.execute(Q.invalid_bounds)).fetchone()
    if bounds is None or not bounds["n"]:
        return 0
    # Fresh statistics: the planner sizes the joins from them (an unanalysed temp table looks tiny).
    await conn.execute(Q.analyze_invalid_ranges)
    return await _exec_rows(conn, rebuild_invalid_sql(tier, edition), {"lo": bounds["lo"], "hi": bounds["hi"]})


async def refresh(conn: AsyncConnection[Any], *, edition: Edition, now: datetime | None = None,
                  max_span: timedelta | None = None) -> RefreshResult:
    """One maintenance pass over all tiers (apache, postgres); commits its own transaction.

    ``max_span`` bounds how far the 5m watermark advances in one pass, so a first run over weeks
    of existing data catches up in several short transactions (charts read raw meanwhile).
    """
    started = time.monotonic()
    result = RefreshResult()
    async with conn.transaction():
        levels = await _levels(conn)
        now_row = await (await conn.execute(Q.now, {"now": now})).fetchone()
        assert now_row is not None
        t_now: datetime = now_row["now"]
        await conn.execute(Q.refresh_work_mem)
        await conn.execute(Q.create_invalid)
        await conn.execute(Q.create_invalid_ranges)
        first = TIERS[0]
        floor = levels[RAW]["dropped_before"]
        await conn.execute(Q.consume_ranges, {"wm": levels[first.name]["watermark"], "floor": floor,
                                              "level": first.name})
        count_row = await (await conn.execute(Q.consumed_count, {"level": first.name})).fetchone()
        result.invalidated_ranges = int(count_row["n"]) if count_row else 0
        below_wm: datetime | None = None
        for i, tier in enumerate(TIERS):
            old_wm: datetime | None = levels[tier.name]["watermark"]
            if i > 0 and old_wm is not None:
                await conn.execute(Q.derive_invalid, {"level": tier.name, "below": TIERS[i - 1].name,
                                                      "w": tier.width, "wm": old_wm})
            rows = await _rebuild_invalid(conn, tier, edition) if old_wm is not None else 0
            # Advance: the last complete bucket before now (5m), or before the tier below's watermark.
            lo = old_wm if old_wm is not None else await _start_of(conn, tier, edition)
            limit = t_now if i == 0 else below_wm
            if i == 0 and max_span is not None and lo is not None and limit is not None:
                limit = min(limit, lo + max_span)
            new_wm = None
            if limit is not None:
                wm_row = await (await conn.execute(Q.bucket_start, {"w": tier.width, "t": limit})).fetchone()
                new_wm = wm_row["wm"] if wm_row else None
            if lo is not None and new_wm is not None and new_wm > lo:
                rows += await _exec_rows(conn, rebuild_range_sql(tier, edition), {"lo": lo, "hi": new_wm})
            if new_wm is not None and (old_wm is None or new_wm > old_wm):
                await conn.execute(Q.set_watermark, {"wm": new_wm, "name": tier.name})
            else:
                new_wm = old_wm
            result.rows[tier.name] = rows
            result.watermarks[tier.name] = new_wm
            below_wm = new_wm
    result.seconds = time.monotonic() - started
    log.info("tiers.refreshed", extra={"rows": result.rows, "invalidated_buckets": result.invalidated_ranges,
                                        "ms": round(result.seconds * 1000, 1)})
    return result


async def refresh_range(conn: AsyncConnection[Any], *, edition: Edition, start: datetime,
                        end: datetime) -> dict[str, int]:
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
            row = await (await conn.execute(Q.range_bounds, {"w": tier.width, "s": start, "e": end, "wm": wm,
                                                           "floor": floor})).fetchone()
            assert row is not None
            if row["hi"] <= row["lo"]:
                out[tier.name] = 0
                continue
            out[tier.name] = await _exec_rows(conn, rebuild_range_sql(tier, edition),
                                              {"lo": row["lo"], "hi": row["hi"]})
    log.info("tiers.refreshed_range", extra={"start": start, "end": end, "rows": out})
    return out


async def retention_cutoffs(conn: AsyncConnection[Any], levels: dict[str, dict[str, Any]],
                            now: datetime) -> dict[str, datetime]:
    """Per level, the time before which chunks may go: ``now - retention`` clamped so that no
    level loses data the tier above has not materialised (its watermark), and raw keeps every
    row a pending ingest range still has to re-aggregate."""
    out: dict[str, datetime] = {}
    pending = await (await conn.execute(Q.pending_min)).fetchone()
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


async def apply_retention(conn: AsyncConnection[Any], *, edition: Edition,
                          now: datetime | None = None) -> dict[str, int]:
    """Drop whole chunks (apache) or partitions (postgres) older than each level's retention."""
    dropped: dict[str, int] = {}
    async with conn.transaction():
        levels = await _levels(conn)
        if edition == "postgres":  # rows waiting in a DEFAULT partition get theirs, so they can go too
            await conn.execute(Q.partitions_maintain, {"ahead": timedelta(0)})
        row = await (await conn.execute(Q.now, {"now": now})).fetchone()
        assert row is not None
        for name, cutoff in (await retention_cutoffs(conn, levels, row["now"])).items():
            if edition == "postgres":
                gone = list(await (await conn.execute(Q.drop_partitions, {"name": name, "cutoff": cutoff})).fetchall())
                dropped[name] = len(gone)
                horizon = max((g["range_end"] for g in gone), default=None)
            else:
                info = await (await conn.execute(Q.chunks_before, {"name": name, "cutoff": cutoff})).fetchone()
                if info is None or not info["n"]:
                    dropped[name] = 0
                    continue
                cur = await conn.execute(Q.drop_chunks, {"name": name, "cutoff": cutoff})
                dropped[name] = len(await cur.fetchall())
                horizon = info["horizon"]
            if horizon is not None:
                await conn.execute(Q.set_dropped, {"horizon": horizon, "name": name})
    log.info("tiers.retention", extra={"dropped": dropped, "edition": edition})
    return dropped


def tier_or_raw(name: str) -> str:
    """Validate a level name (raw table or a tier) coming from a CLI or API caller."""
    if name != RAW and name not in TIER_BY_NAME:
        from rts_monitor.core.errors import NotFound

        raise NotFound(f"unknown tier {name!r}; known: {', '.join(LEVELS)}")
    return name
