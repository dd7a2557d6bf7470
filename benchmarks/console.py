"""The operator console in a real browser at 10,000 agents: fleet page, 30-day charts, live latency.

Builds its own database on the local server (migrated, dropped at the end unless ``--keep``):
10,000 agents in 100 businesses x 2 locations, hourly samples of the last two days for all of
them (the fleet's latest values), 2% with an open alert, and one device ("bench-device") with a
sample every 5 minutes for 31 days; the rollup tiers are built by the real refresh code. Then it
starts two ``rts-monitor serve`` processes (A and B, scheduler off) and Debian's Chromium
(Playwright), signs in as MSP staff through the portal hand-off and measures, per run:

* fleet page, in a fresh browser context each time (nothing cached): first useful render (the
  first contentful paint: the rows are in the HTML, so the first paint is the table), the
  script's readiness, the server's answer time, and every request the page made (counted: one
  per page, never one per row). Views: first page of all 10,000 grouped by business and
  location, one business, a search, page 50 sorted by last seen;
* device page, 30-day range: per chart, the history request's time and the time until uPlot has
  drawn (``window.rtsConsole.charts[name].timing``), the five charts loading together as they do
  on the page;
* live latency: samples POSTed through the ingest API of A while the device page listens on A
  (same instance) or on B (another instance: PostgreSQL NOTIFY carries it), from the moment the
  request is sent to the moment the page has shown it (same machine clock), with the ingest
  request's own answer time beside it.

Prints progress and a table of medians over the runs (p50/p99 for latencies) and writes
``benchmarks/results/console.json``.

    .venv/bin/python benchmarks/console.py [--agents 10000] [--runs 3] [--samples 40] [--keep]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
from playwright.async_api import Browser, Page, ViewportSize, async_playwright
from psycopg.rows import dict_row
from support import create_db, drop_db, pct, retry_concurrent_refresh, say, start_api

from rts_monitor.auth import agents as agent_tokens
from rts_monitor.auth import portal
from rts_monitor.core.edition import DESCRIBE_SQL, DatabaseInfo
from rts_monitor.core.settings import Settings
from rts_monitor.db import migrations, resolve_database_url
from rts_monitor.devtools import apiprocess
from rts_monitor.tiers import service as tiers

RESULTS = Path(__file__).parent / "results" / "console.json"
# The launch that works on these machines (the same as tests/fix_browser.py).
CHROMIUM = os.environ.get("RTS_TEST_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
VIEWPORT: ViewportSize = {"width": 1280, "height": 900}
SECRET = "bench-" + os.urandom(16).hex()


def build(url: str, agents: int) -> tuple[str, str]:
    """The fleet and the device under test; returns (device id, its agent token)."""
    token, token_hash = agent_tokens.new_token()
    with psycopg.connect(url, autocommit=True) as c:
        c.execute("INSERT INTO businesses (business_name) SELECT 'Customer ' || lpad(i::text, 3, '0') "
                  "FROM generate_series(1, 100) i")
        c.execute("INSERT INTO service_locations (business_id, location_name) "
                  "SELECT b.id, s FROM businesses b, unnest(ARRAY['Head office', 'Branch']) s")
        c.execute("""
            INSERT INTO agent_devices (business_id, service_location_id, device_name, os_type, agent_version,
                                       hostname, ip_address, status, last_heartbeat, status_changed_at)
            SELECT l.business_id, l.id, 'dev-' || lpad(i::text, 5, '0'), (ARRAY['linux', 'windows'])[1 + i %% 2],
                   '0.9.' || (i %% 4), 'host-' || i, ('10.' || (i / 65536) || '.' || (i / 256 %% 256) || '.'
                   || (i %% 256))::inet, (ARRAY['online', 'online', 'online', 'offline', 'error'])[1 + i %% 5],
                   now() - (i %% 900) * interval '1 second', now() - interval '3 days'
              FROM generate_series(1, %s) i
              JOIN LATERAL (SELECT id, business_id FROM service_locations ORDER BY id OFFSET (i %% 200) LIMIT 1) l
                ON true
        """, (agents - 1,))
        c.execute("""
            INSERT INTO agent_devices (business_id, service_location_id, device_name, os_type, agent_version,
                                       hostname, status, last_heartbeat, agent_token_hash)
            SELECT business_id, id, 'bench-device', 'linux', '0.9.0', 'bench-host', 'online', now(), %s
              FROM service_locations ORDER BY id LIMIT 1
        """, (token_hash,))
        device = str(c.execute("SELECT id FROM agent_devices WHERE device_name = 'bench-device'").fetchone()[0])  # type: ignore[index]
        say(f"  {agents:,} agents; two days of hourly samples for all of them")
        c.execute("""
            INSERT INTO agent_metrics (agent_device_id, collected_at, cpu_percent_x10, memory_percent_x10,
                                       disk_percent_x10, memory_used_gb_x1000, disk_used_gb_x1000)
            SELECT d.id, ts, round(random() * 1000), round(random() * 1000), round(random() * 1000), 8000, 400000
              FROM agent_devices d CROSS JOIN LATERAL generate_series(now() - interval '2 days',
                                                                     now() - interval '2 minutes', interval '1 hour') ts
             WHERE d.device_name <> 'bench-device'
        """)
        say("  31 days of 5-minute samples for bench-device; open alerts on 2% of the fleet")
        # the gauges as stored: scaled integers at the agent's precision (x10 percentages, x1000 GB,
        # x100 load averages: ingest/validate.py SCALES)
        c.execute("""
            INSERT INTO agent_metrics (agent_device_id, collected_at, cpu_percent_x10, memory_percent_x10,
                                       disk_percent_x10, memory_used_gb_x1000, disk_used_gb_x1000,
                                       load_average_1m_x100, load_average_5m_x100, load_average_15m_x100,
                                       uptime_seconds, network_rx_bytes, network_tx_bytes)
            SELECT %s, ts, round((40 + 30 * sin(extract(epoch FROM ts) / 3600)) * 10),
                   round((55 + 10 * random()) * 10), 610, 8800, 312000,
                   120, 110, 100, extract(epoch FROM ts - (now() - interval '31 days'))::bigint,
                   n * 150000, n * 20000
              FROM generate_series(now() - interval '31 days', now() - interval '1 minute', interval '5 minutes')
                   WITH ORDINALITY AS g(ts, n)
        """, (device,))
        c.execute("INSERT INTO agent_alerts (alert_name, alert_type, severity, business_id, conditions) "
                  "SELECT 'CPU high', 'cpu_high', 'warning', id, '{}' FROM businesses")
        c.execute("""
            INSERT INTO agent_alert_history (agent_alert_id, agent_device_id, business_id, severity, alert_message)
            SELECT r.id, d.id, d.business_id, (ARRAY['warning', 'critical'])[1 + (row_number() OVER () % 2)::int],
                   'CPU above 90 % for 5 minutes'
              FROM agent_devices d JOIN agent_alerts r ON r.business_id = d.business_id
             WHERE hashtext(d.id::text) % 50 = 0
        """)
        rows = c.execute("SELECT count(*) FROM agent_metrics").fetchone()[0]  # type: ignore[index]
        say(f"  {rows:,} metric rows; building the rollup tiers; ANALYZE")
    asyncio.run(_refresh(url))
    with psycopg.connect(url, autocommit=True) as c:
        c.execute("ANALYZE")
    return device, token


async def _refresh(url: str) -> None:
    """The rollup tiers over all the loaded data, the way this database's edition keeps them."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True, row_factory=dict_row) as conn:
        row = await (await conn.execute(DESCRIBE_SQL)).fetchone()
        assert row is not None
        edition = DatabaseInfo.from_row(row).edition
        # the policies keep running here, as in production: a refresh by hand may meet one
        await retry_concurrent_refresh(lambda: tiers.refresh(conn, edition=edition,
                                                             start=datetime.now(UTC) - timedelta(days=32),
                                                             end=datetime.now(UTC)))


