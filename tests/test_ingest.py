"""Metric ingestion end to end: real servers, real TimescaleDB, group commit under load and kills."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from uuid import UUID, uuid4

import httpx
import msgspec
import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg.rows import dict_row

from rts_monitor.core.context import AfterIngest, AppContext
from rts_monitor.core.edition import DatabaseInfo
from rts_monitor.core.settings import Settings
from rts_monitor.db import open_pool
from rts_monitor.ingest.pipeline import IngestPipeline
from rts_monitor.ingest.validate import decode, prepare
from tests import factories
from tests.fix_api import ApiServer

BASE = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)


def sample(i: int, *, base: datetime = BASE, **over: Any) -> dict[str, Any]:
    """A plausible sample, ``i`` seconds after ``base``."""
    s: dict[str, Any] = {
        "collected_at": (base + timedelta(seconds=i)).isoformat(),
        "cpu_percent": 45.5,
        "memory_used_gb": 8.5,
        "memory_percent": 53.1,
        "disk_used_gb": 450.0,
        "disk_percent": 87.9,
        "load_average": [1.5, 1.25, 1.0],
        "uptime_seconds": 345600 + i,
        "network_rx_bytes": 10_000_000_000 + i,
        "network_tx_bytes": 2_000 + i,
    }
    s.update(over)
    return s


def url(agent_id: UUID) -> str:
    return f"/api/agents/{agent_id}/metrics"


async def count_rows(conn: Any, agent_id: UUID) -> int:
    cur = await conn.execute("SELECT count(*) AS n FROM agent_metrics WHERE agent_device_id = %s", (agent_id,))
    return int((await cur.fetchone())["n"])


async def stored_times(conn: Any, agent_ids: list[UUID]) -> set[tuple[UUID, datetime]]:
    cur = await conn.execute(
        "SELECT agent_device_id, collected_at FROM agent_metrics WHERE agent_device_id = ANY(%s)", (agent_ids,))
    return {(r["agent_device_id"], r["collected_at"]) for r in await cur.fetchall()}


# --- the contract ------------------------------------------------------------------------------


async def test_batch_is_stored_with_its_side_effects(client: httpx.AsyncClient, api_conn: Any) -> None:
    biz = await factories.business(api_conn)
    agent = await factories.agent(api_conn, biz, status="offline")
    services = [{"name": "nginx", "status": "running", "pid": 1234},
                {"name": "postgresql", "status": "running", "pid": 5678, "display_name": "PostgreSQL 17"}]
    body = {"metrics": [sample(0), sample(60), sample(120, services=services, cpu_percent=12.5)]}
    resp = await client.post(url(agent.id), json=body, headers=agent.headers)
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"received": 3, "duplicates": 0, "alerts_triggered": []}

    cur = await api_conn.execute(
        "SELECT * FROM agent_metric_values WHERE agent_device_id = %s ORDER BY collected_at", (agent.id,))
    rows = await cur.fetchall()
    assert [r["collected_at"] for r in rows] == [BASE, BASE + timedelta(seconds=60), BASE + timedelta(seconds=120)]
    last = rows[-1]
    assert last["cpu_percent"] == pytest.approx(12.5)
    assert (last["load_average_1m"], last["load_average_5m"], last["load_average_15m"]) == (1.5, 1.25, 1.0)
    assert last["uptime_seconds"] == 345720 and last["network_rx_bytes"] == 10_000_000_120

    cur = await api_conn.execute("SELECT * FROM metric_ingest_ranges WHERE agent_device_id = %s", (agent.id,))
    ranges = await cur.fetchall()
    assert [(r["range_start"], r["range_end"], r["row_count"]) for r in ranges] == [
        (BASE, BASE + timedelta(seconds=120), 3)]

    cur = await api_conn.execute("SELECT status, last_metrics_received FROM agent_devices WHERE id = %s", (agent.id,))
    dev = await cur.fetchone()
    assert dev["status"] == "online" and dev["last_metrics_received"] is not None
    cur = await api_conn.execute(
        "SELECT from_status, to_status, reason FROM agent_status_transitions WHERE agent_device_id = %s", (agent.id,))
    assert await cur.fetchall() == [{"from_status": "offline", "to_status": "online", "reason": "metrics"}]

    cur = await api_conn.execute(
        "SELECT service_name, service_display_name, status, pid, restart_count, last_state_change "
        "FROM agent_monitored_services WHERE agent_device_id = %s ORDER BY service_name", (agent.id,))
    svc = await cur.fetchall()
    assert [(s["service_name"], s["status"], s["pid"], s["restart_count"]) for s in svc] == [
        ("nginx", "running", 1234, 0), ("postgresql", "running", 5678, 0)]
    assert svc[1]["service_display_name"] == "PostgreSQL 17"
    assert svc[0]["last_state_change"] == BASE + timedelta(seconds=120)


async def test_resent_batches_are_counted_as_duplicates_never_stored_twice(
        client: httpx.AsyncClient, api_conn: Any) -> None:
    t = await factories.tenant(api_conn)
    batch = {"metrics": [sample(i) for i in range(5)]}
    first = await client.post(url(t.agent.id), json=batch, headers=t.agent.headers)
    assert first.json() == {"received": 5, "duplicates": 0, "alerts_triggered": []}
    again = await client.post(url(t.agent.id), json=batch, headers=t.agent.headers)
    assert again.status_code == 200
    assert again.json() == {"received": 0, "duplicates": 5, "alerts_triggered": []}
    overlap = {"metrics": [sample(i) for i in range(3, 8)] + [sample(7)]}  # 3, 4 stored; 7 twice
    resp = await client.post(url(t.agent.id), json=overlap, headers=t.agent.headers)
    assert resp.json() == {"received": 3, "duplicates": 3, "alerts_triggered": []}
    assert await count_rows(api_conn, t.agent.id) == 8
    cur = await api_conn.execute(
        "SELECT range_start, range_end, row_count FROM metric_ingest_ranges WHERE agent_device_id = %s "
        "ORDER BY id", (t.agent.id,))
    # only what each flush actually wrote: the full replay recorded nothing
    assert [(r["range_start"], r["range_end"], r["row_count"]) for r in await cur.fetchall()] == [
        (BASE, BASE + timedelta(seconds=4), 5),
        (BASE + timedelta(seconds=5), BASE + timedelta(seconds=7), 3)]


async def test_services_track_state_changes_restarts_and_ignore_old_replays(
        client: httpx.AsyncClient, api_conn: Any) -> None:
    t = await factories.tenant(api_conn)

    async def send(i: int, status: str, pid: int | None) -> None:
        body = {"metrics": [sample(i, services=[{"name": "nginx", "status": status, "pid": pid}])]}
        resp = await client.post(url(t.agent.id), json=body, headers=t.agent.headers)
        assert resp.status_code == 200, resp.text

    async def nginx() -> dict[str, Any]:
        cur = await api_conn.execute(
            "SELECT status, pid, restart_count, last_state_change, last_checked FROM agent_monitored_services "
            "WHERE agent_device_id = %s AND service_name = 'nginx'", (t.agent.id,))
        row: dict[str, Any] = await cur.fetchone()
        return row

    await send(0, "running", 100)
    await send(10, "running", 200)  # restarted: new pid
    row = await nginx()
    assert (row["pid"], row["restart_count"], row["last_state_change"]) == (200, 1, BASE)
    await send(20, "stopped", None)
    row = await nginx()
    assert (row["status"], row["restart_count"], row["last_state_change"]) == (
        "stopped", 1, BASE + timedelta(seconds=20))
    await send(5, "running", 999)  # an old sample replayed late does not overwrite newer state
    row = await nginx()
    assert (row["status"], row["pid"], row["last_checked"]) == ("stopped", None, BASE + timedelta(seconds=20))


async def test_disabled_device_is_not_brought_online(client: httpx.AsyncClient, api_conn: Any) -> None:
    biz = await factories.business(api_conn)
    agent = await factories.agent(api_conn, biz, status="disabled")
    resp = await client.post(url(agent.id), json={"metrics": [sample(0)]}, headers=agent.headers)
    assert resp.status_code == 200
    cur = await api_conn.execute("SELECT status FROM agent_devices WHERE id = %s", (agent.id,))
    assert (await cur.fetchone())["status"] == "disabled"
    cur = await api_conn.execute("SELECT count(*) AS n FROM agent_status_transitions WHERE agent_device_id = %s",
                                 (agent.id,))
    assert (await cur.fetchone())["n"] == 0


# --- bad input ---------------------------------------------------------------------------------

INVALID = [
    ({"cpu_percent": 101}, "metrics[1].cpu_percent", "must be between 0 and 100"),
    ({"cpu_percent": -0.5}, "metrics[1].cpu_percent", "must be between 0 and 100"),
    ({"memory_percent": "high"}, "metrics[1].memory_percent", "must be between 0 and 100"),
    ({"disk_percent": 100.01}, "metrics[1].disk_percent", "must be between 0 and 100"),
    ({"memory_used_gb": -1}, "metrics[1].memory_used_gb", "non-negative number of GB"),
    ({"disk_used_gb": 1e300}, "metrics[1].disk_used_gb", "non-negative number of GB"),
    ({"load_average": [1, 2]}, "metrics[1].load_average", "array of 3 non-negative numbers"),
    ({"load_average": [1, -2, 3]}, "metrics[1].load_average[1]", "array of 3 non-negative numbers"),
    ({"uptime_seconds": 1.5}, "metrics[1].uptime_seconds", "non-negative integer"),
    ({"uptime_seconds": -1}, "metrics[1].uptime_seconds", "non-negative integer"),
    ({"network_rx_bytes": 2**63}, "metrics[1].network_rx_bytes", "64-bit integer"),
    ({"network_tx_bytes": "1"}, "metrics[1].network_tx_bytes", "64-bit integer"),
    ({"collected_at": "yesterday"}, "metrics[1].collected_at", "RFC 3339 timestamp"),
    ({"collected_at": "2025-10-09T10:30:00"}, "metrics[1].collected_at", "with a timezone"),
    ({"collected_at": None}, "metrics[1].collected_at", "is required"),
    ({"services": {"name": "x"}}, "metrics[1].services", "array of {name, status, pid}"),
    ({"services": [{"status": "running"}]}, "metrics[1].services[0].name", "is required"),
    ({"services": [{"name": ""}]}, "metrics[1].services[0].name", "1 to 255 characters"),
    ({"services": [{"name": "a", "pid": -3}]}, "metrics[1].services[0].pid", "between 0 and 2147483647"),
    ({"services": [{"name": "a", "status": "x" * 51}]}, "metrics[1].services[0].status", "at most 50"),
    ({"services": [{"name": "a"}, {"name": "a"}]}, "metrics[1].services[1].name", "appears twice"),
]


@pytest.mark.parametrize(("change", "field", "text"), INVALID, ids=[f for _, f, _ in INVALID])
async def test_each_invalid_field_is_a_422_naming_it_and_nothing_is_written(
        client: httpx.AsyncClient, api_conn: Any, change: dict[str, Any], field: str, text: str) -> None:
    t = await factories.tenant(api_conn)
    bad = sample(1)
    bad.update(change)
    if change.get("collected_at", "") is None:
        del bad["collected_at"]
    resp = await client.post(url(t.agent.id), json={"metrics": [sample(0), bad, sample(2)]}, headers=t.agent.headers)
    assert resp.status_code == 422, resp.text
    body = resp.json()
    assert body["field"] == field
    assert body["message"].startswith(f"{field}: ") and text in body["message"], body
    assert await count_rows(api_conn, t.agent.id) == 0


async def test_every_samples_services_are_validated_not_only_the_newest(client: httpx.AsyncClient,
                                                                       api_conn: Any) -> None:
    """Services lists are decoded lazily (an unchanged list is not decoded twice), but a bad list in
    an older sample is still a 422 naming it, and a null list means no services in that sample."""
    t = await factories.tenant(api_conn)
    good = [{"name": "nginx", "status": "running", "pid": 1}]
    bodies = [
        ([sample(0, services=[{"name": "a", "pid": -1}]), sample(1, services=good), sample(2, services=good)],
         "metrics[0].services[0].pid"),
        ([sample(0, services=good), sample(1, services=good), sample(2, services=[{"pid": 3}])],
         "metrics[2].services[0].name"),
        ([sample(0, services=good), sample(1, services="nginx"), sample(2, services=good)], "metrics[1].services"),
    ]
    for metrics, field in bodies:
        resp = await client.post(url(t.agent.id), json={"metrics": metrics}, headers=t.agent.headers)
        assert resp.status_code == 422, resp.text
        assert resp.json()["field"] == field, resp.json()
    assert await count_rows(api_conn, t.agent.id) == 0
    changed = [{"name": "nginx", "status": "stopped", "pid": None}]
    resp = await client.post(url(t.agent.id), json={"metrics": [
        sample(0, services=good), sample(1, services=changed), sample(2, services=None)]}, headers=t.agent.headers)
    assert resp.status_code == 200, resp.text
    cur = await api_conn.execute("SELECT service_name, status, pid, last_checked FROM agent_monitored_services "
                                 "WHERE agent_device_id = %s", (t.agent.id,))
    rows = await cur.fetchall()
    # the newest sample WITH services (1; sample 2 said null) is what is stored
    assert [(r["service_name"], r["status"], r["pid"], r["last_checked"]) for r in rows] == [
        ("nginx", "stopped", None, BASE + timedelta(seconds=1))]


@pytest.mark.parametrize(("body", "status", "field"), [
    ({"metrics": []}, 422, "metrics"),
    ({}, 422, "body"),
    ([], 422, "body"),
    ({"metrics": "x"}, 422, "metrics"),
])
async def test_wrong_shapes_are_422(client: httpx.AsyncClient, api_conn: Any, body: Any, status: int,
                                    field: str) -> None:
    t = await factories.tenant(api_conn)
    resp = await client.post(url(t.agent.id), json=body, headers=t.agent.headers)
    assert resp.status_code == status, resp.text
    assert resp.json()["field"] == field


async def test_malformed_json_is_400(client: httpx.AsyncClient, api_conn: Any) -> None:
    t = await factories.tenant(api_conn)
    resp = await client.post(url(t.agent.id), content=b'{"metrics": [', headers=t.agent.headers)
    assert resp.status_code == 400
    assert resp.json()["code"] == "bad_request"


async def test_future_and_too_old_timestamps_are_rejected_with_a_reason(
        client: httpx.AsyncClient, api_conn: Any) -> None:
    t = await factories.tenant(api_conn)
    now = datetime.now(UTC)
    future = {"metrics": [sample(0), sample(0, base=now + timedelta(minutes=10))]}
    resp = await client.post(url(t.agent.id), json=future, headers=t.agent.headers)
    assert resp.status_code == 422
    assert resp.json()["field"] == "metrics[1].collected_at"
    assert "in the future" in resp.json()["message"]
    old = {"metrics": [sample(0, base=now - timedelta(days=31))]}
    resp = await client.post(url(t.agent.id), json=old, headers=t.agent.headers)
    assert resp.status_code == 422
    assert resp.json()["field"] == "metrics[0].collected_at"
    assert "older than the raw retention of 30 days" in resp.json()["message"]
    near = {"metrics": [sample(0, base=now + timedelta(minutes=2)), sample(0, base=now - timedelta(days=29))]}
    resp = await client.post(url(t.agent.id), json=near, headers=t.agent.headers)
    assert resp.status_code == 200, resp.text
    assert await count_rows(api_conn, t.agent.id) == 2


async def test_body_over_the_limit_is_413(client: httpx.AsyncClient, api: ApiServer, api_conn: Any) -> None:
    t = await factories.tenant(api_conn)
    one = json.dumps(sample(0)).encode()
    n = api.settings.max_body_bytes // len(one) + 10
    body = b'{"metrics": [' + b",".join([one] * n) + b"]}"
    assert len(body) > api.settings.max_body_bytes
    resp = await client.post(url(t.agent.id), content=body,
                             headers={**t.agent.headers, "content-type": "application/json"})
    assert resp.status_code == 413
    assert resp.json()["code"] == "payload_too_large"
    assert await count_rows(api_conn, t.agent.id) == 0


async def test_unknown_revoked_or_other_agents_tokens(client: httpx.AsyncClient, api_conn: Any) -> None:
    t = await factories.tenant(api_conn)
    other = await factories.agent(api_conn, t.business_id)
    body = {"metrics": [sample(0)]}
    assert (await client.post(url(t.agent.id), json=body)).status_code == 401
    resp = await client.post(url(t.agent.id), json=body, headers={"Authorization": "Bearer rtsa_nope"})
    assert resp.status_code == 401
    resp = await client.post(url(t.agent.id), json=body, headers=other.headers)
    assert resp.status_code == 403
    await api_conn.execute("UPDATE agent_devices SET agent_token_revoked_at = now() WHERE id = %s", (other.id,))
    resp = await client.post(url(other.id), json=body, headers=other.headers)
    # the per-process token cache may answer for up to 5 s after a revocation by another process
    deadline = time.monotonic() + 8
    while resp.status_code == 200 and time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        resp = await client.post(url(other.id), json={"metrics": [sample(1)]}, headers=other.headers)
    assert resp.status_code == 401
    assert await count_rows(api_conn, t.agent.id) == 0


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.one_of(
    st.binary(max_size=300),
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
        lambda kids: st.lists(kids, max_size=4) | st.dictionaries(
            st.sampled_from(["metrics", "collected_at", "cpu_percent", "load_average", "services", "name",
                             "pid", "uptime_seconds", "x"]), kids, max_size=5),
        max_leaves=25).map(lambda v: json.dumps(v).encode()),
))
def test_fuzzed_bodies_never_get_a_500(fuzz_target: tuple[str, dict[str, str]], data: bytes) -> None:
    base_url, headers = fuzz_target
    resp = httpx.post(base_url, content=data, headers=headers, timeout=10)
    assert resp.status_code in (200, 400, 413, 422), (resp.status_code, resp.text, data)


@pytest.fixture
def fuzz_target(api: ApiServer, api_db: str) -> tuple[str, dict[str, str]]:
    """An agent of the session server (sync: hypothesis drives plain functions)."""
    async def make() -> factories.Agent:
        async with await psycopg.AsyncConnection.connect(api_db, autocommit=True, row_factory=dict_row) as c:
            return await factories.agent(c, await factories.business(c))

    agent = asyncio.run(make())
    return api.url + url(agent.id), {**agent.headers, "content-type": "application/json"}


# --- concurrency, back-pressure, shutdown, crash ----------------------------------------------


async def test_many_concurrent_clients_every_acknowledged_row_once(client: httpx.AsyncClient,
                                                                   api_conn: Any) -> None:
    biz = await factories.business(api_conn)
    agents = [await factories.agent(api_conn, biz) for _ in range(16)]
    per_agent, samples = 25, 8

    async def agent_load(a: factories.Agent) -> int:
        got = 0
        async with httpx.AsyncClient(base_url=str(client.base_url), timeout=30) as c:
            for r in range(per_agent):
                batch = [sample(r * samples + k) for k in range(samples)]
                if r % 5 == 4:  # a retry of the previous request interleaved with new data
                    batch += [sample((r - 1) * samples + k) for k in range(samples)]
                resp = await c.post(url(a.id), json={"metrics": batch}, headers=a.headers)
                assert resp.status_code == 200, resp.text
                got += resp.json()["received"]
        return got

    received = await asyncio.gather(*(agent_load(a) for a in agents))
    assert received == [per_agent * samples] * len(agents)
    cur = await api_conn.execute(
        "SELECT agent_device_id, count(*) AS n, count(DISTINCT collected_at) AS d FROM agent_metrics "
        "WHERE agent_device_id = ANY(%s) GROUP BY 1", ([a.id for a in agents],))
    rows = await cur.fetchall()
    assert sorted((r["n"], r["d"]) for r in rows) == [(per_agent * samples, per_agent * samples)] * len(agents)
    cur = await api_conn.execute(
        "SELECT sum(row_count) AS n FROM metric_ingest_ranges WHERE agent_device_id = ANY(%s)",
        ([a.id for a in agents],))
    assert (await cur.fetchone())["n"] == per_agent * samples * len(agents)


async def test_the_same_batch_sent_concurrently_is_stored_once(client: httpx.AsyncClient, api_conn: Any) -> None:
    t = await factories.tenant(api_conn)
    batch = {"metrics": [sample(i) for i in range(50)]}
    resps = await asyncio.gather(*(client.post(url(t.agent.id), json=batch, headers=t.agent.headers)
                                   for _ in range(12)))
    assert all(r.status_code == 200 for r in resps)
    assert sum(r.json()["received"] for r in resps) == 50
    assert sum(r.json()["duplicates"] for r in resps) == 50 * 11
    assert await count_rows(api_conn, t.agent.id) == 50


async def test_saturated_pipeline_answers_503_with_retry_after(
        api_factory: Callable[..., ApiServer], conn: Any) -> None:
    server = api_factory(env={"RTS_INGEST_QUEUE_ROWS": "50", "RTS_INGEST_FLUSH_DELAY_MS": "300",
                              "RTS_INGEST_FLUSH_ROWS": "100000"})
    biz = await factories.business(conn)
    agents = [await factories.agent(conn, biz) for _ in range(8)]
    async with server.client() as c:
        resps = await asyncio.gather(*(
            c.post(url(a.id), json={"metrics": [sample(i) for i in range(40)]}, headers=a.headers) for a in agents))
    codes = sorted(r.status_code for r in resps)
    assert 200 in codes and 503 in codes, codes
    for a, r in zip(agents, resps, strict=True):
        if r.status_code == 503:
            assert int(r.headers["retry-after"]) >= 1
            assert r.json()["code"] == "unavailable"
            assert await count_rows(conn, a.id) == 0
        else:
            assert r.status_code == 200
            assert await count_rows(conn, a.id) == 40


async def _load_until_stopped(server: ApiServer, agents: list[factories.Agent], stop: Callable[[], None],
                              after_requests: int) -> list[tuple[UUID, list[datetime]]]:
    """Clients send 5-sample batches until the server goes away; ``stop`` fires mid-load.

    Returns the samples of every request that got a 2xx. Bounded by count and time."""
    acked: list[tuple[UUID, list[datetime]]] = []
    sent = 0
    fired = asyncio.Event()
    deadline = time.monotonic() + 60

    async def one_agent(a: factories.Agent, offset: int) -> None:
        nonlocal sent
        async with httpx.AsyncClient(base_url=server.url, timeout=40) as c:
            for r in range(2000):
                if time.monotonic() > deadline:
                    return
                times = [BASE + timedelta(seconds=r * 5 + k) for k in range(5)]
                body = {"metrics": [sample(0, base=t) for t in times]}
                try:
                    resp = await c.post(url(a.id), json=body, headers=a.headers)
                except httpx.HTTPError:
                    if fired.is_set():
                        return
                    raise
                sent += 1
                if sent == after_requests and not fired.is_set():
                    fired.set()
                    stop()
                if 200 <= resp.status_code < 300:
                    acked.append((a.id, times))
                elif fired.is_set():
                    assert resp.status_code == 503, resp.text
                    return
                else:
                    raise AssertionError(resp.text)

    await asyncio.gather(*(one_agent(a, i) for i, a in enumerate(agents)))
    assert fired.is_set()
    return acked


async def _assert_all_acked_present(conn: Any, agents: list[factories.Agent],
                                    acked: list[tuple[UUID, list[datetime]]]) -> None:
    stored = await stored_times(conn, [a.id for a in agents])
    want = {(a, t) for a, times in acked for t in times}
    assert want, "no request was acknowledged before the stop"
    missing = want - stored
    assert not missing, f"{len(missing)} acknowledged rows missing, e.g. {sorted(missing)[:3]}"


async def test_sigterm_drains_every_accepted_request(api_factory: Callable[..., ApiServer], conn: Any) -> None:
    server = api_factory(env={"RTS_INGEST_FLUSH_DELAY_MS": "20"})
    biz = await factories.business(conn)
    agents = [await factories.agent(conn, biz) for _ in range(24)]
    loop = asyncio.get_running_loop()
    stopped: list[asyncio.Future[int]] = []

    def stop() -> None:
        stopped.append(loop.run_in_executor(None, server.stop))

    acked = await _load_until_stopped(server, agents, stop, after_requests=300)
    assert await stopped[0] in (0, -15)
    await _assert_all_acked_present(conn, agents, acked)
    log = server.log_path.read_text()
    assert '"event": "ingest.drained"' in log and "ingest.flush_failed" not in log


async def test_sigkill_under_load_loses_no_acknowledged_row(api_factory: Callable[..., ApiServer],
                                                            conn: Any) -> None:
    server = api_factory()
    biz = await factories.business(conn)
    agents = [await factories.agent(conn, biz) for _ in range(24)]
    acked = await _load_until_stopped(server, agents, lambda: server.kill(signal.SIGKILL), after_requests=400)
    assert server.proc.poll() is not None
    await _assert_all_acked_present(conn, agents, acked)


# --- the pipeline in-process: hooks ----------------------------------------------------------


def _context(settings: Settings, pool: Any, *after_ingest: AfterIngest) -> AppContext:
    return AppContext(settings=settings, pool=pool, database=DatabaseInfo("apache", "", ""),
                      after_ingest=after_ingest)


@pytest.fixture
async def pipeline(settings: Settings) -> Any:
    pool = await open_pool(settings, max_size=4)
    p = IngestPipeline(_context(settings, pool), flush_rows=1000, flush_delay_ms=1, queue_rows=10_000,
                       hook_timeout_ms=300)
    p.start()
    yield p
    await p.close()
    await pool.close()


def test_a_null_services_list_never_counts_as_the_newest_services() -> None:
    """``"services": null`` means no services in that sample, wherever it appears in the batch: it
    must not become the batch's newest list (an older request's list in the same flush would lose)."""
    good = [{"name": "nginx", "status": "running", "pid": 1}]
    for metrics, at in (([sample(1, services=None)], None), ([sample(1, services=None), sample(2)], None),
                        ([sample(1, services=good), sample(2, services=None)], BASE + timedelta(seconds=1)),
                        ([sample(2, services=None), sample(1, services=good)], BASE + timedelta(seconds=1))):
        batch = prepare(decode(msgspec.json.encode({"metrics": metrics})), device_id=uuid4(), now=datetime.now(UTC),
                        max_future=timedelta(minutes=5), max_age=timedelta(days=30))
        assert batch.services_at == at, metrics
        assert [s.name for s in batch.services] == (["nginx"] if at else [])


def _prepared(device: UUID, n: int) -> Any:
    batch = decode(msgspec.json.encode({"metrics": [sample(i) for i in range(n)]}))
    return prepare(batch, device_id=device, now=datetime.now(UTC), max_future=timedelta(minutes=5),
                   max_age=timedelta(days=30))


async def test_hooks_see_committed_ranges_and_a_failing_or_slow_hook_loses_nothing(
        settings: Settings, conn: Any) -> None:
    biz = await factories.business(conn)
    a, b = await factories.agent(conn, biz), await factories.agent(conn, biz)
    seen: list[dict[UUID, tuple[datetime, datetime]]] = []

    async def good(ctx: AppContext, ranges: Any) -> dict[UUID, list[str]]:
        # runs after the commit: the rows are visible from another connection
        assert await count_rows(conn, a.id) == 3
        seen.append(dict(ranges))
        return {a.id: ["cpu_high"]}

    async def broken(ctx: AppContext, ranges: Any) -> dict[UUID, list[str]]:
        raise RuntimeError("alerting is down")

    async def slow(ctx: AppContext, ranges: Any) -> dict[UUID, list[str]]:
        await asyncio.sleep(1.5)  # beyond the 300 ms the request waits: it finishes in the background
        return {a.id: ["late"]}

    pool = await open_pool(settings, max_size=4)
    pipeline = IngestPipeline(_context(settings, pool, broken, slow, good), flush_rows=1000, flush_delay_ms=1,
                              queue_rows=10_000, hook_timeout_ms=300)
    pipeline.start()
    try:
        started = time.monotonic()
        ra, rb = await asyncio.gather(pipeline.submit(_prepared(a.id, 3)), pipeline.submit(_prepared(b.id, 2)))
        assert time.monotonic() - started < 1.2
    finally:
        await pipeline.close()
        await pool.close()
    assert (ra.received, ra.alerts) == (3, ["cpu_high"])
    assert (rb.received, rb.alerts) == (2, [])
    assert seen[0][a.id] == (BASE, BASE + timedelta(seconds=2))
    assert pipeline.stats.hook_failures == 1 and pipeline.stats.hooks_late == 1
    assert await count_rows(conn, b.id) == 2


async def test_busy_hooks_get_the_skipped_ranges_merged_later(settings: Settings, conn: Any) -> None:
    pool = await open_pool(settings, max_size=4)
    calls: list[dict[UUID, tuple[datetime, datetime]]] = []

    async def slow(ctx: AppContext, ranges: Any) -> dict[UUID, list[str]]:
        calls.append(dict(ranges))
        await asyncio.sleep(0.4)
        return {}

    p = IngestPipeline(_context(settings, pool, slow), flush_rows=1000, flush_delay_ms=1, queue_rows=10_000,
                       concurrency=1, hook_timeout_ms=50)

    biz = await factories.business(conn)
    devs = [await factories.agent(conn, biz) for _ in range(3)]
    p.start()
    try:
        for d in devs:  # one flush each; the first hook run is still busy for the next two
            assert (await p.submit(_prepared(d.id, 2))).received == 2
        await p.close()
    finally:
        await pool.close()
    assert p.stats.hooks_deferred == 2
    assert [set(c) for c in calls] == [{devs[0].id}, {devs[1].id, devs[2].id}]
    assert calls[1][devs[2].id] == (BASE, BASE + timedelta(seconds=1))


async def test_unknown_device_rows_are_written_without_side_rows(pipeline: IngestPipeline, conn: Any) -> None:
    """No FK on agent_metrics: an unknown device id is written (auth guards the API), no side rows."""
    ghost = uuid4()
    out = await pipeline.submit(_prepared(ghost, 4))
    assert out == (4, 0, [])
    assert await count_rows(conn, ghost) == 4


@pytest.mark.parametrize(("mode", "copy_min_rows"), [("copy", 10**9), ("copy", 0), ("stage", 0)],
                         ids=["one-statement", "copy-with-fallback", "staging"])
async def test_every_write_path_counts_duplicates_and_records_ranges(
        settings: Settings, conn: Any, mode: Any, copy_min_rows: int) -> None:
    pool = await open_pool(settings, max_size=4)
    p = IngestPipeline(_context(settings, pool), flush_rows=1000, flush_delay_ms=20, queue_rows=10_000, mode=mode,
                       copy_min_rows=copy_min_rows)
    p.start()
    try:
        biz = await factories.business(conn)
        a = await factories.agent(conn, biz, status="offline")
        b = await factories.agent(conn, biz)
        first = await p.submit(_prepared(a.id, 4))
        assert first == (4, 0, [])
        # one flush: a replay of 0..3 plus 4..5 for a, 0..2 twice for b from two requests
        out = await asyncio.gather(p.submit(_prepared(a.id, 6)), p.submit(_prepared(b.id, 3)),
                                   p.submit(_prepared(b.id, 3)))
        assert out[0] == (2, 4, [])
        assert sorted(o.received for o in out[1:]) == [0, 3]
        assert sum(o.duplicates for o in out[1:]) == 3
        assert await count_rows(conn, a.id) == 6 and await count_rows(conn, b.id) == 3
        cur = await conn.execute(
            "SELECT agent_device_id, range_start, range_end, row_count FROM metric_ingest_ranges ORDER BY id")
        ranges = [(r["agent_device_id"], r["range_start"], r["range_end"], r["row_count"])
                  for r in await cur.fetchall()]
        assert ranges[0] == (a.id, BASE, BASE + timedelta(seconds=3), 4)
        assert sorted(ranges[1:], key=str) == sorted([
            (a.id, BASE + timedelta(seconds=4), BASE + timedelta(seconds=5), 2),
            (b.id, BASE, BASE + timedelta(seconds=2), 3)], key=str)
        cur = await conn.execute("SELECT status FROM agent_devices WHERE id = %s", (a.id,))
        assert (await cur.fetchone())["status"] == "online"
        if mode == "copy" and copy_min_rows == 0:
            assert p.stats.fallbacks >= 1  # the replayed COPY failed and was redone staged
    finally:
        await p.close()
        await pool.close()


async def test_pre_encoded_copy_rows_equal_what_the_server_emits_and_round_trip(conn: Any) -> None:
    """copy_format encodes with psycopg's private row encoder: rows loaded with the public
    ``write_row`` and dumped by the server in binary must be byte for byte our payload, NULLs and
    extremes included; and our payload loads back as the same values."""
    from rts_monitor.ingest import copy_format

    device = uuid4()
    rows = [
        (device, BASE, 453, 8500, 531, 450000, 879, 150, 125, 100, 345600, 2**63 - 1, 0),
        (device, BASE + timedelta(microseconds=1), None, None, None, None, None, None, None, None, None, None,
         None),
        (device, BASE.astimezone(timezone(timedelta(hours=-7))) + timedelta(seconds=2), 0, 10**9, 1000, 0,
         0, 0, 10**8, 0, 0, 1, None),
    ]
    await conn.execute("CREATE TEMP TABLE enc_public (LIKE agent_metrics)")
    await conn.execute("CREATE TEMP TABLE enc_ours (LIKE agent_metrics)")
    async with conn.cursor().copy("COPY enc_public FROM STDIN (FORMAT BINARY)") as cp:
        cp.set_types(copy_format.COPY_TYPES)
        for row in rows:
            await cp.write_row(row)
    server = bytearray()
    async with conn.cursor().copy("COPY enc_public TO STDOUT (FORMAT BINARY)") as cp:
        async for block in cp:
            server += block
    ours = copy_format.stream([copy_format.encode_rows(rows[:1]), copy_format.encode_rows(rows[1:])])
    assert ours == bytes(server)
    async with conn.cursor().copy("COPY enc_ours FROM STDIN (FORMAT BINARY)") as cp:
        await cp.write(ours)
    cur = await conn.execute("SELECT * FROM enc_ours ORDER BY collected_at")
    back = [tuple(r.values()) for r in await cur.fetchall()]
    assert [r[1] for r in back] == [r[1] for r in rows]
    assert back[0][2:] == (453, 8500, 531, 450000, 879, 150, 125, 100, 345600, 2**63 - 1, 0)
    assert back[1][2:] == (None,) * 11
    assert back[2][2:] == (0, 10**9, 1000, 0, 0, 0, 10**8, 0, 0, 1, None)


async def test_a_cancelled_request_still_has_its_rows_written_and_breaks_nothing(
        pipeline: IngestPipeline, conn: Any) -> None:
    """A request cancelled while queued (client gone) cancels only its own wait: its rows are
    written, the others in the same flush are answered, and the pipeline's accounting returns to 0."""
    a, b = uuid4(), uuid4()
    gone = asyncio.create_task(pipeline.submit(_prepared(a, 3)))
    kept = asyncio.create_task(pipeline.submit(_prepared(b, 2)))
    await asyncio.sleep(0)
    gone.cancel()
    assert await kept == (2, 0, [])
    with pytest.raises(asyncio.CancelledError):
        await gone
    assert pipeline.pending_rows == 0  # one _finish call answered both items of the flush
    assert await count_rows(conn, a) == 3 and await count_rows(conn, b) == 2
    assert pipeline.stats.failed_flushes == 0


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(*(st.one_of(st.none(), st.floats(0, hi)) for hi in (100, 1e6, 100, 1e6, 100, 1e4, 1e4, 1e4))),
                min_size=1, max_size=5))
