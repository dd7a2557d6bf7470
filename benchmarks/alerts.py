"""Alert evaluation cycle time at 1,000 / 5,000 / 10,000 devices x 5 rules, 24 h of data loaded:
full cycles against incremental ones.

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
* ``full``: a full cycle after one more minute of samples from every device (what every periodic
  cycle cost before incremental cycles: every device judged);
* ``incr``: an incremental cycle after one more minute of samples whose ingest hooks ran (the
  steady state: the hooks judged the new samples as they arrived, the cycle judges what changed
  since, plus the wall-clock rules agent_offline and service_down);
* ``incr, no hooks``: an incremental cycle after a minute whose hooks did not run (every device
  due: the worst case, about a full cycle);
* ``hooks/min``: the ingest hooks of that minute, in flushes of ``--flush-devices`` devices
  (their total and per device);
* ``ceiling``: one plain GROUP BY over the same recent raw rows of the same devices (reading the
  data the metric rules need, with no rules, no windows, no writes): what a full read costs;
* ``hook (1 device)``: the ingest hook's evaluation of one device's metric rules.

A "minute" here is one more sample per device, one minute after the previous one (time is
simulated; the data-staleness horizon is raised to cover the run). The table shows medians over
``--runs`` runs of ``--iterations`` minutes each. The machine is shared: figures are noisy, the
JSON keeps every run and the load average. JSON goes to ``benchmarks/results/alerts.json``.

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
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row
from support import create_db, drop_db, say

from rts_monitor.alerts import evaluator
from rts_monitor.core.settings import Settings
from rts_monitor.db import migrations, resolve_database_url

RESULTS = Path(__file__).with_name("results") / "alerts.json"
PAUSE_POLICIES = ("SELECT alter_job(job_id, scheduled => false) FROM timescaledb_information.jobs "
                  "WHERE proc_name LIKE 'policy%'")
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

# The gauges as the table stores them: scaled integers at the agent's precision (percentages x10,
# GB x1000, load averages x100: ingest/validate.py SCALES, migration 0220).
LOAD_SQL = """
INSERT INTO agent_metrics (agent_device_id, collected_at, cpu_percent_x10, memory_used_gb_x1000, memory_percent_x10,
                           disk_used_gb_x1000, disk_percent_x10, load_average_1m_x100, load_average_5m_x100,
                           load_average_15m_x100, uptime_seconds, network_rx_bytes, network_tx_bytes)
SELECT d.id, t,
       CASE WHEN d.hot AND t > %(end)s - interval '15 minutes' THEN 950
            ELSE round((20 + random() * 50) * 10)::smallint END,
       8000, round((40 + random() * 30) * 10)::smallint, 200000, round((50 + random() * 20) * 10)::smallint,
       50, 40, 30,
       extract(epoch FROM t)::bigint, 1000000, 2000000
  FROM bench_devices d
 CROSS JOIN generate_series(%(end)s - make_interval(hours => %(hours)s), %(end)s,
                            make_interval(secs => %(interval)s)) t
 WHERE d.i >= %(lo)s AND d.i < %(hi)s AND NOT d.silent
"""

NEXT_MINUTE_SQL = """
WITH ins AS (
    INSERT INTO agent_metrics (agent_device_id, collected_at, cpu_percent_x10, memory_used_gb_x1000,
                               memory_percent_x10, disk_used_gb_x1000, disk_percent_x10, load_average_1m_x100,
                               load_average_5m_x100, load_average_15m_x100, uptime_seconds, network_rx_bytes,
                               network_tx_bytes)
    SELECT d.id, %(at)s, CASE WHEN d.hot THEN 950 ELSE round((20 + random() * 50) * 10)::smallint END, 8000,
           round((40 + random() * 30) * 10)::smallint, 200000, round((50 + random() * 20) * 10)::smallint,
           50, 40, 30,
           extract(epoch FROM %(at)s::timestamptz)::bigint, 1000000, 2000000
      FROM bench_devices d
     WHERE d.i < %(n)s AND NOT d.silent
    RETURNING agent_device_id
)
-- as an ingest flush: the samples and the device's last_metrics_received, in one transaction
UPDATE agent_devices a SET last_metrics_received = now() FROM ins WHERE a.id = ins.agent_device_id
"""

CEILING_SQL = """
SELECT m.agent_device_id, count(*), avg(m.cpu_percent), max(m.memory_percent), min(m.disk_percent)
  FROM agent_metric_values m
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