async def sign_in(browser: Browser, base: str, next_path: str | None = None) -> tuple[Any, Page]:
    """A fresh browser context signed in as MSP staff (portal hand-off), on ``next_path`` if given."""
    context = await browser.new_context(viewport=VIEWPORT)
    page = await context.new_page()
    token = portal.mint(Settings(jwt_secret=SECRET), role="admin")
    await page.goto(f"{base}/console/auth?token={token}&next=/console/data/session")
    if next_path:
        await page.goto(base + next_path)
    return context, page


async def fleet_view(browser: Browser, base: str, path: str) -> dict[str, Any]:
    """A cold visit (fresh context, nothing cached: timings and the requests the page made), then
    the same page again with the assets cached."""
    context, page = await sign_in(browser, base)
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url.replace(base, "")))
    await page.goto(base + path)
    await page.wait_for_selector("body[data-live=connected]", state="attached")
    cold = await timings(page)
    count = len(requests)
    await page.goto(base + path)  # again: the assets are cached now, as for someone using the console
    await page.wait_for_selector("body[data-live=connected]", state="attached")
    warm = await timings(page)
    await context.close()
    return {**cold, "warm_fcp_ms": warm["fcp_ms"], "warm_ready_ms": warm["ready_ms"], "requests": count,
            "request_list": sorted(set(u.split("?")[0] for u in requests[:count]))}


