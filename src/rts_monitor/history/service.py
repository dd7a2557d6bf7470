"""History queries: one SQL statement per chart, built from the plan.

The same statement serves one device and a fleet: tier-shaped partial rows of the requested
devices are first combined per device into chart buckets (exact sums, counts, min/max, counter
increase across part boundaries), then per bucket across devices (avg = Σsum / Σcount, min of
mins, max of maxes, rates summed over devices).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from psycopg import AsyncConnection

from rts_monitor.core.edition import Edition
from rts_monitor.core.errors import NotFound, ValidationFailed
from rts_monitor.db import Queries
from rts_monitor.devices.scope import visible_agent
from rts_monitor.history.planning import Plan
from rts_monitor.tiers.definitions import (
    BIGINT_METRICS,
    METRICS,
    RATES,
    RAW_VALUES,
    TIERS,
    bucket,
    combine_partials,
    raw_partials,
    tier_columns,
)

Q = Queries.beside(__file__)
_RAW_WHERE = "r.agent_device_id = ANY(%(devs)s) AND r.collected_at >= {lo} AND r.collected_at < %(hi)s"


def _needs(plan: Plan) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The gauge metrics and byte counters a chart reads: every other column is left unread."""
    metrics = tuple(m for m in plan.metrics if m in METRICS)
    counters = tuple(dict.fromkeys(RATES[m] for m in plan.metrics if m in RATES))
    return metrics, counters


def per_device_sql(plan: Plan, edition: Edition, watermarks: dict[str, datetime | None], *,
                   pending: bool = True) -> tuple[str, dict[str, Any]]:
    """Rows per device and chart bucket covering ``[plan.start, plan.end)`` for ``%(devs)s``.

    Apache and postgres: the chosen tier below its watermark, each finer tier between the watermark above it
    and its own, and raw rows past the 5m watermark, so the newest minutes are never missing.
    Buckets that a committed but not yet refreshed flush touched (``metric_ingest_ranges``: an
    agent replaying its spool) are read from raw too, so late rows show at once, not a refresh
    later (``pending``: the caller saw such ranges for these devices; without, the query skips
    that machinery and plans in half the time). Timescale license: the same chain over the
    continuous aggregates' watermarks (the real-time part of a hierarchical cagg does not see
    rows newer than the cagg below it has materialised); late rows show once the refresh policy
    has run. When the chart interval is the tier's width its rows are used as they are; only
    the parts below are combined into chart buckets.
    """
    metrics, counters = _needs(plan)
    cols = ", ".join(["bucket", "agent_device_id", *tier_columns(metrics, counters)])
    params: dict[str, Any] = {"lo": plan.start, "hi": plan.end}
    if plan.tier is None:
        return raw_partials(plan.interval_sql, _RAW_WHERE.format(lo="%(lo)s"), metrics=metrics,
                            counters=counters, edition=edition), params
    width = plan.tier.width_sql
    not_stale = (f"AND NOT EXISTS (SELECT 1 FROM stale s WHERE s.dev = t.agent_device_id "
                 f"AND s.bucket = {bucket(width, 't.bucket')})") if pending else ""
    chain = [t for t in TIERS if t.width <= plan.tier.width][::-1]  # chosen tier first, then finer
    direct: str | None = None
    parts: list[str] = []
    upper_wm: datetime | None = None  # watermark of the tier above in the chain
    for i, tier in enumerate(chain):
        wm = watermarks.get(tier.name)
        if wm is None:
            continue  # nothing materialised in this tier: finer levels take over
        params[f"wm{i}"], params[f"from{i}"] = wm, upper_wm
        sql = (f"SELECT {cols} FROM {tier.name} t WHERE agent_device_id = ANY(%(devs)s) "
               f"AND bucket >= greatest(%(lo)s, coalesce(%(from{i})s::timestamptz, '-infinity')) "
               f"AND bucket < least(%(hi)s, %(wm{i})s::timestamptz) {not_stale}")
        if i == 0 and tier.width == plan.interval:
            direct = sql
        else:
            parts.append(sql)
        upper_wm = wm
    params["rawfrom"] = upper_wm
    lo = "greatest(%(lo)s, coalesce(%(rawfrom)s::timestamptz, '-infinity'))"
    parts.append(raw_partials(TIERS[0].width_sql, _RAW_WHERE.format(lo=lo), metrics=metrics, counters=counters,
                              edition=edition))
    stale = ""
    if edition != "tsl" and pending:
        stale_rows = (f"(SELECT r.* FROM stale s JOIN {RAW_VALUES} r ON r.agent_device_id = s.dev "
                      f"AND r.collected_at >= s.bucket AND r.collected_at < least(s.bucket + INTERVAL '{width}', "
                      "coalesce(%(rawfrom)s::timestamptz, '-infinity')))")
        parts.append(raw_partials(TIERS[0].width_sql, "true", source=stale_rows, metrics=metrics, counters=counters,
                                  edition=edition))
        stale = (
            "WITH stale AS MATERIALIZED (SELECT DISTINCT p.agent_device_id AS dev, b AS bucket "
            "FROM metric_ingest_ranges p, generate_series("
            f"{bucket(width, 'greatest(p.range_start, %(lo)s)')}, "
            "least(p.range_end, coalesce(%(rawfrom)s::timestamptz, '-infinity') - INTERVAL '1 microsecond', "
            f"%(hi)s - INTERVAL '1 microsecond'), INTERVAL '{width}') AS b "
            "WHERE p.agent_device_id = ANY(%(devs)s) AND p.range_end >= %(lo)s "
            "AND p.range_start < least(%(hi)s, coalesce(%(rawfrom)s::timestamptz, '-infinity'))) "
        )
    combined = combine_partials(" UNION ALL ".join(f"({p})" for p in parts), plan.interval_sql,
                                metrics=metrics, counters=counters, edition=edition)
    body = f"({direct}) UNION ALL ({combined})" if direct else combined
    return stale + body, params


