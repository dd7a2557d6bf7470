"""The three storage editions side by side, on the same generated data, in one run.

    .venv/bin/python benchmarks/editions.py [--editions tsl,apache,postgres] [--runs 3]

Each edition's local server is started beside the checkout's default one (``rts-monitor db up
--edition X --no-remember``); each gets a fresh database of its own, dropped at the end. Per edition:

* ingest: the API with 500-sample batches from 1,000 agents (wrk, 64 connections, one uvicorn
  worker, after a warm-up of the same load from 128 other agents so the server runs with its pool
  open, as the ceiling's client has its connection open before its clock starts; the measured
  agents' tokens are still looked up; then a pause while the warm-up's last requests commit; the
  server's 503 backpressure count is reported beside wrk's non-2xx) and its ceiling, binary COPY
  from one process of as many rows into the same emptied ``agent_metrics`` (benchmarks/ingest.py's
  phases, reused), medians of
  ``--runs`` with the spread, the load average before each run and the CPU per row of the server,
  wrk and this server's PostgreSQL processes. On postgres both write into the day partitions the
  partitions job makes ahead (not the DEFAULT partition), on tsl and apache into the same chunks;
* a 30-day fleet history shaped by the demo fleet (``devtools/demo_fleet.py``: working-hours CPU
  curves with noise and spikes, drifting memory, slowly filling disks, kernel-damped load
  averages, cumulative counters, values at the agent's precision), one sample a minute per
  device, COPYed in; then the refresh cost (continuous aggregates on tsl, the project's refresh
  elsewhere, partitions first on postgres);
* a 30-day chart of one device at 1 hour: p50/p99 answered from the tiers vs the same chart
  aggregated from raw samples;
* bytes per sample of a 1-day chunk of a running fleet (the other 980 agents' day beside the
  chart devices', sent minute by minute: 1.44M rows, heap + indexes + TOAST as
  ``chunks_detailed_size`` counts them) and, on tsl, after compressing every chunk (segment by
  device, order by time descending): that chunk's ratio (``chunk_compression_stats``), the whole
  table's, and the chart latency over compressed chunks.

Prints progress and a table; writes ``benchmarks/results/editions.json`` (docs/schema.md quotes it).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ingest
from support import pause_policies, say

from rts_monitor.core.edition import EDITIONS, Edition
from rts_monitor.core.settings import Settings
from rts_monitor.devtools import demo_fleet, localdb
from rts_monitor.history import planning
from rts_monitor.history import service as history
from rts_monitor.ingest import copy_format, validate
from rts_monitor.tiers import maintenance
from rts_monitor.tiers import service as tiers

RESULTS = Path(__file__).resolve().parent / "results" / "editions.json"
WARMUP_AGENTS = 128
TARGET_API_VS_COPY = 0.65
TARGET_COMPRESSION = 10.0


def fleet_rows(devices: list[uuid.UUID], days: int, end: datetime) -> list[tuple[Any, ...]]:
    """One sample a minute per device for ``days`` up to ``end``, in the demo fleet's shapes, as
    the rows the table stores (the gauges scaled to integers, as the API's flush writes them)."""
    sims = demo_fleet.build_fleet(len(devices), [(str(uuid.uuid4()), [str(uuid.uuid4())])])
    start = end - timedelta(days=days)
    rows: list[tuple[Any, ...]] = []
    for dev, sim in zip(devices, sims, strict=True):
        sim.boot = start.timestamp() - 86400
        t = start.timestamp()
        while t < end.timestamp():
            s = sim.sample(t, 60.0)
            la = s["load_average"]
            rows.append(validate.stored_row(dev, datetime.fromtimestamp(t, tz=UTC), s["cpu_percent"],
                                            s["memory_used_gb"], s["memory_percent"], s["disk_used_gb"],
                                            s["disk_percent"], la[0], la[1], la[2], s["uptime_seconds"],
                                            s["network_rx_bytes"], s["network_tx_bytes"]))
            t += 60
    return rows


def fleet_day_rows(devices: list[uuid.UUID], day_end: datetime) -> list[tuple[Any, ...]]:
    """One day of one sample a minute from every device, in the order a fleet sends them (minute
    by minute, each minute's samples by device, as a flush sorts them)."""
    rows = fleet_rows(devices, 1, day_end)
    rows.sort(key=lambda r: (r[1], r[0]))
    return rows


def copy_rows(url: str, rows: list[tuple[Any, ...]]) -> float:
    started = time.perf_counter()
    with psycopg.connect(url) as c:
        for i in range(0, len(rows), 200_000):
            with c.cursor().copy(ingest.COPY_SQL.format(table="agent_metrics")) as cp:
                cp.write(copy_format.stream([copy_format.encode_rows(rows[i:i + 200_000])]))
            c.commit()
    return time.perf_counter() - started


def partitions_for(url: str, edition: Edition, start: datetime, end: datetime) -> None:
    """On postgres, the day partitions of ``start``..``end`` (what the partitions job makes ahead
    for live data), so the ingest phases write where production writes, not into the DEFAULT
    partition (which only catches days without a partition); the ceiling and the API write into
    the same partitions."""
    if edition != "postgres":
        return
    with psycopg.connect(url, autocommit=True) as c:
        t = start
        while t < end:
            c.execute("SELECT rts_partition_create('agent_metrics', %s)", (t,))
            t += timedelta(days=1)


def chunk_bytes(url: str, edition: Edition, start: datetime, end: datetime) -> dict[str, float]:
    """Heap, index and TOAST bytes of the chunk (partition) holding ``start``..``end`` and its rows:
    raw storage as a chunk of a running fleet occupies it."""
    with psycopg.connect(url, autocommit=True) as c:
        c.execute("VACUUM ANALYZE agent_metrics")
        n = c.execute("SELECT count(*) FROM agent_metrics WHERE collected_at >= %s AND collected_at < %s",
                      (start, end)).fetchone()[0]  # type: ignore[index]
        if edition == "postgres":
            row = c.execute(
                "SELECT pg_relation_size(p.partition_name::regclass), pg_indexes_size(p.partition_name::regclass), "
                "pg_total_relation_size(p.partition_name::regclass) - pg_relation_size(p.partition_name::regclass) "
                "- pg_indexes_size(p.partition_name::regclass), pg_total_relation_size(p.partition_name::regclass) "
                "FROM rts_partitions('agent_metrics') p WHERE p.range_start <= %s AND %s < p.range_end",
                (start, start)).fetchone()
        else:
            row = c.execute(
                "SELECT d.table_bytes, d.index_bytes, d.toast_bytes, d.total_bytes "
                "FROM chunks_detailed_size('agent_metrics') d "
                "JOIN timescaledb_information.chunks ch ON ch.chunk_schema = d.chunk_schema "
                " AND ch.chunk_name = d.chunk_name AND ch.hypertable_name = 'agent_metrics' "
                "WHERE ch.range_start <= %s AND %s < ch.range_end", (start, start)).fetchone()
    assert row is not None
    return {"rows": float(n), "heap": float(row[0]), "index": float(row[1]), "toast": float(row[2]),
            "total": float(row[3])}


def raw_bytes(url: str, edition: Edition) -> int:
    sql = ("SELECT coalesce(sum(bytes), 0) FROM rts_partitions('agent_metrics')" if edition == "postgres"
           else "SELECT hypertable_size('agent_metrics')")
    with psycopg.connect(url) as c:
        return int(c.execute(sql).fetchone()[0])  # type: ignore[index]


async def refresh(url: str, edition: Edition, end: datetime) -> dict[str, float]:
    """Materialise every tier over the loaded history; seconds per step."""
    out: dict[str, float] = {}
    async with await psycopg.AsyncConnection.connect(url, autocommit=True, row_factory=dict_row) as conn:
        if edition == "postgres":
            t0 = time.perf_counter()
            await conn.execute("SELECT rts_partitions_maintain(INTERVAL '1 day')")
            out["partitions_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        if edition == "tsl":
            await tiers.refresh(conn, edition=edition, start=None, end=end)
        else:
            await maintenance.refresh(conn, edition=edition, now=end)
        out["refresh_s"] = time.perf_counter() - t0
        await conn.execute("VACUUM ANALYZE")
    return out


async def chart_latency(url: str, edition: Edition, device: uuid.UUID, end: datetime,
                        reps: int) -> dict[str, float]:
    """30-day chart at 1 h: from the tiers (the plan) and from raw rows (the same chart)."""
    plan = planning.plan(start=end - timedelta(days=30), end=end, now=end, interval="1h",
                         metric="cpu_percent,memory_percent,disk_percent,network_rx_rate", stats="avg,max")
    raw_plan = dataclasses.replace(plan, tier=None)
    out: dict[str, float] = {}
    async with await psycopg.AsyncConnection.connect(url, autocommit=True, row_factory=dict_row) as conn:
        for label, p in (("tiers", plan), ("raw", raw_plan)):
            times = []
            for i in range(reps + 2):
                t0 = time.perf_counter()
                rows = await history.query(conn, plan=p, edition=edition, devices=[device])
                if i >= 2:  # two warm-up runs
                    times.append((time.perf_counter() - t0) * 1000)
            assert len(rows) >= 24 * 29, (label, len(rows))
            times.sort()
            out[f"{label}_p50_ms"] = statistics.median(times)
            out[f"{label}_p99_ms"] = times[min(len(times) - 1, int(len(times) * 0.99))]
    return out


def compress_all(url: str, day: datetime) -> dict[str, float]:
    """Compress every chunk; totals over the hypertable, and heap/index/TOAST before and after for
    the chunk holding ``day`` (the fleet day: a 1-day chunk of 1,000 agents)."""
    with psycopg.connect(url, autocommit=True) as c:
        t0 = time.perf_counter()
        c.execute("SELECT count(compress_chunk(ch, if_not_compressed => true)) FROM show_chunks('agent_metrics') ch")
        seconds = time.perf_counter() - t0
        c.execute("VACUUM ANALYZE agent_metrics")
        row = c.execute("SELECT before_compression_total_bytes, after_compression_total_bytes "
                        "FROM hypertable_compression_stats('agent_metrics')").fetchone()
        fleet = c.execute(
            "SELECT s.before_compression_total_bytes, s.after_compression_table_bytes, "
            "s.after_compression_index_bytes, s.after_compression_toast_bytes, s.after_compression_total_bytes "
            "FROM chunk_compression_stats('agent_metrics') s "
            "JOIN timescaledb_information.chunks ch ON ch.chunk_schema = s.chunk_schema "
            " AND ch.chunk_name = s.chunk_name AND ch.hypertable_name = 'agent_metrics' "
            "WHERE ch.range_start <= %s AND %s < ch.range_end", (day, day)).fetchone()
    assert row is not None and fleet is not None
    return {"compress_s": seconds, "before_bytes": float(row[0]), "after_bytes": float(row[1]),
            "ratio": float(row[0]) / float(row[1]),
            "fleet_before_bytes": float(fleet[0]), "fleet_after_heap": float(fleet[1]),
            "fleet_after_index": float(fleet[2]), "fleet_after_toast": float(fleet[3]),
            "fleet_after_bytes": float(fleet[4]), "fleet_ratio": float(fleet[0]) / float(fleet[4])}


def one_edition(edition: Edition, args: argparse.Namespace, wrk: str) -> dict[str, Any]:
    server = localdb.up(Settings.from_env(), edition, remember=False)
    out: dict[str, Any] = {"edition": edition}
    with ingest.bench_database(server) as url, tempfile.TemporaryDirectory(prefix="rts-bench-ed-") as tmpdir:
        tmp = Path(tmpdir)
        with psycopg.connect(url) as c:
            out["postgres"] = c.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]
            ts = c.execute("SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'").fetchone()
            out["timescaledb"] = ts[0] if ts else "absent"
        say(f"[{edition}] {ingest.DEVICES} agents (+{WARMUP_AGENTS} for the warm-up)")
        agents = ingest.make_agents(url)
        devices = [a for a, _ in agents]
        lua, warm_lua = tmp / "agents.lua", tmp / "warmup.lua"
        for path, group in ((lua, agents), (warm_lua, ingest.make_agents(url, WARMUP_AGENTS))):
            path.write_text("return {\n" + "".join(f'  {{"/api/agents/{a}/metrics", "Bearer {t}"}},\n'
                                                   for a, t in group) + "}\n")
        base_dt = datetime.now(UTC).replace(microsecond=0) - timedelta(days=20)
        partitions_for(url, edition, base_dt - timedelta(days=1), base_dt + timedelta(days=3))
        runs = []
        for run in range(args.runs):
            load = os.getloadavg()[0]
            say(f"[{edition}] run {run + 1}/{args.runs} (load {load:.1f}): COPY ceiling ({args.ceiling_rows:,} rows)")
            c_rows = ingest.bench_copy(url, devices, base_dt, args.ceiling_rows)
            c_block = ingest.bench_copy(url, devices, base_dt, args.ceiling_rows, "block")
            copy = max(c_rows["rows_per_s"], c_block["rows_per_s"])
            say(f"[{edition}]   COPY {copy:,.0f} rows/s; API, 500-sample batches, {args.warmup}s warm-up + "
                f"{args.seconds}s")
            api = ingest.api_phase(wrk, url, 1, args, lua, tmp, samples=ingest.BATCH, conns=64, threads=1,
                                   epoch=int(base_dt.timestamp()), warmup=(args.warmup, warm_lua))
            say(f"[{edition}]   API {api['rows_per_s']:,.0f} rows/s (p99 {api['p99_ms']:.0f} ms, non-2xx "
                f"{api['non2xx']}, 503 backpressure over warm-up and run {api.get('rejected', 0):.0f}): "
                f"{api['rows_per_s'] / copy:.2f} of COPY; {ingest.cpu_summary(api)}")
            runs.append({"copy_rows_per_s": copy, "api_rows_per_s": api["rows_per_s"],
                         "api_vs_copy": api["rows_per_s"] / copy, "api_p99_ms": api["p99_ms"],
                         "api_non2xx": api["non2xx"], "api_rejected_503": api.get("rejected", 0.0),
                         "load_before": load,
                         "copy_pg_cpu_us_per_row": min(c_rows["pg_cpu_us_per_row"], c_block["pg_cpu_us_per_row"]),
                         "api_server_cpu_us_per_row": api["server_cpu_us_per_req"] / ingest.BATCH,
                         "api_pg_cpu_us_per_row": api["pg_cpu_us_per_req"] / ingest.BATCH,
                         "api_wrk_cpu_us_per_row": api["wrk_cpu_us_per_req"] / ingest.BATCH,
                         "api_rows_per_flush": api.get("rows_per_flush", 0.0)})
        out["ingest_runs"] = runs
        for key in runs[0]:
            out[key] = statistics.median(r[key] for r in runs)
        out["api_vs_copy_min"] = min(r["api_vs_copy"] for r in runs)
        out["api_vs_copy_max"] = max(r["api_vs_copy"] for r in runs)
        ingest.truncate(url)
        # From here the tiers are refreshed and the chunks compressed by hand and measured: no
        # TimescaleDB policy job may run beside them (nor meet the refresh: "concurrent refresh").
        pause_policies(url)
        end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
        chart_devices = devices[:args.chart_devices]
        say(f"[{edition}] 30 days x {len(chart_devices)} devices, one demo-fleet sample a minute")
        rows = fleet_rows(chart_devices, 30, end)
        out["history_rows"] = len(rows)
        out["load_s"] = copy_rows(url, rows)
        out.update(asyncio.run(refresh(url, edition, end)))
        out["raw_bytes_per_sample"] = raw_bytes(url, edition) / len(rows)
        say(f"[{edition}]   refresh {out['refresh_s']:.1f}s; raw {out['raw_bytes_per_sample']:.1f} B/sample; charts")
        out.update(asyncio.run(chart_latency(url, edition, chart_devices[0], end, args.chart_reps)))
        # A 1-day chunk of a running fleet: the other agents' day beside the chart devices' (1,000
        # agents, one sample a minute: 1.44M rows, the size of the 10,000-device, 5-minute day that
        # 0003 sizes the chunks for), sent minute by minute.
        day_end = end.replace(hour=0)  # chunks and partitions are whole UTC days
        day = day_end - timedelta(days=1)
        others = devices[args.chart_devices:][:args.fleet_agents]
        fleet = fleet_day_rows(others, day_end)
        say(f"[{edition}] a fleet day: {len(fleet):,} more samples from {len(others)} agents")
        copy_rows(url, fleet)
        del fleet
        raw = chunk_bytes(url, edition, day, day_end)
        out.update({f"fleet_day_{k}": v for k, v in raw.items()})
        out["fleet_raw_bytes_per_sample"] = raw["total"] / raw["rows"]
        say(f"[{edition}]   fleet day raw {out['fleet_raw_bytes_per_sample']:.1f} B/sample (heap "
            f"{raw['heap'] / raw['rows']:.1f}, indexes {raw['index'] / raw['rows']:.1f})")
        if edition == "tsl":
            comp = compress_all(url, day)
            out.update({f"compression_{k}": v for k, v in comp.items()})
            out["compressed_bytes_per_sample"] = comp["after_bytes"] / len(rows)
            out["fleet_compressed_bytes_per_sample"] = comp["fleet_after_bytes"] / raw["rows"]
            say(f"[{edition}]   compressed: fleet day {comp['fleet_ratio']:.1f}x "
                f"({out['fleet_compressed_bytes_per_sample']:.1f} B/sample), whole table {comp['ratio']:.1f}x; "
                "charts over compressed chunks")
            after = asyncio.run(chart_latency(url, edition, chart_devices[0], end, args.chart_reps))
            out.update({f"compressed_{k}": v for k, v in after.items()})
    return out


def table(results: list[dict[str, Any]]) -> str:
    def f(r: dict[str, Any], key: str, fmt: str) -> str:
        return format(r[key], fmt) if key in r else "-"

    lines = ["| edition | COPY rows/s | API rows/s | API/COPY (min-max) | refresh (30 d) | chart tiers p50/p99 ms | "
             "chart raw p50/p99 ms | raw B/sample (fleet day) | compressed B/sample (ratio) | "
             "raw chart over compressed |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in results:
        comp = (f"{r['fleet_compressed_bytes_per_sample']:.1f} ({r['compression_fleet_ratio']:.1f}x)"
                if "compression_fleet_ratio" in r else "n/a")
        over = (f"{r['compressed_raw_p50_ms']:.1f} / {r['compressed_raw_p99_ms']:.1f}"
                if "compressed_raw_p50_ms" in r else "n/a")
        lines.append(
            f"| {r['edition']} | {f(r, 'copy_rows_per_s', ',.0f')} | {f(r, 'api_rows_per_s', ',.0f')} | "
            f"{f(r, 'api_vs_copy', '.2f')} ({f(r, 'api_vs_copy_min', '.2f')}-{f(r, 'api_vs_copy_max', '.2f')}) | "
            f"{f(r, 'refresh_s', '.1f')} s | "
            f"{f(r, 'tiers_p50_ms', '.1f')} / {f(r, 'tiers_p99_ms', '.1f')} | "
            f"{f(r, 'raw_p50_ms', '.1f')} / {f(r, 'raw_p99_ms', '.1f')} | "
            f"{f(r, 'fleet_raw_bytes_per_sample', '.1f')} | {comp} | {over} |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--editions", default=",".join(EDITIONS))
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=8.0, help="duration of the API phase")
    ap.add_argument("--warmup", type=float, default=2.0,
                    help="seconds of the same load from other agents before each measured API phase")
    ap.add_argument("--ceiling-rows", type=int, default=3_000_000)
    ap.add_argument("--flush-rows", type=int, default=Settings().ingest_flush_rows)
    ap.add_argument("--chart-devices", type=int, default=20)
    ap.add_argument("--chart-reps", type=int, default=50)
    ap.add_argument("--fleet-agents", type=int, default=None,
                    help="agents of the fleet day beside the chart devices (default: all the others, 980)")
    args = ap.parse_args()
    wrk = ingest.ensure_wrk()
    results = [one_edition(localdb.check_edition(e), args, wrk) for e in args.editions.split(",")]
    print(table(results))
    verdicts = {r["edition"]: {"api_vs_copy_meets_65pct": r["api_vs_copy"] >= TARGET_API_VS_COPY,
                               **({"compression_meets_10x": r["compression_fleet_ratio"] >= TARGET_COMPRESSION}
                                  if "compression_fleet_ratio" in r else {})} for r in results}
    RESULTS.write_text(json.dumps({
        "when": datetime.now(UTC).isoformat(), "runs": args.runs, "seconds_per_api_phase": args.seconds,
        "targets": {"api_vs_copy": TARGET_API_VS_COPY, "compression": TARGET_COMPRESSION},
        "results": results, "verdicts": verdicts, "table": table(results),
        "notes": "one machine of 2 cores shared by wrk, the API, PostgreSQL (and other work); medians of runs "
                 "for ingest, p50/p99 over chart_reps for charts",
    }, indent=1, default=str))
    say(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
