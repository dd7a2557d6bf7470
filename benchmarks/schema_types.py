"""Which agent_metrics layout ingests fastest: the measurement behind docs/schema.md.

Binary COPY of the same rows into hypertables that differ in one respect each from our schema
(gauges as scaled integers, PK (device, time), no default time index, no FK, no JSONB), side by
side in one run, median of several runs, and the size on disk. The rows are the same samples at the
agent's precision (percentages with one decimal, GB with three, load averages with two), written
as each layout stores them (scaled integers, REAL, NUMERIC), converted before the clock starts. Usage:

    .venv/bin/python benchmarks/schema_types.py [--rows 300000] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
from psycopg.types.json import Jsonb

from rts_monitor.core.settings import Settings
from rts_monitor.db import resolve_database_url
from rts_monitor.ingest import copy_format, validate

RESULTS = Path(__file__).with_name("results") / "schema_types.json"
DEVICES = 1000

# Ours (migration 0220): the gauges as integers at the agent's precision (validate.SCALES).
COLS_SCALED = """
    cpu_percent SMALLINT, memory_used_gb INTEGER, memory_percent SMALLINT, disk_used_gb INTEGER,
    disk_percent SMALLINT, load_average_1m INTEGER, load_average_5m INTEGER, load_average_15m INTEGER,
    uptime_seconds BIGINT, network_rx_bytes BIGINT, network_tx_bytes BIGINT"""
COLS_REAL = """
    cpu_percent REAL, memory_used_gb REAL, memory_percent REAL, disk_used_gb REAL, disk_percent REAL,
    load_average_1m REAL, load_average_5m REAL, load_average_15m REAL,
    uptime_seconds BIGINT, network_rx_bytes BIGINT, network_tx_bytes BIGINT"""
COLS_NUMERIC = """
    cpu_percent NUMERIC(5,2), memory_used_gb NUMERIC(10,2), memory_percent NUMERIC(5,2),
    disk_used_gb NUMERIC(10,2), disk_percent NUMERIC(5,2), load_average_1m NUMERIC(10,2),
    load_average_5m NUMERIC(10,2), load_average_15m NUMERIC(10,2),
    uptime_seconds BIGINT, network_rx_bytes BIGINT, network_tx_bytes BIGINT"""
METRIC_NAMES = [
    "cpu_percent", "memory_used_gb", "memory_percent", "disk_used_gb", "disk_percent",
    "load_average_1m", "load_average_5m", "load_average_15m",
    "uptime_seconds", "network_rx_bytes", "network_tx_bytes",
]

# name -> (columns, create default time index?, has fk?, has jsonb?)
VARIANTS: dict[str, tuple[str, bool, bool, bool]] = {
    "ours: scaled integers, PK, no time index, no FK": (COLS_SCALED, False, False, False),
    "REAL (before migration 0220)": (COLS_REAL, False, False, False),
    "+ default time index": (COLS_SCALED, True, False, False),
    "+ FK to agent_devices": (COLS_SCALED, False, True, False),
    "NUMERIC as in the plan": (COLS_NUMERIC, False, False, False),
    "+ raw_metrics JSONB (~300 B)": (COLS_SCALED, False, False, True),
}
# the binary COPY types of the 8 gauges per layout (the rest: uuid, timestamptz, 3 x int8)
GAUGE_TYPES = {COLS_SCALED: copy_format.COPY_TYPES[2:10], COLS_REAL: ["float4"] * 8, COLS_NUMERIC: ["numeric"] * 8}


def make_rows(n: int, devices: list[uuid.UUID]) -> list[tuple[object, ...]]:
    """Samples in wire units, at the agent's precision."""
    rng = random.Random(7)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    rows: list[tuple[object, ...]] = []
    for i in range(n):
        dev = devices[i % len(devices)]
        t = start + timedelta(seconds=60 * (i // len(devices)))
        rows.append((
            dev, t, round(rng.uniform(0, 100), 1), round(rng.uniform(1, 64), 3), round(rng.uniform(0, 100), 1),
            round(rng.uniform(10, 900), 3), round(rng.uniform(0, 100), 1), round(rng.uniform(0, 8), 2),
            round(rng.uniform(0, 8), 2), round(rng.uniform(0, 8), 2), 3600 + i, 10**9 + i * 1000, 10**8 + i * 500,
        ))
    return rows


def as_stored(rows: list[tuple[object, ...]], cols: str) -> list[tuple[object, ...]]:
    """The rows as the layout stores them: scaled integers (what the API writes), floats, or
    decimals (NUMERIC(10,2) keeps GB to 2 decimals, as the plan has it)."""
    if cols is COLS_SCALED:
        return [validate.stored_row(*r) for r in rows]  # type: ignore[arg-type]
    if cols is COLS_NUMERIC:
        from decimal import Decimal

        return [(r[0], r[1], *(Decimal(str(v)) for v in r[2:10]), *r[10:]) for r in rows]
    return rows


def setup(conn: psycopg.Connection[tuple[object, ...]], table: str, cols: str, time_index: bool, fk: bool,
          jsonb: bool) -> None:
    conn.execute(f"DROP TABLE IF EXISTS {table}")
    fk_sql = " REFERENCES bench_devices(id)" if fk else ""
    extra = ", raw_metrics JSONB" if jsonb else ""
    conn.execute(
        f"CREATE TABLE {table} (agent_device_id UUID NOT NULL{fk_sql}, collected_at TIMESTAMPTZ NOT NULL,"
        f"{cols}{extra}, PRIMARY KEY (agent_device_id, collected_at))"
    )
    conn.execute(
        "SELECT create_hypertable(%s, by_range('collected_at', INTERVAL '1 day'), create_default_indexes => %s)",
        (table, time_index),
    )
    conn.commit()


def copy_rows(conn: psycopg.Connection[tuple[object, ...]], table: str, rows: list[tuple[object, ...]],
              layout: str, jsonb: bool) -> float:
    types = ["uuid", "timestamptz", *GAUGE_TYPES[layout], "int8", "int8", "int8"]
    cols = ["agent_device_id", "collected_at", *METRIC_NAMES]
    if jsonb:
        types.append("jsonb")
        cols.append("raw_metrics")
    rows = as_stored(rows, layout)
    payload = {"services": [{"name": f"svc{i}", "status": "running", "pid": 1000 + i} for i in range(6)]}
    started = time.perf_counter()
    with conn.cursor().copy(f"COPY {table} ({', '.join(cols)}) FROM STDIN (FORMAT BINARY)") as cp:
        cp.set_types(types)
        for r in rows:
            cp.write_row((*r, Jsonb(payload)) if jsonb else r)
    conn.commit()
    return time.perf_counter() - started


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=300_000)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    url = resolve_database_url(Settings.from_env())
    devices = [uuid.uuid4() for _ in range(DEVICES)]
    rows = make_rows(args.rows, devices)
    results: dict[str, dict[str, float]] = {}
    with psycopg.connect(url) as conn:
        conn.execute("DROP TABLE IF EXISTS bench_devices CASCADE")
        conn.execute("CREATE TABLE bench_devices (id UUID PRIMARY KEY)")
        with conn.cursor().copy("COPY bench_devices (id) FROM STDIN") as cp:
            for d in devices:
                cp.write_row((d,))
        conn.commit()
        timings: dict[str, list[float]] = {name: [] for name in VARIANTS}
        sizes: dict[str, int] = {}
        for run in range(args.runs):
            for i, (name, (cols, time_index, fk, jsonb)) in enumerate(VARIANTS.items()):
                table = f"bench_metrics_{i}"
                setup(conn, table, cols, time_index, fk, jsonb)
                secs = copy_rows(conn, table, rows, cols, jsonb)
                timings[name].append(args.rows / secs)
                row = conn.execute("SELECT hypertable_size(%s)", (table,)).fetchone()
                sizes[name] = int(row[0]) if row and row[0] else 0
                print(f"[run {run + 1}/{args.runs}] {name:<48} {args.rows / secs:>10,.0f} rows/s", file=sys.stderr)
        for i in range(len(VARIANTS)):
            conn.execute(f"DROP TABLE IF EXISTS bench_metrics_{i}")
        conn.execute("DROP TABLE IF EXISTS bench_devices CASCADE")
        conn.commit()
    base = statistics.median(timings[next(iter(VARIANTS))])
    base_size = sizes[next(iter(VARIANTS))]
    print(f"\n{'layout':<48} {'rows/s (median)':>16} {'vs ours':>8} {'MB':>8} {'size vs ours':>12}")
    for name in VARIANTS:
        med = statistics.median(timings[name])
        results[name] = {"rows_per_s_median": med, "ratio_vs_ours": med / base,
                         "bytes": sizes[name], "size_ratio_vs_ours": sizes[name] / base_size,
                         "runs": timings[name]}  # type: ignore[dict-item]
        print(f"{name:<48} {med:>16,.0f} {med / base:>8.2f} {sizes[name] / 1e6:>8.1f} {sizes[name] / base_size:>12.2f}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"rows": args.rows, "runs": args.runs, "devices": DEVICES,
                                   "measured_at": datetime.now(UTC).isoformat(), "results": results}, indent=2))
    print(f"\nwritten {RESULTS}")


if __name__ == "__main__":
    main()
