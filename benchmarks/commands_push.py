"""Command delivery latency: portal create → WebSocket push, same instance and across instances
(LISTEN/NOTIFY), side by side with its ceilings (the HTTP create alone; a raw NOTIFY round trip).

Starts two real `rts-monitor serve` processes (A, B) on a database it creates and drops
(`rts_bench_commands_<pid>`), connects agents' sockets to both, then per run:

* `create (HTTP)`: POST /api/agents/{id}/commands, response time (what the portal waits for);
* `push, same instance`: create through A → received on a socket held by A;
* `push, other instance`: create through A → received on a socket held by B;
* `NOTIFY round trip`: NOTIFY on one psycopg connection → received by a LISTEN connection (the
  floor of the cross-instance hop);
* `burst`: N creates, 16 in flight, through A to sockets on B: commands/s end to end.

Usage:  .venv/bin/python benchmarks/commands_push.py [--agents 40] [--commands 150] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
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
import httpx
import psycopg
from support import pct, say, start_api, with_dbname

from rts_monitor.auth import agents as agent_tokens
from rts_monitor.auth import portal
from rts_monitor.core.settings import Settings
from rts_monitor.db import migrations, resolve_database_url
from rts_monitor.devtools import apiprocess

RESULTS = Path(__file__).with_name("results") / "commands_push.json"
BURST_IN_FLIGHT = 16


def make_world(url: str, n_agents: int) -> tuple[str, list[tuple[str, str]]]:
    """A business, a technician (returns its id) and ``n_agents`` agents (id, token)."""
    with psycopg.connect(url, autocommit=True) as conn:
        biz = conn.execute("INSERT INTO businesses (business_name) VALUES ('bench') RETURNING id").fetchone()
        assert biz is not None
        tech = conn.execute("INSERT INTO users (email, role) VALUES ('t@bench', 'technician') RETURNING id").fetchone()
        assert tech is not None
        out = []
        for i in range(n_agents):
            token, token_hash = agent_tokens.new_token()
            row = conn.execute(
                "INSERT INTO agent_devices (business_id, agent_token_hash, device_name, os_type, agent_version, "
                "status) VALUES (%s, %s, %s, 'linux', '1.0.0', 'online') RETURNING id",
                (biz[0], token_hash, f"bench-{i}")).fetchone()
            assert row is not None
            out.append((str(row[0]), token))
    return str(tech[0]), out


class Sockets:
    """Agents' sockets; records when each command arrived."""

    def __init__(self) -> None:
        self.arrived: dict[str, float] = {}
        self.waiters: dict[str, asyncio.Event] = {}
        self.tasks: list[asyncio.Task[None]] = []

    async def connect(self, session: aiohttp.ClientSession, base: str, token: str) -> None:
        ws = await session.ws_connect(base.replace("http://", "ws://") + "/ws",
                                      headers={"Authorization": f"Bearer {token}"})
        self.tasks.append(asyncio.create_task(self._read(ws)))

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for msg in ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                return
            body = json.loads(msg.data)
            if body.get("type") == "command":
                self.arrived[body["command_id"]] = time.perf_counter()
                self.waiters.setdefault(body["command_id"], asyncio.Event()).set()

    async def wait(self, command_id: str, timeout: float = 10) -> float:  # noqa: ASYNC109
        await asyncio.wait_for(self.waiters.setdefault(command_id, asyncio.Event()).wait(), timeout)
        return self.arrived[command_id]


async def create(client: httpx.AsyncClient, agent_id: str, headers: dict[str, str]) -> str:
    resp = await client.post(f"/api/agents/{agent_id}/commands", headers=headers,
                             json={"command_type": "restart_service", "params": {"service_name": "nginx"}})
    resp.raise_for_status()
    return str(resp.json()["id"])


async def sequential(client: httpx.AsyncClient, socks: Sockets, agents: list[tuple[str, str]], n: int,
                     headers: dict[str, str], label: str) -> tuple[list[float], list[float]]:
    """(create response ms, create → push ms) for ``n`` commands one after another."""
    created, pushed = [], []
    for i in range(n):
        t0 = time.perf_counter()
        cid = await create(client, agents[i % len(agents)][0], headers)
        created.append((time.perf_counter() - t0) * 1000)
        pushed.append((await socks.wait(cid) - t0) * 1000)
        if (i + 1) % 50 == 0:
            say(f"  {label}: {i + 1}/{n}")
    return created, pushed


