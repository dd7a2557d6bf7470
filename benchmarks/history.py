"""History charts from the rollup tiers vs. from raw rows, and the refresh job's cost (issue 5).

One command:

    .venv/bin/python benchmarks/history.py [--devices 1000] [--days 30] [--queries 200] [--runs 3] [--reload]
                                           [--edition apache|postgres]
    .venv/bin/python benchmarks/history.py --refresh-only --devices 10000 [--hours 26] --edition postgres

``--edition`` runs on that edition's local server, started beside the checkout's default one
(``rts-monitor db up --edition X --no-remember``; left running); without it, on the checkout's
default server (which must be apache or postgres: on tsl continuous aggregates refresh the tiers).

Data: ``--devices`` x ``--days`` of 1-minute samples (1,000 x 30 = 43.2M rows) generated inside
PostgreSQL with ``INSERT … SELECT generate_series`` one day at a time (progress per day), in time
order across devices as ingestion writes them (each flush commits many devices' samples of the
same minutes, so one device's rows are spread over many pages), in the
database ``rts_bench_history`` on the local TimescaleDB. It is kept between runs (``--reload``
rebuilds it); the tiers are built by the real refresh code (``tiers.maintenance.refresh``).

Per run, side by side on the same connection, for random devices:

* ``30d @ 1h``: our path (``history.service.query``: the 1h tier + finer tiers + raw tail, plus the
  watermark lookup), the ceiling (a bare ``SELECT`` of the 1h tier rows, no combination), and the
  same chart computed from raw rows (``time_bucket`` over 43,200 rows per device);
* ``24h @ 5m``: the same three for the 5m tier;
* refresh cost: the scheduled pass over one new hour of all devices' data (incremental from the
  watermark), and the invalidation pass after every device flushed one hour of late rows.

Prints a table of medians over ``--runs`` (p50/p99 per run, median of those) and the tiers/raw
ratio; writes ``benchmarks/results/history.json``.

``--refresh-only`` measures the refresh at fleet scale in minutes: it loads only ``--hours`` of
data (default 26: the whole previous UTC day, whose 1d bucket the late hour reopens, and two hours
of today) ending at 02:00 UTC today, into ``rts_bench_history_refresh_<devices>``, builds the tiers up to the
last hour, and per run times the same two passes plus their ceiling: one read of the new hour's raw
rows of every device (the PK probes the refresh makes, no aggregation, no writes). The late hour is
23:00-24:00 of the previous day, so the late pass re-aggregates 5m, 1h and 1d buckets. Every run
starts from the steady state: tiers materialised up to the last hour, nothing above a watermark.
Writes ``benchmarks/results/history_10k.json`` (``--out`` to change), with the load average per run.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import random
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg
from psycopg.rows import dict_row
from support import pct

from rts_monitor.core.edition import DESCRIBE_SQL, DatabaseInfo, Edition
from rts_monitor.core.settings import Settings
from rts_monitor.db import migrations, resolve_database_url
from rts_monitor.devtools import localdb
from rts_monitor.history import planning
from rts_monitor.history import service as history
from rts_monitor.tiers import maintenance

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
DB_NAME = "rts_bench_history"
REFRESH_DB_NAME = "rts_bench_history_refresh_{devices}"  # one per fleet size: each load is kept

# The gauges go in as the table stores them: scaled integers at the agent's precision
# (ingest/validate.py SCALES: percentages x10, GB x1000, load averages x100; migration 0220).
LOAD_SPAN = """
INSERT INTO agent_metrics (agent_device_id, collected_at, cpu_percent_x10, memory_used_gb_x1000,
                           memory_percent_x10, disk_used_gb_x1000, disk_percent_x10, load_average_1m_x100,
                           load_average_5m_x100, load_average_15m_x100, uptime_seconds, network_rx_bytes,
                           network_tx_bytes)
