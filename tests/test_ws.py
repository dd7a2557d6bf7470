"""The agent WebSocket against real servers: auth, push on approval, reconnect delivery, two
instances through LISTEN/NOTIFY, listener reconnect, results/events/heartbeats over the socket,
ping timeouts."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest

from tests import factories
from tests.fix_api import ApiServer
from tests.test_commands import RESTART, SCRIPT, World, create, make_world, poll


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as s:
        yield s


@pytest.fixture
async def world(api_conn: Any, api: ApiServer) -> World:
    return await make_world(api_conn, api)


async def connect(session: aiohttp.ClientSession, server: ApiServer, agent: factories.Agent, *,
                  via: str = "header", autoping: bool = True) -> aiohttp.ClientWebSocketResponse:
    url = server.url.replace("http://", "ws://") + "/ws"
    if via == "query":
        return await session.ws_connect(f"{url}?token={agent.token}", autoping=autoping)
    return await session.ws_connect(url, headers=agent.headers, autoping=autoping)


async def receive(ws: aiohttp.ClientWebSocketResponse, timeout: float = 2.0) -> dict[str, Any]:  # noqa: ASYNC109
    msg = await ws.receive(timeout=timeout)
    assert msg.type == aiohttp.WSMsgType.TEXT, (msg.type, msg.data)
    return json.loads(msg.data)  # type: ignore[no-any-return]


async def nothing_within(ws: aiohttp.ClientWebSocketResponse, seconds: float) -> None:
    with pytest.raises(asyncio.TimeoutError):
        msg = await ws.receive(timeout=seconds)
        pytest.fail(f"unexpected message {msg.type} {msg.data!r}")


async def rpc(ws: aiohttp.ClientWebSocketResponse, message: dict[str, Any]) -> dict[str, Any]:
    await ws.send_json(message)
    return await receive(ws)


def command_message(cmd: dict[str, Any]) -> dict[str, Any]:
    return {"type": "command", "command_id": cmd["id"], "command_type": cmd["command_type"],
            "params": cmd["params"], "timeout_seconds": cmd["timeout_seconds"]}


async def test_handshake_needs_a_live_agent_token(session: aiohttp.ClientSession, api: ApiServer,
                                                  world: World) -> None:
    url = api.url.replace("http://", "ws://") + "/ws"
    for query, headers in (("", {}), ("", {"Authorization": "Bearer rtsa_nope"}), ("?token=AGT-x", {}),
                           ("", {"Authorization": f"Bearer {world.tech_a}"})):
        with pytest.raises(aiohttp.WSServerHandshakeError) as err:
            await session.ws_connect(url + query, headers=headers)
        assert err.value.status == 403
    for via in ("header", "query"):
        ws = await connect(session, api, world.agent, via=via)
        assert (await rpc(ws, {"type": "heartbeat"}))["type"] == "heartbeat_ack"
        await ws.close()


async def test_push_within_one_second_of_approval_and_results_over_the_socket(
        session: aiohttp.ClientSession, api: ApiServer, world: World) -> None:
    ws = await connect(session, api, world.agent, via="query")
    async with api.client() as client:
        cmd = await create(client, world, world.tech_a, SCRIPT)
        await nothing_within(ws, 0.5)  # awaiting approval: not delivered
        started = time.monotonic()
        resp = await client.post(f"{world.cmd_path}/{cmd['id']}/approve", headers=world.h(world.tech_b))
        assert resp.status_code == 200
        msg = await receive(ws, timeout=1.0)
        assert time.monotonic() - started < 1.0
        assert msg == command_message(cmd)

        ack = await rpc(ws, {"type": "command_result", "command_id": cmd["id"], "status": "executing"})
        assert ack == {"type": "command_result_ack", "command_id": cmd["id"], "status": "executing",
                       "applied": True, "late": False}
        result = {"type": "command_result", "command_id": cmd["id"], "status": "completed", "exit_code": 0,
                  "stdout": "Service nginx restarted", "completed_at": "2025-10-09T10:36:00Z"}
        assert (await rpc(ws, result))["applied"] is True
        again = await rpc(ws, result)  # a repeat changes nothing
        assert (again["applied"], again["late"], again["status"]) == (False, False, "completed")

        detail = (await client.get(f"{world.cmd_path}/{cmd['id']}", headers=world.h(world.admin))).json()
        assert detail["status"] == "completed" and detail["delivered_via"] == "ws"
        assert detail["stdout"] == "Service nginx restarted"
        assert [(e["event"], e["via"]) for e in detail["history"]] == [
            ("created", "api"), ("approved", "api"), ("sent", "ws"), ("started", "ws"), ("completed", "ws")]
        assert await poll(client, world.agent) == []
    await ws.close()


async def test_cancelling_a_running_command_is_pushed_to_the_agent(
        session: aiohttp.ClientSession, api: ApiServer, world: World) -> None:
    ws = await connect(session, api, world.agent)
    async with api.client() as client:
        cmd = await create(client, world, world.tech_a, RESTART)
        assert await receive(ws) == command_message(cmd)
        assert (await rpc(ws, {"type": "command_result", "command_id": cmd["id"], "status": "executing"}))[
            "applied"] is True
        started = time.monotonic()
        resp = await client.post(f"{world.cmd_path}/{cmd['id']}/cancel", headers=world.h(world.tech_a))
        assert resp.status_code == 200, resp.text
        assert await receive(ws, timeout=1.0) == {"type": "cancel_command", "command_id": cmd["id"]}
        assert time.monotonic() - started < 1.0
        ack = await rpc(ws, {"type": "heartbeat"})  # and the heartbeat answer repeats it
        assert ack["type"] == "heartbeat_ack" and ack["cancel_commands"] == [cmd["id"]]
        pending = await create(client, world, world.tech_a, {**RESTART, "params": {"service_name": "cron"}})
        assert await receive(ws) == command_message(pending)
        await rpc(ws, {"type": "command_result", "command_id": pending["id"], "status": "completed"})
    await ws.close()


async def test_reconnect_delivers_what_was_missed_exactly_once(session: aiohttp.ClientSession, api: ApiServer,
                                                               world: World) -> None:
    async with api.client() as client:
        missed = [await create(client, world, world.tech_a, RESTART),
                  await create(client, world, world.tech_a, {"command_type": "collect_inventory"})]
        ws = await connect(session, api, world.agent)
        assert [await receive(ws), await receive(ws)] == [command_message(c) for c in missed]
        live = await create(client, world, world.tech_a, RESTART)  # pushed while connected
        assert await receive(ws, timeout=1.0) == command_message(live)
        await ws.close()

        ws = await connect(session, api, world.agent)
        await nothing_within(ws, 0.7)  # nothing is delivered twice
        assert await poll(client, world.agent) == []

        # a second socket of the same agent replaces the first one
        newer = await connect(session, api, world.agent)
        msg = await ws.receive(timeout=3)
        assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        assert ws.close_code == 4000
        after = await create(client, world, world.tech_a, RESTART)
        assert await receive(newer, timeout=1.0) == command_message(after)
        await newer.close()


async def test_two_instances_deliver_through_listen_notify(session: aiohttp.ClientSession, conn: Any,
                                                           api_factory: Callable[..., ApiServer]) -> None:
    a, b = api_factory(), api_factory()
    w = await make_world(conn, a)
    ws = await connect(session, b, w.agent)
    async with a.client() as client:
        started = time.monotonic()
        direct = await create(client, w, w.tech_a, RESTART)
        assert await receive(ws, timeout=1.0) == command_message(direct)
        assert time.monotonic() - started < 1.0

        gated = await create(client, w, w.tech_a, SCRIPT)
        await nothing_within(ws, 0.3)
        started = time.monotonic()
        assert (await client.post(f"{w.cmd_path}/{gated['id']}/approve", headers=w.h(w.tech_b))).status_code == 200
        assert await receive(ws, timeout=1.0) == command_message(gated)
        assert time.monotonic() - started < 1.0

        ack = await rpc(ws, {"type": "command_result", "command_id": direct["id"], "status": "failed",
                             "exit_code": 3, "stderr": "unit not found"})
        assert ack["applied"] is True
        detail = (await client.get(f"{w.cmd_path}/{direct['id']}", headers=w.h(w.admin))).json()
        assert (detail["status"], detail["exit_code"], detail["stderr"]) == ("failed", 3, "unit not found")
    await ws.close()


async def test_listener_reconnect_resends_pending(session: aiohttp.ClientSession, conn: Any,
                                                  api_factory: Callable[..., ApiServer]) -> None:
    server = api_factory(env={"RTS_COMMAND_LISTEN_RETRY_SECONDS": "2"})
    w = await make_world(conn, server)
    ws = await connect(session, server, w.agent)
    await nothing_within(ws, 0.2)
    cur = await conn.execute(
        "SELECT count(pg_terminate_backend(pid)) AS n FROM pg_stat_activity "
        "WHERE datname = current_database() AND application_name = 'rts-monitor:commands-listen'")
    assert (await cur.fetchone())["n"] == 1
    async with server.client() as client:
        # made deliverable while nobody listens: its NOTIFY is lost, the reconnect must resend it
        cmd = await create(client, w, w.tech_a, RESTART)
        assert await receive(ws, timeout=8.0) == command_message(cmd)
    log = server.log_path.read_text()
    assert '"event": "commands.listener.lost"' in log
    assert '"reason": "listener_connected"' in log and '"event": "commands.resend"' in log
    await ws.close()


async def test_events_are_stored_and_mark_the_service_stopped(session: aiohttp.ClientSession, api: ApiServer,
                                                              world: World, api_conn: Any) -> None:
    ws = await connect(session, api, world.agent)
    event_id = str(uuid.uuid4())
    crash = {"type": "event", "event_type": "service_crashed", "timestamp": "2025-10-09T10:35:00Z",
             "data": {"service_name": "nginx", "pid": 1234, "exit_code": 139}, "event_id": event_id}
    ack = await rpc(ws, crash)
    assert (ack["type"], ack["event_type"], ack["duplicate"]) == ("event_ack", "service_crashed", False)
    assert (await rpc(ws, crash))["duplicate"] is True  # re-sent: stored once
    bad = await rpc(ws, {"type": "event", "event_type": "service_crashed", "data": {"pid": 1}})
    assert (bad["type"], bad["field"]) == ("error", "data.service_name")
    other = await rpc(ws, {"type": "event", "event_type": "disk_smart_warning", "data": {"disk": "sda"}})
    assert other["type"] == "event_ack"
    await ws.close()

    cur = await api_conn.execute(
        "SELECT status, pid, last_state_change FROM agent_monitored_services "
        "WHERE agent_device_id = %s AND service_name = 'nginx'", (world.agent.id,))
    svc = await cur.fetchone()
    assert svc["status"] == "stopped" and svc["pid"] is None
    assert svc["last_state_change"].isoformat().startswith("2025-10-09T10:35:00")

    async with api.client() as client:
        resp = await client.get(f"/api/agents/{world.agent.id}/events", headers=world.h(world.customer))
        events = resp.json()["events"]
        assert [e["event_type"] for e in events] == ["disk_smart_warning", "service_crashed"]
        assert events[1]["data"] == crash["data"] and events[1]["event_id"] == event_id
        resp = await client.get(f"/api/agents/{world.agent.id}/events", params={"event_type": "service_crashed"},
                                headers=world.h(world.admin))
        assert len(resp.json()["events"]) == 1
        resp = await client.get(f"/api/agents/{world.agent.id}/events", headers=world.h(world.other_customer))
        assert resp.status_code == 404
        # the HTTP fallback for agents without a socket: service back up
        resp = await client.post(f"/api/agents/{world.agent.id}/events", headers=world.agent.headers,
                                 json={"event_type": "service_started", "data": {"service_name": "nginx", "pid": 99}})
        assert resp.status_code == 201, resp.text
        resp = await client.post(f"/api/agents/{world.agent.id}/events", headers=world.other.agent.headers,
                                 json={"event_type": "service_started", "data": {"service_name": "nginx"}})
        assert resp.status_code == 403
    cur = await api_conn.execute(
        "SELECT status, pid FROM agent_monitored_services WHERE agent_device_id = %s AND service_name = 'nginx'",
        (world.agent.id,))
    assert await cur.fetchone() == {"status": "running", "pid": 99}


async def test_heartbeat_over_the_socket_brings_an_agent_online(session: aiohttp.ClientSession, api: ApiServer,
                                                                world: World, api_conn: Any) -> None:
    await api_conn.execute("UPDATE agent_devices SET status = 'offline', last_heartbeat = NULL WHERE id = %s",
                           (world.agent.id,))
    ws = await connect(session, api, world.agent)
    async with api.client() as client:
        await create(client, world, world.tech_a, SCRIPT)  # awaiting approval: not counted
    # a field this server does not know (a newer agent's) is ignored, as on HTTP
    ack = await rpc(ws, {"type": "heartbeat", "timestamp": "2025-10-09T10:30:00Z", "status": "online",
                         "agent_version": "1.0.0", "battery_percent": 80})
    assert (ack["type"], ack["status"], ack["pending_commands"]) == ("heartbeat_ack", "online", 0)
    assert {"config_updated", "config_version", "server_time"} <= set(ack)
    ack = await rpc(ws, {"type": "event", "event_type": "disk_smart", "data": {}, "future_field": {"x": 1}})
    assert ack["type"] == "event_ack", ack
    await ws.close()
    cur = await api_conn.execute("SELECT status, last_heartbeat FROM agent_devices WHERE id = %s", (world.agent.id,))
    row = await cur.fetchone()
    assert row["status"] == "online" and row["last_heartbeat"] is not None
    cur = await api_conn.execute(
        "SELECT from_status, to_status, reason FROM agent_status_transitions WHERE agent_device_id = %s "
        "ORDER BY id DESC LIMIT 1", (world.agent.id,))
    # the HTTP heartbeat's service records it (reason 'heartbeat': one implementation for both paths)
    assert await cur.fetchone() == {"from_status": "offline", "to_status": "online", "reason": "heartbeat"}


async def test_bad_messages_get_an_error_and_the_socket_stays_open(session: aiohttp.ClientSession,
                                                                   api: ApiServer, world: World) -> None:
    ws = await connect(session, api, world.agent)
    await ws.send_str("{not json")
    assert (await receive(ws))["type"] == "error"
    err = await rpc(ws, {"type": "reboot_now"})
    assert (err["type"], err["field"]) == ("error", "type")
    err = await rpc(ws, {"type": "command_result", "status": "completed"})
    assert (err["type"], err["field"]) == ("error", "command_id")
    missing = str(uuid.uuid4())
    err = await rpc(ws, {"type": "command_result", "command_id": missing, "status": "completed"})
    assert err == {"type": "error", "code": "not_found", "message": "command not found", "command_id": missing}
    async with api.client() as client:
        foreign = await create(client, world, world.tech_a, RESTART)
    assert await receive(ws, timeout=1.0) == command_message(foreign)  # pushed to its own agent
    other_ws = await connect(session, api, world.other.agent)
    err = await rpc(other_ws, {"type": "command_result", "command_id": foreign["id"], "status": "completed"})
    assert (err["type"], err["code"]) == ("error", "forbidden")
    await other_ws.close()
    assert (await rpc(ws, {"type": "heartbeat"}))["type"] == "heartbeat_ack"
    await ws.close()


async def test_ping_timeout_closes_dead_connections(session: aiohttp.ClientSession, conn: Any,
                                                    api_factory: Callable[..., ApiServer]) -> None:
    server = api_factory(env={"RTS_WS_PING_INTERVAL_SECONDS": "0.5", "RTS_WS_PING_TIMEOUT_SECONDS": "0.5"})
    w = await make_world(conn, server)
    # aiohttp answers pings only while someone reads: the live client reads all the time
    alive = await connect(session, server, w.other.agent)
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def pump() -> None:
        while True:
            msg = await alive.receive()
            if msg.type != aiohttp.WSMsgType.TEXT:
                return
            inbox.put_nowait(json.loads(msg.data))

    reader = asyncio.create_task(pump())
    dead = await connect(session, server, w.agent, autoping=False)  # never answers
    closed = False
    deadline = time.monotonic() + 8
    while time.monotonic() < deadline and not closed:
        msg = await dead.receive(timeout=8)
        closed = msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR)
    assert closed, "server kept a connection that never answered pings"
    await asyncio.sleep(1.5)  # three more ping rounds
    assert not alive.closed and not reader.done()
    await alive.send_json({"type": "heartbeat"})
    assert (await asyncio.wait_for(inbox.get(), 2))["type"] == "heartbeat_ack"
    # the dead socket is gone from the hub: a new command waits for the agent instead of vanishing
    async with server.client() as client:
        cmd = await create(client, w, w.tech_a, RESTART)
        await asyncio.sleep(0.3)
        assert [c["command_id"] for c in await poll(client, w.agent)] == [cmd["id"]]
    assert '"event": "ws.disconnected"' in server.log_path.read_text()
    await alive.close()
    await reader


async def test_revoked_agent_gets_nothing_and_is_disconnected(session: aiohttp.ClientSession, api: ApiServer,
                                                              world: World, api_conn: Any) -> None:
    ws = await connect(session, api, world.agent)
    await api_conn.execute("UPDATE agent_devices SET agent_token_revoked_at = now() WHERE id = %s",
                           (world.agent.id,))
    async with api.client() as client:
        cmd = await create(client, world, world.tech_a, RESTART)
        await nothing_within(ws, 0.5)  # the open socket outlives the revocation, commands do not flow
        resp = await client.get(f"{world.cmd_path}/{cmd['id']}", headers=world.h(world.admin))
        assert resp.json()["status"] == "pending"
    err = await rpc(ws, {"type": "heartbeat"})
    assert (err["type"], err["code"]) == ("error", "unauthorized")
    msg = await ws.receive(timeout=3)
    assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
    assert ws.close_code == 4401


async def test_graceful_stop_closes_sockets_promptly(session: aiohttp.ClientSession, conn: Any,
                                                     api_factory: Callable[..., ApiServer]) -> None:
    server = api_factory()
    w = await make_world(conn, server)
    ws = await connect(session, server, w.agent)
    started = time.monotonic()
    code = await asyncio.to_thread(server.stop, 20)
    assert code in (0, -15) and time.monotonic() - started < 10
    msg = await ws.receive(timeout=5)
    assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR)
    assert '"event": "api.stopped"' in server.log_path.read_text()


async def test_a_handshake_storm_gets_503_with_retry_after_never_another_error(
        session: aiohttp.ClientSession, conn: Any, api_factory: Callable[..., ApiServer]) -> None:
    """Admission control (commands/ws.py): beyond RTS_WS_MAX_HANDSHAKES handshakes waiting for the
    database, a handshake is answered 503 with a Retry-After of 2-10 s; the others connect; an
    agent whose token the process already knows is admitted even then."""
    server = api_factory(env={"RTS_WS_MAX_HANDSHAKES": "1"})
    w = await make_world(conn, server)
    fleet = [await factories.agent(conn, w.tenant.business_id) for _ in range(60)]
    url = server.url.replace("http://", "ws://") + "/ws"

    async def attempt(agent: factories.Agent) -> tuple[int, str | None]:
        try:
            ws = await session.ws_connect(url, headers=agent.headers)
        except aiohttp.WSServerHandshakeError as exc:
            return exc.status, (exc.headers or {}).get("Retry-After")
        await ws.close()
        return 101, None

    outcomes = await asyncio.gather(*(attempt(a) for a in fleet))  # all at once: a storm
    assert {status for status, _ in outcomes} == {101, 503}, outcomes
    assert all(retry is not None and 2 <= int(retry) <= 10 for status, retry in outcomes if status == 503)
    refused = [a for a, (status, _) in zip(fleet, outcomes, strict=True) if status == 503]
    for agent in refused:  # coming back one by one, each is admitted
        assert await attempt(agent) == (101, None)
    log = server.log_path.read_text()
    assert '"event": "ws.refused"' in log
    assert "without completing handshake" not in log  # uvicorn's error line about a denial (commands/hub.py)

    strict = api_factory(env={"RTS_WS_MAX_HANDSHAKES": "0"})  # only agents it already knows
    url = strict.url.replace("http://", "ws://") + "/ws"
    known, stranger = fleet[0], fleet[1]
    assert (await attempt(stranger))[0] == 503
    async with strict.client() as client:  # an HTTP request makes its token known to this process
        resp = await client.post(f"/api/agents/{known.id}/heartbeat", headers=known.headers, json={})
        assert resp.status_code == 200, resp.text
    assert await attempt(known) == (101, None)
    assert (await attempt(stranger))[0] == 503
