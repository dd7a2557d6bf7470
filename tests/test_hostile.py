"""Hostile and unusual input against real servers: never a 500, never another client's failure.

One test per class of failure found from outside: a bad value poisoning a whole ingest flush,
deeply nested JSON, values the database refuses, stored timestamps that break later reads,
unbounded payloads. The rules they hold the API to are in docs/CONVENTIONS.md ("Input limits").
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import aiohttp
import httpx
import pytest

from tests import factories
from tests.fix_api import ApiServer
from tests.test_commands import RESTART, World, create, make_world, poll
from tests.test_ingest import sample, url

ANCIENT = "0001-01-01T00:00:00+23:59"  # year 0 in UTC: PostgreSQL stores it, Python cannot read it back


@pytest.fixture
async def world(api_conn: Any, api: ApiServer) -> World:
    return await make_world(api_conn, api)


def now_iso(seconds: float = 0) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()


async def sent_command(client: httpx.AsyncClient, world: World) -> str:
    """A restart_service command the agent has polled (so it takes results)."""
    cmd = await create(client, world, world.tech_a, RESTART)
    assert [c["command_id"] for c in await poll(client, world.agent)] == [cmd["id"]]
    return f"{world.cmd_path}/{cmd['id']}/result"


def assert_no_traceback(server: ApiServer) -> None:
    log = server.log_path.read_text(errors="replace")
    assert "Traceback" not in log and "request.failed" not in log, server.log_tail()


# --- 1. one request's data never fails a flush for the others ---------------------------------------


async def _agents(conn: Any, n: int) -> list[factories.Agent]:
    biz = await factories.business(conn)
    return [await factories.agent(conn, biz) for _ in range(n)]


async def _flush_together(server: ApiServer, requests: list[tuple[factories.Agent, dict[str, Any]]]
                          ) -> list[httpx.Response]:
    """Send every request at once, so the server's group commit puts them into one flush."""
    async with server.client() as http:
        return await asyncio.gather(*(http.post(url(a.id), json=body, headers=a.headers) for a, body in requests))


@pytest.mark.parametrize("hostile", ["underflow", "nul_service", "nul_and_underflow"])
async def test_a_hostile_value_never_fails_the_other_requests_of_its_flush(
        api_factory: Callable[..., ApiServer], conn: Any, hostile: str) -> None:
    server = api_factory(env={"RTS_INGEST_FLUSH_DELAY_MS": "300"})
    good, bad = await _agents(conn, 8), (await _agents(conn, 1))[0]
    base = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=30)
    bad_sample = sample(0, base=base)
    if hostile in ("underflow", "nul_and_underflow"):
        bad_sample["cpu_percent"] = 1e-50
        bad_sample["memory_used_gb"] = 1e-40  # far below the stored precision (0.001 GB): 0
    if hostile in ("nul_service", "nul_and_underflow"):
        bad_sample["services"] = [{"name": "evil\u0000svc", "status": "run\u0000ning", "display_name": "\u0000"}]
    requests = [(a, {"metrics": [sample(i, base=base)]}) for i in range(3) for a in good]
    requests.insert(5, (bad, {"metrics": [sample(1, base=base), bad_sample]}))
    answers = await _flush_together(server, requests)
    assert [r.status_code for r in answers] == [200] * len(answers), [r.text for r in answers if r.status_code != 200]
    row = await (await conn.execute(
        "SELECT cpu_percent, memory_used_gb FROM agent_metric_values WHERE agent_device_id = %s AND collected_at = %s",
        (bad.id, base))).fetchone()
    assert row is not None
    if hostile != "nul_service":
        assert row["cpu_percent"] == 0.0 and row["memory_used_gb"] == 0.0
    if hostile != "underflow":
        names = await (await conn.execute(
            "SELECT service_name, status, service_display_name FROM agent_monitored_services "
            "WHERE agent_device_id = %s", (bad.id,))).fetchall()
        assert [tuple(r.values()) for r in names] == [("evil\ufffdsvc", "run\ufffdning", "\ufffd")]
    n = await (await conn.execute("SELECT count(*) AS n FROM agent_metrics")).fetchone()
    assert n["n"] == 8 * 3 + 2


