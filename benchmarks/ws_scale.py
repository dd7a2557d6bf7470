"""Agent WebSockets at scale on one API process: memory per connection, command push latency while
all are connected, and a reconnect storm after an API restart; side by side with the ceiling (the
same uvicorn settings serving a WebSocket that only accepts and waits: ``benchmarks/noop_app.py``).

Builds its own database (``rts_bench_ws_<pid>``, migrated, dropped at the end): one business, one
technician and ``--agents`` agents inserted in bulk (tokens made here, hashes stored). One
``rts-monitor serve`` process (1 worker, scheduler off) serves them; the agents' sockets live in a
separate client process (asyncio + aiohttp, like the agent: no compression, its own ping every
30 s), so the server's resident memory is its own. Per run:

* ``connect``: all agents connect, ``--connect-concurrency`` handshakes in flight;
* ``hold``: ``--settle`` seconds (longer than the 20 s ping interval, so every socket has been
  pinged); memory per connection = (RSS with N connected - RSS with 0) / N; sockets the server
  dropped meanwhile are counted;
* ``push``: ``--pushes`` commands created through the API (POST, portal token, as the console
  does), ``--in-flight`` at a time, each to a random connected agent: time from the POST to the
  agent's socket receiving the command;
* ``storm``: the API process is stopped (SIGTERM, as systemd does) and started again on the same
  port; once it answers ``/health`` every agent reconnects at a uniformly random moment within
  ``--storm-spread`` seconds. A 503 is retried after its Retry-After (plus up to 1 s of jitter),
  anything else after 1 s. Outcomes are counted per attempt; the pool's gauges
  (``/metrics``, sampled every 0.25 s by the server, read every 0.25 s here) and its timeout
  counter say whether the database pool ran dry.

The machine is shared (2 cores for the server, the database and the clients): the load average is
recorded. JSON goes to ``benchmarks/results/ws_scale.json``.

    .venv/bin/python benchmarks/ws_scale.py [--agents 10000] [--pushes 300] [--settle 25] [--no-ceiling]
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
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import psycopg
from support import (
    cpu_seconds,
    create_db,
    drop_db,
    free_port,
    pct,
    raise_open_files,
    rss_bytes,
    say,
    start_api,
)

from rts_monitor.auth import agents as agent_tokens
from rts_monitor.auth import portal
from rts_monitor.core.settings import Settings
from rts_monitor.db import migrations, resolve_database_url
from rts_monitor.devtools import apiprocess

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).with_name("results") / "ws_scale.json"
METRICS_TOKEN = "bench-metrics-" + secrets.token_urlsafe(8)


# --- the world -----------------------------------------------------------------------------------

def make_world(url: str, n_agents: int) -> tuple[str, list[tuple[str, str]]]:
    """A business, a technician (its id) and ``n_agents`` agents (id, token), inserted in one statement."""
    tokens = [agent_tokens.new_token() for _ in range(n_agents)]
    with psycopg.connect(url, autocommit=True) as conn:
        biz = conn.execute("INSERT INTO businesses (business_name) VALUES ('bench') RETURNING id").fetchone()
        tech = conn.execute("INSERT INTO users (email, role) VALUES ('t@bench', 'technician') RETURNING id").fetchone()
        assert biz is not None and tech is not None
        rows = conn.execute(
            "INSERT INTO agent_devices (business_id, agent_token_hash, device_name, os_type, agent_version, status) "
            "SELECT %s, h, 'bench-' || n, 'linux', '1.0.0', 'online' "
            "  FROM unnest(%s::text[]) WITH ORDINALITY AS t(h, n) ORDER BY n RETURNING id, agent_token_hash",
            (biz[0], [h for _, h in tokens])).fetchall()
    by_hash = {r[1]: str(r[0]) for r in rows}
    return str(tech[0]), [(by_hash[h], t) for t, h in tokens]


# --- the client process ----------------------------------------------------------------------------

class Fleet:
    """The agents' sockets (one per agent) and when each command arrived."""

    def __init__(self, agents: list[tuple[str, str]]) -> None:
        self.agents = agents
        self.sockets: dict[str, aiohttp.ClientWebSocketResponse] = {}
        self.readers: dict[str, asyncio.Task[None]] = {}
        self.arrived: dict[str, float] = {}
        self.waiters: dict[str, asyncio.Future[float]] = {}
        self.closed_by_server = 0
        self.session: aiohttp.ClientSession | None = None

    async def open(self) -> None:
        self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0),
                                             timeout=aiohttp.ClientTimeout(total=None, sock_connect=30))

    async def connect_one(self, base: str, agent_id: str, token: str) -> None:
        assert self.session is not None
        ws = await self.session.ws_connect(
            base.replace("http://", "ws://") + "/ws", headers={"Authorization": f"Bearer {token}"},
            heartbeat=30, autoping=True, timeout=aiohttp.ClientWSTimeout(ws_close=10), compress=0)
        self.sockets[agent_id] = ws
        self.readers[agent_id] = asyncio.create_task(self._read(agent_id, ws))

    async def _read(self, agent_id: str, ws: aiohttp.ClientWebSocketResponse) -> None:
        try:
            async for msg in ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    break
                body = json.loads(msg.data)
                if body.get("type") == "command":
                    now = time.monotonic()
                    self.arrived[body["command_id"]] = now
                    fut = self.waiters.get(body["command_id"])
                    if fut is not None and not fut.done():
                        fut.set_result(now)
        finally:
            if self.sockets.get(agent_id) is ws:
                del self.sockets[agent_id]
                self.closed_by_server += 1

    async def connect_all(self, base: str, concurrency: int) -> dict[str, Any]:
        sem = asyncio.Semaphore(concurrency)
        errors: dict[str, int] = {}
        took: list[float] = []

        async def one(agent_id: str, token: str) -> None:
            for _attempt in range(5):
                async with sem:
                    t0 = time.monotonic()
                    try:
                        await self.connect_one(base, agent_id, token)
                        took.append((time.monotonic() - t0) * 1000)
                        return
                    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                        key = _outcome(exc)
                        errors[key] = errors.get(key, 0) + 1
                await asyncio.sleep(1 + random.random())

        t0 = time.monotonic()
        await asyncio.gather(*(one(a, t) for a, t in self.agents if a not in self.sockets))
        return {"connected": len(self.sockets), "seconds": time.monotonic() - t0, "errors": errors,
                "handshake_p50_ms": statistics.median(took) if took else None,
                "handshake_p99_ms": pct(took, 0.99) if took else None}

    async def push(self, base: str, jwt: str, n: int, in_flight: int) -> dict[str, Any]:
        """``n`` commands through the API to random connected agents: POST → socket receives it."""
        session = self.session
        assert session is not None
        sem = asyncio.Semaphore(in_flight)
        latencies: list[float] = []
        created_ms: list[float] = []
        failures: dict[str, int] = {}
        headers = {"Authorization": f"Bearer {jwt}"}

        async def one() -> None:
            async with sem:
                agent_id = random.choice(list(self.sockets))
                t0 = time.monotonic()
                async with session.post(
                        f"{base}/api/agents/{agent_id}/commands", headers=headers,
                        json={"command_type": "restart_service", "params": {"service_name": "nginx"}}) as resp:
                    body = await resp.json()
                    if resp.status != 201:
                        failures[str(resp.status)] = failures.get(str(resp.status), 0) + 1
                        return
                created_ms.append((time.monotonic() - t0) * 1000)
                command_id = str(body["id"])
                if command_id in self.arrived:
                    at = self.arrived[command_id]
                else:
                    fut = self.waiters[command_id] = asyncio.get_running_loop().create_future()
                    try:
                        at = await asyncio.wait_for(fut, 30)
                    except TimeoutError:
                        failures["not_pushed_in_30s"] = failures.get("not_pushed_in_30s", 0) + 1
                        return
                latencies.append((at - t0) * 1000)

        await asyncio.gather(*(one() for _ in range(n)))
        return {"pushes": len(latencies), "failures": failures,
                "push_p50_ms": statistics.median(latencies) if latencies else None,
                "push_p99_ms": pct(latencies, 0.99) if latencies else None,
                "create_p50_ms": statistics.median(created_ms) if created_ms else None}

    async def storm(self, base: str, spread: float) -> dict[str, Any]:
        """Every agent without a socket reconnects at a random moment within ``spread`` seconds."""
        outcomes: dict[str, int] = {}
        retry_after: list[float] = []
        took: list[float] = []
        done_at: list[float] = []
        t_start = time.monotonic()

        async def one(agent_id: str, token: str) -> None:
            await asyncio.sleep(random.uniform(0, spread))
            while True:
                t0 = time.monotonic()
                try:
                    await self.connect_one(base, agent_id, token)
                except aiohttp.WSServerHandshakeError as exc:
                    key = _outcome(exc)
                    outcomes[key] = outcomes.get(key, 0) + 1
                    wait = 1.0
                    if key == "503 + Retry-After":
                        wait = float(exc.headers.get("Retry-After", "1") if exc.headers else "1")
                        retry_after.append(wait)
                    await asyncio.sleep(wait + random.random())
                    continue
                except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                    key = _outcome(exc)
                    outcomes[key] = outcomes.get(key, 0) + 1
                    await asyncio.sleep(1 + random.random())
                    continue
                outcomes["connected"] = outcomes.get("connected", 0) + 1
                took.append((time.monotonic() - t0) * 1000)
                done_at.append(time.monotonic() - t_start)
                return

        # the server restarted: a socket not yet seen closing is dead all the same
        for agent_id in list(self.sockets):
            del self.sockets[agent_id]
            self.readers.pop(agent_id).cancel()
        missing = list(self.agents)
        try:
            await asyncio.wait_for(asyncio.gather(*(one(a, t) for a, t in missing)), spread + 120)
        except TimeoutError:
            outcomes["not_reconnected_in_time"] = len(missing) - len(done_at)
        return {"reconnecting": len(missing), "outcomes": outcomes, "connected": len(self.sockets),
                "all_connected_after_s": max(done_at) if done_at else None,
                "handshake_p50_ms": statistics.median(took) if took else None,
                "handshake_p99_ms": pct(took, 0.99) if took else None,
                "retry_after_s": sorted(set(retry_after))[:10]}

    async def close_all(self) -> None:
        sockets = list(self.sockets.values())
        self.sockets.clear()
        for i in range(0, len(sockets), 500):
            await asyncio.gather(*(ws.close() for ws in sockets[i:i + 500]), return_exceptions=True)
        for task in self.readers.values():
            task.cancel()
        self.readers.clear()


