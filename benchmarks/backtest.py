"""Backtest time: 30 days x 100 devices x 1 metric rule, and 1 day x 10,000 devices.

Builds its own database on the local server (``rts_bench_backtest_<pid>``, migrated, dropped at
the end unless ``--keep``), loads one sample per ``--interval`` seconds (default 60):

* ``month``: 100 devices in one business, 30 days; every tenth device runs hot (CPU 95) for 30
  minutes at its own time of every day, the rest between 20 and 70 %;
* ``day``: 10,000 devices in one business, 24 hours; 1 % run hot for 30 minutes once.

then brings the rollup tiers up to date (what their refresh jobs do) and, on the TSL edition,
compresses the raw chunks older than 7 days (what its compression policy does). The rule is
``cpu_percent avg > 90 over 10 min``, business-wide. Per scenario and run it measures, side by
side:

* ``backtest``: the service call behind ``POST /api/alerts/rules/backtest`` (tier scan, then the
  instants near non-quiet hours judged from raw rows, in the evaluator's SQL);
* ``all raw``: the same judgement of every instant of the period from raw rows (the tier left
  out): what the backtest would cost without it (``month`` only unless ``--raw-day``);
* how much it read: raw ranges, instants judged, passes.

Medians over ``--runs`` runs of ``--iterations`` calls. The machine is shared: figures are
noisy, the JSON keeps every run and the load average. JSON goes to
``benchmarks/results/backtest.json``.

    .venv/bin/python benchmarks/backtest.py [--runs 3] [--iterations 3] [--interval 60] [--keep]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import uuid4

import msgspec
import psycopg
from psycopg.rows import dict_row
from support import create_db, drop_db, pause_policies, say

from rts_monitor.alerts import backtest
from rts_monitor.alerts.structs import BacktestRequest, BacktestResult
from rts_monitor.auth.principal import Principal, Role
from rts_monitor.core.settings import Settings
from rts_monitor.db import migrations, resolve_database_url
from rts_monitor.tiers import service as tiers_service

RESULTS = Path(__file__).with_name("results") / "backtest.json"
RULE = {"metric": "cpu_percent", "operator": ">", "threshold": 90, "duration_minutes": 10}
STAFF = Principal(user_id=uuid4(), role=Role.admin, business_id=None)
SCENARIOS = {"month": (100, 30 * 24, 10), "day": (10_000, 24, 100)}  # devices, hours, one hot device in N

SETUP_SQL = """
INSERT INTO businesses (business_name) VALUES (%(name)s) RETURNING id
"""
DEVICES_SQL = """
INSERT INTO agent_devices (business_id, device_name, os_type, agent_version, status, last_heartbeat)
SELECT %(biz)s, %(name)s || '-' || i, 'linux', '1.0.0', 'online', now() FROM generate_series(0, %(n)s - 1) i
RETURNING id
"""
# The gauges as the table stores them: scaled integers at the agent's precision (percentages x10,
# GB x1000, load averages x100: ingest/validate.py SCALES, migration 0220).
LOAD_SQL = """
INSERT INTO agent_metrics (agent_device_id, collected_at, cpu_percent_x10, memory_used_gb_x1000, memory_percent_x10,
                           disk_used_gb_x1000, disk_percent_x10, load_average_1m_x100, load_average_5m_x100,
                           load_average_15m_x100, uptime_seconds, network_rx_bytes, network_tx_bytes)
SELECT d.id, t,
       CASE WHEN d.hot AND ((extract(epoch FROM t)::bigint / 60 - d.at) %% 1440) < 30 THEN 950
            ELSE round((20 + random() * 50) * 10)::smallint END,
       8000, round((40 + random() * 30) * 10)::smallint, 200000, round((50 + random() * 20) * 10)::smallint,
       50, 40, 30,
       extract(epoch FROM t)::bigint, 1000000, 2000000
  FROM unnest(%(ids)s::uuid[], %(hot)s::bool[], %(at)s::int[]) AS d(id, hot, at)
 CROSS JOIN generate_series(%(end)s - make_interval(hours => %(hours)s), %(end)s,
                            make_interval(secs => %(interval)s)) t