@pytest.mark.parametrize("samples_per_request", [3, 300])  # the small-flush statement and the COPY path
async def test_a_database_rejection_is_a_422_for_its_request_alone(
        api_factory: Callable[..., ApiServer], conn: Any, samples_per_request: int) -> None:
    """Whatever the database refuses that the edge did not foresee (here a CHECK added behind the
    API's back), only the request carrying it fails, with a 422 naming its sample; the others of
    the flush are written and acknowledged, and nothing of the bad request is stored."""
    server = api_factory(env={"RTS_INGEST_FLUSH_DELAY_MS": "300"})
    await conn.execute("ALTER TABLE agent_metrics ADD CONSTRAINT no_42 CHECK (cpu_percent_x10 <> 425)")
    good, bad = await _agents(conn, 6), (await _agents(conn, 1))[0]
    base = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=30)
    n = samples_per_request
    bad_body = {"metrics": [sample(i, base=base) for i in range(n)]}
    bad_body["metrics"][n - 2]["cpu_percent"] = 42.5
    requests = [(a, {"metrics": [sample(i, base=base) for i in range(n)]}) for a in good]
    requests.insert(3, (bad, bad_body))
    answers = await _flush_together(server, requests)
    statuses = [r.status_code for r in answers]
    assert statuses == [200] * 3 + [422] + [200] * 3, [r.text for r in answers]
    problem = answers[3].json()
    assert problem["field"].startswith(f"metrics[{n - 2}]"), problem
    assert "no_42" in problem["message"] or "check" in problem["message"].lower(), problem
    assert all(r.json()["received"] == n for r in answers if r.status_code == 200)
    per_agent = {r["agent_device_id"]: r["n"] for r in await (await conn.execute(
        "SELECT agent_device_id, count(*) AS n FROM agent_metrics GROUP BY 1")).fetchall()}
    assert per_agent == {a.id: n for a in good}
    assert_no_traceback(server)


# --- 2. nesting and size before decoding ----------------------------------------------------------------


def _deep(prefix: bytes) -> bytes:
    return prefix + b'"z":' + b"[" * 10_000 + b"]" * 10_000 + b"}"


async def test_deep_nesting_is_a_400_on_every_json_endpoint(client: httpx.AsyncClient, world: World,
                                                           api: ApiServer) -> None:
    agent, admin = world.agent, world.h(world.admin)
    cases = [
        ("/api/agents/register", _deep(b'{"token":"x","hostname":"h","os_type":"l",'), {}),
        (f"/api/agents/{agent.id}/heartbeat", _deep(b"{"), agent.headers),
        (f"/api/agents/{agent.id}/metrics", _deep(b'{"metrics":[{"collected_at":"' + now_iso().encode()
                                                   + b'",') + b"]}", agent.headers),
        (f"/api/agents/{agent.id}/metrics", b'{"metrics":[{"collected_at":"' + now_iso().encode()
         + b'","services":' + b"[" * 10_000 + b"]" * 10_000 + b"}]}", agent.headers),
        (f"/api/agents/{agent.id}/events", _deep(b'{"event_type":"x","data":{') + b"}", agent.headers),
        (f"/api/agents/{agent.id}/inventory", _deep(b"{"), agent.headers),
        ("/api/alerts/rules", _deep(b'{"alert_name":"a","severity":"info","conditions":{') + b"}", admin),
        (world.cmd_path, _deep(b'{"command_type":"run_script","params":{') + b"}", admin),
    ]
    for path, body, headers in cases:
        resp = await client.post(path, content=body, headers={**headers, "Content-Type": "application/json"})
        assert resp.status_code == 400, (path, resp.text)
        assert "nested deeper than" in resp.json()["message"], (path, resp.text)
    assert_no_traceback(api)


async def test_too_many_values_is_a_413_before_decoding(client: httpx.AsyncClient, api: ApiServer) -> None:
    body = b'{"token":"x","hostname":"h","os_type":"l","z":[' + b"[]," * 600_000 + b"[]]}"
    resp = await client.post("/api/agents/register", content=body, headers={"Content-Type": "application/json"})
    assert resp.status_code == 413, resp.text
    assert "JSON values" in resp.json()["message"]
    assert_no_traceback(api)


async def test_deep_nesting_over_the_websocket_is_an_error_message(world: World, api: ApiServer) -> None:
    async with aiohttp.ClientSession() as session:
        ws = await session.ws_connect(api.url.replace("http", "ws") + "/ws", headers=world.agent.headers)
        await ws.send_str('{"type":"event","event_type":"x","data":{"z":' + "[" * 10_000 + "]" * 10_000 + "}}")
        reply = json.loads((await ws.receive(timeout=10)).data)
        assert reply["type"] == "error" and "nested deeper than" in reply["message"], reply
        await ws.send_str(json.dumps({"type": "heartbeat"}))  # the socket is still usable
        assert json.loads((await ws.receive(timeout=10)).data)["type"] == "heartbeat_ack"
        await ws.close()
    assert_no_traceback(api)


# --- 3. values the database would refuse are a 422 naming the field (or stored by the NUL rule) -----------