def _rate_columns(plan: Plan) -> str:
    """Per device and bucket: the counter's previous sample before the bucket (``lag`` over the
    buckets that have one), so a rate covers the step into the bucket too. With agents reporting
    every 5 minutes a 5-minute bucket holds one sample: its rate is (value - previous) / elapsed."""
    cols = []
    for m in plan.metrics:
        if m in RATES:
            c = RATES[m]
            w = f"OVER (PARTITION BY agent_device_id, ({c}_first_time IS NULL) ORDER BY bucket)"
            cols += [f"lag({c}_last) {w} AS {c}_prev", f"lag({c}_last_time) {w} AS {c}_prev_time"]
    return "".join(", " + col for col in cols)


def _rate(c: str, fleet: bool) -> str:
    step = f"CASE WHEN {c}_prev IS NULL THEN 0 WHEN {c}_first >= {c}_prev THEN {c}_first - {c}_prev ELSE {c}_first END"
    span = f"nullif(extract(epoch FROM {c}_last_time - coalesce({c}_prev_time, {c}_first_time)), 0)"
    rate = f"({c}_increase + {step}) / {span}"
    return f"sum({rate})::float8" if fleet else f"({rate})::float8"


def _as_stored(metric: str, expr: str) -> str:
    """A value of a ``real`` column as the shortest decimal of its float (45.2, not
    45.20000076293945, which is what the float4 becomes as a double): real's text form is exactly
    that decimal, read back as float8. An average is rounded to real's precision the same way;
    ``uptime_seconds`` is a bigint and exact as it is."""
    if metric in BIGINT_METRICS:
        return f"({expr})::float8"
    return f"({expr})::real::text::float8"


def history_sql(plan: Plan, per_device: str, *, fleet: bool) -> str:
    """Chart rows: one per bucket with data, avg (and min/max on request) per metric, rates.

    Rates are bytes per second per device (summed over a fleet's devices): the counter increase
    from the last sample before the bucket (if the range has one) to the bucket's last sample,
    resets counted as restarts from 0, over the time between those samples. One device needs no
    grouping: its rows are already one per bucket.
    """
    def agg(fn: str, expr: str) -> str:
        return f"{fn}({expr})" if fleet else expr

    cols = ["bucket AS timestamp"]
    if fleet:
        cols.append("count(*) AS devices")
    for m in plan.metrics:
        if m in RATES:
            cols.append(f"{_rate(RATES[m], fleet)} AS {m}")
            continue
        if "avg" in plan.stats:
            mean = f"{agg('sum', f'{m}_sum')} / nullif({agg('sum', f'{m}_count')}, 0)"
            cols.append(f"{_as_stored(m, mean)} AS {m}")
        if "min" in plan.stats:
            cols.append(f"{_as_stored(m, agg('min', f'{m}_min'))} AS {m}_min")
        if "max" in plan.stats:
            cols.append(f"{_as_stored(m, agg('max', f'{m}_max'))} AS {m}_max")
    rates = _rate_columns(plan)
    inner = f"(SELECT c.*{rates} FROM ({per_device}) c)" if rates else f"({per_device})"
    group = " GROUP BY bucket" if fleet else ""
    return f"SELECT {', '.join(cols)} FROM {inner} d{group} ORDER BY bucket"