async def measure_size(url: str, settings: Settings, n: int, iterations: int, flush_devices: int,
                       clock: list[datetime]) -> dict[str, Any]:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True, row_factory=dict_row) as conn:
        await activate(conn, n)
        first_ms, first = await timed(evaluator.evaluate(conn, settings))
        # The same opening cycle again, now that rules and devices are cached: what a cycle that
        # opens ~2.5% of its pairs costs in steady operation.
        await conn.execute("DELETE FROM agent_alert_history")
        again_ms, _ = await timed(evaluator.evaluate(conn, settings))
        cur = await conn.execute("SELECT id FROM bench_devices WHERE i < %s AND NOT silent ORDER BY i", (n,))
        devices = [r["id"] for r in await cur.fetchall()]

        async def next_minute() -> None:
            clock[0] += timedelta(minutes=1)
            await conn.execute(NEXT_MINUTE_SQL, {"at": clock[0], "n": n})

        full, incr, incr_cold, incr_idle, hooks = [], [], [], [], []
        for _ in range(iterations):
            await next_minute()
            ms, res = await timed(evaluator.evaluate(conn, settings))
            assert not res.opened, "a steady full cycle opened alerts"
            full.append(ms)
            await next_minute()
            t0 = time.perf_counter()
            for i in range(0, len(devices), flush_devices):  # what ingest's after-commit hook does
                await evaluator.evaluate(conn, settings, devices=devices[i:i + flush_devices], kinds=("metric",))
            hooks.append((time.perf_counter() - t0) * 1000)
            ms, res = await timed(evaluator.evaluate(conn, settings, incremental=True))
            assert not res.opened, "a steady incremental cycle opened alerts"
            incr.append(ms)
            incr_pairs = res.pairs
            ms, _ = await timed(evaluator.evaluate(conn, settings, incremental=True))
            incr_idle.append(ms)
            await next_minute()
            ms, _ = await timed(evaluator.evaluate(conn, settings, incremental=True))
            incr_cold.append(ms)
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
    med = statistics.median
    return {"devices": n, "pairs": first.pairs, "opened_first_cycle": len(first.opened),
            "cycle_opens_ms": round(first_ms, 1), "cycle_opens_warm_ms": round(again_ms, 1),
            "full_ms": round(med(full), 1), "incremental_ms": round(med(incr), 1),
            "incremental_pairs": incr_pairs, "incremental_idle_ms": round(med(incr_idle), 1),
            "incremental_no_hooks_ms": round(med(incr_cold), 1),
            "hooks_per_minute_ms": round(med(hooks), 1),
            "hook_per_device_ms": round(med(hooks) / max(len(devices), 1), 3),
            "ceiling_ms": round(med(ceiling), 1), "hook_1_device_ms": round(med(hook), 2)}


