"""Alert evaluation cycle time at 1,000 / 5,000 / 10,000 devices x 5 rules, 24 h of data loaded.

Builds its own database on the local server (``rts_bench_alerts_<pid>``, migrated, dropped at the
end unless ``--keep``): 10,000 devices in 100 businesses of 100, one sample per ``--interval``
seconds for the last ``--hours`` hours (generate_series in SQL), 2 monitored services per device,
and 5 business-wide rules per business:

* cpu_percent avg > 90 over 10 min, memory_percent max > 95 over 15 min,
  disk_percent min >= 90 over 30 min (metric rules, raw samples, data time);
* agent_offline after 15 min; service_down after 5 min.

1% of devices run hot (CPU 95 for the last 15 min), 0.5% are silent for an hour, 1% have a
service stopped for an hour, so cycles really open alerts. For each size only the rules of the
first N/100 businesses are active, so the same table is evaluated for N devices x 5 rules.

Per size and run it measures, side by side:

* ``cycle (opens)``: the first full cycle after the rules are activated (opens ~2.5% of pairs);
* ``opens, warm``: the same opening cycle again after deleting those episodes (caches warm);
* ``cycle (steady)``: median of ``--iterations`` further full cycles (nothing changes);
* ``ceiling``: one plain GROUP BY over the same recent raw rows of the same devices (reading the
  data the metric rules need, with no rules, no windows, no writes): what any evaluation costs;
* ``hook (1 device)``: the ingest hook's evaluation of one device's metric rules.

The table shows medians over ``--runs`` runs, ms per 1,000 pairs (linearity) and the ratio of
the steady cycle to the ceiling. JSON goes to ``benchmarks/results/alerts.json``.

    .venv/bin/python benchmarks/alerts.py [--sizes 1000,5000,10000] [--hours 24] [--interval 60] [--runs 3]
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
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row
from support import create_db, drop_db, say

from rts_monitor.alerts import evaluator
from rts_monitor.core.settings import Settings
from rts_monitor.db import migrations, resolve_database_url

RESULTS = Path(__file__).with_name("results") / "alerts.json"
PER_BUSINESS = 100
BATCH_DEVICES = 500

SETUP_SQL = """
CREATE TABLE bench_devices (i integer PRIMARY KEY, id uuid NOT NULL, business_no integer NOT NULL,
                            hot boolean NOT NULL, silent boolean NOT NULL, broken boolean NOT NULL);
INSERT INTO businesses (business_name) SELECT 'bench-' || b FROM generate_series(0, %(businesses)s - 1) b;
INSERT INTO bench_devices (i, id, business_no, hot, silent, broken)
SELECT i, gen_random_uuid(), i / %(per_business)s, i %% 100 = 7, i %% 200 = 13, i %% 100 = 42
  FROM generate_series(0, %(devices)s - 1) i;
INSERT INTO agent_devices (id, business_id, device_name, os_type, agent_version, status, last_heartbeat)
SELECT d.id, b.id, 'bench-dev-' || d.i, 'linux', '1.0.0', 'online',
       CASE WHEN d.silent THEN now() - interval '1 hour' ELSE now() END
  FROM bench_devices d JOIN businesses b ON b.business_name = 'bench-' || d.business_no;
INSERT INTO agent_monitored_services (agent_device_id, service_name, status, should_be_running, last_state_change)
SELECT d.id, s.name, CASE WHEN d.broken AND s.name = 'nginx' THEN 'stopped' ELSE 'running' END, true,
       now() - interval '1 hour'
  FROM bench_devices d CROSS JOIN (VALUES ('nginx'), ('postgresql')) s(name);
INSERT INTO agent_alerts (alert_name, alert_type, severity, business_id, conditions, is_active)
SELECT r.name, r.name, r.severity, b.id, r.conditions::jsonb, false
  FROM businesses b
 CROSS JOIN (VALUES
   ('cpu_high', 'warning', '{"metric":"cpu_percent","operator":">","threshold":90,"duration_minutes":10}'),
   ('memory_high', 'warning',
    '{"metric":"memory_percent","operator":">","threshold":95,"duration_minutes":15,"aggregation":"max"}'),
   ('disk_full', 'critical',
    '{"metric":"disk_percent","operator":">=","threshold":90,"duration_minutes":30,"aggregation":"min"}'),
   ('offline', 'critical', '{"kind":"agent_offline","duration_minutes":15}'),
   ('service_down', 'critical', '{"kind":"service_down","duration_minutes":5}')
 ) r(name, severity, conditions)
 WHERE b.business_name LIKE 'bench-%%';
"""

LOAD_SQL = """
INSERT INTO agent_metrics (agent_device_id, collected_at, cpu_percent, memory_used_gb, memory_percent, disk_used_gb,
                           disk_percent, load_average_1m, load_average_5m, load_average_15m, uptime_seconds,
                           network_rx_bytes, network_tx_bytes)
