"""Staged agent rollouts on a real server: plan, one approval, canary then waves, a halt when
updates fail, resume, completion, abort, per-business opt-out. The agents here are simulated by
their own HTTP calls (poll, result); agent/tests/test_rollout_e2e.py runs real agents."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from tests import factories
from tests.fix_api import ApiServer

FAST = {"RTS_ROLLOUT_JOB_SECONDS": "0.3"}


async def until(check: Callable[[], Awaitable[Any]], what: str, within: float = 30) -> Any:
    deadline = time.monotonic() + within
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


async def answer(client: httpx.AsyncClient, agent: factories.Agent, fail: bool = False) -> list[dict[str, Any]]:
    """What an agent does: poll its commands and report each one's end."""
    resp = await client.get(f"/api/agents/{agent.id}/commands", headers=agent.headers)
    assert resp.status_code == 200, resp.text
    got = resp.json()["commands"]
    for cmd in got:
        result = {"status": "failed", "exit_code": 1, "error_message": "pip: no space left on device"} if fail \
            else {"status": "completed", "exit_code": 0, "stdout": "installed"}
        r = await client.post(f"/api/agents/{agent.id}/commands/{cmd['command_id']}/result", headers=agent.headers,
                              json=result)
        assert r.status_code == 200, r.text
    return list(got)


@pytest.fixture
async def fleet(conn: Any) -> dict[str, Any]:
    biz, opted = await factories.business(conn), await factories.business(conn)
    agents = [await factories.agent(conn, biz, name=f"pc-{i:02d}") for i in range(10)]
    others = [await factories.agent(conn, opted) for _ in range(2)]
    current = await factories.agent(conn, biz, name="already-current")
    for a in agents + others:
        await conn.execute("UPDATE agent_devices SET agent_version = '0.0.1' WHERE id = %s", (a.id,))
    return {"biz": biz, "opted": opted, "agents": agents, "others": others, "current": current,
            "tech": await factories.user(conn, None, "technician"),
            "approver": await factories.user(conn, None, "technician")}


async def test_canary_then_waves_halt_on_failures_resume_and_complete(api_factory: Any, conn: Any,
                                                                      fleet: dict[str, Any]) -> None:
    server: ApiServer = api_factory(env=FAST)
    async with server.client() as client:
        served = (await client.get("/agent/package")).json()["version"]
        await conn.execute("UPDATE agent_devices SET agent_version = %s WHERE id = %s",
                               (served, fleet["current"].id))
        tech = server.headers(server.token("technician", user_id=fleet["tech"]))
        approver = server.headers(server.token("technician", user_id=fleet["approver"]))
        opted_user = await factories.user(conn, fleet["opted"], "customer")
        customer_of_opted = server.headers(server.token("customer", user_id=opted_user, business_id=fleet["opted"]))
        assert (await client.put(f"/api/agents/rollouts/opt-outs/{fleet['opted']}", headers=customer_of_opted,
                                 json={"reason": "change freeze"})).status_code == 200
        resp = await client.post("/api/agents/rollouts", headers=tech, json={
            "target_version": served, "business_ids": [str(fleet["biz"]), str(fleet["opted"])],
            "canary_percent": 10, "wave_percent": 50, "max_failure_percent": 10})
        assert resp.status_code == 201, resp.text
        rollout = resp.json()
        rid = rollout["id"]
        # 10 outdated devices (the current one and the opted-out business are not planned): 1 + 5 + 4
        assert rollout["status"] == "awaiting_approval" and rollout["waves"] == 3
        assert [w["devices"] for w in rollout["progress"]] == [1, 5, 4]
        assert (await client.post(f"/api/agents/rollouts/{rid}/approve", headers=tech)).status_code == 403
        await asyncio.sleep(1)
        assert sum([len(await answer(client, a)) for a in fleet["agents"]]) == 0  # nothing before approval
        assert (await client.post(f"/api/agents/rollouts/{rid}/approve", headers=approver)).json()["status"] == \
            "running"

        async def sent() -> list[factories.Agent]:
            body = (await client.get(f"/api/agents/rollouts/{rid}", headers=tech)).json()
            ids = {d["agent_id"] for d in body["devices"] if d["state"] == "sent"}
            return [a for a in fleet["agents"] if str(a.id) in ids]

        canary = await until(sent, "the canary's command")
        assert len(canary) == 1
        cmds = await answer(client, canary[0])
        assert [c["command_type"] for c in cmds] == ["update_agent"]
        assert cmds[0]["params"]["target_version"] == served
        history = (await client.get(f"/api/agents/{canary[0].id}/commands/{cmds[0]['command_id']}",
                                    headers=tech)).json()
        assert history["requested_by"] == str(fleet["tech"]) and history["approved_by"] == str(fleet["approver"])

        wave1 = await until(lambda: _sent_other_than(sent, canary), "wave 1")
        assert len(wave1) == 5
        for i, agent in enumerate(wave1):
            await answer(client, agent, fail=(i == 0))  # one of five fails: 1 of 6 > 10%

        async def status() -> str:
            return str((await client.get(f"/api/agents/rollouts/{rid}", headers=tech)).json()["status"])

        await until(lambda: _is(status, "halted"), "the halt")
        body = (await client.get(f"/api/agents/rollouts/{rid}", headers=tech)).json()
        assert "1 of 6 updates failed" in body["status_reason"]
        failed = [d for d in body["devices"] if d["state"] == "failed"]
        assert len(failed) == 1 and "no space left" in failed[0]["error"]
        assert [w["planned"] for w in body["progress"]] == [0, 0, 4]  # wave 2 never started

        assert (await client.post(f"/api/agents/rollouts/{rid}/resume", headers=approver,
                                  json={"reason": "disk cleaned"})).status_code == 200
        wave2 = await until(lambda: _sent_other_than(sent, canary + wave1), "wave 2")
        assert len(wave2) == 4
        for agent in wave2:
            await answer(client, agent)
        await until(lambda: _is(status, "completed"), "completion")  # none failed since the resume
        assert (await client.get(f"/api/agents/rollouts/{rid}", headers=tech)).json()["status_reason"] == \
            "9 updated, 1 failed"
        for agent in fleet["others"] + [fleet["current"]]:
            assert await answer(client, agent) == []
        actions = [e["action"] for e in (await client.get(
            "/api/admin/audit", headers=tech, params={"object_type": "rollout", "object_id": rid})).json()["entries"]]
        assert actions == ["rollout.completed", "rollout.resume", "rollout.halted", "rollout.approve",
                           "rollout.create"]


