"""Remote commands over HTTP against real servers: validation, approval, polling, results, timeouts,
audit, tenancy."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import httpx
import pytest

from tests import factories
from tests.fix_api import ApiServer


@dataclass
class World:
    """One business with an agent, two technicians, an admin and a customer; another business."""

    server: ApiServer
    tenant: factories.Tenant
    tech_a: str
    tech_b: str
    admin: str
    customer: str
    tech_a_id: UUID
    tech_b_id: UUID
    other: factories.Tenant
    other_customer: str

    def h(self, token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    @property
    def agent(self) -> factories.Agent:
        return self.tenant.agent

    @property
    def cmd_path(self) -> str:
        return f"/api/agents/{self.agent.id}/commands"


async def make_world(conn: Any, server: ApiServer) -> World:
    tenant = await factories.tenant(conn)
    other = await factories.tenant(conn)
    tech_a = await factories.user(conn, None, "technician")
    tech_b = await factories.user(conn, None, "technician")
    admin = await factories.user(conn, None, "admin")
    return World(
        server=server, tenant=tenant,
        tech_a=server.token("technician", user_id=tech_a), tech_b=server.token("technician", user_id=tech_b),
        admin=server.token("admin", user_id=admin),
        customer=server.token("customer", user_id=tenant.customer_id, business_id=tenant.business_id),
        tech_a_id=tech_a, tech_b_id=tech_b, other=other,
        other_customer=server.token("customer", user_id=other.customer_id, business_id=other.business_id),
    )


@pytest.fixture
async def world(api_conn: Any, api: ApiServer) -> World:
    return await make_world(api_conn, api)


async def create(client: httpx.AsyncClient, w: World, token: str, body: dict[str, Any]) -> dict[str, Any]:
    resp = await client.post(w.cmd_path, json=body, headers=w.h(token))
    assert resp.status_code == 201, resp.text
    return resp.json()  # type: ignore[no-any-return]


async def poll(client: httpx.AsyncClient, agent: factories.Agent) -> list[dict[str, Any]]:
    resp = await client.get(f"/api/agents/{agent.id}/commands", headers=agent.headers)
    assert resp.status_code == 200, resp.text
    assert set(resp.json()) == {"commands"}
    return resp.json()["commands"]  # type: ignore[no-any-return]


RESTART = {"command_type": "restart_service", "params": {"service_name": "nginx"}, "timeout_seconds": 60}
SCRIPT = {"command_type": "run_script",
          "params": {"interpreter": "bash", "script": "echo hi", "arguments": ["-x"], "working_directory": "/tmp"}}


# --- validation -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("body", "field"), [
    ({"command_type": "format_disk", "params": {}}, "command_type"),
    ({"command_type": "restart_service", "params": {}}, "params.service_name"),
    ({"command_type": "restart_service", "params": {"service_name": 7}}, "params.service_name"),
    ({"command_type": "restart_service", "params": {"service_name": "nginx; rm -rf /"}}, "params.service_name"),
    ({"command_type": "restart_service", "params": {"service_name": "nginx", "action": "x"}}, "params.action"),
    ({"command_type": "run_script", "params": {"interpreter": "perl", "script": "1"}}, "params.interpreter"),
    ({"command_type": "run_script", "params": {"interpreter": "bash"}}, "params.script"),
    ({"command_type": "run_script", "params": {"interpreter": "bash", "script": "x", "arguments": [1]}},
     "params.arguments[0]"),
    ({"command_type": "run_script", "params": {"interpreter": "sh", "script": "x", "working_directory": "tmp"}},
     "params.working_directory"),
    ({"command_type": "update_agent", "params": {"target_version": "latest"}}, "params.target_version"),
    ({"command_type": "update_agent", "params": {"target_version": "1.0.0", "source": "--index-url=http://x"}},
     "params.source"),
    ({"command_type": "update_agent", "params": {"target_version": "1.0.0", "source": "rts-agent x"}},
     "params.source"),
    ({"command_type": "collect_inventory", "params": {"full": True}}, "params.full"),
    ({"command_type": "collect_inventory", "params": {}, "timeout_seconds": 10**9}, "timeout_seconds"),
])
async def test_bad_command_is_a_4xx_naming_the_field(client: httpx.AsyncClient, world: World,
                                                     body: dict[str, Any], field: str) -> None:
    resp = await client.post(world.cmd_path, json=body, headers=world.h(world.tech_a))
    assert resp.status_code == 422, resp.text
    assert resp.json()["field"] == field
    assert resp.json()["message"].startswith(field)


async def test_malformed_top_level_fields_name_the_field(client: httpx.AsyncClient, world: World) -> None:
    resp = await client.post(world.cmd_path, json={"command_type": "collect_inventory", "timeout_seconds": "x"},
                             headers=world.h(world.tech_a))
    assert resp.status_code == 422 and resp.json()["field"] == "timeout_seconds"
    resp = await client.post(world.cmd_path, json={"command_type": "collect_inventory", "timeout_seconds": 0},
                             headers=world.h(world.tech_a))
    assert resp.status_code == 422 and resp.json()["field"] == "timeout_seconds"


async def test_valid_types_are_created_with_typed_params(client: httpx.AsyncClient, world: World) -> None:
    restart = await create(client, world, world.tech_a, RESTART)
    assert restart["status"] == "pending" and restart["approval_required"] is False
    assert restart["params"] == {"service_name": "nginx"}
    assert restart["requested_by"] == str(world.tech_a_id)
    assert restart["timeout_seconds"] == 60
    inv = await create(client, world, world.tech_a, {"command_type": "collect_inventory"})
    assert inv["params"] == {} and inv["timeout_seconds"] == 300
    script = await create(client, world, world.tech_a, SCRIPT)
    assert script["approval_required"] is True
    assert script["params"] == SCRIPT["params"]
    upd = await create(client, world, world.tech_a, {"command_type": "update_agent",
                                                      "params": {"target_version": "1.2.3", "source": "rts-agent"}})
    assert upd["approval_required"] is True and upd["params"]["source"] == "rts-agent"
    # Without a source: the agent wheel this server serves (only its own version), stored with the command.
    served = (await client.get("/agent/package")).json()
    upd = await create(client, world, world.tech_a, {"command_type": "update_agent",
                                                      "params": {"target_version": served["version"]}})
    # ...with the hash it publishes, so the agent installs exactly those bytes.
    assert upd["params"] == {"target_version": served["version"], "source": served["url"],
                             "sha256": served["sha256"]}
    resp = await client.post(world.cmd_path, headers=world.h(world.tech_a), json={
        "command_type": "update_agent", "params": {"target_version": "1.2.3"}})
    assert resp.status_code == 422 and resp.json()["field"] == "params.target_version", resp.text
    assert f"serves rts-agent {served['version']}" in resp.json()["message"]
    upd = await create(client, world, world.tech_a, {"command_type": "update_agent", "params": {
        "target_version": "1.2.3", "source": "https://example.com/rts_agent-1.2.3-py3-none-any.whl"}})
    assert upd["params"]["source"] == "https://example.com/rts_agent-1.2.3-py3-none-any.whl"
    assert "sha256" not in upd["params"]  # nothing published for another source, none invented
    resp = await client.post(world.cmd_path, headers=world.h(world.tech_a), json={
        "command_type": "update_agent", "params": {"target_version": "1.2.3", "source": "/tmp/a.whl",
                                                   "sha256": "not-a-hash"}})
    assert resp.status_code == 422 and resp.json()["field"] == "params.sha256", resp.text
    assert [e["event"] for e in restart["history"]] == ["created"]
    assert restart["history"][0]["actor_user_id"] == str(world.tech_a_id)


# --- approval ----------------------------------------------------------------------------------------


async def test_approval_rules_and_delivery_after_approval(client: httpx.AsyncClient, world: World) -> None:
    cmd = await create(client, world, world.tech_a, SCRIPT)
    base = f"{world.cmd_path}/{cmd['id']}"
    assert await poll(client, world.agent) == []  # not deliverable before approval

    resp = await client.post(base + "/approve", headers=world.h(world.tech_a))
    assert resp.status_code == 403 and "own" in resp.json()["message"]
    resp = await client.post(base + "/approve", headers=world.h(world.customer))
    assert resp.status_code == 403
    resp = await client.post(base + "/approve", headers=world.h(world.other_customer))
    assert resp.status_code == 404
    assert await poll(client, world.agent) == []

    resp = await client.post(base + "/approve", headers=world.h(world.tech_b))
    assert resp.status_code == 200, resp.text
    assert resp.json()["approved_by"] == str(world.tech_b_id)
    resp = await client.post(base + "/approve", headers=world.h(world.admin))
    assert resp.status_code == 409  # approved once

    got = await poll(client, world.agent)
    assert got == [{"command_id": cmd["id"], "command_type": "run_script", "params": SCRIPT["params"],
                    "timeout_seconds": 300}]
    detail = (await client.get(base, headers=world.h(world.customer))).json()
    assert detail["status"] == "sent" and detail["delivered_via"] == "poll"
    assert [(e["event"], e["to_status"], e["actor_type"]) for e in detail["history"]] == [
        ("created", "pending", "user"), ("approved", "pending", "user"), ("sent", "sent", "agent")]
    assert detail["history"][1]["actor_user_id"] == str(world.tech_b_id)
    assert detail["history"][2]["actor_agent_id"] == str(world.agent.id)


async def test_customer_request_needs_staff_approval(client: httpx.AsyncClient, world: World) -> None:
    cmd = await create(client, world, world.customer, {"command_type": "update_agent",
                                                        "params": {"target_version": "2.0.0", "source": "rts-agent"}})
    base = f"{world.cmd_path}/{cmd['id']}"
    assert (await client.post(base + "/approve", headers=world.h(world.customer))).status_code == 403
    assert (await client.post(base + "/approve", headers=world.h(world.admin))).status_code == 200
    assert [c["command_id"] for c in await poll(client, world.agent)] == [cmd["id"]]


async def test_reject_and_cancel(client: httpx.AsyncClient, world: World) -> None:
    rejected = await create(client, world, world.tech_a, SCRIPT)
    base = f"{world.cmd_path}/{rejected['id']}"
    assert (await client.post(base + "/reject", headers=world.h(world.customer))).status_code == 403
    resp = await client.post(base + "/reject", json={"reason": "not today"}, headers=world.h(world.tech_b))
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["status"] == "rejected" and body["rejected_by"] == str(world.tech_b_id)
    assert body["status_reason"] == "not today"
    assert (await client.post(base + "/approve", headers=world.h(world.admin))).status_code == 409

    cancelled = await create(client, world, world.tech_a, RESTART)
    base = f"{world.cmd_path}/{cancelled['id']}"
    # a customer who did not request it cannot cancel; the requester can
    assert (await client.post(base + "/cancel", headers=world.h(world.customer))).status_code == 403
    resp = await client.post(base + "/cancel", headers=world.h(world.tech_a))
    assert resp.status_code == 200 and resp.json()["status"] == "cancelled"
    assert resp.json()["cancelled_by"] == str(world.tech_a_id)
    assert (await client.post(base + "/cancel", headers=world.h(world.tech_a))).status_code == 409
    assert await poll(client, world.agent) == []  # neither is ever delivered

    # no result is possible for a command that was never delivered
    resp = await client.post(base + "/result", json={"status": "completed", "exit_code": 0},
                             headers=world.agent.headers)
    assert resp.status_code == 409

    # a sent command can still be cancelled; the agent's later result is kept, not reopening it
    sent = await create(client, world, world.tech_a, RESTART)
    assert [c["command_id"] for c in await poll(client, world.agent)] == [sent["id"]]
    base = f"{world.cmd_path}/{sent['id']}"
    assert (await client.post(base + "/cancel", headers=world.h(world.admin))).status_code == 200
    resp = await client.post(base + "/result", json={"status": "executing"}, headers=world.agent.headers)
    assert resp.json() == {"command_id": sent["id"], "status": "cancelled", "applied": False, "late": False}
    resp = await client.post(base + "/result", json={"status": "completed", "exit_code": 0},
                             headers=world.agent.headers)
    assert resp.json() == {"command_id": sent["id"], "status": "cancelled", "applied": False, "late": True}
    assert (await client.get(base, headers=world.h(world.admin))).json()["status"] == "cancelled"
    listing = (await client.get("/api/commands?status=rejected,cancelled", headers=world.h(world.customer))).json()
    assert {c["id"] for c in listing["commands"]} == {rejected["id"], cancelled["id"], sent["id"]}


async def heartbeat_cancels(client: httpx.AsyncClient, world: World) -> list[str]:
    resp = await client.post(f"/api/agents/{world.agent.id}/heartbeat", json={"status": "online"},
                             headers=world.agent.headers)
    assert resp.status_code == 200, resp.text
    return list(resp.json()["cancel_commands"])


async def test_cancel_while_executing_tells_the_agent_until_it_answers(client: httpx.AsyncClient,
                                                                       world: World) -> None:
    running = await create(client, world, world.tech_a, RESTART)
    other = await create(client, world, world.tech_a, {**RESTART, "params": {"service_name": "cron"}})
    assert {c["command_id"] for c in await poll(client, world.agent)} == {running["id"], other["id"]}
    base = f"{world.cmd_path}/{running['id']}"
    resp = await client.post(base + "/result", json={"status": "executing"}, headers=world.agent.headers)
    assert resp.json()["status"] == "executing"
    assert await heartbeat_cancels(client, world) == []

    resp = await client.post(base + "/cancel", json={"reason": "runaway"}, headers=world.h(world.admin))
    assert resp.status_code == 200, resp.text
    assert resp.json()["status"] == "cancelled" and resp.json()["status_reason"] == "runaway"
    assert [(e["event"], e["from_status"]) for e in resp.json()["history"]][-1] == ("cancelled", "executing")
    # Every heartbeat answer names it until the agent's (late) result arrives; then never again.
    assert await heartbeat_cancels(client, world) == [running["id"]]
    assert await heartbeat_cancels(client, world) == [running["id"]]
    resp = await client.post(base + "/result", json={"status": "failed", "exit_code": -9,
                                                     "error_message": "cancelled from the portal while running"},
                             headers=world.agent.headers)
    assert resp.json() == {"command_id": running["id"], "status": "cancelled", "applied": False, "late": True}
    assert await heartbeat_cancels(client, world) == []
    detail = (await client.get(base, headers=world.h(world.admin))).json()
    assert detail["status"] == "cancelled" and detail["exit_code"] == -9
    # the other command was untouched; a finished one cannot be cancelled
    resp = await client.post(f"{world.cmd_path}/{other['id']}/result", json={"status": "completed", "exit_code": 0},
                             headers=world.agent.headers)
    assert resp.json()["status"] == "completed"
    resp = await client.post(f"{world.cmd_path}/{other['id']}/cancel", headers=world.h(world.admin))
    assert resp.status_code == 409 and "only pending, sent or executing" in resp.json()["message"]


async def test_approval_queue_lists_only_awaiting(client: httpx.AsyncClient, world: World) -> None:
    waiting = await create(client, world, world.customer, SCRIPT)
    await create(client, world, world.customer, RESTART)
    resp = await client.get("/api/commands", params={"awaiting_approval": "true", "agent_id": str(world.agent.id)},
                            headers=world.h(world.tech_b))
    assert [c["id"] for c in resp.json()["commands"]] == [waiting["id"]]
    resp = await client.get("/api/commands", params={"status": "bogus"}, headers=world.h(world.tech_b))
    assert resp.status_code == 422 and resp.json()["field"] == "status"


# --- polling -----------------------------------------------------------------------------------------


async def test_concurrent_polls_never_hand_out_a_command_twice(client: httpx.AsyncClient, world: World,
                                                               api: ApiServer) -> None:
    ids = {(await create(client, world, world.tech_a, {"command_type": "collect_inventory"}))["id"]
           for _ in range(40)}
    received: list[str] = []
    deadline = time.monotonic() + 20

    async def poller() -> None:
        async with api.client() as c:
            while time.monotonic() < deadline:
                resp = await c.get(f"{world.cmd_path}?limit=3", headers=world.agent.headers)
                assert resp.status_code == 200
                got = [x["command_id"] for x in resp.json()["commands"]]
                received.extend(got)
                if not got and len(set(received)) >= len(ids):
                    return

    await asyncio.gather(*(poller() for _ in range(8)))
    assert sorted(received) == sorted(ids)  # every command exactly once
    listing = (await client.get(world.cmd_path, params={"limit": 100}, headers=world.h(world.tech_a))).json()
    assert {c["status"] for c in listing["commands"]} == {"sent"}


async def test_results_state_machine_and_idempotency(client: httpx.AsyncClient, world: World) -> None:
    cmd = await create(client, world, world.tech_a, RESTART)
    base = f"{world.cmd_path}/{cmd['id']}"
    resp = await client.post(base + "/result", json={"status": "completed"}, headers=world.agent.headers)
    assert resp.status_code == 409  # not delivered yet
    await poll(client, world.agent)

    resp = await client.post(base + "/result", json={"status": "executing", "started_at": "2025-10-09T10:31:00Z"},
                             headers=world.agent.headers)
    assert resp.json() == {"command_id": cmd["id"], "status": "executing", "applied": True, "late": False}
    result = {"status": "completed", "exit_code": 0, "stdout": "Service nginx restarted successfully",
              "stderr": "", "started_at": "2025-10-09T10:31:00Z", "completed_at": "2025-10-09T10:31:05Z"}
    first = await client.post(base + "/result", json=result, headers=world.agent.headers)
    assert first.status_code == 200, first.text
    assert first.json() == {"command_id": cmd["id"], "status": "completed", "applied": True, "late": False}
    # the same report again (the plan's path without /result): nothing changes
    again = await client.post(base, json=result, headers=world.agent.headers)
    assert again.status_code == 200
    assert again.json() == {"command_id": cmd["id"], "status": "completed", "applied": False, "late": False}
    # a contradicting report is refused
    resp = await client.post(base + "/result", json={**result, "status": "failed"}, headers=world.agent.headers)
    assert resp.status_code == 409

    detail = (await client.get(base, headers=world.h(world.tech_a))).json()
    assert detail["status"] == "completed" and detail["exit_code"] == 0
    assert detail["stdout"] == "Service nginx restarted successfully"
    assert detail["started_at"].startswith("2025-10-09T10:31:00")
    assert detail["completed_at"].startswith("2025-10-09T10:31:05")
    assert [e["event"] for e in detail["history"]] == ["created", "sent", "started", "completed"]


async def test_result_validation_and_output_cap(client: httpx.AsyncClient, world: World, api: ApiServer) -> None:
    cmd = await create(client, world, world.tech_a, RESTART)
    await poll(client, world.agent)
    base = f"{world.cmd_path}/{cmd['id']}/result"
    resp = await client.post(base, json={"status": "done"}, headers=world.agent.headers)
    assert resp.status_code == 422 and resp.json()["field"] == "status"
    resp = await client.post(base, json={"status": "completed", "exit_code": "zero"}, headers=world.agent.headers)
    assert resp.status_code == 422 and resp.json()["field"] == "exit_code"
    cap = api.settings.command_output_max_bytes
    big = "é" * cap  # 2 bytes each: twice the cap
    resp = await client.post(base, json={"status": "failed", "exit_code": 1, "stdout": big, "stderr": "a\x00b"},
                             headers=world.agent.headers)
    assert resp.status_code == 200, resp.text
    detail = (await client.get(f"{world.cmd_path}/{cmd['id']}", headers=world.h(world.tech_a))).json()
    assert detail["status"] == "failed"
    assert detail["stdout_truncated"] is True and detail["stderr_truncated"] is False
    assert len(detail["stdout"].encode()) <= cap and detail["stdout"] == "é" * (cap // 2)
    assert detail["stderr"] == "a\ufffdb"


async def test_cross_agent_and_cross_tenant(client: httpx.AsyncClient, world: World) -> None:
    cmd = await create(client, world, world.tech_a, RESTART)
    other_agent = world.other.agent
    # another agent's token on this agent's path: 403
    resp = await client.get(world.cmd_path, headers=other_agent.headers)
    assert resp.status_code == 403
    # on its own path, reporting on this agent's command: 403, and nothing changes
    await poll(client, world.agent)
    resp = await client.post(f"/api/agents/{other_agent.id}/commands/{cmd['id']}/result",
                             json={"status": "completed", "exit_code": 0}, headers=other_agent.headers)
    assert resp.status_code == 403
    # unknown command: 404
    resp = await client.post(f"/api/agents/{world.agent.id}/commands/{uuid.uuid4()}/result",
                             json={"status": "completed"}, headers=world.agent.headers)
    assert resp.status_code == 404
    # another business's customer sees nothing
    h = world.h(world.other_customer)
    assert (await client.post(world.cmd_path, json=RESTART, headers=h)).status_code == 404
    assert (await client.get(world.cmd_path, headers=h)).status_code == 404
    assert (await client.get(f"{world.cmd_path}/{cmd['id']}", headers=h)).status_code == 404
    assert (await client.post(f"{world.cmd_path}/{cmd['id']}/cancel", headers=h)).status_code == 404
    listing = (await client.get("/api/commands", headers=h)).json()["commands"]
    assert cmd["id"] not in {c["id"] for c in listing}
    # portal token on the agent endpoints and agent token on portal ones: 401
    resp = await client.post(f"{world.cmd_path}/{cmd['id']}/result", json={"status": "completed"},
                             headers=world.h(world.tech_a))
    assert resp.status_code == 401
    assert (await client.post(world.cmd_path, json=RESTART, headers=world.agent.headers)).status_code == 401
    detail = (await client.get(f"{world.cmd_path}/{cmd['id']}", headers=world.h(world.customer))).json()
    assert detail["status"] == "sent"


async def test_unknown_user_cannot_request(client: httpx.AsyncClient, world: World, api: ApiServer) -> None:
    ghost = api.token("technician", user_id=uuid.uuid4())
    resp = await client.post(world.cmd_path, json=RESTART, headers=world.h(ghost))
    assert resp.status_code == 403


# --- timeouts ----------------------------------------------------------------------------------------


async def test_timeout_job_and_late_result(conn: Any, api_factory: Callable[..., ApiServer]) -> None:
    server = api_factory(env={"RTS_COMMAND_TIMEOUT_JOB_SECONDS": "1", "RTS_COMMAND_TIMEOUT_GRACE_SECONDS": "0",
                              "RTS_COMMAND_PENDING_TTL_SECONDS": "3"})
    w = await make_world(conn, server)
    async with server.client() as client:
        running = await create(client, w, w.tech_a, {**RESTART, "timeout_seconds": 1})
        await poll(client, w.agent)
        await client.post(f"{w.cmd_path}/{running['id']}/result", json={"status": "executing"},
                          headers=w.agent.headers)
        unapproved = await create(client, w, w.tech_a, SCRIPT)  # nobody approves it
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            states = {c["id"]: c["status"] for c in (await client.get(w.cmd_path, headers=w.h(w.admin))).json()[
                "commands"]}
            if states == {running["id"]: "timeout", unapproved["id"]: "timeout"}:
                break
            await asyncio.sleep(0.3)
        assert states == {running["id"]: "timeout", unapproved["id"]: "timeout"}, states

        detail = (await client.get(f"{w.cmd_path}/{running['id']}", headers=w.h(w.admin))).json()
        last = detail["history"][-1]
        assert (last["event"], last["from_status"], last["actor_type"], last["via"]) == (
            "timeout", "executing", "system", "job")
        assert detail["status_reason"] == "no result before the deadline"
        other = (await client.get(f"{w.cmd_path}/{unapproved['id']}", headers=w.h(w.admin))).json()
        assert other["status_reason"] == "not approved before the deadline"
        assert (await client.post(f"{w.cmd_path}/{unapproved['id']}/approve",
                                  headers=w.h(w.tech_b))).status_code == 409

        late = {"status": "completed", "exit_code": 0, "stdout": "finally"}
        resp = await client.post(f"{w.cmd_path}/{running['id']}/result", json=late, headers=w.agent.headers)
        assert resp.json() == {"command_id": running["id"], "status": "timeout", "applied": False, "late": True}
        resp = await client.post(f"{w.cmd_path}/{running['id']}/result", json=late, headers=w.agent.headers)
        assert resp.json()["late"] is False and resp.json()["status"] == "timeout"  # recorded once
        detail = (await client.get(f"{w.cmd_path}/{running['id']}", headers=w.h(w.admin))).json()
        assert detail["status"] == "timeout" and detail["stdout"] == "finally" and detail["exit_code"] == 0
        assert detail["late_result_at"] is not None
        assert [e["event"] for e in detail["history"]][-2:] == ["timeout", "late_result"]