async def test_integers_beyond_their_column_name_the_field(client: httpx.AsyncClient, world: World) -> None:
    agent = world.agent
    resp = await client.post(f"/api/agents/{agent.id}/heartbeat", json={"config_version": 2**31},
                             headers=agent.headers)
    assert resp.status_code == 422 and resp.json()["field"] == "config_version", resp.text
    result = await sent_command(client, world)
    for code in (2**31, -(2**31) - 1):
        resp = await client.post(result, json={"status": "completed", "exit_code": code}, headers=agent.headers)
        assert resp.status_code == 422 and resp.json()["field"] == "exit_code", resp.text
    resp = await client.post(result, json={"status": "completed", "exit_code": -(2**31)}, headers=agent.headers)
    assert resp.status_code == 200, resp.text


async def test_nul_is_stored_as_the_replacement_character_everywhere(
        client: httpx.AsyncClient, world: World, api: ApiServer, api_conn: Any) -> None:
    agent, admin = world.agent, world.h(world.admin)
    resp = await client.post(f"/api/agents/{agent.id}/heartbeat", json={"agent_version": "1.0\u0000"},
                             headers=agent.headers)
    assert resp.status_code == 200, resp.text
    row = await (await api_conn.execute("SELECT agent_version FROM agent_devices WHERE id = %s",
                                        (agent.id,))).fetchone()
    assert row["agent_version"] == "1.0\ufffd"

    tok = (await client.post("/api/agents/registration-tokens", headers=admin,
                             json={"business_id": str(world.tenant.business_id)})).json()
    resp = await client.post("/api/agents/register", json={"token": tok["token"], "hostname": "host\u0000x",
                                                           "os_type": "linux", "os_version": "\u0000"})
    assert resp.status_code == 201, resp.text
    row = await (await api_conn.execute("SELECT hostname, os_version FROM agent_devices WHERE id = %s",
                                        (resp.json()["agent_id"],))).fetchone()
    assert (row["hostname"], row["os_version"]) == ("host\ufffdx", "\ufffd")

    resp = await client.post("/api/alerts/rules", headers=admin, json={
        "alert_name": "n\u0000", "alert_type": "t\u0000", "severity": "info", "business_id": str(agent.business_id),
        "conditions": {"kind": "service_down", "service_name": "svc\u0000"}})
    assert resp.status_code == 201, resp.text
    assert (resp.json()["alert_type"], resp.json()["conditions"]["service_name"]) == ("t\ufffd", "svc\ufffd")

    resp = await client.post(world.cmd_path, headers=world.h(world.tech_a), json={
        "command_type": "run_script", "params": {"interpreter": "bash", "script": "echo \u0000"}})
    assert resp.status_code == 201 and resp.json()["params"]["script"] == "echo \ufffd", resp.text

    resp = await client.post(f"/api/agents/{agent.id}/inventory", headers=agent.headers, json={
        "software": [{"name": "pkg\u0000", "vendor": "v\u0000", "version": "1"}]})
    assert resp.status_code == 200, resp.text

    resp = await client.post(f"/api/agents/{agent.id}/events", headers=agent.headers, json={
        "event_type": "custom", "data": {"k\u0000": ["v\u0000"]}})
    assert resp.status_code == 201, resp.text

    resp = await client.get("/api/agents", params={"q": "a\u0000b"}, headers=admin)
    assert resp.status_code == 200, resp.text
    resp = await client.get(f"/api/agents/{agent.id}/events", params={"event_type": "x\u0000"}, headers=admin)
    assert resp.status_code == 200, resp.text
    assert_no_traceback(api)


async def test_strings_longer_than_their_column_name_the_field(client: httpx.AsyncClient, world: World) -> None:
    admin = world.h(world.admin)
    resp = await client.post("/api/alerts/rules", headers=admin, json={
        "alert_name": "n", "alert_type": "t" * 101, "severity": "info",
        "business_id": str(world.agent.business_id), "conditions": {"kind": "agent_offline"}})
    assert resp.status_code == 422 and resp.json()["field"] == "alert_type", resp.text
    resp = await client.post("/api/alerts/rules", headers=admin, json={
        "alert_name": "n", "severity": "info", "business_id": str(world.agent.business_id),
        "conditions": {"kind": "service_down", "service_name": "s" * 256}})
    assert resp.status_code == 422 and resp.json()["field"] == "conditions.service_name", resp.text


async def test_numbers_beyond_a_numeric_column_name_the_field(client: httpx.AsyncClient, world: World) -> None:
    tok = (await client.post("/api/agents/registration-tokens", headers=world.h(world.admin),
                             json={"business_id": str(world.tenant.business_id)})).json()
    resp = await client.post("/api/agents/register", json={"token": tok["token"], "hostname": "h", "os_type": "linux",
                                                           "total_memory_gb": 1e8})
    assert resp.status_code == 422 and resp.json()["field"] == "total_memory_gb", resp.text