def _outcome(exc: BaseException) -> str:
    if isinstance(exc, aiohttp.WSServerHandshakeError):
        if exc.status == 503 and exc.headers and exc.headers.get("Retry-After"):
            return "503 + Retry-After"
        return f"HTTP {exc.status}"
    return type(exc).__name__


def client_main(pipe: multiprocessing.connection.Connection, agents: list[tuple[str, str]]) -> None:
    raise_open_files()
    asyncio.run(_client(pipe, agents))


async def _client(pipe: multiprocessing.connection.Connection, agents: list[tuple[str, str]]) -> None:
    """Runs what the parent asks, one request at a time, answering each with a dict."""
    loop = asyncio.get_running_loop()
    fleet = Fleet(agents)
    await fleet.open()
    while True:
        req: dict[str, Any] = await loop.run_in_executor(None, pipe.recv)
        op = req["op"]
        answer: dict[str, Any]
        if op == "connect":
            fleet.agents = agents[: req.get("n", len(agents))]
            answer = await fleet.connect_all(req["base"], req["concurrency"])
        elif op == "status":
            answer = {"open": len(fleet.sockets), "closed_by_server": fleet.closed_by_server}
        elif op == "push":
            answer = await fleet.push(req["base"], req["jwt"], req["n"], req["in_flight"])
        elif op == "storm":
            answer = await fleet.storm(req["base"], req["spread"])
        elif op == "close":
            await fleet.close_all()
            fleet.closed_by_server = 0
            answer = {"open": len(fleet.sockets)}
        else:
            assert fleet.session is not None
            await fleet.close_all()
            await fleet.session.close()
            pipe.send({"bye": True})
            return
        pipe.send(answer)


