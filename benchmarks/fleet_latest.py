"""Fleet list latency at 10,000 agents: does the latest-metrics lookup scan history?

One run builds its own database on the local server (migrated, then dropped at the end):
10,000 agents in 100 businesses, hourly metric rows for ``--days`` days (1-day chunks), 5% of
agents with no metrics and 5% whose last row is older than the lookback. It then measures, side
by side, for a page of 100 agents (first page, and a page reached by cursor):

* ``ours``: the fleet-page query of ``GET /api/agents`` (page first, then a LATERAL
  ``ORDER BY collected_at DESC LIMIT 1`` per agent, bounded by the lookback);
* ``ceiling``: the same page without any metrics (the best a metrics lookup could cost: zero);
* ``distinct_on_page``: the naive way, ``DISTINCT ON`` over the page agents' whole history;
* ``distinct_on_all``: latest row of every agent over all time, then the page (fewer loops);
* ``http``: ``GET /api/agents?limit=100`` through a real ``rts-monitor serve`` process.

For each run it records the median latency of each path; the table shows the median of the
runs, the spread, the ratio to the ceiling, and (from EXPLAIN ANALYZE) how many metric rows and
chunks each path touched. JSON goes to ``benchmarks/results/fleet_latest.json``.

    .venv/bin/python benchmarks/fleet_latest.py [--agents 10000] [--days 10] [--runs 5] [--iterations 40]
        [--out benchmarks/results/fleet_latest.json]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import psycopg
from psycopg.rows import dict_row
from support import start_api

from rts_monitor.auth import portal
from rts_monitor.core.settings import Settings
from rts_monitor.db import migrations, resolve_database_url
from rts_monitor.devices import service
from rts_monitor.devtools import apiprocess

RESULTS = Path(__file__).parent / "results" / "fleet_latest.json"
PAGE = 100
EXPLAIN_COLS = ["metric_rows_read", "chunks_scanned", "chunk_probes", "plan_ms", "exec_ms"]
LOOKBACK_HOURS = Settings().latest_metrics_lookback_hours

CEILING_SQL = """
SELECT d.id, d.device_name, d.status, b.business_name, l.location_name
  FROM agent_devices d
  JOIN businesses b ON b.id = d.business_id
  LEFT JOIN service_locations l ON l.id = d.service_location_id
 WHERE d.soft_delete = false AND (%(after)s::text IS NULL OR d.device_name > %(after)s::text)
 ORDER BY d.device_name, d.id
 LIMIT %(limit)s
"""
DISTINCT_ON_PAGE_SQL = """
WITH page AS (
    SELECT d.id, d.device_name FROM agent_devices d
     WHERE d.soft_delete = false AND (%(after)s::text IS NULL OR d.device_name > %(after)s::text)
     ORDER BY d.device_name, d.id LIMIT %(limit)s
), latest AS (
    SELECT DISTINCT ON (agent_device_id) agent_device_id, cpu_percent, memory_percent, disk_percent
      FROM agent_metric_values WHERE agent_device_id IN (SELECT id FROM page)
     ORDER BY agent_device_id, collected_at DESC
)
SELECT p.*, l.* FROM page p LEFT JOIN latest l ON l.agent_device_id = p.id ORDER BY p.device_name, p.id
"""
DISTINCT_ON_ALL_SQL = """
WITH latest AS (
    SELECT DISTINCT ON (agent_device_id) agent_device_id, cpu_percent, memory_percent, disk_percent
      FROM agent_metric_values ORDER BY agent_device_id, collected_at DESC
)
SELECT d.id, d.device_name, l.* FROM agent_devices d LEFT JOIN latest l ON l.agent_device_id = d.id
 WHERE d.soft_delete = false AND (%(after)s::text IS NULL OR d.device_name > %(after)s::text)
 ORDER BY d.device_name, d.id LIMIT %(limit)s