async def test_invalid_utf8_inside_services_names_the_field(client: httpx.AsyncClient, world: World) -> None:
    body = (b'{"metrics":[{"collected_at":"' + now_iso(-60).encode() + b'","services":[{"name":"\xff\xfe"}]}]}')
    resp = await client.post(url(world.agent.id), content=body,
                             headers={**world.agent.headers, "Content-Type": "application/json"})
    assert resp.status_code in (400, 422), resp.text
    assert resp.json()["field"] == "metrics[0].services", resp.text


# --- 4. timestamps outside the sane window are refused, so reads never break ----------------------------


async def test_timestamps_outside_the_window_are_refused_and_reads_keep_working(
        client: httpx.AsyncClient, world: World, api: ApiServer) -> None:
    agent, admin = world.agent, world.h(world.admin)
    result = await sent_command(client, world)
    for field in ("started_at", "completed_at"):
        for value in (ANCIENT, "1999-12-31T23:59:59Z", now_iso(3600)):
            resp = await client.post(result, json={"status": "completed", field: value}, headers=agent.headers)
            assert resp.status_code == 422 and resp.json()["field"] == field, resp.text
    for value in (ANCIENT, now_iso(3600)):
        resp = await client.post(f"/api/agents/{agent.id}/events", headers=agent.headers,
                                 json={"event_type": "custom", "timestamp": value})
        assert resp.status_code == 422 and resp.json()["field"] == "timestamp", resp.text
        resp = await client.post(f"/api/agents/{agent.id}/heartbeat", headers=agent.headers, json={"timestamp": value})
        assert resp.status_code == 422 and resp.json()["field"] == "timestamp", resp.text
    resp = await client.post("/api/alerts/maintenance", headers=admin, json={
        "business_id": str(agent.business_id), "starts_at": ANCIENT, "ends_at": now_iso(60)})
    assert resp.status_code == 422 and resp.json()["field"] == "starts_at", resp.text
    resp = await client.get(f"/api/agents/{agent.id}/events", params={"before": ANCIENT}, headers=admin)
    assert resp.status_code == 422 and resp.json()["field"] == "before", resp.text
    for path in (world.cmd_path, "/api/commands", f"/api/agents/{agent.id}/events"):
        assert (await client.get(path, headers=admin)).status_code == 200
    assert_no_traceback(api)


# --- 5. payload caps ---------------------------------------------------------------------------------------


async def test_event_data_is_capped(client: httpx.AsyncClient, world: World) -> None:
    agent = world.agent
    resp = await client.post(f"/api/agents/{agent.id}/events", headers=agent.headers,
                             json={"event_type": "custom", "data": {"blob": "x" * 1_000_000}})
    assert resp.status_code in (413, 422) and resp.json()["field"] == "data", resp.text
    resp = await client.post(f"/api/agents/{agent.id}/events", headers=agent.headers,
                             json={"event_type": "custom", "data": {"blob": "x" * 10_000}})
    assert resp.status_code == 201, resp.text


async def test_script_size_is_capped(client: httpx.AsyncClient, world: World) -> None:
    resp = await client.post(world.cmd_path, headers=world.h(world.tech_a), json={
        "command_type": "run_script", "params": {"interpreter": "bash", "script": "x" * 70_000}})
    assert resp.status_code in (400, 422) and resp.json()["field"] == "params.script", resp.text


# --- refused credentials, many at once ---------------------------------------------------------------


async def test_refused_credentials_leave_no_half_made_connection_behind(api: ApiServer, api_conn: Any) -> None:
    """Refused credentials on routes that also take a database connection, many at once: each a
    401, none a 503 for anybody. Once the connection was begun beside the failing authentication;
    its checkout was cancelled halfway, the pool took the database for gone and answered others
    503 (and asyncio logged "aclose(): asynchronous generator is already running")."""
    biz = await factories.business(api_conn)
    agent = await factories.agent(api_conn, biz)
    stranger = uuid4()
    log_before = len(api.log_path.read_text(errors="replace"))
    answers: list[httpx.Response] = []
    async with api.client() as http:
        for path in ("commands", "heartbeat", "inventory"):
            for method in ("GET", "POST"):
                answers += await asyncio.gather(*(
                    http.request(method, f"/api/agents/{stranger}/{path}", json={"x": 1} if method == "POST" else None,
                                 headers={"Authorization": f"Bearer not-a-token-{i}"}) for i in range(20)))
                # another client meanwhile: served
                ok = await http.get(f"/api/agents/{agent.id}/commands", headers=agent.headers)
                assert ok.status_code == 200, ok.text
    statuses = {r.status_code for r in answers}
    assert statuses <= {401, 405} and sum(r.status_code == 401 for r in answers) >= 100, statuses
    await asyncio.sleep(0.5)  # asyncio logs a collected generator's failed aclose from its finalizer
    log = api.log_path.read_text(errors="replace")[log_before:]
    assert "aclose()" not in log and '"logger": "asyncio"' not in log, log[-3000:]
