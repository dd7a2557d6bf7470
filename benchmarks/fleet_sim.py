"""A simulated fleet against two API processes on this machine: each agent holds a WebSocket and
sends a heartbeat and a metrics batch every ``--interval`` seconds (60 by default, as a real agent
configured at a minute), spread uniformly over the interval. Per fleet size N it prints the p50 and
p99 of each endpoint, the rows stored per second, the database's and the API processes' CPU, and
the largest N at which every p99 of the steady traffic (heartbeat, metrics, command push; not the
initial mass connect, see ``STEADY``) stays under ``--p99-limit`` ms (200).

Builds its own database (``rts_bench_fleet_<pid>``, migrated, dropped at the end) with the largest
size's agents inserted in bulk. Two ``rts-monitor serve`` processes (1 worker each; the scheduler
runs in A only, as one would deploy it) share it; half the agents use A, half B, each half in its
own client process (asyncio + aiohttp). Per size: every agent connects its socket, then the fleet
runs ``--warmup`` seconds unmeasured and ``--measure`` seconds measured. Endpoints:

* ``heartbeat``: POST /api/agents/{id}/heartbeat;
* ``metrics``: POST /api/agents/{id}/metrics, one sample per batch (answered once committed);
* ``ws connect``: the socket's handshake (while the fleet connects, before the measured window);
* ``command push``: ``--push-rate`` commands/s created through A (portal token) to random agents,
  from the POST to the agent's socket receiving it (half of them cross to B by NOTIFY).

``--interval`` shorter than 60 compresses time: the load is that of a fleet of N x 60 / interval
agents at one batch a minute, and the table says so ("as if"). Database CPU is the postgres
server's processes' (/proc), in cores; API CPU is both API processes'. The machine is shared (2
cores for both servers, the database and the clients): the load average is recorded. JSON goes to
``benchmarks/results/fleet_sim.json``.

    .venv/bin/python benchmarks/fleet_sim.py [--sizes 1000,2500,5000,10000] [--interval 60]
                                             [--warmup 15] [--measure 75]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import multiprocessing.connection
import os
import random
import secrets
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import psycopg
from support import cpu_seconds, create_db, drop_db, pct, raise_open_files, say, start_api
from ws_scale import make_world

from rts_monitor.auth import portal
from rts_monitor.core.settings import Settings
from rts_monitor.db import migrations, resolve_database_url
from rts_monitor.devtools import apiprocess

RESULTS = Path(__file__).with_name("results") / "fleet_sim.json"
ENDPOINTS = ("heartbeat", "metrics", "ws connect", "command push")
# What the p99 criterion judges: the fleet's steady traffic. ``ws connect`` is the whole fleet
# connecting at once at the start (100 handshakes in flight per client, so its latency is
# mostly that queue); it is reported, its errors count, but a mass reconnect is ws_scale.py's storm.
STEADY = ("heartbeat", "metrics", "command push")


# --- the client processes ------------------------------------------------------------------------------

class Sim:
    """One client process's agents: sockets, and each agent's heartbeat + metrics loop."""

    def __init__(self, base: str, agents: list[tuple[str, str]], interval: float) -> None:
        self.base, self.agents, self.interval = base, agents, interval
        self.sockets: dict[str, aiohttp.ClientWebSocketResponse] = {}
        self.readers: list[asyncio.Task[None]] = []
        self.arrived: dict[str, float] = {}
        self.lat: dict[str, list[float]] = {e: [] for e in ENDPOINTS}
        self.errors: dict[str, dict[str, int]] = {e: {} for e in ENDPOINTS}
        self.samples_stored = 0
        self.window = (0.0, 0.0)
        self.dropped = 0
        self.pushed: dict[str, float] = {}  # command id -> when its POST started
        self.session: aiohttp.ClientSession | None = None

    def _error(self, endpoint: str, key: str) -> None:
        self.errors[endpoint][key] = self.errors[endpoint].get(key, 0) + 1

    def _in_window(self, t: float) -> bool:
        return self.window[0] <= t < self.window[1]

    async def connect(self, concurrency: int = 100) -> dict[str, Any]:
        self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0),
                                             timeout=aiohttp.ClientTimeout(total=60))
        sem = asyncio.Semaphore(concurrency)

        async def one(agent_id: str, token: str) -> None:
            assert self.session is not None
            for _attempt in range(5):
                async with sem:
                    t0 = time.monotonic()
                    try:
                        ws = await self.session.ws_connect(
                            self.base.replace("http://", "ws://") + "/ws", heartbeat=30, compress=0,
                            headers={"Authorization": f"Bearer {token}"})
                    except aiohttp.WSServerHandshakeError as exc:
                        self._error("ws connect", f"HTTP {exc.status}")
                    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                        self._error("ws connect", type(exc).__name__)
                    else:
                        self.lat["ws connect"].append((time.monotonic() - t0) * 1000)
                        self.sockets[agent_id] = ws
                        self.readers.append(asyncio.create_task(self._read(agent_id, ws)))
                        return
                await asyncio.sleep(1 + random.random())

        t0 = time.monotonic()
        await asyncio.gather(*(one(a, t) for a, t in self.agents))
        return {"connected": len(self.sockets), "seconds": time.monotonic() - t0}

    async def _read(self, agent_id: str, ws: aiohttp.ClientWebSocketResponse) -> None:
        try:
            async for msg in ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    break
                body = json.loads(msg.data)
                if body.get("type") == "command":
                    self.arrived[body["command_id"]] = time.monotonic()
        finally:
            if self.sockets.pop(agent_id, None) is not None:
                self.dropped += 1

    async def run(self, warmup: float, measure: float) -> None:
        start = time.monotonic()
        self.window = (start + warmup, start + warmup + measure)
        tasks = [asyncio.create_task(self._agent(i, a, t)) for i, (a, t) in enumerate(self.agents)]
        await asyncio.sleep(warmup + measure)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _agent(self, i: int, agent_id: str, token: str) -> None:
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        url = f"{self.base}/api/agents/{agent_id}"
        # uniformly spread over the interval, then a fixed cadence (slow answers do not stretch it)
        next_at = time.monotonic() + self.interval * (i + random.random()) / len(self.agents)
        while True:
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            next_at += self.interval
            now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
            await self._post("heartbeat", url + "/heartbeat", {"status": "online", "agent_version": "1.0.0"}, headers)
            sample = {"collected_at": now, "cpu_percent": round(random.uniform(2, 60), 1),
                      "memory_percent": round(random.uniform(20, 80), 1), "memory_used_gb": 6.123,
                      "disk_percent": 41.5, "disk_used_gb": 83.0, "load_average": [0.5, 0.4, 0.3],
                      "uptime_seconds": 86400, "network_rx_bytes": 10**9, "network_tx_bytes": 10**8,
                      "services": [{"name": "nginx", "status": "running", "pid": 1234}]}
            answer = await self._post("metrics", url + "/metrics", {"metrics": [sample]}, headers)
            if answer is not None and self._in_window(time.monotonic()):
                self.samples_stored += int(answer.get("received", 0))

    async def _post(self, endpoint: str, url: str, body: dict[str, Any], headers: dict[str, str]) -> Any:
        assert self.session is not None
        t0 = time.monotonic()
        try:
            async with self.session.post(url, data=json.dumps(body), headers=headers) as resp:
                raw = await resp.read()
                status = resp.status
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            if self._in_window(t0):
                self._error(endpoint, type(exc).__name__)
            return None
        if not self._in_window(t0):
            return json.loads(raw) if status < 400 and raw else None
        if status >= 400:
            self._error(endpoint, f"HTTP {status}")
            return None
        self.lat[endpoint].append((time.monotonic() - t0) * 1000)
        return json.loads(raw) if raw else None

    async def push(self, jwt: str, rate: float, targets: list[str]) -> None:
        """Commands through this process's API to random agents of the whole fleet (this client's
        sockets and the other's: the parent matches them with the other client's arrivals)."""
        assert self.session is not None
        headers = {"Authorization": f"Bearer {jwt}"}
        while time.monotonic() < self.window[1]:
            await asyncio.sleep(random.expovariate(rate))
            t0 = time.monotonic()
            if not self._in_window(t0):
                continue
            try:
                async with self.session.post(f"{self.base}/api/agents/{random.choice(targets)}/commands",
                                             headers=headers, json={"command_type": "restart_service",
                                                                    "params": {"service_name": "nginx"}}) as resp:
                    body = await resp.json()
                    if resp.status != 201:
                        self._error("command push", f"HTTP {resp.status}")
                        continue
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                self._error("command push", type(exc).__name__)
                continue
            self.pushed[str(body["id"])] = t0

    def results(self) -> dict[str, Any]:
        return {"lat": self.lat, "errors": self.errors, "samples_stored": self.samples_stored,
                "connected": len(self.sockets), "dropped": self.dropped, "arrived": self.arrived,
                "pushed": self.pushed}

    async def close(self) -> None:
        for ws in list(self.sockets.values()):
            with contextlib.suppress(Exception):
                await ws.close()
        for task in self.readers:
            task.cancel()
        if self.session is not None:
            await self.session.close()


def client_main(pipe: multiprocessing.connection.Connection) -> None:
    raise_open_files()
    asyncio.run(_client(pipe))


async def _client(pipe: multiprocessing.connection.Connection) -> None:
    loop = asyncio.get_running_loop()
    while True:
        req: dict[str, Any] = await loop.run_in_executor(None, pipe.recv)
        if req["op"] == "quit":
            return
        sim = Sim(req["base"], req["agents"], req["interval"])
        pipe.send(await sim.connect())
        go: dict[str, Any] = await loop.run_in_executor(None, pipe.recv)
        runs = [sim.run(go["warmup"], go["measure"])]
        if go.get("jwt"):
            runs.append(sim.push(go["jwt"], go["push_rate"], go["targets"]))
        await asyncio.gather(*runs)
        await asyncio.sleep(2)  # the last pushes arrive
        pipe.send(sim.results())
        await sim.close()


# --- the parent ------------------------------------------------------------------------------------------

def postgres_pids(url: str) -> list[int]:
    """The database server's processes: the postmaster (parent of our backend) and its children."""
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT pg_backend_pid()").fetchone()
        assert row is not None
        backend = int(row[0])
    postmaster = _ppid(backend)
    pids = [postmaster]
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                if _ppid(int(entry)) == postmaster:
                    pids.append(int(entry))
    return pids