"""


def progress(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def with_dbname(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path="/" + name))


def build(url: str, agents: int, days: int) -> None:
    """Businesses, locations, agents and hourly metrics, generated server-side."""
    with psycopg.connect(url, autocommit=True) as c:
        c.execute("INSERT INTO businesses (business_name) SELECT 'Biz ' || lpad(i::text, 3, '0') "
                  "FROM generate_series(1, 100) i")
        c.execute("INSERT INTO service_locations (business_id, location_name) "
                  "SELECT b.id, 'Site ' || s FROM businesses b, generate_series(1, 2) s")
        c.execute("""
            INSERT INTO agent_devices (business_id, service_location_id, device_name, os_type, agent_version,
                                       hostname, status, last_heartbeat)
            SELECT l.business_id, l.id, 'dev-' || lpad(i::text, 5, '0'), 'linux', '1.0.0', 'host-' || i,
                   (ARRAY['online', 'offline', 'error'])[1 + i %% 3], now() - (i %% 600) * interval '1 second'
              FROM generate_series(1, %s) i
              JOIN LATERAL (SELECT id, business_id FROM service_locations
                             ORDER BY id OFFSET (i %% 200) LIMIT 1) l ON true
        """, (agents,))
        progress(f"  {agents} agents; inserting {days} days of hourly metrics ...")
        started = time.monotonic()
        # 90%: hourly rows up to a few minutes ago; 5%: none; 5%: last row older than the lookback.
        # The gauges as stored: scaled integers at the agent's precision (ingest/validate.py SCALES).
        c.execute("""
            INSERT INTO agent_metrics (agent_device_id, collected_at, cpu_percent_x10, memory_percent_x10,
                                       disk_percent_x10, memory_used_gb_x1000, disk_used_gb_x1000)
            SELECT d.id, ts, round(random() * 1000), round(random() * 1000), round(random() * 1000), 8000, 400000
              FROM (SELECT id, row_number() OVER (ORDER BY id) AS n FROM agent_devices) d
             CROSS JOIN LATERAL generate_series(
                   now() - %(days)s * interval '1 day',
                   CASE WHEN d.n %% 20 = 1 THEN now() - (%(lookback)s + 24) * interval '1 hour'
                        ELSE now() - interval '3 minutes' END,
                   interval '1 hour') ts
             WHERE d.n %% 20 <> 0
        """, {"days": days, "lookback": LOOKBACK_HOURS})
        rows = c.execute("SELECT count(*) FROM agent_metrics").fetchone()[0]  # type: ignore[index]
        chunks = c.execute("SELECT count(*) FROM show_chunks('agent_metrics')").fetchone()[0]  # type: ignore[index]
        progress(f"  {rows:,} metric rows in {chunks} chunks ({time.monotonic() - started:.1f}s); ANALYZE")
        c.execute("ANALYZE")


def ours_sql() -> str:
    sql, _ = service._page_query("device_name")
    return sql


def ours_params(after: tuple[str, Any] | None) -> dict[str, Any]:
    return {"scope": None, "business_id": None, "location_id": None, "statuses": None, "q": None,
            "after_key": after[0] if after else None, "after_id": after[1] if after else None,
            "limit": PAGE + 1, "lookback_hours": LOOKBACK_HOURS}


def timed(fn: Callable[[], Any], iterations: int) -> list[float]:
    out = []
    for _ in range(iterations):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000)
    return out


def metric_rows_touched(c: psycopg.Connection[Any], sql: str, params: dict[str, Any]) -> dict[str, Any]:
    """Metric rows read, chunks scanned, chunk index probes, planning/execution ms (EXPLAIN ANALYZE)."""
    out = c.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + sql, params).fetchone()["QUERY PLAN"][0]  # type: ignore[index]
    rows, probes, chunks = 0, 0, set()

    def walk(node: dict[str, Any]) -> None:
        nonlocal rows, probes
        rel = node.get("Relation Name", "")
        if rel.startswith("_hyper_") and node.get("Actual Loops", 0) > 0:
            rows += int(node.get("Actual Rows", 0) * node["Actual Loops"])
            probes += int(node["Actual Loops"])
            chunks.add(rel)
        for child in node.get("Plans", []):
            walk(child)

    walk(out["Plan"])
    return {"metric_rows_read": rows, "chunks_scanned": len(chunks), "chunk_probes": probes,
            "plan_ms": round(out["Planning Time"], 2), "exec_ms": round(out["Execution Time"], 2)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--agents", type=int, default=10_000)
    ap.add_argument("--days", type=int, default=10)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--iterations", type=int, default=40, help="timed executions per path per run")
    ap.add_argument("--keep", action="store_true", help="keep the benchmark database")
    ap.add_argument("--out", type=Path, default=RESULTS, help="JSON results path")
    args = ap.parse_args()

    server_url = resolve_database_url(Settings.from_env())
    name = f"rts_bench_fleet_{os.getpid()}"
    admin_url = with_dbname(server_url, "postgres")
    with psycopg.connect(admin_url, autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    url = with_dbname(server_url, name)
    proc = None
    try:
        progress(f"database {name}: migrating")
        migrations.migrate(url)
        build(url, args.agents, args.days)
        secret = secrets.token_urlsafe(32)
        log_dir = Path(f"/tmp/{name}")
        log_dir.mkdir(exist_ok=True)
        proc, base = start_api(url, log_dir, {"RTS_JWT_SECRET": secret, "RTS_SCHEDULER_ENABLED": "0"})
        token = portal.mint(Settings(jwt_secret=secret), role="admin")
        http = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=30)

        with psycopg.connect(url, autocommit=True, row_factory=dict_row) as c:
            sql = ours_sql()
            first = c.execute(sql, ours_params(None)).fetchall()
            mid = c.execute("SELECT device_name, id FROM agent_devices ORDER BY device_name, id OFFSET %s LIMIT 1",
                            (args.agents // 2,)).fetchone()
            assert mid is not None
            pages: dict[str, tuple[Any, Any]] = {"first": (None, None),
                                                 "middle": ((mid["device_name"], mid["id"]), mid["device_name"])}
            assert len(first) == PAGE + 1
            # Sanity: ours and the naive query agree on the numbers they show.
            naive = {r["id"]: r["cpu_percent"] for r in
                     c.execute(DISTINCT_ON_PAGE_SQL, {"after": None, "limit": PAGE}).fetchall()}
            agree = sum(1 for r in first[:PAGE] if r["metrics_collected_at"] and naive[r["id"]] == r["cpu_percent"])
            shown = sum(1 for r in first[:PAGE] if r["metrics_collected_at"])
            progress(f"ours shows metrics for {shown}/{PAGE} agents of page 1; {agree} equal to DISTINCT ON")
            assert agree == shown

            paths: dict[str, Callable[[str], Callable[[], Any]]] = {
                "ours": lambda p: lambda: c.execute(sql, ours_params(pages[p][0])).fetchall(),
                "ceiling": lambda p: lambda: c.execute(CEILING_SQL, {"after": pages[p][1], "limit": PAGE}).fetchall(),
                "distinct_on_page": lambda p: lambda: c.execute(
                    DISTINCT_ON_PAGE_SQL, {"after": pages[p][1], "limit": PAGE}).fetchall(),
                "distinct_on_all": lambda p: lambda: c.execute(
                    DISTINCT_ON_ALL_SQL, {"after": pages[p][1], "limit": PAGE}).fetchall(),
                "http": lambda p: lambda: http.get("/api/agents", params={"limit": PAGE} | (
                    {"cursor": service._encode_cursor("device_name", str(pages[p][0][0]), pages[p][0][1])}
                    if pages[p][0] else {})).raise_for_status(),
            }
            touched = {
                "ours": metric_rows_touched(c, sql, ours_params(None)),
                "ceiling": metric_rows_touched(c, CEILING_SQL, {"after": None, "limit": PAGE}),
                "distinct_on_page": metric_rows_touched(c, DISTINCT_ON_PAGE_SQL, {"after": None, "limit": PAGE}),
                "distinct_on_all": metric_rows_touched(c, DISTINCT_ON_ALL_SQL, {"after": None, "limit": PAGE}),
            }
            samples: dict[str, list[float]] = {}
            for run in range(args.runs):
                for page in pages:
                    for path, make in paths.items():
                        n = max(2, args.iterations // 10) if path == "distinct_on_all" else args.iterations
                        fn = make(page)
                        fn()  # warm
                        samples.setdefault(f"{path}/{page}", []).append(statistics.median(timed(fn, n)))
                progress(f"run {run + 1}/{args.runs}: " + ", ".join(
                    f"{k}={v[-1]:.2f}ms" for k, v in samples.items() if k.endswith("/first")))
        http.close()
    finally:
        if proc is not None:
            apiprocess.stop(proc)
        if not args.keep:
            with psycopg.connect(admin_url, autocommit=True) as c:
                c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    table = []
    for key, runs in samples.items():
        path, page = key.split("/")
        ceiling = statistics.median(samples[f"ceiling/{page}"])
        med = statistics.median(runs)
        explain = touched.get(path, {}) if page == "first" else {}
        table.append({"path": path, "page": page, "median_ms": round(med, 3), "min_ms": round(min(runs), 3),
                      "max_ms": round(max(runs), 3), "x_ceiling": round(med / ceiling, 2),
                      **{k: explain.get(k, "") for k in EXPLAIN_COLS}})
    cols = ["path", "page", "median_ms", "min_ms", "max_ms", "x_ceiling", *EXPLAIN_COLS]
    widths = {col: max(len(col), *(len(str(r[col])) for r in table)) for col in cols}
    print("  ".join(col.ljust(widths[col]) for col in cols))
    for r in table:
        print("  ".join(str(r[col]).ljust(widths[col]) for col in cols))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "benchmark": "fleet_latest", "agents": args.agents, "days": args.days, "page": PAGE, "runs": args.runs,
        "iterations": args.iterations, "lookback_hours": LOOKBACK_HOURS, "when": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                                              time.gmtime()),
        "results": table, "samples_ms": samples,
    }, indent=2))
    progress(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