async def timings(page: Page) -> dict[str, Any]:
    """The page's navigation timings; the first contentful paint can be reported a little after
    the page is ready, so it is waited for."""
    for _ in range(50):
        out: dict[str, Any] = await page.evaluate(TIMING)
        if out["fcp_ms"] is not None:
            return out
        await asyncio.sleep(0.05)
    raise RuntimeError("no first-contentful-paint entry")


TIMING = """() => {
        const nav = performance.getEntriesByType('navigation')[0];
        const fcp = performance.getEntriesByName('first-contentful-paint')[0];
        return {response_ms: nav.responseEnd, dom_ms: nav.domContentLoadedEventEnd,
                fcp_ms: fcp ? fcp.startTime : null, ready_ms: window.rtsConsole.timings.fleetRenderedAt,
                rows: document.querySelectorAll('tr.agent').length,
                total: Number(document.querySelector('.fleet-results')?.dataset.total || 0)};
    }"""


async def device_month(browser: Browser, base: str, device: str) -> dict[str, Any]:
    context, page = await sign_in(browser, base, f"/console/agents/{device}")
    await page.wait_for_selector("body[data-charts=ready]", state="attached")
    history: list[str] = []
    page.on("request", lambda r: history.append(r.url) if "/metrics/history" in r.url else None)
    await page.keyboard.press("4")  # 30 days
    await page.wait_for_selector("#range-note:has-text('30 days')", state="attached")
    await page.wait_for_selector("body[data-charts=ready]", state="attached")
    charts = await page.evaluate("""() => Object.fromEntries(Object.entries(window.rtsConsole.charts).map(
        ([name, c]) => [name, {...c.timing, points: c.points, interval: c.request.interval}]))""")
    total = await page.evaluate("() => window.rtsConsole.timings.chartsMs")
    alone = []
    for _ in range(3):  # the CPU chart reloaded by itself: one chart's fetch and draw without the others
        alone.append(await page.evaluate(
            "async () => { const c = window.rtsConsole.charts.cpu; await c.load(c.range); return c.timing; }"))
    await context.close()
    return {"charts": charts, "all_ms": total, "history_requests": len(history),
            "cpu_alone": sorted(alone, key=lambda t: t["totalMs"])[1]}