def _ppid(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def cpu_total(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError, IndexError, ValueError):
            total += cpu_seconds(pid)
    return total


def one_size(n: int, agents: list[tuple[str, str]], bases: list[str], procs: list[Any], url: str, jwt: str,
             args: argparse.Namespace) -> dict[str, Any]:
    ctx = multiprocessing.get_context("spawn")
    halves = [agents[:n][i::2] for i in range(2)]
    pipes, children = [], []
    for _ in range(2):
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=client_main, args=(child,), daemon=True)
        proc.start()
        pipes.append(parent)
        children.append(proc)
    try:
        for i in range(2):
            pipes[i].send({"op": "sim", "base": bases[i], "agents": halves[i], "interval": args.interval})
        connected = [p.recv() for p in pipes]
        say(f"N={n}: sockets {sum(c['connected'] for c in connected)} connected "
            f"in {max(c['seconds'] for c in connected):.1f} s; running {args.warmup:.0f} + {args.measure:.0f} s")
        targets = [a for a, _ in agents[:n]]
        for i in range(2):
            pipes[i].send({"warmup": args.warmup, "measure": args.measure, "jwt": jwt if i == 0 else None,
                           "push_rate": args.push_rate, "targets": targets})
        time.sleep(args.warmup)
        pg = postgres_pids(url)
        load0 = os.getloadavg()[0]
        db0, api0, t0 = cpu_total(pg), cpu_total([p.pid for p in procs]), time.monotonic()
        time.sleep(args.measure)
        db1, api1, t1 = cpu_total(pg), cpu_total([p.pid for p in procs]), time.monotonic()
        results = [p.recv() for p in pipes]
        for p in pipes:
            p.send({"op": "quit"})
    finally:
        for proc in children:
            proc.join(30)
            if proc.is_alive():
                proc.kill()
    lat: dict[str, list[float]] = {e: [] for e in ENDPOINTS}
    errors: dict[str, dict[str, int]] = {e: {} for e in ENDPOINTS}
    for c in results:
        for e in ENDPOINTS:
            lat[e] += c["lat"][e]
            for k, v in c["errors"][e].items():
                errors[e][k] = errors[e].get(k, 0) + v
    arrived = {**results[0]["arrived"], **results[1]["arrived"]}
    for command_id, t_push in results[0]["pushed"].items():
        if command_id in arrived:
            lat["command push"].append((arrived[command_id] - t_push) * 1000)
        else:
            errors["command push"]["not_pushed"] = errors["command push"].get("not_pushed", 0) + 1
    seconds = t1 - t0
    endpoints: dict[str, dict[str, Any]] = {e: {"n": len(v), "p50_ms": statistics.median(v) if v else None,
                     "p99_ms": pct(v, 0.99) if v else None, "errors": errors[e]} for e, v in lat.items()}
    worst = max((endpoints[e]["p99_ms"] or 0.0) for e in STEADY)
    failed = sum(sum(v["errors"].values()) for v in endpoints.values())
    out = {"n": n, "as_if_agents_at_60s": round(n * 60 / args.interval), "endpoints": endpoints,
           "rows_per_s": sum(c["samples_stored"] for c in results) / args.measure,
           "requests_per_s": sum(len(lat[e]) for e in ("heartbeat", "metrics")) / args.measure,
           "db_cpu_cores": (db1 - db0) / seconds, "api_cpu_cores": (api1 - api0) / seconds,
           "sockets_dropped": sum(c["dropped"] for c in results),
           "sockets_connected_at_end": sum(c["connected"] for c in results),
           "load_avg_1m": [load0, os.getloadavg()[0]], "worst_p99_ms": worst, "errors": failed,
           "ok": worst < args.p99_limit and failed == 0}
    say(f"N={n}: worst p99 {worst:.0f} ms, {failed} errors, {out['rows_per_s']:.0f} rows/s, "
        f"DB {out['db_cpu_cores']:.2f} cores, API {out['api_cpu_cores']:.2f} cores")
    return out


