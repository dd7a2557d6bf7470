"""Backtest: the episodes a metric rule would have opened over a past period, before it is saved.

The judgement is the evaluator's own SQL: ``queries.sql`` ``backtest`` includes the fragments the
live ``evaluate`` statement includes (``metric_windows``: the window at an instant and its
verdict; ``episode_transitions``: opening at a breach, clearing at a clear), so a backtest means
what the evaluator means by construction. What differs is only which instants are judged and
from which start: the live evaluator judges each sample time once, as it arrives (after a
maintenance check, a manual resolve, a stale cut-off); the backtest judges every sample time of
the period, with no episode open at its start.

Judging every instant of 30 days from raw rows would read every row (4.3 M for 100 devices at
1-minute samples). Most hours cannot matter, and a tier proves it: an hour whose smallest and
largest value (``agent_metrics_1h``, exact) lie on the clear side of the threshold beyond the
hysteresis holds no breach, and every window inside such hours clears if it is covered at all.
So the instants judged from raw rows are those whose window reaches an hour that is not provably
quiet (plus the sample gap after it, where an open episode normally clears); when an episode is
still open where the judged instants stop, the quiet stretch after it is searched from raw rows
for its clear, a few hours more per pass (docs/alerts.md, "Backtest").
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from psycopg import AsyncConnection

from rts_monitor.alerts import rules
from rts_monitor.alerts.structs import (
    MAX_BACKTEST_DAYS,
    BacktestChart,
    BacktestDevice,
    BacktestEpisode,
    BacktestReads,
    BacktestRequest,
    BacktestResult,
    BacktestTotals,
    Conditions,
)
from rts_monitor.auth.principal import Principal
from rts_monitor.core.edition import Edition
from rts_monitor.core.errors import ValidationFailed
from rts_monitor.core.settings import Settings
from rts_monitor.db import Queries
from rts_monitor.history import planning
from rts_monitor.history.service import _state as tier_state
from rts_monitor.history.service import per_device_sql
from rts_monitor.tiers.definitions import METRICS as TIER_METRICS

Q = Queries.beside(__file__)
REAL_METRICS = frozenset({"cpu_percent", "memory_used_gb", "memory_percent", "disk_used_gb", "disk_percent",
                          "load_average_1m", "load_average_5m", "load_average_15m"})
TIER = "agent_metrics_1h"
HOUR = timedelta(hours=1)
SEARCH_STEP = timedelta(hours=4)  # first extension of a quiet stretch searched for a clear; doubles per pass
MAX_PASSES = 12

# Hours of one device that the tier shows quiet, turned into the stretches between them (the
# hours to read raw): the gaps between consecutive quiet hours, before the first and after the
# last; a device with no quiet hour is raw throughout. An hour counts only if no invalidation
# range (queries.sql: tier_invalidations) overlaps the part of it a tier served: up to the 1h
# watermark for ranges of the 1h aggregate, up to the start of the raw tail (%(rawfrom)s) for
# ranges of the 5m one; the raw tail itself is exact. A stretch with no sample at all (a device
# offline, or the time after its last sample) holds no instant to judge and is left out: only
# stretches holding an hour that has samples and is not proven quiet, or time a tier may not show
# yet (an invalidation range: rows there may be missing from the tier), are read. ``{per_device}``: history's exact
# tier-shaped rows per device and hour (history/service.py: per_device_sql); ``{quiet}``: the
# test on the hour's min/max, chosen from the operator below (no user text reaches either).
_ZONES_SQL = """
WITH p AS MATERIALIZED (
    SELECT p.agent_device_id AS dev, p.bucket,
           coalesce(({quiet}), false)
           AND NOT EXISTS (SELECT 1 FROM unnest(%(inv_lo)s::timestamptz[], %(inv_hi)s::timestamptz[],
                                                %(inv_fine)s::bool[]) i(lo, hi, fine)
                            WHERE i.hi >= p.bucket
                              AND i.lo < least(p.bucket + INTERVAL '1 hour',
                                               coalesce(CASE WHEN i.fine THEN %(rawfrom)s::timestamptz
                                                             ELSE %(wm_hour)s::timestamptz END, '-infinity'))) AS quiet
      FROM ({per_device}) p
), q AS MATERIALIZED (
    SELECT dev, bucket FROM p WHERE quiet
), e AS (
    SELECT dev, bucket, lag(bucket) OVER (PARTITION BY dev ORDER BY bucket) AS prev FROM q
), z AS (
    SELECT dev, prev + INTERVAL '1 hour' AS lo, bucket AS hi FROM e
     WHERE prev IS NOT NULL AND bucket > prev + INTERVAL '1 hour'
    UNION ALL
    SELECT dev, %(zlo)s::timestamptz, min(bucket) FROM q GROUP BY dev HAVING min(bucket) > %(zlo)s::timestamptz
    UNION ALL
    SELECT dev, max(bucket) + INTERVAL '1 hour', %(zhi)s::timestamptz FROM q GROUP BY dev
    HAVING max(bucket) + INTERVAL '1 hour' < %(zhi)s::timestamptz
    UNION ALL
    SELECT d, %(zlo)s::timestamptz, %(zhi)s::timestamptz FROM unnest(%(devs)s::uuid[]) d
     WHERE d NOT IN (SELECT dev FROM q)
)
SELECT z.dev, z.lo, z.hi FROM z
 WHERE EXISTS (SELECT 1 FROM p WHERE p.dev = z.dev AND NOT p.quiet
                                 AND p.bucket < z.hi AND p.bucket + INTERVAL '1 hour' > z.lo)
    OR EXISTS (SELECT 1 FROM unnest(%(inv_lo)s::timestamptz[], %(inv_hi)s::timestamptz[],
                                    %(inv_fine)s::bool[]) i(lo, hi, fine)
                WHERE i.hi >= z.lo
                  AND i.lo < least(z.hi, coalesce(CASE WHEN i.fine THEN %(rawfrom)s::timestamptz
                                                       ELSE %(wm_hour)s::timestamptz END, '-infinity')))