SELECT d.id, t,
       round((50 + 30 * sin(extract(epoch FROM t) / 3600.0 + d.n) + 10 * random()) * 10)::smallint,
       round((8 + 4 * sin(extract(epoch FROM t) / 7200.0 + d.n)) * 1000)::int,
       round((50 + 25 * sin(extract(epoch FROM t) / 7200.0 + d.n) + 5 * random()) * 10)::smallint,
       round((400 + d.n %% 100 + extract(epoch FROM t - %(lo)s) / 86400.0) * 1000)::int,
       round((60 + d.n %% 30 + 5 * random()) * 10)::smallint,
       round(2 * random() * 100)::int, round((1.5 + random()) * 100)::int, round((1.2 + random() / 2) * 100)::int,
       (extract(epoch FROM t)::bigint %% 604800),
       (extract(epoch FROM t)::bigint %% 604800) * (1000 + d.n),
       (extract(epoch FROM t)::bigint %% 604800) * (100 + d.n)
  FROM bench_devices d
 CROSS JOIN generate_series(%(lo)s::timestamptz, %(hi)s::timestamptz - INTERVAL '1 minute',
                            INTERVAL '1 minute') AS t
 ORDER BY t, d.id
"""


def log(msg: str) -> None:
    print(f"[history-bench] {msg}", file=sys.stderr, flush=True)


def _admin_url(url: str) -> str:
    return url.rsplit("/", 1)[0] + "/postgres"


def _edition_of(conn: psycopg.Connection[Any]) -> Edition:
    row = conn.execute(DESCRIBE_SQL).fetchone()
    assert row is not None
    return DatabaseInfo.from_row(row).edition


def _partitions(conn: psycopg.Connection[Any], lo: datetime, hi: datetime) -> None:
    """Postgres edition: every level's partitions over the loaded span (what the partitions job
    makes ahead for live data), so rows go where production writes them, not into DEFAULT."""
    for level in ("agent_metrics", "agent_metrics_5m", "agent_metrics_1h", "agent_metrics_1d"):
        t = lo
        while t <= hi:
            conn.execute("SELECT rts_partition_create(%s, %s)", (level, t))
            t += timedelta(hours=6)


def prepare(server_url: str, devices: int, days: int, reload: bool, *,
            refresh_hours: int | None = None) -> tuple[str, dict[str, Any]]:
    """Create/migrate/load the benchmark database unless an identical load is already there.

    ``refresh_hours``: the refresh-only load, that many hours up to 02:00 UTC today, in its own database.
    """
    db_name = DB_NAME if refresh_hours is None else REFRESH_DB_NAME.format(devices=devices)
    url = server_url.rsplit("/", 1)[0] + "/" + db_name
    with psycopg.connect(_admin_url(server_url), autocommit=True) as admin:
        exists = admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (db_name,)).fetchone()
        if exists and reload:
            admin.execute(f'DROP DATABASE "{db_name}" WITH (FORCE)')
            exists = None
        if not exists:
            admin.execute(f'CREATE DATABASE "{db_name}"')
    # A kept database stays on the schema it was loaded with (--reload to renew), except for the
    # refresh-only load: the refresh measured must run on the schema its code expects.
    if not exists or refresh_hours is not None:
        migrations.migrate(url)
    with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:
        if conn.execute("SELECT to_regclass('agent_metric_values') AS v").fetchone()["v"] is None:  # type: ignore[index]
            raise SystemExit(f"{db_name} was loaded before the scaled metric storage (migration 0220), which "
                             "the code measured reads: use --reload")
        edition = _edition_of(conn)
        if edition == "tsl":
            raise SystemExit("the tsl edition refreshes its tiers with continuous aggregates: "
                             "use --edition apache or --edition postgres")
        conn.execute("CREATE TABLE IF NOT EXISTS bench_meta (key text PRIMARY KEY, value jsonb)")
        meta = conn.execute("SELECT value FROM bench_meta WHERE key = 'load'").fetchone()
        wanted: dict[str, Any] = {"devices": devices, "days": days} if refresh_hours is None else \
            {"devices": devices, "hours": refresh_hours}
        if meta and {k: meta["value"].get(k) for k in wanted} == wanted:
            log(f"reusing loaded data in {db_name}: {meta['value']}")
            return url, meta["value"]
        if meta:
            raise SystemExit(f"{db_name} holds a different load {meta['value']}; use --reload")
        if refresh_hours is None:
            end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
            first = (end - timedelta(days=days)).replace(hour=0)
            step = timedelta(days=1)
        else:
            end = datetime.now(UTC).replace(hour=2, minute=0, second=0, microsecond=0)
            first = end - timedelta(hours=refresh_hours)
            # A day per statement, or an hour when a day of the fleet is more than 2M rows.
            step = timedelta(days=1) if devices * 1440 <= 2_000_000 else timedelta(hours=1)
        if edition == "postgres":
            _partitions(conn, first, end)
        conn.execute("INSERT INTO businesses (business_name) VALUES ('bench') ON CONFLICT DO NOTHING")
        biz = conn.execute("SELECT id FROM businesses WHERE business_name = 'bench' LIMIT 1").fetchone()
        assert biz is not None
        conn.execute(
            "INSERT INTO agent_devices (business_id, device_name, os_type, agent_version) "
            "SELECT %s, 'bench-' || n, 'linux', '1.0.0' FROM generate_series(1, %s) n", (biz["id"], devices))
        conn.execute("CREATE TABLE bench_devices AS SELECT id, row_number() OVER (ORDER BY id)::int AS n "
                     "FROM agent_devices WHERE device_name LIKE 'bench-%%'")
        total, started = 0, time.monotonic()
        lo = first
        i = 0
        n_steps = -(-(end - first) // step)
        while lo < end:
            t0 = time.monotonic()
            hi = min(lo + step, end)
            cur = conn.execute(LOAD_SPAN, {"lo": lo, "hi": hi})
            total += cur.rowcount
            i += 1
            log(f"loaded {i}/{n_steps} ({lo:%Y-%m-%d %H:%M}): {cur.rowcount:,} rows in {time.monotonic() - t0:.1f}s, "
                f"total {total:,} ({total / (time.monotonic() - started):,.0f} rows/s)")
            lo = hi
        load_s = time.monotonic() - started
        log(f"loaded {total:,} rows in {load_s:.0f}s; VACUUM ANALYZE …")
        conn.execute("VACUUM ANALYZE agent_metrics")
        log("initial tier build (refresh from the start of the data up to `end` - 1h) …")
        t0 = time.monotonic()
        res = asyncio.run(_build(url, edition, end - timedelta(hours=1)))
        build_s = time.monotonic() - t0
        conn.execute("VACUUM ANALYZE agent_metrics_5m, agent_metrics_1h, agent_metrics_1d")
        value = {**wanted, "edition": edition, "rows": total, "end": end.isoformat(), "load_seconds": round(load_s, 1),
                 "load_rows_per_second": round(total / load_s), "initial_build_seconds": round(build_s, 1),
                 "initial_build_rows": res}
        conn.execute("INSERT INTO bench_meta VALUES ('load', %s)", (json.dumps(value),))
        log(f"tiers built in {build_s:.0f}s: {res}")
        return url, value


async def _build(url: str, edition: Edition, now: datetime) -> dict[str, int]:
    """The tiers over the whole load, six hours of raw per pass (one pass per transaction, as the
    scheduled job catches up), until the 5m watermark reaches ``now``."""
    total: dict[str, int] = {}
    async with await psycopg.AsyncConnection.connect(url, autocommit=True, row_factory=dict_row) as conn:
        while True:
            res = await maintenance.refresh(conn, edition=edition, now=now, max_span=timedelta(hours=6))
            for k, v in res.rows.items():
                total[k] = total.get(k, 0) + v
            log(f"  tiers up to {res.watermarks['agent_metrics_5m']}: {res.rows} in {res.seconds:.1f}s")
            if res.watermarks["agent_metrics_5m"] == now:  # now is on the hour: every tier is there too
                return total


async def time_queries(conn: psycopg.AsyncConnection[Any], edition: Edition, devices: list[UUID], n: int,
                       end: datetime, span: timedelta, interval: str) -> dict[str, dict[str, float]]:
    """p50/p99 (ms) of our path, the bare tier read and raw, interleaved per device."""
    plan = planning.plan(start=end - span, end=end, now=end, interval=interval,
                         metric="cpu_percent,memory_percent,disk_percent", stats="avg")
    raw_plan = dataclasses.replace(plan, tier=None)
    assert plan.tier is not None
    wanted = ", ".join(f"{m}_sum, {m}_count" for m in plan.metrics)
    bare = (f"SELECT bucket, {wanted} FROM {plan.tier.name} WHERE agent_device_id = %s "
            "AND bucket >= %s AND bucket < %s ORDER BY bucket")
    times: dict[str, list[float]] = {"tiers (our path)": [], "tier rows (ceiling)": [], "raw": []}
    rows_seen: dict[str, int] = {}
    for i in range(n + 5):  # 5 warm-up rounds
        dev = random.choice(devices)
        for name in times:
            t0 = time.perf_counter()
            if name == "tiers (our path)":
                rows = await history.query(conn, plan=plan, edition=edition, devices=[dev])
            elif name == "raw":
                rows = await history.query(conn, plan=raw_plan, edition=edition, devices=[dev])
            else:
                rows = list(await (await conn.execute(bare.encode(), (dev, plan.start, plan.end))).fetchall())
            if i >= 5:
                times[name].append((time.perf_counter() - t0) * 1000)
                rows_seen[name] = len(rows)
    out = {name: {"p50_ms": round(pct(v, 0.50), 3), "p99_ms": round(pct(v, 0.99), 3), "points": rows_seen[name]}
           for name, v in times.items()}
    # Server side only (planning + execution from EXPLAIN ANALYZE), without the client round trips.
    for name, p in (("tiers (our path)", plan), ("raw", raw_plan)):
        server = []
        for _ in range(max(10, n // 5)):
            dev = random.choice(devices)
            wms, pending = await history._state(conn, edition, p, [dev])
            per_device, params = history.per_device_sql(p, edition, wms, pending=pending)
            params["devs"] = [dev]
            async with conn.transaction():
                await conn.execute("SET LOCAL jit = off")
                sql = "EXPLAIN (ANALYZE, TIMING OFF, SUMMARY ON) " + history.history_sql(p, per_device, fleet=False)
                lines = [r["QUERY PLAN"] for r in await (await conn.execute(sql.encode(), params)).fetchall()]
            server.append(sum(float(x.split()[2]) for x in lines if x.startswith(("Planning Time", "Execution Time"))))
        out[name]["server_p50_ms"] = round(pct(server, 0.50), 3)
    return out


CEILING = """
SELECT count(*) AS n, sum(m.cpu_percent) AS s
  FROM agent_devices d JOIN agent_metric_values m ON m.agent_device_id = d.id
   AND m.collected_at >= %(lo)s AND m.collected_at < %(hi)s