async def burst(client: httpx.AsyncClient, socks: Sockets, agents: list[tuple[str, str]], n: int,
                headers: dict[str, str]) -> float:
    """Commands/s from the first create to the last push, ``BURST_IN_FLIGHT`` creates in flight."""
    sem = asyncio.Semaphore(BURST_IN_FLIGHT)
    t0 = time.perf_counter()

    async def one(i: int) -> float:
        async with sem:
            cid = await create(client, agents[i % len(agents)][0], headers)
        return await socks.wait(cid, timeout=30)

    last = max(await asyncio.gather(*(one(i) for i in range(n))))
    return n / (last - t0)


async def notify_round_trip(url: str, n: int) -> list[float]:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as listen, \
            await psycopg.AsyncConnection.connect(url, autocommit=True) as talk:
        await listen.execute("LISTEN bench_rt")
        out = []
        gen = listen.notifies()
        for i in range(n):
            t0 = time.perf_counter()
            await talk.execute("SELECT pg_notify('bench_rt', %s)", (str(i),))
            note = await anext(gen)
            assert note.payload == str(i)
            out.append((time.perf_counter() - t0) * 1000)
        await gen.aclose()
    return out


async def run(url: str, secret: str, args: argparse.Namespace, log_dir: Path) -> dict[str, Any]:
    tech_id, agents = make_world(url, args.agents * 2)
    on_a, on_b = agents[: args.agents], agents[args.agents:]
    server_env = {"RTS_JWT_SECRET": secret}
    (proc_a, base_a), (proc_b, base_b) = start_api(url, log_dir, server_env), start_api(url, log_dir, server_env)
    settings = Settings(jwt_secret=secret)
    headers = {"Authorization": "Bearer " + portal.mint(settings, role="technician", user_id=uuid.UUID(str(tech_id)))}
    rows: dict[str, list[dict[str, float]]] = {}
    try:
        async with aiohttp.ClientSession() as session, httpx.AsyncClient(base_url=base_a, timeout=30) as client:
            socks = Sockets()
            for _agent_id, token in on_a:
                await socks.connect(session, base_a, token)
            for _agent_id, token in on_b:
                await socks.connect(session, base_b, token)
            say(f"{len(on_a)} sockets on A, {len(on_b)} on B")
            await sequential(client, socks, on_b, 20, headers, "warm-up")
            for r in range(args.runs):
                say(f"run {r + 1}/{args.runs}")
                created_a, same = await sequential(client, socks, on_a, args.commands, headers, "same instance")
                created_b, other = await sequential(client, socks, on_b, args.commands, headers, "other instance")
                notify = await notify_round_trip(url, args.commands)
                rate = await burst(client, socks, on_b, args.commands, headers)
                for name, values in (("create (HTTP)", created_a + created_b), ("push, same instance", same),
                                     ("push, other instance", other), ("NOTIFY round trip (ceiling)", notify)):
                    rows.setdefault(name, []).append({"p50_ms": statistics.median(values),
                                                      "p99_ms": pct(values, 0.99), "n": len(values)})
                rows.setdefault("burst, other instance (cmd/s)", []).append({"rate": rate})
            for task in socks.tasks:
                task.cancel()
    finally:
        for proc in (proc_a, proc_b):
            apiprocess.stop(proc)
    return rows


def summarize(rows: dict[str, list[dict[str, float]]]) -> dict[str, dict[str, float]]:
    out = {}
    for name, runs in rows.items():
        out[name] = {key: statistics.median(r[key] for r in runs) for key in runs[0] if key != "n"}
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agents", type=int, default=40, help="sockets per instance")
    parser.add_argument("--commands", type=int, default=150, help="commands per measurement and run")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    server_url = resolve_database_url(Settings.from_env())
    name = f"rts_bench_commands_{os.getpid()}"
    with psycopg.connect(with_dbname(server_url, "postgres"), autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = with_dbname(server_url, name)
    try:
        say(f"migrating {name}")
        migrations.migrate(url)
        with tempfile.TemporaryDirectory(prefix="rts-bench-cmd-") as tmp:
            rows = asyncio.run(run(url, "bench-" + secrets.token_urlsafe(24), args, Path(tmp)))
    finally:
        with psycopg.connect(with_dbname(server_url, "postgres"), autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    summary = summarize(rows)
    create_p50 = summary["create (HTTP)"]["p50_ms"]
    print(f"\n{'path':<32} {'p50 ms':>8} {'p99 ms':>8} {'p50 / create':>13}")
    for label, vals in summary.items():
        if "rate" in vals:
            print(f"{label:<32} {vals['rate']:>8.0f}")
            continue
        print(f"{label:<32} {vals['p50_ms']:>8.2f} {vals['p99_ms']:>8.2f} {vals['p50_ms'] / create_p50:>13.2f}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "when": datetime.now(UTC).isoformat(), "args": vars(args), "median_of_runs": summary, "runs": rows,
        "note": "2 cores shared by both servers, the database and this client; loopback",
    }, indent=2))
    say(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