"""

# An hour is quiet when every value in it is on the clear side beyond the hysteresis (or it has
# no value of the metric): no window made of such values breaches, and each covered one clears.
_QUIET = {
    ">": "{m}_count = 0 OR {m}_max <= %(quiet_at)s",
    ">=": "{m}_count = 0 OR {m}_max < %(quiet_at)s",
    "<": "{m}_count = 0 OR {m}_min >= %(quiet_at)s",
    "<=": "{m}_count = 0 OR {m}_min > %(quiet_at)s",
}

Ranges = dict[UUID, list[tuple[datetime, datetime]]]


def _period(data: BacktestRequest, now: datetime) -> tuple[datetime, datetime]:
    since, until = data.since, data.until or now
    for name, value in (("since", since), ("until", until)):
        if value.tzinfo is None:
            raise ValidationFailed(f"{name}: needs a time zone (e.g. 2026-11-01T00:00:00Z)", field=name)
    until = min(until, now)  # nothing is known about the future
    if since < now - timedelta(days=MAX_BACKTEST_DAYS, minutes=5):
        raise ValidationFailed(f"since: at most {MAX_BACKTEST_DAYS} days back", field="since")
    if until <= since:
        raise ValidationFailed("until: must be after since (and since before now)", field="until")
    return since, until


def _merge(ranges: list[tuple[datetime, datetime]]) -> list[tuple[datetime, datetime]]:
    out: list[tuple[datetime, datetime]] = []
    for lo, hi in sorted(ranges):
        if out and lo <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out


async def _quiet_zones(conn: AsyncConnection[Any], *, edition: Edition, c: Conditions, quiet_at: float,
                       devices: list[UUID], lo: datetime, hi: datetime, now: datetime) -> Ranges | None:
    """Per device, the stretches of [lo, hi] the hourly tier does not prove quiet (None: no tier to use)."""
    assert c.metric is not None and c.operator is not None
    if c.metric not in TIER_METRICS:
        return None  # byte counters: the tiers keep increases, not a min and max
    plan = planning.plan(start=lo, end=hi, now=now, interval="1h", metric=c.metric, stats="min,max")
    if plan.tier is None or plan.tier.name != TIER:
        return None
    watermarks, pending = await tier_state(conn, edition, plan, devices)
    if watermarks.get(TIER) is None and watermarks.get("agent_metrics_5m") is None:
        return None  # nothing materialised: every hour would come from raw rows anyway
    inv_lo: list[datetime] = []
    inv_hi: list[datetime] = []
    inv_fine: list[bool] = []
    if edition == "tsl":
        for row in await (await conn.execute(Q.tier_invalidations)).fetchall():
            inv_lo.append(row["lo"])
            inv_hi.append(row["hi"])
            inv_fine.append(row["fine"])
    per_device, params = per_device_sql(plan, edition, watermarks, pending=pending)
    quiet = _QUIET[c.operator].format(m=c.metric)
    sql = _ZONES_SQL.format(per_device=per_device, quiet=quiet)
    params.update(devs=devices, quiet_at=quiet_at, inv_lo=inv_lo, inv_hi=inv_hi, inv_fine=inv_fine,
                  wm_hour=watermarks.get(TIER), zlo=plan.start, zhi=plan.end)
    async with conn.transaction():
        # Raw tails and late-row branches are priced over every chunk and would be JIT-compiled
        # (history/service.py measured seconds of JIT for a millisecond query).
        await conn.execute(Q.jit_off)
        rows = await (await conn.execute(sql.encode(), params)).fetchall()
    zones: Ranges = defaultdict(list)
    for row in rows:
        zones[row["dev"]].append((row["lo"], row["hi"]))
    return zones


async def _judge(conn: AsyncConnection[Any], *, settings: Settings, c: Conditions, hyst: float,
                 devices: list[UUID], ranges: Ranges) -> tuple[list[dict[str, Any]], int]:
    r_device, r_lo, r_hi = [], [], []
    for dev, rs in ranges.items():
        for lo, hi in rs:
            r_device.append(dev)
            r_lo.append(lo)
            r_hi.append(hi)
    params = {
        "devices": devices, "metric": c.metric, "win": timedelta(minutes=c.duration_minutes),
        "operator": c.operator, "threshold": c.threshold, "hyst": hyst, "aggregation": c.aggregation,
        "slack": timedelta(seconds=settings.alert_window_slack_seconds),
        "max_gap": timedelta(seconds=settings.alert_max_sample_gap_seconds),
        "real": c.metric in REAL_METRICS, "r_device": r_device, "r_lo": r_lo, "r_hi": r_hi,
    }
    async with conn.transaction():
        # The same planner settings as the evaluator (queries.sql: begin_full_cycle): hash joins
        # between CTEs whose row counts are guesses, range probes kept LATERAL.
        await conn.execute(Q.backtest_planner)
        rows = await (await conn.execute(Q.backtest, params)).fetchall()
    instants = next(int(r["instants"]) for r in rows if r["instants"] is not None)
    return [r for r in rows if r["device_id"] is not None], instants


def _open_gaps(episodes: list[dict[str, Any]], ranges: Ranges, until: datetime, step: timedelta) -> bool:
    """Extend, in place, every judged range after which an episode is still open: the stretch
    that follows (quiet, or it would be judged) holds the episode's clear at its first covered
    window. Returns whether anything was extended."""
    by_device: dict[UUID, list[dict[str, Any]]] = defaultdict(list)
    for e in episodes:
        by_device[e["device_id"]].append(e)
    extended = False
    for dev, eps in by_device.items():
        rs = ranges[dev]
        for i, (lo, hi) in enumerate(rs):
            nxt = rs[i + 1][0] if i + 1 < len(rs) else until
            if hi >= nxt:
                continue
            if any(e["start"] <= hi and (e["stop"] is None or e["stop"] > hi) for e in eps):
                rs[i] = (lo, min(nxt, hi + step))
                extended = True
        ranges[dev] = _merge(rs)
    return extended


async def backtest(conn: AsyncConnection[Any], *, principal: Principal, settings: Settings, edition: Edition,
                   data: BacktestRequest, now: datetime | None = None, tiers: bool = True) -> BacktestResult:
    """The episodes ``data.rule`` would have opened on each device of its scope over the period.

    ``tiers=False`` judges every instant from raw rows (the same answer, slower: the benchmark's
    and the tests' reference)."""
    rules.require_rule_writer(principal, settings)
    c = data.rule.conditions
    rules.validate_conditions(c, prefix="rule.conditions")
    if c.kind != "metric":
        raise ValidationFailed("rule.conditions.kind: only metric rules can be backtested (agent_offline and "
                               "service_down depend on heartbeats and service states, which keep no history)",
                               field="rule.conditions.kind")
    assert c.metric is not None and c.operator is not None and c.threshold is not None
    now = now or datetime.now(UTC)
    since, until = _period(data, now)
    business_id = await rules.resolve_business(conn, principal, data.rule.business_id, data.rule.agent_device_id,
                                               prefix="rule.")
    found = await (await conn.execute(Q.backtest_devices, {"business_id": business_id,
                                                           "device_id": data.rule.agent_device_id})).fetchall()
    names = {r["id"]: r["device_name"] for r in found}
    devices = list(names)
    hyst = c.hysteresis
    if hyst is None:  # as the evaluator: RTS_ALERT_RESOLVE_HYSTERESIS_PERCENT of the threshold
        hyst = abs(c.threshold) * settings.alert_resolve_hysteresis_percent / 100
    above = c.operator in (">", ">=")
    clear_at = c.threshold - hyst if above else c.threshold + hyst
    win = timedelta(minutes=c.duration_minutes)
    span = win + timedelta(seconds=settings.alert_window_slack_seconds)
    after = span + timedelta(seconds=settings.alert_max_sample_gap_seconds)

    zones = await _quiet_zones(conn, edition=edition, c=c, quiet_at=clear_at, devices=devices,
                               lo=since - span, hi=until, now=now) if devices and tiers else None
    ranges: Ranges = {}
    for dev in devices:
        if zones is None:
            ranges[dev] = [(since, until)]
            continue
        # The instants whose window reaches a stretch that is not quiet, and the sample gap after.
        rs = [(max(lo, since), min(hi + after, until)) for lo, hi in zones.get(dev, [])]
        ranges[dev] = _merge([(lo, hi) for lo, hi in rs if lo <= hi])
    ranges = {dev: rs for dev, rs in ranges.items() if rs}
    episodes: list[dict[str, Any]] = []
    instants = passes = 0
    step = SEARCH_STEP
    while ranges:
        passes += 1
        episodes, instants = await _judge(conn, settings=settings, c=c, hyst=hyst, devices=devices, ranges=ranges)
        if passes >= MAX_PASSES or not _open_gaps(episodes, ranges, until, step):
            break
        step *= 2
    if passes >= MAX_PASSES:  # only a never-covered stretch gets here; judge all of what is left at once
        for dev, rs in ranges.items():
            ranges[dev] = _merge([*rs, (rs[-1][1], until)])
        episodes, instants = await _judge(conn, settings=settings, c=c, hyst=hyst, devices=devices, ranges=ranges)
        passes += 1

    # Whether its episodes would open a ticket: the evaluator's rule (rule_creates_ticket): the
    # rule's create_ticket, else the business's ticket policy for the rule's severity.
    cur = await conn.execute(Q.backtest_ticket, {"create_ticket": data.rule.create_ticket,
                                                 "severity": data.rule.severity, "business_id": business_id})
    ticket_row = await cur.fetchone()
    ticket = bool(ticket_row and ticket_row["ticket"])
    per_device: dict[UUID, list[BacktestEpisode]] = defaultdict(list)
    for e in sorted(episodes, key=lambda e: (e["device_id"], e["start"])):
        per_device[e["device_id"]].append(BacktestEpisode(
            start=e["start"], end=e["stop"], condition_since=e["start"] - win, value=e["value"], peak=e["peak"],
            ticket=ticket))
    out = []
    for dev, eps in per_device.items():
        seconds = sum(((e.end or until) - e.start).total_seconds() for e in eps)
        out.append(BacktestDevice(agent_device_id=dev, device_name=names[dev], episodes=eps,
                                  time_in_alert_seconds=seconds))
    out.sort(key=lambda d: (-d.time_in_alert_seconds, d.device_name))
    count = sum(len(d.episodes) for d in out)
    totals = BacktestTotals(episodes=count, devices_affected=len(out), devices_evaluated=len(devices),
                            time_in_alert_seconds=sum(d.time_in_alert_seconds for d in out),
                            tickets=count if ticket else 0)
    chart = BacktestChart(
        metric=c.metric, aggregation=c.aggregation, operator=c.operator, threshold=c.threshold,
        clear_threshold=clear_at, duration_minutes=c.duration_minutes,
        history_path="/api/agents/{agent_id}/metrics/history",
        history_params={"start": since.isoformat(), "end": until.isoformat(), "metric": c.metric,
                        "interval": _chart_interval(until - since), "stats": "avg,min,max"})
    reads = BacktestReads(tier=TIER if zones is not None else None,
                          raw_ranges=sum(len(rs) for rs in ranges.values()), instants=instants, passes=passes)
    return BacktestResult(since=since, until=until, business_id=business_id,
                          agent_device_id=data.rule.agent_device_id, chart=chart, totals=totals, devices=out,
                          reads=reads)


def _chart_interval(span: timedelta) -> str:
    """A history interval giving at most ~1,000 points over the period (the API allows 2,000)."""
    for text, step in (("1m", timedelta(minutes=1)), ("5m", timedelta(minutes=5)), ("15m", timedelta(minutes=15)),
                       ("1h", timedelta(hours=1))):
        if span / step <= 1000:
            return text
    return "1h"