def test_the_inline_rounding_of_a_batch_is_stored_row_s(gauges: list[tuple[float | None, ...]]) -> None:
    """validate.prepare rounds the usual sample inline (its hottest loop), with the scales written
    out; it must give exactly what stored_row (SCALES) gives, for full samples and ones with gaps."""
    from rts_monitor.ingest import validate

    device, now = uuid4(), datetime.now(UTC)
    times = [now - timedelta(minutes=len(gauges) - i) for i in range(len(gauges))]
    body = msgspec.json.encode({"metrics": [
        {"collected_at": t.isoformat(), "cpu_percent": g[0], "memory_used_gb": g[1], "memory_percent": g[2],
         "disk_used_gb": g[3], "disk_percent": g[4], "load_average": None if None in g[5:] else list(g[5:]),
         "uptime_seconds": 7, "network_rx_bytes": 8, "network_tx_bytes": 9}
        for t, g in zip(times, gauges, strict=True)]})
    prepared = validate.prepare(validate.decode(body), device_id=device, now=now, max_future=timedelta(minutes=5),
                                max_age=timedelta(days=30))
    expected = [validate.stored_row(device, t, *g[:5], *((None,) * 3 if None in g[5:] else g[5:]), 7, 8, 9)
                for t, g in zip(times, gauges, strict=True)]
    assert prepared.rows == expected
