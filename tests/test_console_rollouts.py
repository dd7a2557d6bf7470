"""The rollout pages in a real browser (tests/fix_browser.py): started from the form, approved by
a second person, followed live on the list and on its own page as devices' update commands
finish, paused, resumed, halted by its failure threshold, aborted; and nothing of it for a
customer. The server is the test's own (its advance job runs every 0.3 s, on the test's own
database: a rollout must not reach other tests' agents); the agents are simulated by their own
HTTP calls, as in tests/test_rollouts.py."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any, cast
from uuid import uuid4

import psycopg
import pytest
from playwright.async_api import Browser, Page, expect

from rts_monitor.auth.principal import Principal, Role
from rts_monitor.console import live
from tests import factories
from tests.fix_api import ApiServer
from tests.fix_browser import DESKTOP, ConsoleBrowser, open_console, until
from tests.test_rollouts import FAST, answer


@pytest.fixture
async def rollout_console(browser: Browser, api_factory: Any,
                          request: pytest.FixtureRequest) -> AsyncIterator[ConsoleBrowser]:
    async with open_console(browser, api_factory(env=FAST), request) as cb:
        yield cb


async def received(page: Page, kind: str) -> list[dict[str, Any]]:
    """The live events of ``kind`` the page got so far (frontend/src/registry.ts)."""
    got = await page.evaluate("() => window.rtsConsole.live.map((r) => r.event)")
    return [e for e in got if e["kind"] == kind]


async def test_a_rollout_started_on_the_page_advances_live_halts_and_is_paused_resumed_and_aborted(
        rollout_console: ConsoleBrowser, conn: Any) -> None:
    cb = rollout_console
    biz = await factories.business(conn, "Harbour Dental")
    other = await factories.business(conn, "Quay Books")
    agents = [await factories.agent(conn, biz, name=f"ws-{i:02d}") for i in range(4)]
    their_agent = await factories.agent(conn, other, name="till-01")
    await conn.execute("UPDATE agent_devices SET agent_version = '0.0.1'")
    tech, approver = await factories.user(conn, None, "technician"), await factories.user(conn, None, "admin")
    by_id = {str(a.id): a for a in agents}
    async with cb.api.client() as client:
        served = (await client.get("/agent/package")).json()["version"]

        # a customer of the other business has its command list open (it watches commands) all
        # along, in its own browser (a context shares its cookies: one session per context)
        theirs = ConsoleBrowser(cb.api, await cb.context.browser.new_context(viewport=DESKTOP),  # type: ignore[union-attr]
                                cb.test_name + "-customer")
        customer = await theirs.page()
        await theirs.sign_in(customer, "customer", business_id=other, next_path="/console/commands")
        await customer.wait_for_selector("body[data-live=connected]", state="attached")
        await expect(customer.get_by_role("link", name="Rollouts")).to_have_count(0)

        page = await cb.page()
        await cb.sign_in(page, "technician", user_id=tech, next_path="/console/rollouts")
        await expect(page.locator("#rollout-list")).to_contain_text("No rollouts yet")
        form = page.locator("#rollout-form")
        await expect(form.locator("[name=target_version]")).to_have_value(served)
        await form.get_by_label("These businesses only").check()
        await form.get_by_role("button", name="Plan the rollout").click()  # none chosen: not "every business"
        await expect(form.locator("[data-error-for=business_ids]")).to_contain_text("Choose at least one business")
        await form.get_by_label("Harbour Dental").check()
        await form.locator("[name=canary_percent]").fill("0")
        await form.get_by_role("button", name="Plan the rollout").click()
        await expect(form.locator("[data-error-for=canary_percent]")).to_contain_text("canary_percent")
        await cb.shot(page, "rollout-form")
        await form.locator("[name=canary_percent]").fill("25")
        await form.locator("[name=wave_percent]").fill("50")
        await form.get_by_role("button", name="Plan the rollout").click()
        await page.wait_for_url("**/console/rollouts/*")
        rollout_url = page.url
        rid = rollout_url.rsplit("/", 1)[1]
        section = page.locator("#rollout")
        await expect(section.locator("[data-field=status]")).to_have_text("awaiting approval")
        await expect(page.locator("#rollout-approval")).to_contain_text("other than the requester")
        await expect(page.locator("tr.wave")).to_have_count(3)  # 4 devices: a canary of 1, then 2 and 1
        await expect(page.get_by_role("button", name="Approve")).to_have_count(0)  # not for its requester
        await page.wait_for_selector("body[data-live=connected]", state="attached")
        await page.evaluate("() => { window.notReloaded = true; }")

        # a second person approves it in their own browser
        other_context = await cb.context.browser.new_context(viewport=DESKTOP)  # type: ignore[union-attr]
        second = ConsoleBrowser(cb.api, other_context, cb.test_name + "-approver")
        approver_page = await second.page()
        await second.sign_in(approver_page, "admin", user_id=approver, next_path=f"/console/rollouts/{rid}")
        await approver_page.get_by_role("button", name="Approve").click()
        await expect(approver_page.locator("#rollout [data-field=status]")).to_have_text("running")
        await other_context.close()
        assert not second.problems, second.problems

        # the requester's page follows: the canary's command is sent, then its update finishes
        await expect(section.locator("[data-field=status]")).to_have_text("running")
        canary_row = page.locator("tr.rollout-device[data-state=sent]")
        await expect(canary_row).to_have_count(1)
        canary = by_id[str(await canary_row.get_attribute("data-agent"))]
        assert [c["command_type"] for c in await answer(client, canary)] == ["update_agent"]
        await expect(page.locator(f'tr.rollout-device[data-agent="{canary.id}"] [data-field=state]')).to_have_text(
            "updated")
        await expect(page.locator(f'tr.rollout-device[data-agent="{canary.id}"] [data-field=command]')).to_have_text(
            "completed")
        await expect(page.locator("#rollout-progress")).to_contain_text("1 of 4 updated")
        await expect(page.locator("tr.wave[data-wave='0']")).to_contain_text("finished")
        # the next wave goes out by itself; pause and resume it from the page
        await expect(page.locator("tr.rollout-device[data-state=sent]")).to_have_count(2)
        wave1 = [by_id[str(await r.get_attribute("data-agent"))]
                 for r in await page.locator("tr.rollout-device[data-state=sent]").all()]
        await page.get_by_role("button", name="Pause").click()
        await expect(section.locator("[data-field=status]")).to_have_text("paused")
        await page.get_by_role("button", name="Resume").click()
        await expect(section.locator("[data-field=status]")).to_have_text("running")
        assert await page.evaluate("() => window.notReloaded === true")

        # the list, open in another tab, redraws the row's bar from the events' counts
        listing = await cb.page()
        await listing.goto(cb.url("/console/rollouts"))
        row = listing.locator(f'tr.rollout[data-rollout="{rid}"]')
        await expect(row.locator("[data-field=progress]")).to_have_text("1 of 4 updated, 2 in progress")
        await listing.wait_for_selector("body[data-live=connected]", state="attached")
        await answer(client, wave1[0], fail=True)
        await expect(row.locator("[data-field=progress]")).to_have_text("1 of 4 updated, 1 failed, 1 in progress")
        assert await listing.evaluate("() => document.body.dataset.listRefreshed") is None  # no re-read
        await expect(row.locator("rect[data-state=failed]")).to_have_attribute("width", "25")
        await cb.shot(listing, "rollouts-list")

        # the other one succeeds: 1 of 2 failed since the resume, over 10 %: it halts by itself
        await answer(client, wave1[1])
        await expect(row.locator("[data-field=status]")).to_have_text("halted")  # the list re-read its rows
        await expect(section.locator("[data-field=status]")).to_have_text("halted")
        await expect(page.locator("#rollout-halted")).to_contain_text("1 of 2 updates failed since it was resumed")
        failed_row = page.locator(f'tr.rollout-device[data-agent="{wave1[0].id}"]')
        await expect(failed_row).to_contain_text("no space left on device")
        await expect(failed_row.locator("[data-field=state]")).to_have_text("failed")
        await expect(page.locator("tr.wave[data-wave='2']")).to_contain_text("not started")
        await expect(page.get_by_role("button", name="Pause")).to_have_count(0)
        await cb.shot(page, "rollout-halted")

        # abort, with a reason, after a confirmation
        await page.get_by_role("button", name="Abort…").click()
        dialog = page.locator("#rollout-abort")
        await dialog.get_by_label("Reason").fill("bad build")
        await dialog.get_by_role("button", name="Abort rollout").click()
        await expect(section.locator("[data-field=status]")).to_have_text("aborted")
        await expect(page.locator("#rollout-progress")).to_contain_text("2 of 4 updated, 1 failed, 1 skipped")
        await expect(page.locator("#rollout button[data-act]")).to_have_count(0)
        assert await page.evaluate("() => window.notReloaded === true")
        cur = await conn.execute("SELECT action, detail FROM audit_log WHERE object_id = %s ORDER BY id", (rid,))
        entries = await cur.fetchall()
        assert [e["action"] for e in entries] == ["rollout.create", "rollout.approve", "rollout.pause",
                                                  "rollout.resume", "rollout.halted", "rollout.abort"]
        assert entries[-1]["detail"]["reason"] == "bad build"
        assert await answer(client, their_agent) == []

        # the customer heard nothing of it, and cannot open it or ask for its events
        assert await received(customer, "rollout") == [] and await received(customer, "command") == []
        assert await received(page, "rollout") and await received(page, "command")
        for path in ("/console/rollouts", f"/console/rollouts/{rid}"):
            response = await customer.goto(cb.url(path))
            assert response is not None and response.status == 404
            await expect(customer.get_by_role("heading", level=1)).to_have_text("Not found")
        refused = await customer.request.get(cb.url("/console/live?watch=rollout"))
        assert refused.status == 422 and refused.headers["content-type"].startswith("application/json")
        assert (await refused.json())["field"] == "watch"
        await theirs.context.close()
        assert not theirs.problems, theirs.problems

        # the devices by state (a rollout's page lists them a page at a time): the failed one alone
        await page.locator("a.count[data-state=failed]").click()
        await expect(page.locator("tr.rollout-device")).to_have_count(1)
        await expect(page.locator(f'tr.rollout-device[data-agent="{wave1[0].id}"]')).to_contain_text("no space left")
        await expect(page.locator("a.count[data-state=failed]")).to_have_attribute("aria-current", "true")
        assert page.url.endswith("?state=failed")
        await cb.shot(page, "rollout-failed-devices")
        await page.locator("a.count[data-state=all]").click()
        await expect(page.locator("tr.rollout-device")).to_have_count(4)


async def test_rollout_events_reach_staff_pages_that_watch_them_and_no_customer() -> None:
    hub = live.LiveHub(cast(Any, None))  # no database: the notification is handed in as the listener would
    staff = Principal(uuid4(), Role.technician, None)
    customer = Principal(uuid4(), Role.customer, uuid4())
    watching = hub.subscribe(staff, [], fleet=False, kinds=["rollout"])
    commands_only = hub.subscribe(staff, [], fleet=True, kinds=["command"])
    # the route refuses the kind to customers; the hub would not send it to one anyway
    nosy = hub.subscribe(customer, [], fleet=True, kinds=["rollout", "command", "alert"])
    note = {"rollout_id": str(uuid4()), "status": "running", "devices": 4, "planned": 1, "sent": 2, "succeeded": 1,
            "failed": 0, "skipped": 0, "current_wave": 1, "waves": 3}
    hub.on_notify(live.ROLLOUTS_CHANNEL, json.dumps(note))
    hub.on_notify(live.ROLLOUTS_CHANNEL, "not json")  # logged and dropped
    assert watching.queue.get_nowait() == {**note, "kind": "rollout"}
    assert watching.queue.empty() and commands_only.queue.empty() and nosy.queue.empty()


async def test_a_rollout_notifies_its_counts_at_each_change_and_not_when_idle(api_factory: Any, conn: Any) -> None:
    """What the list draws from: each state change and each advance that changed a device notify
    once, with the devices counted as that transaction leaves them; an idle pass notifies nobody."""
    biz = await factories.business(conn)
    agents = [await factories.agent(conn, biz) for _ in range(2)]
    await conn.execute("UPDATE agent_devices SET agent_version = '0.0.1'")
    tech = await factories.user(conn, None, "technician")
    server: ApiServer = api_factory(env={**FAST, "RTS_COMMAND_SENSITIVE_TYPES": "run_script"})  # no approval
    notes: list[dict[str, Any]] = []
    async with await psycopg.AsyncConnection.connect(server.db_url, autocommit=True) as listener:
        await listener.execute("LISTEN rts_rollouts")

        async def newest(want: Callable[[dict[str, Any]], bool]) -> bool:
            async for n in listener.notifies(timeout=0.2):
                notes.append(json.loads(n.payload))
            return bool(notes) and want(notes[-1])

        async with server.client() as client:
            served = (await client.get("/agent/package")).json()["version"]
            resp = await client.post("/api/agents/rollouts", headers=server.headers(server.token(
                "technician", user_id=tech)), json={"target_version": served, "business_ids": [str(biz)],
                                                  "canary_percent": 50, "wave_percent": 50})
            assert resp.status_code == 201, resp.text
            rid = resp.json()["id"]
            await until(lambda: newest(lambda n: n["sent"] == 1), what="the canary sent")
            assert sum([len(await answer(client, a)) for a in agents]) == 1
            await until(lambda: newest(lambda n: n["current_wave"] == 1 and n["sent"] == 1), what="wave 1 sent")
            assert sum([len(await answer(client, a)) for a in agents]) == 1
            await until(lambda: newest(lambda n: n["status"] == "completed"), what="the completion")
            heard = len(notes)
            await asyncio.sleep(1.0)  # three passes of the job with nothing to do
            await newest(lambda n: True)
    assert len(notes) == heard, notes[heard:]
    assert notes[0] == {"rollout_id": rid, "status": "running", "current_wave": 0, "waves": 2, "devices": 2,
                        "planned": 2, "sent": 0, "succeeded": 0, "failed": 0, "skipped": 0}
    assert [(n["status"], n["current_wave"], n["planned"], n["sent"], n["succeeded"]) for n in notes] == [
        ("running", 0, 2, 0, 0),    # created
        ("running", 0, 1, 1, 0),    # the canary's command issued
        ("running", 1, 1, 0, 1),    # its outcome taken, the canary wave closed: wave 1 next
        ("running", 1, 0, 1, 1),    # wave 1's command issued
        ("completed", 1, 0, 0, 2),  # its outcome taken: the last wave closed
    ]