class Client:
    """The parent's handle on the client process."""

    def __init__(self, agents: list[tuple[str, str]]) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.pipe, child = ctx.Pipe()
        self.proc = ctx.Process(target=client_main, args=(child, agents), daemon=True)
        self.proc.start()

    def ask(self, **req: Any) -> dict[str, Any]:
        self.pipe.send(req)
        answer: dict[str, Any] = self.pipe.recv()
        return answer

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.ask(op="quit")
        self.proc.join(30)
        if self.proc.is_alive():
            self.proc.kill()


# --- measurements --------------------------------------------------------------------------------------

def settle_rss(pid: int, seconds: float) -> int:
    """RSS after ``seconds`` (the last of several samples: the heap stops moving once the sockets idle)."""
    end = time.monotonic() + seconds
    rss = rss_bytes(pid)
    while time.monotonic() < end:
        time.sleep(min(2.0, max(0.0, end - time.monotonic())))
        rss = rss_bytes(pid)
    return rss


def memory_phase(client: Client, pid: int, base: str, n: int, args: argparse.Namespace,
                 label: str) -> dict[str, Any]:
    rss0 = settle_rss(pid, 3)
    cpu0 = cpu_seconds(pid)
    say(f"{label}: RSS with 0 sockets {rss0 / 2**20:.1f} MiB; connecting {n}")
    conn = client.ask(op="connect", base=base, n=n, concurrency=args.connect_concurrency)
    say(f"{label}: {conn['connected']} connected in {conn['seconds']:.1f} s (errors {conn['errors']}); "
        f"holding {args.settle:.0f} s")
    rss_n = settle_rss(pid, args.settle)
    status = client.ask(op="status")
    out = {"n": n, "rss0_mib": rss0 / 2**20, "rssN_mib": rss_n / 2**20,
           "kib_per_connection": (rss_n - rss0) / max(1, conn["connected"]) / 1024,
           "connect": conn, "open_after_hold": status["open"], "dropped_during_hold": status["closed_by_server"],
           "server_cpu_s_connect_and_hold": cpu_seconds(pid) - cpu0}
    say(f"{label}: {out['kib_per_connection']:.1f} KiB per connection, {status['open']} open after the hold")
    return out


