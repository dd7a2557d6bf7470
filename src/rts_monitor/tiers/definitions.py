"""The rollup tiers: names, widths, columns, and the SQL that aggregates one level into the next.

Three tiers above the raw hypertable, each built from the one below (hierarchical):

* ``agent_metrics_5m``: the API contract's default chart interval is 5 minutes, so a 24-hour chart at
  5 minutes reads 288 rows per device instead of 1,440 (1-minute agents) or 8,640 (10-second
  agents); it is also the finest bucket the alert evaluator needs for windows of an hour or more.
* ``agent_metrics_1h``: 30-day charts at 1-hour resolution read 720 rows instead of 8,640 5m rows.
* ``agent_metrics_1d``: year-long charts, and the tier kept longest.

Every bucket keeps what makes re-aggregation exact: per metric sum (float8), count, min, max; for
the byte counters first/last value and time plus the counter increase inside the bucket (sum of
non-negative deltas, a drop being a reset to 0), so rates survive counter resets. The SQL below is
generated once from these definitions (column lists are long and must match in every statement).

Editions: buckets are ``date_bin`` with ``time_bucket``'s origin (Monday 2000-01-03), the same
buckets as TimescaleDB's continuous aggregates and available on plain PostgreSQL 14+; ``first``
and ``last`` are TimescaleDB's aggregates where it is installed and an ordered ``array_agg``
on the postgres edition (measured cost in docs/schema.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from rts_monitor.core.edition import Edition, has_timescaledb

RAW = "agent_metrics"
# What readers select from: the raw rows with their values as REAL in the wire's units. The table
# stores them as integers at the agent's precision (cpu_percent_x10 ...: compressed by
# delta-of-delta instead of Gorilla, migration 0220); the view turns them back.
RAW_VALUES = "agent_metric_values"
METRICS: tuple[str, ...] = (
    "cpu_percent", "memory_used_gb", "memory_percent", "disk_used_gb", "disk_percent",
    "load_average_1m", "load_average_5m", "load_average_15m", "uptime_seconds",
)
# Metrics stored as bigint (the rest are real): exact as float8 in every aggregate.
BIGINT_METRICS: tuple[str, ...] = ("uptime_seconds",)
COUNTERS: tuple[str, ...] = ("network_rx_bytes", "network_tx_bytes")
# Derived rate series (bytes per second) offered by the history API, and their counter.
RATES: dict[str, str] = {"network_rx_rate": "network_rx_bytes", "network_tx_rate": "network_tx_bytes"}


@dataclass(frozen=True)
class Tier:
    name: str
    label: str
    width: timedelta
    width_sql: str
    source: str  # the relation it is built from (raw or the tier below)


TIERS: tuple[Tier, ...] = (
    Tier("agent_metrics_5m", "5m", timedelta(minutes=5), "5 minutes", RAW),
    Tier("agent_metrics_1h", "1h", timedelta(hours=1), "1 hour", "agent_metrics_5m"),
    Tier("agent_metrics_1d", "1d", timedelta(days=1), "1 day", "agent_metrics_1h"),
)
TIER_BY_NAME: dict[str, Tier] = {t.name: t for t in TIERS}
LEVELS: tuple[str, ...] = (RAW, *(t.name for t in TIERS))


def tier_columns(metrics: tuple[str, ...] = METRICS, counters: tuple[str, ...] = COUNTERS) -> list[str]:
    """Column names of a tier row after ``bucket, agent_device_id``, in table order."""
    cols = ["samples"]
    for m in metrics:
        cols += [f"{m}_sum", f"{m}_count", f"{m}_min", f"{m}_max"]
    for c in counters:
        cols += [f"{c}_first", f"{c}_first_time", f"{c}_last", f"{c}_last_time", f"{c}_increase"]
    return cols


ALL_COLUMNS: list[str] = ["bucket", "agent_device_id", *tier_columns()]
ORIGIN = "TIMESTAMPTZ '2000-01-03 00:00:00+00'"  # time_bucket's origin for sub-month widths


def bucket(width_sql: str, expr: str) -> str:
    """``time_bucket(width, expr)`` on every edition (``date_bin`` is core PostgreSQL since 14)."""
    return f"date_bin(INTERVAL '{width_sql}', {expr}, {ORIGIN})"


def first(value: str, at: str, where: str, edition: Edition) -> str:
    """The value of the earliest ``at`` among rows where ``where`` holds (``where`` skips NULLs)."""
    if has_timescaledb(edition):
        return f"first({value}, {at}) FILTER (WHERE {where})"
    return f"(array_agg({value} ORDER BY {at}) FILTER (WHERE {where}))[1]"


def last(value: str, at: str, where: str, edition: Edition) -> str:
    if has_timescaledb(edition):
        return f"last({value}, {at}) FILTER (WHERE {where})"
    return f"(array_agg({value} ORDER BY {at} DESC) FILTER (WHERE {where}))[1]"


def _counter_delta(c: str, partition: str) -> str:
    """Delta of a counter to the previous non-NULL sample of the same partition (reset → value).

    Partitioning also by ``c IS NULL`` makes ``lag`` skip NULL samples (no IGNORE NULLS in PG).
    """
    prev = f"lag({c}) OVER (PARTITION BY {partition}, ({c} IS NULL) ORDER BY collected_at)"
    return (f"CASE WHEN {c} IS NULL THEN NULL WHEN {prev} IS NULL THEN 0 "
            f"WHEN {c} >= {prev} THEN {c} - {prev} ELSE {c} END AS {c}_delta")


def raw_partials(width_sql: str, where: str, *, edition: Edition, source: str = RAW_VALUES,
                 metrics: tuple[str, ...] = METRICS, counters: tuple[str, ...] = COUNTERS) -> str:
    """Tier-shaped rows aggregated straight from raw samples matching ``where`` (alias ``r``).

    Used to materialise ``agent_metrics_5m`` and to aggregate the not-yet-materialised tail in
    history queries, so both produce exactly the same numbers. ``metrics``/``counters`` narrow
    the columns to what a chart needs (all of them for the tiers).
    """
    bucket_sql = bucket(width_sql, "r.collected_at")
    inner_cols = "".join(", " + _counter_delta(c, f"r.agent_device_id, {bucket_sql}") for c in counters)
    aggs = ["count(*) AS samples"]
    for m in metrics:
        aggs += [f"sum({m}::float8) AS {m}_sum", f"count({m}) AS {m}_count",
                 f"min({m}) AS {m}_min", f"max({m}) AS {m}_max"]
    for c in counters:
        nn = f"FILTER (WHERE {c} IS NOT NULL)"
        aggs += [f"{first(c, 'collected_at', f'{c} IS NOT NULL', edition)} AS {c}_first",
                 f"min(collected_at) {nn} AS {c}_first_time",
                 f"{last(c, 'collected_at', f'{c} IS NOT NULL', edition)} AS {c}_last",
                 f"max(collected_at) {nn} AS {c}_last_time",
                 f"sum({c}_delta)::bigint AS {c}_increase"]
    return (
        f"SELECT bucket, agent_device_id, {', '.join(aggs)} FROM ("
        f"SELECT r.*, {bucket_sql} AS bucket{inner_cols} FROM {source} r WHERE {where}"
        f") d GROUP BY bucket, agent_device_id"
    )


def _boundary(c: str, partition: str) -> str:
    """Counter increase between consecutive partial rows (last of one → first of the next)."""
    prev = f"lag({c}_last) OVER (PARTITION BY {partition}, ({c}_first_time IS NULL) ORDER BY bucket)"
    return (f"CASE WHEN {c}_first_time IS NULL THEN NULL WHEN {prev} IS NULL THEN 0 "
            f"WHEN {c}_first >= {prev} THEN {c}_first - {prev} ELSE {c}_first END AS {c}_boundary")


def combine_partials(source_sql: str, width_sql: str, *, edition: Edition, metrics: tuple[str, ...] = METRICS,
                     counters: tuple[str, ...] = COUNTERS) -> str:
    """Aggregate tier-shaped rows from ``source_sql`` into coarser buckets of ``width_sql``, per device.

    Exact: sums and counts add, min/max of min/max, first/last by time, and the counter increase
    is the sum of the parts plus the deltas across the boundaries between consecutive parts.
    """
    bucket_sql = bucket(width_sql, "p.bucket")
    aggs = ["sum(samples)::bigint AS samples"]
    for m in metrics:
        aggs += [f"sum({m}_sum) AS {m}_sum", f"sum({m}_count)::bigint AS {m}_count",
                 f"min({m}_min) AS {m}_min", f"max({m}_max) AS {m}_max"]
    for c in counters:
        has = f"{c}_first_time IS NOT NULL"
        aggs += [f"{first(f'{c}_first', f'{c}_first_time', has, edition)} AS {c}_first",
                 f"min({c}_first_time) AS {c}_first_time",
                 f"{last(f'{c}_last', f'{c}_last_time', has, edition)} AS {c}_last",
                 f"max({c}_last_time) AS {c}_last_time",
                 f"(sum({c}_increase) + sum({c}_boundary))::bigint AS {c}_increase"]
    boundaries = "".join(", " + _boundary(c, f"p.agent_device_id, {bucket_sql}") for c in counters)
    return (
        f"SELECT nb AS bucket, agent_device_id, {', '.join(aggs)} FROM ("
        f"SELECT p.*, {bucket_sql} AS nb{boundaries} FROM ({source_sql}) p"
        f") q GROUP BY nb, agent_device_id"
    )