"""
OLD_CHUNKS_SQL = """
SELECT c AS chunk FROM show_chunks('agent_metrics', older_than => now() - INTERVAL '7 days') c
"""


async def load(url: str, scenario: str, interval: int) -> dict[str, Any]:
    devices, hours, one_in = SCENARIOS[scenario]
    started = time.perf_counter()
    async with await psycopg.AsyncConnection.connect(url, autocommit=True, row_factory=dict_row) as conn:
        biz = (await (await conn.execute(SETUP_SQL, {"name": f"bench-{scenario}"})).fetchone())["id"]  # type: ignore[index]
        cur = await conn.execute(DEVICES_SQL, {"biz": biz, "name": scenario, "n": devices})
        ids = [r["id"] for r in await cur.fetchall()]
        end = (await (await conn.execute("SELECT date_trunc('minute', now()) AS t")).fetchone())["t"]  # type: ignore[index]
        rows = 0
        batch = max(1, 2_000_000 // (hours * 3600 // interval))
        for lo in range(0, devices, batch):
            chunk = ids[lo:lo + batch]
            t0 = time.perf_counter()
            cur = await conn.execute(LOAD_SQL, {
                "ids": chunk, "hot": [(lo + i) % one_in == 3 for i in range(len(chunk))],
                "at": [((lo + i) * 37) % 1380 for i in range(len(chunk))],
                "end": end, "hours": hours, "interval": interval})
            rows += cur.rowcount
            say(f"  {scenario}: devices {lo:>5}-{lo + len(chunk) - 1:<5} {cur.rowcount:>10,} rows in "
                f"{time.perf_counter() - t0:5.1f} s (total {rows:,})")
    return {"business_id": biz, "devices": devices, "hours": hours, "rows": rows,
            "seconds": round(time.perf_counter() - started, 1)}


async def prepare_tiers(url: str, edition: str) -> dict[str, Any]:
    """What the refresh jobs and (TSL) the compression policy would have done by now."""
    started = time.perf_counter()
    async with await psycopg.AsyncConnection.connect(url, autocommit=True, row_factory=dict_row) as conn:
        out = await tiers_service.refresh(conn, edition=edition, start=None, end=None)  # type: ignore[arg-type]
        compressed = 0
        if edition == "tsl":
            for row in await (await conn.execute(OLD_CHUNKS_SQL)).fetchall():
                await conn.execute("SELECT compress_chunk(%s::regclass, if_not_compressed => true)", (row["chunk"],))
                compressed += 1
        await conn.execute("ANALYZE")
    return {"refresh": {k: v for k, v in out.items() if k != "watermarks"}, "compressed_chunks": compressed,
            "seconds": round(time.perf_counter() - started, 1)}


async def one(url: str, settings: Settings, edition: str, business_id: Any, until: datetime, days: float,
              raw: bool) -> tuple[float, BacktestResult]:
    """One backtest of the ``days`` up to ``until``: the same period for every call of a run, so the
    tier and all-raw answers compare (an episode still open ends at ``until``, not at each call's now)."""
    body = {"rule": {"alert_name": "cpu_high", "severity": "warning", "business_id": business_id,
                     "conditions": RULE, "create_ticket": True},
            "since": until - timedelta(days=days), "until": until}
    data = msgspec.convert(body, BacktestRequest)
    async with await psycopg.AsyncConnection.connect(url, autocommit=True, row_factory=dict_row) as conn:
        t0 = time.perf_counter()
        result = await backtest.backtest(conn, principal=STAFF, settings=settings, edition=edition,  # type: ignore[arg-type]
                                         data=data, tiers=not raw)
        ms = (time.perf_counter() - t0) * 1000
    return ms, result


def table(summary: list[dict[str, Any]]) -> str:
    head = (f"{'scenario':>9} {'devices':>8} {'days':>5} {'raw rows':>11} {'backtest':>10} {'target':>8} "
            f"{'all raw':>10} {'episodes':>9} {'affected':>9} {'raw ranges':>11} {'instants':>10} {'passes':>7} "
            f"{'spread':>12}")
    lines = [head, "-" * len(head)]
    for s in summary:
        raw = f"{s['all_raw_ms']:>7.0f} ms" if s.get("all_raw_ms") is not None else f"{'-':>10}"
        lines.append(
            f"{s['scenario']:>9} {s['devices']:>8,} {s['days']:>5g} {s['rows']:>11,} {s['backtest_ms']:>7.0f} ms "
            f"{s['target_ms']:>5} ms {raw} {s['episodes']:>9,} {s['devices_affected']:>9,} {s['raw_ranges']:>11,} "
            f"{s['instants']:>10,} {s['passes']:>7} {s['min_ms']:>5.0f}-{s['max_ms']:<6.0f}")
    return "\n".join(lines)


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--interval", type=int, default=60, help="seconds between samples")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--iterations", type=int, default=3, help="backtests per run and scenario")
    ap.add_argument("--scenarios", default="month,day")
    ap.add_argument("--raw-day", action="store_true", help="also judge every instant of 'day' from raw rows")
    ap.add_argument("--keep", action="store_true", help="keep the database afterwards")
    ap.add_argument("--results", type=Path, default=RESULTS, help="where the JSON goes")
    args = ap.parse_args()
    scenarios = [s for s in args.scenarios.split(",") if s]
    server = resolve_database_url(Settings.from_env())
    name = f"rts_bench_backtest_{os.getpid()}"
    load_before = list(os.getloadavg())
    say(f"creating {name}: {', '.join(scenarios)} at {args.interval} s (load average {load_before[0]:.1f})")
    url = create_db(server, name)
    try:
        edition = migrations.migrate(url).edition
        if edition == "tsl":  # TimescaleDB's own jobs would run mid-measurement; done by hand below
            pause_policies(url)
        loaded = {s: await load(url, s, args.interval) for s in scenarios}
        tiers = await prepare_tiers(url, edition)
        say(f"tiers ready in {tiers['seconds']} s ({tiers['compressed_chunks']} raw chunks compressed)")
        settings = Settings.from_env(database_url=url)
        targets = {"month": 2000, "day": 5000}
        runs: list[dict[str, Any]] = []
        for run in range(args.runs):
            for s in scenarios:
                info = loaded[s]
                days = info["hours"] / 24
                times, raw_times = [], []
                result: BacktestResult | None = None
                until = datetime.now(UTC)
                for _ in range(args.iterations):
                    ms, result = await one(url, settings, edition, info["business_id"], until, days, raw=False)
                    times.append(ms)
                if s == "month" or args.raw_day:
                    ms, raw_result = await one(url, settings, edition, info["business_id"], until, days, raw=True)
                    raw_times.append(ms)
                    assert raw_result.totals == result.totals, "the tier changed the answer"  # type: ignore[union-attr]
                assert result is not None
                r = {"run": run + 1, "scenario": s, "backtest_ms": round(statistics.median(times), 1),
                     "all_raw_ms": round(statistics.median(raw_times), 1) if raw_times else None,
                     "episodes": result.totals.episodes, "devices_affected": result.totals.devices_affected,
                     "raw_ranges": result.reads.raw_ranges, "instants": result.reads.instants,
                     "passes": result.reads.passes, "tier": result.reads.tier, "times_ms": times}
                say(f"run {run + 1}/{args.runs} {s}: {r['backtest_ms']:.0f} ms (all raw {r['all_raw_ms']}), "
                    f"{r['episodes']} episodes on {r['devices_affected']} devices, {r['instants']:,} instants "
                    f"judged in {r['raw_ranges']} raw ranges, {r['passes']} pass(es)")
                runs.append(r)
        summary = []
        for s in scenarios:
            rs = [r for r in runs if r["scenario"] == s]
            raws = [r["all_raw_ms"] for r in rs if r["all_raw_ms"] is not None]
            summary.append({
                "scenario": s, "devices": loaded[s]["devices"], "days": loaded[s]["hours"] / 24,
                "rows": loaded[s]["rows"], "backtest_ms": statistics.median(r["backtest_ms"] for r in rs),
                "target_ms": targets[s], "all_raw_ms": statistics.median(raws) if raws else None,
                "episodes": rs[-1]["episodes"], "devices_affected": rs[-1]["devices_affected"],
                "raw_ranges": rs[-1]["raw_ranges"], "instants": rs[-1]["instants"], "passes": rs[-1]["passes"],
                "min_ms": min(r["backtest_ms"] for r in rs), "max_ms": max(r["backtest_ms"] for r in rs),
                "met": statistics.median(r["backtest_ms"] for r in rs) < targets[s]})
        print()
        print(table(summary))
        print("\n" + "; ".join(f"{s['scenario']}: target < {s['target_ms']} ms {'met' if s['met'] else 'NOT met'}"
                               for s in summary))
        args.results.parent.mkdir(parents=True, exist_ok=True)
        args.results.write_text(json.dumps({
            "benchmark": "backtest", "at": datetime.now(UTC).isoformat(), "edition": edition, "machine": {
                "cpus": os.cpu_count(), "python": sys.version.split()[0], "platform": platform.platform(),
                "loadavg_at_start": load_before, "loadavg_at_end": list(os.getloadavg())},
            "params": {k: str(v) for k, v in vars(args).items()},
            "load": {s: {k: v for k, v in info.items() if k != "business_id"} for s, info in loaded.items()},
            "tiers": tiers, "summary": summary, "runs": runs,
        }, indent=2, default=str))
        say(f"wrote {args.results}")
    finally:
        if not args.keep:
            drop_db(server, name)
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