class PoolWatch(threading.Thread):
    """Reads the server's pool gauges every ``period`` s while the storm runs (the server must be up)."""

    def __init__(self, base: str, period: float = 0.25) -> None:
        super().__init__(daemon=True)
        self.base, self.period = base, period
        self.stop_event = threading.Event()
        self.peak: dict[str, float] = {}
        self.last: dict[str, float] = {}
        self.samples = 0

    def run(self) -> None:
        with httpx.Client(timeout=2) as client:
            while not self.stop_event.is_set():
                with contextlib.suppress(httpx.HTTPError):
                    text = client.get(self.base + "/metrics",
                                      headers={"Authorization": f"Bearer {METRICS_TOKEN}"}).text
                    values = parse_metrics(text)
                    self.samples += 1
                    self.last = values
                    for k, v in values.items():
                        self.peak[k] = max(self.peak.get(k, v), v)
                self.stop_event.wait(self.period)


def parse_metrics(text: str) -> dict[str, float]:
    wanted = ("rts_db_pool_in_use_connections", "rts_db_pool_waiting_requests", "rts_db_pool_max_connections",
              "rts_db_pool_timeouts_total", "rts_websocket_connections{kind=\"agent\"}")
    out = {}
    for line in text.splitlines():
        for name in wanted:
            if line.startswith(name + " ") or (line.startswith(name) and "{" in name):
                out[name.split("{")[0]] = float(line.rsplit(" ", 1)[1])
    return out