"""


def backend_cpu(pid: int) -> float:
    """CPU seconds (user + system) a server backend has used: what a pass costs whatever the load
    of a shared machine (its wall time stretches with the load, its CPU time hardly does)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def refresh_costs(url: str, edition: Edition, end: datetime, devices: int) -> dict[str, Any]:
    """One steady-state pass over a new hour, and the pass after an hour of late rows per device.

    Before each: the state the scheduled job leaves (tiers materialised up to the last hour, no
    row above a watermark, no pending range), set up outside the clock. The late rows are not
    inserted again (the raw rows are there): their ingest ranges are, as a flush records them.
    """
    async with await psycopg.AsyncConnection.connect(url, autocommit=True, row_factory=dict_row) as conn:
        hour = end - timedelta(hours=1)
        day = hour.replace(hour=0)
        await conn.execute(
            "UPDATE rts_tier_levels SET watermark = CASE name WHEN 'agent_metrics_1d' THEN %(day)s::timestamptz "
            "ELSE %(hour)s::timestamptz END WHERE bucket_width IS NOT NULL", {"hour": hour, "day": day})
        for tier, wm in (("agent_metrics_5m", hour), ("agent_metrics_1h", hour), ("agent_metrics_1d", day)):
            await conn.execute(f"DELETE FROM {tier} WHERE bucket >= %s".encode(), (wm,))
        await conn.execute("DELETE FROM metric_ingest_ranges")
        await conn.execute("VACUUM ANALYZE agent_metrics_5m, agent_metrics_1h, agent_metrics_1d, metric_ingest_ranges")
        load = os.getloadavg()[0]
        pid = conn.info.backend_pid
        cpu0, t0 = backend_cpu(pid), time.perf_counter()
        res = await maintenance.refresh(conn, edition=edition, now=end)
        incremental, inc_cpu = time.perf_counter() - t0, backend_cpu(pid) - cpu0
        assert res.rows["agent_metrics_5m"] == 12 * devices, res.rows
        inc_rows = res.rows
        late_lo = end - timedelta(hours=3)
        await conn.execute(
            "INSERT INTO metric_ingest_ranges (agent_device_id, range_start, range_end, row_count) "
            "SELECT id, %s, %s, 60 FROM bench_devices", (late_lo, late_lo + timedelta(minutes=59)))
        cpu0, t0 = backend_cpu(pid), time.perf_counter()
        res = await maintenance.refresh(conn, edition=edition, now=end)
        late, late_cpu = time.perf_counter() - t0, backend_cpu(pid) - cpu0
        assert res.invalidated_ranges == 12 * devices, res
        assert res.rows["agent_metrics_5m"] == 12 * devices, res.rows
        late_rows = res.rows
        t0 = time.perf_counter()
        await conn.execute(CEILING, {"lo": hour, "hi": end})
        ceiling = time.perf_counter() - t0
    return {"incremental_hour_ms": round(incremental * 1000, 1), "late_hour_ms": round(late * 1000, 1),
            "incremental_server_cpu_ms": round(inc_cpu * 1000), "late_server_cpu_ms": round(late_cpu * 1000),
            "ceiling_read_hour_ms": round(ceiling * 1000, 1), "incremental_rows": inc_rows, "late_rows": late_rows,
            "load_average": load}