async def live_latency(browser: Browser, page_base: str, ingest_base: str, device: str, token: str,
                       samples: int) -> dict[str, list[float]]:
    context, page = await sign_in(browser, page_base, f"/console/agents/{device}")
    await page.wait_for_selector("body[data-live=connected]", state="attached")
    await page.keyboard.press("1")
    await page.wait_for_selector("body[data-charts=ready]", state="attached")
    shown_ms: list[float] = []
    answer_ms: list[float] = []
    async with httpx.AsyncClient(base_url=ingest_base, headers={"Authorization": f"Bearer {token}"}) as client:
        for i in range(samples):
            now = datetime.now(UTC)  # newer than every sample before it (the page shows the newest)
            at = now.replace(microsecond=now.microsecond // 1000 * 1000)
            body = {"metrics": [{"collected_at": at.isoformat(), "cpu_percent": 50.0 + i % 10, "memory_percent": 50.0,
                                 "disk_percent": 61.0, "network_rx_bytes": 10**9 + i, "network_tx_bytes": 10**8 + i}]}
            sent = time.time() * 1000
            r = await client.post(f"/api/agents/{device}/metrics", json=body)
            answer_ms.append(time.time() * 1000 - sent)
            r.raise_for_status()
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                shown = await page.evaluate(
                    "(at) => (window.rtsConsole.samplesShown.find((s) => Date.parse(s.at) === at) || {}).shownAt",
                    at.timestamp() * 1000)
                if shown:
                    shown_ms.append(shown - sent)
                    break
                await asyncio.sleep(0.005)
            else:
                raise RuntimeError(f"sample {i} never showed on the page")
            await asyncio.sleep(0.2)
    await context.close()
    return {"shown_ms": shown_ms, "answer_ms": answer_ms}


async def measure(args: argparse.Namespace, base_a: str, base_b: str, device: str, token: str) -> dict[str, Any]:
    views = {
        "fleet: all 10,000, grouped, page 1": "/console/",
        "fleet: one business": None,
        "fleet: search 'dev-0999'": "/console/?q=dev-0999",
        "fleet: page 50 by last seen": "/console/?sort=-last_seen&page=50",
    }
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            with psycopg.connect(args.url) as c:
                biz = c.execute("SELECT business_id FROM agent_devices WHERE device_name = 'dev-00001'").fetchone()
            views["fleet: one business"] = f"/console/?business={biz[0]}"  # type: ignore[index]
            runs: list[dict[str, Any]] = []
            for run in range(1, args.runs + 1):
                res: dict[str, Any] = {"load_before": os.getloadavg()[0]}
                for label, path in views.items():
                    assert path is not None
                    res[label] = await fleet_view(browser, base_a, path)
                    v = res[label]
                    say(f"run {run}: {label}: first paint {v['fcp_ms']:.0f} ms, ready {v['ready_ms']:.0f} ms, "
                        f"server {v['response_ms']:.0f} ms, {v['rows']} rows of {v['total']:,}, "
                        f"{v['requests']} requests; assets cached: first paint {v['warm_fcp_ms']:.0f} ms")
                res["device 30 days"] = await device_month(browser, base_a, device)
                d = res["device 30 days"]
                charts = ", ".join(f"{n} {c['totalMs']:.0f} ms ({c['points']} points at {c['interval']})"
                                   for n, c in d["charts"].items())
                say(f"run {run}: device 30 days: {charts}; all five {d['all_ms']:.0f} ms, "
                    f"{d['history_requests']} history requests; the CPU chart alone {d['cpu_alone']['totalMs']:.0f} ms")
                for where, base in (("same instance", base_a), ("other instance", base_b)):
                    lat = await live_latency(browser, base, base_a, device, token, args.samples)
                    res[f"live, {where}"] = lat
                    say(f"run {run}: live, {where}: shown p50 {pct(lat['shown_ms'], 0.5):.0f} ms, "
                        f"p99 {pct(lat['shown_ms'], 0.99):.0f} ms (ingest answered p50 "
                        f"{pct(lat['answer_ms'], 0.5):.0f} ms)")
                runs.append(res)
        finally:
            await browser.close()
    return {"runs": runs, "views": list(views)}


def report(result: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    runs = result["runs"]
    med = statistics.median
    summary: dict[str, Any] = {}
    print()
    print(f"{'what':<44} {'value':>12}  note")
    for label in result["views"]:
        fcp = med(r[label]["fcp_ms"] for r in runs)
        ready = med(r[label]["ready_ms"] for r in runs)
        server = med(r[label]["response_ms"] for r in runs)
        reqs = max(r[label]["requests"] for r in runs)
        warm = med(r[label]["warm_fcp_ms"] for r in runs)
        summary[label] = {"first_paint_ms": fcp, "ready_ms": ready, "server_ms": server, "requests": reqs,
                          "warm_first_paint_ms": warm, "request_list": runs[0][label]["request_list"]}
        print(f"{label:<44} {fcp:>9.0f} ms  first useful render (target < 1,000 ms); ready {ready:.0f} ms, "
              f"HTML {server:.0f} ms, {reqs} requests; assets cached {warm:.0f} ms")
    charts = {name: med(r["device 30 days"]["charts"][name]["totalMs"] for r in runs)
              for name in runs[0]["device 30 days"]["charts"]}
    fetches = {name: med(r["device 30 days"]["charts"][name]["fetchMs"] for r in runs) for name in charts}
    draws = {name: med(r["device 30 days"]["charts"][name]["drawMs"] for r in runs) for name in charts}
    summary["device 30 days"] = {"total_ms": charts, "fetch_ms": fetches, "draw_ms": draws,
                                 "all_five_ms": med(r["device 30 days"]["all_ms"] for r in runs),
                                 "history_requests": runs[0]["device 30 days"]["history_requests"],
                                 "points": {n: c["points"] for n, c in runs[0]["device 30 days"]["charts"].items()},
                                 "interval": runs[0]["device 30 days"]["charts"]["cpu"]["interval"]}
    alone = med(r["device 30 days"]["cpu_alone"]["totalMs"] for r in runs)
    summary["device 30 days"]["cpu_alone_ms"] = alone
    print(f"{'device 30 d chart: cpu, loaded alone':<44} {alone:>9.0f} ms  fetched + drawn (target < 300 ms)")
    for name, total in charts.items():
        print(f"{'device 30 d chart: ' + name + ', five at once':<44} {total:>9.0f} ms  fetched + drawn; "
              f"fetch {fetches[name]:.0f}, draw {draws[name]:.1f}")
    for where in ("same instance", "other instance"):
        shown = [v for r in runs for v in r[f"live, {where}"]["shown_ms"]]
        answer = [v for r in runs for v in r[f"live, {where}"]["answer_ms"]]
        summary[f"live, {where}"] = {"p50_ms": pct(shown, 0.5), "p99_ms": pct(shown, 0.99),
                                     "ingest_answer_p50_ms": pct(answer, 0.5), "samples": len(shown)}
        print(f"{'live sample, page on ' + where:<44} {pct(shown, 0.5):>9.0f} ms  p50, p99 "
              f"{pct(shown, 0.99):.0f} ms, from the ingest request sent (it answered at p50 "
              f"{pct(answer, 0.5):.0f} ms), n={len(shown)}")
    summary["load_average_before_runs"] = [r["load_before"] for r in runs]
    return summary


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--agents", type=int, default=10_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--samples", type=int, default=40, help="live samples per run and instance")
    ap.add_argument("--keep", action="store_true", help="keep the benchmark database")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    server = resolve_database_url(Settings.from_env())
    name = f"rts_bench_console_{os.getpid()}"
    args.url = create_db(server, name)
    procs = []
    try:
        say(f"database {name}: migrating and loading")
        migrations.migrate(args.url)
        device, token = build(args.url, args.agents)
        with tempfile.TemporaryDirectory(prefix="rts-bench-console-") as tmp:
            env = {"RTS_JWT_SECRET": SECRET, "RTS_SCHEDULER_ENABLED": "0"}
            a, base_a = start_api(args.url, Path(tmp), env)
            procs.append(a)
            b, base_b = start_api(args.url, Path(tmp), env)
            procs.append(b)
            say(f"servers A {base_a}, B {base_b}; load average {os.getloadavg()[0]:.1f}")
            result = asyncio.run(measure(args, base_a, base_b, device, token))
    finally:
        for proc in procs:
            apiprocess.stop(proc)
        if not args.keep:
            drop_db(server, name)
    summary = report(result, args)
    args.out.parent.mkdir(exist_ok=True)
    args.out.write_text(json.dumps({"agents": args.agents, "runs": args.runs, "summary": summary,
                                    "raw": result["runs"]}, indent=2, default=str) + "\n")
    say(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