def storm_phase(client: Client, proc: subprocess.Popen[bytes], base: str, url: str, log_dir: Path,
                env: dict[str, str], args: argparse.Namespace) -> tuple[dict[str, Any], subprocess.Popen[bytes]]:
    port = int(base.rsplit(":", 1)[1])
    t0 = time.monotonic()
    apiprocess.stop(proc, timeout=60)
    stopped_in = time.monotonic() - t0
    status = client.ask(op="status")
    say(f"storm: API stopped in {stopped_in:.1f} s ({status['open']} sockets still open); starting it again")
    t1 = time.monotonic()
    proc, base = start_api(url, log_dir, env, port=port)
    started_in = time.monotonic() - t1
    watch = PoolWatch(base)
    watch.start()
    cpu0 = cpu_seconds(proc.pid)
    say(f"storm: API up again in {started_in:.1f} s; every agent reconnects within {args.storm_spread:.0f} s")
    result = client.ask(op="storm", base=base, spread=args.storm_spread)
    time.sleep(1)
    watch.stop_event.set()
    watch.join()
    result.update({"api_stop_s": stopped_in, "api_start_s": started_in, "pool_peak": watch.peak,
                   "pool_last": watch.last, "pool_samples": watch.samples,
                   "server_cpu_s": cpu_seconds(proc.pid) - cpu0})
    say(f"storm: {result['outcomes']}; all connected after {result['all_connected_after_s']} s; "
        f"pool peak {watch.peak}")
    return result, proc


def start_noop(log_dir: Path) -> tuple[subprocess.Popen[bytes], str]:
    """The ceiling: benchmarks/noop_app.py's /ws under uvicorn with serve's settings."""
    port = free_port()
    log = open(log_dir / f"noop-{port}.log", "wb")  # noqa: SIM115
    settings = Settings()
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "benchmarks.noop_app:create_app", "--factory", "--app-dir", str(ROOT),
         "--host", "127.0.0.1", "--port", str(port), "--loop", "uvloop", "--http", "httptools",
         "--no-access-log", "--log-level", "warning", "--ws-ping-interval", str(settings.ws_ping_interval_seconds),
         "--ws-ping-timeout", str(settings.ws_ping_timeout_seconds)],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    apiprocess.wait_healthy(proc, base, 60)
    return proc, base


def run(url: str, args: argparse.Namespace, log_dir: Path) -> dict[str, Any]:
    tech_id, agents = make_world(url, args.agents)
    say(f"{len(agents)} agents enrolled")
    secret = "bench-" + secrets.token_urlsafe(24)
    env = {"RTS_JWT_SECRET": secret, "RTS_SCHEDULER_ENABLED": "0", "RTS_METRICS_TOKEN": METRICS_TOKEN,
           "RTS_METRICS_SAMPLE_SECONDS": "0.25"}
    jwt = portal.mint(Settings(jwt_secret=secret), role="technician", user_id=uuid.UUID(tech_id))
    client = Client(agents)
    out: dict[str, Any] = {"load_before": list(os.getloadavg())}
    proc, base = start_api(url, log_dir, env)
    try:
        out["hold"] = memory_phase(client, proc.pid, base, len(agents), args, "api")
        say(f"push: {args.pushes} commands, {args.in_flight} in flight")
        out["push"] = client.ask(op="push", base=base, jwt=jwt, n=args.pushes, in_flight=args.in_flight)
        say(f"push: p50 {out['push']['push_p50_ms']:.1f} ms, p99 {out['push']['push_p99_ms']:.1f} ms, "
            f"failures {out['push']['failures']}")
        out["storm"], proc = storm_phase(client, proc, base, url, log_dir, env, args)
        out["load_after_storm"] = list(os.getloadavg())
        client.ask(op="close")
    finally:
        apiprocess.stop(proc, timeout=60)
    if args.ceiling:
        noop, noop_base = start_noop(log_dir)
        try:
            out["ceiling"] = memory_phase(client, noop.pid, noop_base, len(agents), args, "ceiling")
            client.ask(op="close")
        finally:
            apiprocess.stop(noop, timeout=30)
    client.stop()
    out["load_after"] = list(os.getloadavg())
    return out