def table(summary: list[dict[str, Any]]) -> str:
    head = (f"{'devices':>8} {'pairs':>7} {'opened':>7} {'cycle(opens)':>13} {'full':>10} {'incr':>9} "
            f"{'incr/full':>9} {'incr,no hooks':>14} {'hooks/min':>10} {'per dev':>8} {'ceiling':>9} "
            f"{'hook(1 dev)':>12} {'incr spread':>12}")
    lines = [head, "-" * len(head)]
    for s in summary:
        lines.append(
            f"{s['devices']:>8,} {s['pairs']:>7,} {s['opened_first_cycle']:>7,} {s['cycle_opens_ms']:>10.1f} ms "
            f"{s['full_ms']:>7.1f} ms {s['incremental_ms']:>6.1f} ms {s['incremental_to_full']:>9.2f} "
            f"{s['incremental_no_hooks_ms']:>11.1f} ms {s['hooks_per_minute_ms']:>7.0f} ms "
            f"{s['hook_per_device_ms']:>8.3f} {s['ceiling_ms']:>6.1f} ms {s['hook_1_device_ms']:>9.2f} ms "
            f"{s['incremental_min_ms']:>5.0f}-{s['incremental_max_ms']:<6.0f}")
    return "\n".join(lines)


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1000,5000,10000")
    ap.add_argument("--hours", type=int, default=24)
    ap.add_argument("--interval", type=int, default=60, help="seconds between samples")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--iterations", type=int, default=5, help="simulated minutes / ceiling queries per run")
    ap.add_argument("--flush-devices", type=int, default=100, help="devices per ingest flush (one hook call)")
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
        result = migrations.migrate(url)
        if result.edition == "tsl":  # TimescaleDB's own jobs (refresh, compression) would run mid-measurement
            async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
                await conn.execute(PAUSE_POLICIES)
        loaded = await load(url, devices, args.hours, args.interval)
        say(f"loaded {loaded['rows']:,} metric rows in {loaded['seconds']} s")
        # Simulated minutes run ahead of the wall clock: keep the whole run within the stale horizon.
        settings = Settings.from_env(database_url=url).with_(alert_data_stale_seconds=6 * 3600)
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            row = await (await conn.execute("SELECT max(collected_at) FROM agent_metrics")).fetchone()
        clock = [row[0]]  # type: ignore[index]
        runs: list[list[dict[str, Any]]] = []
        for run in range(args.runs):
            per_size = []
            for n in sizes:
                r = await measure_size(url, settings, n, args.iterations, args.flush_devices, clock)
                say(f"run {run + 1}/{args.runs} {n:>6,} devices: opens {r['cycle_opens_ms']:.0f} ms, full "
                    f"{r['full_ms']:.0f} ms, incremental {r['incremental_ms']:.0f} ms "
                    f"({r['incremental_pairs']} pairs), "
                    f"no hooks {r['incremental_no_hooks_ms']:.0f} ms, hooks {r['hooks_per_minute_ms']:.0f} ms/min, "
                    f"ceiling {r['ceiling_ms']:.0f} ms")
                per_size.append(r)
            runs.append(per_size)
        summary = []
        for i, n in enumerate(sizes):
            rs = [run[i] for run in runs]
            s: dict[str, Any] = {"devices": n, "pairs": rs[0]["pairs"],
                                 "opened_first_cycle": rs[0]["opened_first_cycle"]}
            for key in ("cycle_opens_ms", "cycle_opens_warm_ms", "full_ms", "incremental_ms", "incremental_idle_ms",
                        "incremental_no_hooks_ms", "hooks_per_minute_ms", "hook_per_device_ms", "ceiling_ms",
                        "hook_1_device_ms", "incremental_pairs"):
                s[key] = round(statistics.median(r[key] for r in rs), 3)
            s["incremental_min_ms"] = min(r["incremental_ms"] for r in rs)
            s["incremental_max_ms"] = max(r["incremental_ms"] for r in rs)
            s["incremental_to_full"] = round(s["incremental_ms"] / max(s["full_ms"], 0.001), 3)
            s["full_ms_per_1k_pairs"] = round(s["full_ms"] / (s["pairs"] / 1000), 3)
            summary.append(s)
        print()
        print(table(summary))
        target = summary[-1]
        verdict = {"target_ms": 150, "at_devices": target["devices"], "incremental_ms": target["incremental_ms"],
                   "full_ms": target["full_ms"], "met": target["incremental_ms"] < 150,
                   "speedup": round(target["full_ms"] / max(target["incremental_ms"], 0.001), 1)}
        print(f"\ntarget: steady incremental cycle < 150 ms at {target['devices']:,} devices x 5 rules: "
              f"{'met' if verdict['met'] else 'NOT met'} ({target['incremental_ms']:.0f} ms; the full cycle "
              f"{target['full_ms']:.0f} ms, {verdict['speedup']}x)")
        args.results.parent.mkdir(parents=True, exist_ok=True)
        args.results.write_text(json.dumps({
            "benchmark": "alerts", "at": datetime.now(UTC).isoformat(), "edition": result.edition, "machine": {
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