async def _sent_other_than(sent: Callable[[], Awaitable[list[factories.Agent]]],
                           seen: list[factories.Agent]) -> list[factories.Agent]:
    known = {a.id for a in seen}
    return [a for a in await sent() if a.id not in known]


async def _is(status: Callable[[], Awaitable[str]], want: str) -> bool:
    return await status() == want


async def test_abort_skips_and_cancels_what_was_not_delivered(api_factory: Any, conn: Any,
                                                              fleet: dict[str, Any]) -> None:
    server: ApiServer = api_factory(env={**FAST, "RTS_COMMAND_SENSITIVE_TYPES": "run_script"})
    async with server.client() as client:
        served = (await client.get("/agent/package")).json()["version"]
        tech = server.headers(server.token("technician", user_id=fleet["tech"]))
        resp = await client.post("/api/agents/rollouts", headers=tech, json={
            "target_version": served, "business_ids": [str(fleet["biz"])], "canary_percent": 50, "wave_percent": 50})
        assert resp.status_code == 201 and resp.json()["status"] == "running"  # not sensitive here
        rid = resp.json()["id"]

        async def wave0_sent() -> Any:
            body = (await client.get(f"/api/agents/rollouts/{rid}", headers=tech)).json()
            return [d for d in body["devices"] if d["state"] == "sent"]

        issued = await until(wave0_sent, "the first wave")
        assert len(issued) == 5
        body = (await client.post(f"/api/agents/rollouts/{rid}/abort", headers=tech,
                                  json={"reason": "wrong version"})).json()
        assert body["status"] == "aborted"
        assert [w["skipped"] for w in body["progress"]] == [0, 5]
        cmd = (await client.get(f"/api/agents/{issued[0]['agent_id']}/commands/{issued[0]['command_id']}",
                                headers=tech)).json()
        assert cmd["status"] == "cancelled" and cmd["status_reason"] == "rollout aborted"
        for agent in fleet["agents"]:
            assert await answer(client, agent) == []  # nothing left to deliver
        bad = await client.post(f"/api/agents/rollouts/{rid}/resume", headers=tech)
        assert bad.status_code == 409
        # nothing to do: a 422 naming the version; customers may not start rollouts
        resp = await client.post("/api/agents/rollouts", headers=tech, json={
            "target_version": "0.0.1", "business_ids": [str(fleet["biz"])]})
        assert resp.status_code == 422 and resp.json()["field"] == "target_version"
        # a suffix the wire pattern allows but pip cannot compare: a 422 too, not a 500
        resp = await client.post("/api/agents/rollouts", headers=tech, json={
            "target_version": "901.80495.7085269-6jy", "business_ids": [str(fleet["biz"])]})
        assert resp.status_code == 422 and resp.json()["field"] == "target_version", resp.text
        customer = server.headers(server.token("customer", business_id=fleet["biz"]))
        assert (await client.post("/api/agents/rollouts", headers=customer,
                                  json={"target_version": served})).status_code == 403