async def _state(conn: AsyncConnection[Any], edition: Edition, plan: Plan,
                 devices: list[UUID]) -> tuple[dict[str, datetime | None], bool]:
    """Each tier's watermark, and whether late rows of these devices still await a refresh."""
    if edition == "tsl":
        cur = await conn.execute(Q.cagg_watermarks)
        return {row["name"]: row["watermark"] for row in await cur.fetchall()}, False
    cur = await conn.execute(Q.watermarks, {"devs": devices, "lo": plan.start, "hi": plan.end})
    rows = await cur.fetchall()
    return {row["name"]: row["watermark"] for row in rows}, any(row["pending"] for row in rows)


async def query(conn: AsyncConnection[Any], *, plan: Plan, edition: Edition, devices: list[UUID],
                fleet: bool = False) -> list[dict[str, Any]]:
    """Run the chart query for ``devices`` (the caller has checked tenancy)."""
    if not devices:
        return []
    watermarks, pending = await _state(conn, edition, plan, devices)
    per_device, params = per_device_sql(plan, edition, watermarks, pending=pending)
    params["devs"] = devices
    sql = history_sql(plan, per_device, fleet=fleet).encode()
    if plan.tier is not None and not pending:  # priced far below jit_above_cost: one round trip
        return list(await (await conn.execute(sql, params)).fetchall())
    async with conn.transaction():
        # Raw reads and the late-rows branch are priced over every chunk in the range and would
        # be JIT-compiled: measured 1.2 s of JIT for a 3 ms chart. Never worth it here.
        await conn.execute(Q.jit_off)
        return list(await (await conn.execute(sql, params)).fetchall())


@dataclass(frozen=True)
class FleetScope:
    business_id: UUID
    location_id: UUID | None


async def device_history(conn: AsyncConnection[Any], *, plan: Plan, edition: Edition, device_id: UUID,
                         scope: UUID | None) -> list[dict[str, Any]]:
    """One device's chart; another business's device is a 404."""
    await visible_agent(conn, scope, device_id)
    return await query(conn, plan=plan, edition=edition, devices=[device_id])


async def resolve_fleet(conn: AsyncConnection[Any], *, business_id: UUID | None, location_id: UUID | None,
                        scope: UUID | None) -> FleetScope:
    """Which business/location a fleet chart covers; customers default to their own business."""
    if location_id is not None:
        row = await (await conn.execute(Q.location_in_scope, {"id": location_id, "scope": scope})).fetchone()
        if row is None or (business_id is not None and row["business_id"] != business_id):
            raise NotFound("service location not found")
        return FleetScope(row["business_id"], location_id)
    business_id = business_id or scope
    if business_id is None:
        raise ValidationFailed("business_id: required (or service_location_id)", field="business_id")
    if await (await conn.execute(Q.business_in_scope, {"id": business_id, "scope": scope})).fetchone() is None:
        raise NotFound("business not found")
    return FleetScope(business_id, None)


async def fleet_history(conn: AsyncConnection[Any], *, plan: Plan, edition: Edition,
                        fleet: FleetScope) -> list[dict[str, Any]]:
    cur = await conn.execute(Q.fleet_devices, {"business_id": fleet.business_id, "location_id": fleet.location_id})
    devices = [row["id"] for row in await cur.fetchall()]
    return await query(conn, plan=plan, edition=edition, devices=devices, fleet=True)


async def fleet_chart(conn: AsyncConnection[Any], *, plan: Plan, edition: Edition, business_id: UUID | None,
                      location_id: UUID | None, scope: UUID | None) -> list[dict[str, Any]]:
    """The fleet chart of a request: its scope checked and its history read on one connection (the
    standby's, when one is in use: db/reads.py)."""
    fleet = await resolve_fleet(conn, business_id=business_id, location_id=location_id, scope=scope)
    return await fleet_history(conn, plan=plan, edition=edition, fleet=fleet)


__all__ = ["FleetScope", "device_history", "fleet_chart", "fleet_history", "history_sql", "per_device_sql", "query"]