def table(res: dict[str, Any]) -> list[str]:
    hold, push, storm, ceil = res["hold"], res["push"], res["storm"], res.get("ceiling")
    lines = [f"{'measure':<44} {'rts-monitor':>16} {'ceiling (bare ws)':>18}"]

    def row(label: str, ours: str, ceiling: str = "") -> None:
        lines.append(f"{label:<44} {ours:>16} {ceiling:>18}")

    row("agents connected (held)", f"{hold['open_after_hold']:,}", f"{ceil['open_after_hold']:,}" if ceil else "")
    row("dropped during the hold (pings)", str(hold["dropped_during_hold"]),
        str(ceil["dropped_during_hold"]) if ceil else "")
    row("connect all: seconds", f"{hold['connect']['seconds']:.1f}",
        f"{ceil['connect']['seconds']:.1f}" if ceil else "")
    row("handshake p99 ms (connecting all)", f"{hold['connect']['handshake_p99_ms']:.1f}",
        f"{ceil['connect']['handshake_p99_ms']:.1f}" if ceil else "")
    row("RSS with 0 / N sockets (MiB)", f"{hold['rss0_mib']:.0f} / {hold['rssN_mib']:.0f}",
        f"{ceil['rss0_mib']:.0f} / {ceil['rssN_mib']:.0f}" if ceil else "")
    row("memory per connection (KiB)", f"{hold['kib_per_connection']:.1f}",
        f"{ceil['kib_per_connection']:.1f}" if ceil else "")
    row("push p50 / p99 ms (all connected)", f"{push['push_p50_ms']:.1f} / {push['push_p99_ms']:.1f}")
    row("  failed pushes", str(sum(push["failures"].values())))
    row("storm: agents reconnecting", f"{storm['reconnecting']:,}")
    for key, n in sorted(storm["outcomes"].items()):
        row(f"storm: attempts {key}", f"{n:,}")
    row("storm: all connected after (s)", f"{storm['all_connected_after_s'] or float('nan'):.1f}")
    row("storm: handshake p50 / p99 ms", f"{storm['handshake_p50_ms']:.0f} / {storm['handshake_p99_ms']:.0f}")
    peak = storm["pool_peak"]
    row("storm: pool peak in use / max", f"{peak.get('rts_db_pool_in_use_connections', float('nan')):.0f} / "
        f"{peak.get('rts_db_pool_max_connections', float('nan')):.0f}")
    row("storm: pool peak waiting requests", f"{peak.get('rts_db_pool_waiting_requests', float('nan')):.0f}")
    row("storm: pool timeouts", f"{storm['pool_last'].get('rts_db_pool_timeouts_total', float('nan')):.0f}")
    row("storm: API restart (stop + start s)", f"{storm['api_stop_s']:.1f} + {storm['api_start_s']:.1f}")
    row("load average before / after", f"{res['load_before'][0]:.1f} / {res['load_after'][0]:.1f}")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agents", type=int, default=10_000)
    parser.add_argument("--pushes", type=int, default=300)
    parser.add_argument("--in-flight", type=int, default=4)
    parser.add_argument("--settle", type=float, default=25.0, help="hold seconds before measuring memory")
    parser.add_argument("--connect-concurrency", type=int, default=200)
    parser.add_argument("--storm-spread", type=float, default=10.0)
    parser.add_argument("--no-ceiling", dest="ceiling", action="store_false")
    parser.add_argument("--label", default="", help="stored with the result (e.g. before/after a change)")
    parser.add_argument("--log-dir", type=Path, help="keep the servers' logs here (default: a temporary directory)")
    args = parser.parse_args()
    limit = raise_open_files()
    if limit < args.agents + 1000:
        say(f"open-files limit {limit} is too low for {args.agents} sockets")
        return 1
    server = resolve_database_url(Settings.from_env())
    name = f"rts_bench_ws_{os.getpid()}"
    url = create_db(server, name)
    try:
        say(f"migrating {name}")
        migrations.migrate(url)
        if args.log_dir is not None:
            args.log_dir.mkdir(parents=True, exist_ok=True)
            res = run(url, args, args.log_dir)
        else:
            with tempfile.TemporaryDirectory(prefix="rts-bench-ws-") as tmp:
                res = run(url, args, Path(tmp))
    finally:
        drop_db(server, name)
    lines = table(res)
    print("\n" + "\n".join(lines))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    previous = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    runs = previous.get("runs", []) if isinstance(previous, dict) else []
    record = {"when": datetime.now(UTC).isoformat(), "label": args.label,
              "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}, "result": res,
              "table": lines}
    RESULTS.write_text(json.dumps({"latest": record, "runs": [*runs, record][-10:],
                                   "note": "2 shared cores: server, database and client on one machine; loopback"},
                                  indent=2))
    say(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