SELECT d.id, t,
       CASE WHEN d.hot AND t > %(end)s - interval '15 minutes' THEN 95 ELSE 20 + (random() * 50)::real END,
       8, 40 + (random() * 30)::real, 200, 50 + (random() * 20)::real, 0.5, 0.4, 0.3,
       extract(epoch FROM t)::bigint, 1000000, 2000000
  FROM bench_devices d
 CROSS JOIN generate_series(%(end)s - make_interval(hours => %(hours)s), %(end)s,
                            make_interval(secs => %(interval)s)) t
 WHERE d.i >= %(lo)s AND d.i < %(hi)s AND NOT d.silent
"""

CEILING_SQL = """
SELECT m.agent_device_id, count(*), avg(m.cpu_percent), max(m.memory_percent), min(m.disk_percent)
  FROM agent_metrics m
 WHERE m.collected_at >= now() - interval '31 minutes'
   AND m.agent_device_id IN (SELECT id FROM bench_devices WHERE i < %(n)s)
 GROUP BY m.agent_device_id
"""


async def load(url: str, devices: int, hours: int, interval: int) -> dict[str, Any]:
    """Devices, services, rules, then metrics in batches of devices (progress per batch)."""
    started = time.perf_counter()
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        params = {"businesses": devices // PER_BUSINESS, "per_business": PER_BUSINESS, "devices": devices}
        for statement in filter(str.strip, SETUP_SQL.split(";")):
            used = {k: v for k, v in params.items() if f"%({k})s" in statement}
            await conn.execute(statement, used or None)
        end = (await (await conn.execute("SELECT date_trunc('minute', now()) AS t")).fetchone())[0]  # type: ignore[index]
        rows = 0
        for lo in range(0, devices, BATCH_DEVICES):
            t0 = time.perf_counter()
            cur = await conn.execute(LOAD_SQL, {"end": end, "hours": hours, "interval": interval, "lo": lo,
                                                "hi": lo + BATCH_DEVICES})
            rows += cur.rowcount
            dt = time.perf_counter() - t0
            say(f"  loaded devices {lo:>5}-{lo + BATCH_DEVICES - 1:<5} {cur.rowcount:>9,} rows in {dt:5.1f} s "
                f"({cur.rowcount / dt:,.0f} rows/s; total {rows:,})")
        await conn.execute("ANALYZE")
    return {"rows": rows, "seconds": round(time.perf_counter() - started, 1)}


async def activate(conn: psycopg.AsyncConnection[Any], n: int) -> None:
    """Rules of the first n/100 businesses on, the rest off; no episodes left from the last size."""
    await conn.execute("DELETE FROM agent_alert_history")
    await conn.execute(
        "UPDATE agent_alerts r SET is_active = (b.business_name IN (SELECT 'bench-' || g FROM "
        "generate_series(0, %s - 1) g)), trigger_count = 0 FROM businesses b WHERE b.id = r.business_id",
        (n // PER_BUSINESS,))


async def timed(coro: Any) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = await coro
    return (time.perf_counter() - t0) * 1000, out


async def _fetch_all(conn: psycopg.AsyncConnection[Any], query: str, params: dict[str, Any]) -> list[Any]:
    return await (await conn.execute(query, params)).fetchall()


async def measure_size(url: str, settings: Settings, n: int, iterations: int) -> dict[str, Any]:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True, row_factory=dict_row) as conn:
        await activate(conn, n)
        first_ms, first = await timed(evaluator.evaluate(conn, settings))
        # The same opening cycle again, now that rules and devices are cached: what a cycle that
        # opens ~2.5% of its pairs costs in steady operation.
        await conn.execute("DELETE FROM agent_alert_history")
        again_ms, _ = await timed(evaluator.evaluate(conn, settings))
        steady = []
        for _ in range(iterations):
            ms, res = await timed(evaluator.evaluate(conn, settings))
            assert not res.opened, "a steady cycle opened alerts"
            steady.append(ms)
        ceiling = []
        for _ in range(iterations):
            ms, _ = await timed(_fetch_all(conn, CEILING_SQL, {"n": n}))
            ceiling.append(ms)
        cur = await conn.execute("SELECT id FROM bench_devices WHERE hot AND i < %s LIMIT 1", (n,))
        hot = (await cur.fetchone())["id"]  # type: ignore[index]
        hook = []
        for _ in range(iterations):
            ms, _ = await timed(evaluator.evaluate(conn, settings, devices=[hot], kinds=("metric",)))
            hook.append(ms)
    return {"devices": n, "pairs": first.pairs, "opened_first_cycle": len(first.opened),
            "cycle_opens_ms": round(first_ms, 1), "cycle_opens_warm_ms": round(again_ms, 1),
            "cycle_steady_ms": round(statistics.median(steady), 1),
            "ceiling_ms": round(statistics.median(ceiling), 1), "hook_1_device_ms": round(statistics.median(hook), 2)}


def table(summary: list[dict[str, Any]]) -> str:
    head = (f"{'devices':>8} {'pairs':>7} {'opened':>7} {'cycle(opens)':>13} {'opens,warm':>11} {'cycle(steady)':>14} "
            f"{'ceiling':>9} {'steady/ceil':>12} {'ms/1k pairs':>12} {'hook(1 dev)':>12} {'spread':>14}")
    lines = [head, "-" * len(head)]
    for s in summary:
        lines.append(
            f"{s['devices']:>8,} {s['pairs']:>7,} {s['opened_first_cycle']:>7,} {s['cycle_opens_ms']:>10.1f} ms "
            f"{s['cycle_opens_warm_ms']:>8.1f} ms "
            f"{s['cycle_steady_ms']:>11.1f} ms {s['ceiling_ms']:>6.1f} ms {s['steady_to_ceiling']:>11.1f}x "
            f"{s['steady_ms_per_1k_pairs']:>12.2f} {s['hook_1_device_ms']:>9.2f} ms "
            f"{s['steady_min_ms']:>6.0f}-{s['steady_max_ms']:<6.0f}")
    return "\n".join(lines)


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1000,5000,10000")
    ap.add_argument("--hours", type=int, default=24)
    ap.add_argument("--interval", type=int, default=60, help="seconds between samples")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--iterations", type=int, default=5, help="steady cycles / ceiling queries per run")
    ap.add_argument("--keep", action="store_true", help="keep the database afterwards")
    ap.add_argument("--results", type=Path, default=RESULTS, help="where the JSON goes")
    args = ap.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(","))
    devices = max(sizes)
    server = resolve_database_url(Settings.from_env())
    name = f"rts_bench_alerts_{os.getpid()}"
    load_before = list(os.getloadavg())  # the machine is shared: record how busy it was
    say(f"creating {name}: {devices:,} devices x 5 rules, {args.hours} h at {args.interval} s "
        f"(load average {load_before[0]:.1f})")
    url = create_db(server, name)
    try:
        migrations.migrate(url)
        loaded = await load(url, devices, args.hours, args.interval)
        say(f"loaded {loaded['rows']:,} metric rows in {loaded['seconds']} s")
        settings = Settings.from_env(database_url=url)
        runs: list[list[dict[str, Any]]] = []
        for run in range(args.runs):
            per_size = []
            for n in sizes:
                r = await measure_size(url, settings, n, args.iterations)
                say(f"run {run + 1}/{args.runs} {n:>6,} devices: opens {r['cycle_opens_ms']:.0f} ms, steady "
                    f"{r['cycle_steady_ms']:.0f} ms, ceiling {r['ceiling_ms']:.0f} ms, hook {r['hook_1_device_ms']} ms")
                per_size.append(r)
            runs.append(per_size)
        summary = []
        for i, n in enumerate(sizes):
            rs = [run[i] for run in runs]
            s: dict[str, Any] = {"devices": n, "pairs": rs[0]["pairs"],
                                 "opened_first_cycle": rs[0]["opened_first_cycle"]}
            for key in ("cycle_opens_ms", "cycle_opens_warm_ms", "cycle_steady_ms", "ceiling_ms", "hook_1_device_ms"):
                s[key] = round(statistics.median(r[key] for r in rs), 2)
            s["steady_min_ms"] = min(r["cycle_steady_ms"] for r in rs)
            s["steady_max_ms"] = max(r["cycle_steady_ms"] for r in rs)
            s["steady_to_ceiling"] = round(s["cycle_steady_ms"] / max(s["ceiling_ms"], 0.001), 2)
            s["steady_ms_per_1k_pairs"] = round(s["cycle_steady_ms"] / (s["pairs"] / 1000), 3)
            summary.append(s)
        print()
        print(table(summary))
        target = summary[-1]
        verdict = {"target_ms": 1000, "at_devices": target["devices"],
                   "worst_cycle_ms": max(target["cycle_opens_ms"], target["cycle_steady_ms"]),
                   "met": max(target["cycle_opens_ms"], target["cycle_steady_ms"]) < 1000,
                   "growth_1k_to_max_per_pair": round(summary[-1]["steady_ms_per_1k_pairs"]
                                                      / summary[0]["steady_ms_per_1k_pairs"], 2)}
        print(f"\ntarget < 1000 ms per cycle at {target['devices']:,} devices: "
              f"{'met' if verdict['met'] else 'NOT met'} (worst {verdict['worst_cycle_ms']:.0f} ms); "
              f"per-pair cost at max size / at min size = {verdict['growth_1k_to_max_per_pair']}x")
        args.results.parent.mkdir(parents=True, exist_ok=True)
        args.results.write_text(json.dumps({
            "benchmark": "alerts", "at": datetime.now(UTC).isoformat(), "machine": {
                "cpus": os.cpu_count(), "python": sys.version.split()[0], "platform": platform.platform(),
                "loadavg_at_start": load_before, "loadavg_at_end": list(os.getloadavg())},
            "params": {k: str(v) for k, v in vars(args).items()}, "load": loaded, "summary": summary,
            "verdict": verdict, "runs": runs,
        }, indent=2))
        say(f"wrote {args.results}")
    finally:
        if not args.keep:
            drop_db(server, name)
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
