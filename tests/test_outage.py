"""PostgreSQL stopped and started under load, against a real server (db/availability.py).

The drill: agents ingest without pause, a portal user and the agents' heartbeats read and write,
/health is polled; this checkout's own local server (``rts-monitor db up``) is stopped, left down
for a few seconds, and started again. Held: no acknowledged sample is lost; while the database is
down every answer that needs it is a 503 with Retry-After, given within about a second, never a
500; service is back within 2 s of the server accepting connections; /health names the database
as down, then up; the scheduler's jobs run again afterwards.

Skipped with DATABASE_URL: the drill stops the server, which is only ours to stop when it is
this checkout's own.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import httpx
import psycopg
import pytest

from rts_monitor.core.settings import Settings
from rts_monitor.devtools import localdb
from tests import factories
from tests.fix_api import ApiServer

pytestmark = pytest.mark.skipif(bool(os.environ.get("DATABASE_URL")),
                                reason="stops and starts this checkout's own local server (rts-monitor db up)")

RECOVERY_BOUND = 2.0  # seconds from PostgreSQL accepting connections to service
FAIL_FAST_BOUND = 1.5  # longest any answer may take while the database is down


@dataclass
class Answer:
    kind: str
    sent: float
    done: float
    status: int
    retry_after: str | None = None
    body: str = ""

    @property
    def seconds(self) -> float:
        return self.done - self.sent


@dataclass
class Drill:
    answers: list[Answer] = field(default_factory=list)
    acked: set[tuple[UUID, datetime]] = field(default_factory=set)
    health: list[tuple[float, int, dict[str, Any]]] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    def record(self, kind: str, sent: float, resp: httpx.Response | None, error: str = "") -> None:
        if resp is None:
            self.answers.append(Answer(kind, sent, time.monotonic(), 0, body=error))
        else:
            self.answers.append(Answer(kind, sent, time.monotonic(), resp.status_code,
                                       resp.headers.get("retry-after"), resp.text[:300]))


async def _ingest(http: httpx.AsyncClient, drill: Drill, agent: factories.Agent, base: datetime, step: int) -> None:
    i = 0
    while not drill.stop.is_set():
        times = [base + timedelta(seconds=i * step + k) for k in range(step)]
        body = {"metrics": [{"collected_at": t.isoformat(), "cpu_percent": 10.0 + k, "memory_percent": 50.0,
                             "services": [{"name": "sshd", "status": "running"}]} for k, t in enumerate(times)]}
        sent = time.monotonic()
        try:
            resp = await http.post(f"/api/agents/{agent.id}/metrics", json=body, headers=agent.headers)
        except httpx.HTTPError as exc:
            drill.record("ingest", sent, None, repr(exc))
        else:
            drill.record("ingest", sent, resp)
            if resp.status_code == 200:
                drill.acked.update((agent.id, t) for t in times)
                i += 1
                continue
        await asyncio.sleep(0.05)  # an agent backs off a little (it would honour Retry-After)


async def _portal(http: httpx.AsyncClient, drill: Drill, agent: factories.Agent, admin: dict[str, str]) -> None:
    while not drill.stop.is_set():
        for kind, call in (("detail", http.get(f"/api/agents/{agent.id}", headers=admin)),
                           ("list", http.get("/api/agents", headers=admin)),
                           ("heartbeat", http.post(f"/api/agents/{agent.id}/heartbeat", json={},
                                                   headers=agent.headers))):
            sent = time.monotonic()
            try:
                drill.record(kind, sent, await call)
            except httpx.HTTPError as exc:
                drill.record(kind, sent, None, repr(exc))
        await asyncio.sleep(0.02)


async def _health(http: httpx.AsyncClient, drill: Drill) -> None:
    while not drill.stop.is_set():
        sent = time.monotonic()
        try:
            resp = await http.get("/health")
            drill.health.append((sent, resp.status_code, resp.json()))
            drill.record("health", sent, resp)
        except httpx.HTTPError as exc:
            drill.record("health", sent, None, repr(exc))
        await asyncio.sleep(0.1)


async def _accepting(url: str) -> float:
    """Poll until PostgreSQL accepts a connection; the moment it did."""
    while True:
        try:
            c = await psycopg.AsyncConnection.connect(url, connect_timeout=1)
        except psycopg.OperationalError:
            await asyncio.sleep(0.02)
            continue
        await c.close()
        return time.monotonic()


@pytest.mark.parametrize("mode", ["fast", "immediate"])  # a clean shutdown, and one like a crash
async def test_database_restart_under_load(api_factory: Callable[..., ApiServer], conn: Any, db_url: str,
                                           mode: str) -> None:
    server = api_factory(env={"RTS_ALERT_EVALUATE_SECONDS": "1", "RTS_PRESENCE_JOB_SECONDS": "1"})
    biz = await factories.business(conn)
    agents = [await factories.agent(conn, biz) for _ in range(8)]
    admin = server.headers(server.token("admin", user_id=await factories.user(conn, None, "admin")))
    settings = Settings.from_env()
    base = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=6)
    drill = Drill()
    async with server.client() as http:
        for a in agents:  # warm the auth cache and the pool
            assert (await http.post(f"/api/agents/{a.id}/heartbeat", json={}, headers=a.headers)).status_code == 200
        tasks = [asyncio.create_task(_ingest(http, drill, a, base + timedelta(minutes=30 * n), 1 + n % 3))
                 for n, a in enumerate(agents)]
        tasks += [asyncio.create_task(_portal(http, drill, agents[0], admin)),
                  asyncio.create_task(_health(http, drill))]
        try:
            await asyncio.sleep(2)
            stopped = time.monotonic()
            await asyncio.to_thread(localdb.stop_server, settings, mode=mode)
            down = time.monotonic()  # from here until `starting` the server is certainly gone
            await asyncio.sleep(4)
            starting = time.monotonic()
            await asyncio.to_thread(localdb.start_server, settings)
        finally:
            if not (await _server_up(db_url)):
                await asyncio.to_thread(localdb.start_server, settings)
        accepting = await _accepting(db_url)
        await asyncio.sleep(4)
        drill.stop.set()
        await asyncio.gather(*tasks)

    answers = drill.answers
    by_status: dict[int, int] = {}
    for a in answers:
        by_status[a.status] = by_status.get(a.status, 0) + 1
    unexpected = [a for a in answers if a.status not in (200, 503)]
    assert not unexpected, unexpected[:5]
    assert all(a.retry_after for a in answers if a.status == 503), "every 503 says when to retry"

    # while down: 503s, and fast ones
    during = [a for a in answers if down <= a.sent < starting]
    assert during and {a.status for a in during if a.kind != "health"} == {503}, (
        by_status, [(a.kind, a.sent - stopped, a.done - stopped) for a in during if a.status == 200])
    slowest = max(a.seconds for a in during)
    assert slowest <= FAIL_FAST_BOUND, f"slowest answer while down: {slowest:.2f} s"
    first_503 = min(a.done for a in answers if a.status == 503) - stopped

    # back within the bound
    late_failures = [a for a in answers if a.sent > accepting + RECOVERY_BOUND and a.status != 200]
    assert not late_failures, late_failures[:5]
    first_ok = min(a.done for a in answers if a.sent >= accepting and a.status == 200 and a.kind == "ingest")

    # /health said which dependency was down, then that all is well
    said = [body for t, _, body in drill.health if down + 0.3 < t < starting]
    assert said and all(b["down"][:1] == ["database"] and b["status"] == "degraded" for b in said), said[:2]
    assert drill.health[-1][1] == 200 and drill.health[-1][2]["down"] == []

    # nothing acknowledged was lost
    async with await psycopg.AsyncConnection.connect(db_url) as check:
        stored = set(await (await check.execute(
            "SELECT agent_device_id, collected_at FROM agent_metrics WHERE agent_device_id = ANY(%s)",
            ([a.id for a in agents],))).fetchall())
        assert drill.acked and drill.acked <= stored, f"{len(drill.acked - stored)} acknowledged samples missing"
        # the scheduler's jobs survived the outage: an evaluation cycle ran after it
        row = await (await check.execute("SELECT max(started_at) FROM alert_evaluation_runs")).fetchone()
        assert row is not None and row[0] is not None
        ran_after = row[0].timestamp() - (time.time() - (time.monotonic() - accepting))
        assert ran_after > 0, "no alert evaluation after the database came back"

    during_503 = [a.seconds for a in during if a.status == 503]
    print(f"\noutage drill ({mode}): {by_status}; first 503 {first_503:.2f} s after the stop; while down "
          f"{len(during_503)} answers, median {statistics.median(during_503) * 1000:.0f} ms, slowest "
          f"{slowest * 1000:.0f} ms; first ingest 200 {first_ok - accepting:.2f} s after PostgreSQL accepted "
          f"connections; {len(drill.acked)} samples acknowledged, all stored")
    assert server.proc.poll() is None
    log = server.log_path.read_text(errors="replace")
    assert "request.failed" not in log and "Traceback" not in log, server.log_tail(80)


async def _server_up(url: str) -> bool:
    try:
        c = await psycopg.AsyncConnection.connect(url, connect_timeout=2)
    except psycopg.OperationalError:
        return False
    await c.close()
    return True


async def test_a_restart_nobody_saw_costs_no_request(api_factory: Callable[..., ApiServer], conn: Any,
                                                     db_url: str) -> None:
    """Restarted while idle, the pool holds only broken connections; the first requests after must
    not meet them (db/pool.py tests a connection that sat idle before handing it out)."""
    server = api_factory(env={"RTS_DB_POOL_MIN": "4", "RTS_SCHEDULER_ENABLED": "false"})
    biz = await factories.business(conn)
    agent = await factories.agent(conn, biz)
    admin = server.headers(server.token("admin", user_id=await factories.user(conn, None, "admin")))
    async with server.client() as http:
        for _ in range(8):  # every pooled connection used once
            await asyncio.gather(*(http.get(f"/api/agents/{agent.id}", headers=admin) for _ in range(4)))
        await asyncio.to_thread(localdb.stop_server, Settings.from_env())
        await asyncio.to_thread(localdb.start_server, Settings.from_env())
        await _accepting(db_url)
        await asyncio.sleep(2.5)  # idle for longer than the pool trusts a connection blindly
        answers = [await http.get(f"/api/agents/{agent.id}", headers=admin) for _ in range(6)]
        answers += await asyncio.gather(*(http.post(f"/api/agents/{agent.id}/heartbeat", json={},
                                                    headers=agent.headers) for _ in range(6)))
    assert [r.status_code for r in answers] == [200] * len(answers), [r.text for r in answers]