async def one_run(url: str, edition: Edition, end: datetime, queries: int, devices_n: int) -> dict[str, Any]:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True, row_factory=dict_row) as conn:
        devices = [r["id"] for r in await (await conn.execute("SELECT id FROM bench_devices")).fetchall()]
        now = datetime.now(UTC)
        out: dict[str, Any] = {}
        log("  30-day chart at 1h …")
        out["30d@1h"] = await time_queries(conn, edition, devices, queries, now, timedelta(days=30), "1h")
        log("  24-hour chart at 5m …")
        out["24h@5m"] = await time_queries(conn, edition, devices, queries, now, timedelta(hours=24), "5m")
    log("  refresh cost …")
    out["refresh"] = await refresh_costs(url, edition, end, devices_n)
    return out


def server_for(edition: str | None) -> str:
    """The edition's local server (started beside the default one if needed), or the default."""
    settings = Settings.from_env()
    if edition is None:
        return resolve_database_url(settings)
    return localdb.up(settings, localdb.check_edition(edition), remember=False)


def refresh_only(args: argparse.Namespace) -> int:
    url, meta = prepare(server_for(args.edition), args.devices, 0, args.reload, refresh_hours=args.hours)
    edition: Edition = meta["edition"]
    end = datetime.fromisoformat(meta["end"])
    runs = []
    for r in range(args.runs):
        res = asyncio.run(refresh_costs(url, edition, end, args.devices))
        log(f"run {r + 1}/{args.runs} (load {res['load_average']:.1f}): "
            f"incremental {res['incremental_hour_ms']:.0f} ms {res['incremental_rows']}, "
            f"(server CPU {res['incremental_server_cpu_ms']} ms), late hour {res['late_hour_ms']:.0f} ms "
            f"{res['late_rows']} (server CPU {res['late_server_cpu_ms']} ms), "
            f"ceiling {res['ceiling_read_hour_ms']:.0f} ms")
        runs.append(res)
    summary = {key: statistics.median(run[key] for run in runs)
               for key in ("incremental_hour_ms", "late_hour_ms", "ceiling_read_hour_ms",
                           "incremental_server_cpu_ms", "late_server_cpu_ms")}
    from rts_monitor.core.tables import print_table

    loads = ", ".join(f"{r['load_average']:.1f}" for r in runs)
    print(f"\nrefresh at {args.devices:,} devices ({edition}, {meta['rows']:,} raw rows over {args.hours} h), "
          f"medians of {args.runs} runs, load average {loads}\n")
    print_table([{"pass": "incremental (one new hour)", "ms": f"{summary['incremental_hour_ms']:.0f}",
                  "server CPU ms": f"{summary['incremental_server_cpu_ms']:.0f}", "target ms": "10,000 at 10k devices"},
                 {"pass": "after an hour of late rows", "ms": f"{summary['late_hour_ms']:.0f}",
                  "server CPU ms": f"{summary['late_server_cpu_ms']:.0f}", "target ms": "30,000 at 10k devices"},
                 {"pass": "ceiling: read the new hour's raw rows", "ms": f"{summary['ceiling_read_hour_ms']:.0f}",
                  "server CPU ms": "-", "target ms": "-"}])
    out = RESULTS / args.out
    previous = json.loads(out.read_text()) if out.exists() else {}
    key = f"{edition} {args.devices}"
    previous.setdefault(args.label or "measurements", {})[key] = {
        "measured_at": datetime.now(UTC).isoformat(), "args": vars(args), "load": meta, "summary": summary,
        "runs": runs}
    out.write_text(json.dumps(previous, indent=2, default=str))
    log(f"wrote {out} [{key}]")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, default=1000)
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--reload", action="store_true")
    ap.add_argument("--edition", choices=("apache", "postgres"),
                    help="run on this edition's local server (started beside the default one)")
    ap.add_argument("--refresh-only", action="store_true",
                    help="only the refresh passes, over a load of --hours (fleet scale in minutes)")
    ap.add_argument("--hours", type=int, default=26, help="--refresh-only: hours of data loaded")
    ap.add_argument("--out", help="results file name (default history.json, history_10k.json with --refresh-only)")
    ap.add_argument("--label", default="",
                    help="--refresh-only: the section of the results file it goes to (e.g. before, after)")
    args = ap.parse_args()
    if args.refresh_only:
        args.out = args.out or "history_10k.json"
        return refresh_only(args)
    url, meta = prepare(server_for(args.edition), args.devices, args.days, args.reload)
    edition: Edition = meta.get("edition", "apache")
    end = datetime.fromisoformat(meta["end"])
    runs = []
    for r in range(args.runs):
        log(f"run {r + 1}/{args.runs}")
        runs.append(asyncio.run(one_run(url, edition, end, args.queries, args.devices)))
    table: list[dict[str, Any]] = []
    summary: dict[str, Any] = {}
    for chart in ("30d@1h", "24h@5m"):
        for path in runs[0][chart]:
            p50 = statistics.median(run[chart][path]["p50_ms"] for run in runs)
            p99 = statistics.median(run[chart][path]["p99_ms"] for run in runs)
            summary[f"{chart} {path}"] = {"p50_ms": p50, "p99_ms": p99, "points": runs[0][chart][path]["points"]}
            srv = [run[chart][path].get("server_p50_ms") for run in runs]
            server_p50 = statistics.median(srv) if None not in srv else None  # None: not in every run
            summary[f"{chart} {path}"]["server_p50_ms"] = server_p50
            table.append({"chart": chart, "path": path, "points": runs[0][chart][path]["points"],
                          "p50 ms": f"{p50:.2f}", "p99 ms": f"{p99:.2f}",
                          "server p50 ms": "-" if server_p50 is None else f"{server_p50:.2f}"})
        ours, raw = summary[f"{chart} tiers (our path)"], summary[f"{chart} raw"]
        summary[f"{chart} ratio raw/tiers"] = {"p50": round(raw["p50_ms"] / ours["p50_ms"], 1),
                                               "p99": round(raw["p99_ms"] / ours["p99_ms"], 1),
                                               "server_p50": round(raw["server_p50_ms"] / ours["server_p50_ms"], 1)}
    inc = statistics.median(run["refresh"]["incremental_hour_ms"] for run in runs)
    late = statistics.median(run["refresh"]["late_hour_ms"] for run in runs)
    summary["refresh per hour of ingested data (ms)"] = {"incremental": inc, "late rows": late}
    from rts_monitor.core.tables import print_table

    print(f"\n{meta['rows']:,} rows ({args.devices} devices x {args.days} days of 1-minute data), "
          f"medians of {args.runs} runs x {args.queries} queries\n")
    print_table(table)
    print()
    for chart in ("30d@1h", "24h@5m"):
        r = summary[f"{chart} ratio raw/tiers"]
        print(f"{chart}: raw is {r['p50']}x slower at p50, {r['p99']}x at p99 "
              f"({r['server_p50']}x in server time)")
    print(f"refresh of one hour of {args.devices} devices' data: incremental {inc:.0f} ms, "
          f"after an hour of late rows from every device {late:.0f} ms")
    print(f"load: {meta['load_rows_per_second']:,} rows/s; initial tier build over all data "
          f"{meta['initial_build_seconds']} s")
    ok = (summary["30d@1h tiers (our path)"]["p99_ms"] < 20 and summary["30d@1h ratio raw/tiers"]["p99"] >= 20)
    print(f"targets (30d@1h p99 < 20 ms and >= 20x faster than raw): {'met' if ok else 'NOT met'}")
    out = RESULTS / (args.out or "history.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"measured_at": datetime.now(UTC).isoformat(), "args": vars(args), "load": meta,
                               "summary": summary, "runs": runs}, indent=2, default=str))
    log(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