def table(rows: list[dict[str, Any]], args: argparse.Namespace) -> list[str]:
    lines = [f"{'N agents':>9} {'as if @60s':>10} {'endpoint':<13} {'n':>7} {'p50 ms':>8} {'p99 ms':>8} "
             f"{'errors':>7}   {'rows/s':>7} {'req/s':>6} {'DB cores':>8} {'API cores':>9} {'load':>5}"]
    for r in rows:
        for j, e in enumerate(ENDPOINTS):
            v = r["endpoints"][e]
            p50 = f"{v['p50_ms']:.1f}" if v["p50_ms"] is not None else "-"
            p99 = f"{v['p99_ms']:.1f}" if v["p99_ms"] is not None else "-"
            head = (f"{r['n']:>9,} {r['as_if_agents_at_60s']:>10,}" if j == 0 else " " * 20)
            tail = (f"   {r['rows_per_s']:>7.0f} {r['requests_per_s']:>6.0f} {r['db_cpu_cores']:>8.2f} "
                    f"{r['api_cpu_cores']:>9.2f} {r['load_avg_1m'][1]:>5.1f}" if j == 0 else "")
            lines.append(f"{head} {e:<13} {v['n']:>7,} {p50:>8} {p99:>8} {sum(v['errors'].values()):>7}{tail}")
    good = [r["n"] for r in rows if r["ok"]]
    lines.append(f"largest N with every steady p99 (heartbeat, metrics, command push) < {args.p99_limit:.0f} ms "
                 "and no errors: "
                 f"{max(good) if good else 'none of those tried'}"
                 + (f" (as if {max(good) * 60 / args.interval:,.0f} agents at one batch a minute)"
                    if good and args.interval != 60 else ""))
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,2500,5000,10000")
    parser.add_argument("--interval", type=float, default=60.0, help="seconds between an agent's batches")
    parser.add_argument("--warmup", type=float, default=15.0)
    parser.add_argument("--measure", type=float, default=75.0)
    parser.add_argument("--push-rate", type=float, default=1.0, help="commands per second through A")
    parser.add_argument("--p99-limit", type=float, default=200.0)
    parser.add_argument("--keep-going", action="store_true", help="try larger sizes after one fails")
    args = parser.parse_args()
    sizes = sorted(int(x) for x in args.sizes.split(","))
    raise_open_files()
    server = resolve_database_url(Settings.from_env())
    name = f"rts_bench_fleet_{os.getpid()}"
    url = create_db(server, name)
    rows: list[dict[str, Any]] = []
    load_before = list(os.getloadavg())
    try:
        say(f"migrating {name}")
        migrations.migrate(url)
        tech_id, agents = make_world(url, max(sizes))
        secret = "bench-" + secrets.token_urlsafe(24)
        jwt = portal.mint(Settings(jwt_secret=secret), role="technician", user_id=uuid.UUID(tech_id))
        with tempfile.TemporaryDirectory(prefix="rts-bench-fleet-") as tmp:
            a = start_api(url, Path(tmp), {"RTS_JWT_SECRET": secret})
            b = start_api(url, Path(tmp), {"RTS_JWT_SECRET": secret, "RTS_SCHEDULER_ENABLED": "0"})
            try:
                for n in sizes:
                    rows.append(one_size(n, agents, [a[1], b[1]], [a[0], b[0]], url, jwt, args))
                    if not rows[-1]["ok"] and not args.keep_going:
                        say("stopping: this size is over the limit")
                        break
            finally:
                for proc, _ in (a, b):
                    apiprocess.stop(proc, timeout=60)
    finally:
        drop_db(server, name)
    lines = table(rows, args)
    print("\n" + "\n".join(lines))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "when": datetime.now(UTC).isoformat(), "args": vars(args), "sizes": rows, "table": lines,
        "load_before": load_before, "load_after": list(os.getloadavg()),
        "note": "2 shared cores: two API processes, the database and two client processes on one machine"},
        indent=2))
    say(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