def test_waves_are_a_canary_then_equal_shares() -> None:
    from rts_monitor.rollouts.service import plan_waves

    assert plan_waves(10, 10, 50) == [0] + [1] * 5 + [2] * 4
    assert plan_waves(1, 5, 25) == [0]
    assert plan_waves(3, 100, 25) == [0, 0, 0]
    assert plan_waves(7, 1, 100) == [0] + [1] * 6


async def test_a_large_rollout_lists_its_devices_a_page_at_a_time_in_the_api_and_on_its_page(
        api_factory: Any, conn: Any) -> None:
    """A rollout may hold a whole fleet and its page re-reads itself while it runs: the API gives
    a page of devices (by state, limit, offset) with how many match; the console 200 a page."""
    from rts_monitor.console.rollouts import DEVICES_PER_PAGE

    server: ApiServer = api_factory()
    biz = await factories.business(conn)
    n = DEVICES_PER_PAGE + 5
    agents = [await factories.agent(conn, biz, name=f"ws-{i:03d}") for i in range(n)]
    await conn.execute("UPDATE agent_devices SET agent_version = '0.0.1' WHERE business_id = %s", (biz,))
    tech = server.headers(server.token("technician", user_id=await factories.user(conn, None, "technician")))
    async with server.client() as client:
        served = (await client.get("/agent/package")).json()["version"]
        resp = await client.post("/api/agents/rollouts", headers=tech, json={
            "target_version": served, "business_ids": [str(biz)], "canary_percent": 1, "wave_percent": 50})
        assert resp.status_code == 201, resp.text
        rid = resp.json()["id"]

        async def page(**params: Any) -> dict[str, Any]:
            r = await client.get(f"/api/agents/rollouts/{rid}", headers=tech, params=params)
            assert r.status_code == 200, r.text
            return dict(r.json())

        whole = await page()  # under the default page: all of them
        assert whole["devices_matching"] == n and len(whole["devices"]) == n
        in_order = [(d["wave"], d["device_name"]) for d in whole["devices"]]
        assert in_order == sorted(in_order)
        got = await page(device_limit=100, device_offset=100)
        assert [d["agent_id"] for d in got["devices"]] == [d["agent_id"] for d in whole["devices"][100:200]]
        tail = await page(device_limit=100, device_offset=200)
        assert len(tail["devices"]) == n - 200 and tail["devices_matching"] == n
        every = [d["agent_id"] for o in range(0, n, 60)
                 for d in (await page(device_limit=60, device_offset=o))["devices"]]
        assert sorted(every) == sorted(str(a.id) for a in agents) and len(set(every)) == n  # no repeat, none lost
        assert (await page(device_state="planned", device_limit=5))["devices_matching"] == n
        failed = await page(device_state="failed")
        assert failed["devices"] == [] and failed["devices_matching"] == 0
        for params, field in (({"device_state": "lost"}, "device_state"), ({"device_limit": 0}, "device_limit"),
                              ({"device_limit": 5001}, "device_limit"), ({"device_offset": -1}, "device_offset")):
            r = await client.get(f"/api/agents/rollouts/{rid}", headers=tech, params=params)
            assert r.status_code == 422 and r.json()["field"] == field, (params, r.status_code, r.text)

    # the console: a page of DEVICES_PER_PAGE, a pager, the states as filters
    async with server.client(follow_redirects=True) as browser:
        token = server.token("technician", user_id=await factories.user(conn, None, "technician"))
        assert (await browser.get("/console/auth", params={"token": token})).status_code == 200

        async def console(query: str) -> str:
            r = await browser.get(f"/console/rollouts/{rid}{query}")
            assert r.status_code == 200, r.text[:500]
            return r.text

        first = await console("")
        assert first.count('<tr class="rollout-device"') == DEVICES_PER_PAGE
        assert f"1\N{EN DASH}{DEVICES_PER_PAGE} of {n}" in first and f'href="/console/rollouts/{rid}?page=2"' in first
        second = await console("?page=2")
        assert second.count('<tr class="rollout-device"') == 5 and f"201\N{EN DASH}{n} of {n}" in second
        assert (await console("?page=99")).count('<tr class="rollout-device"') == 5  # past the end: the last
        assert (await console("?page=x")).count('<tr class="rollout-device"') == DEVICES_PER_PAGE
        assert (await console("?page=" + "9" * 30)).count('<tr class="rollout-device"') == 5  # no overflow
        assert (await console("?state=fail%00ed&page=-3")).count('<tr class="rollout-device"') == DEVICES_PER_PAGE
        none_failed = await console("?state=failed")
        assert 'id="rollout-no-devices"' in none_failed and "No device is failed." in none_failed
        assert 'data-state="failed" href="/console/rollouts/' in none_failed and 'aria-current="true"' in none_failed
        waiting = await console("?state=planned&page=2")
        assert waiting.count('<tr class="rollout-device"') == 5 and 'class="pager"' in waiting
        assert (await console("?state=lost")).count('<tr class="rollout-device"') == DEVICES_PER_PAGE  # all
