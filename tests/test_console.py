"""The console in a real browser (Debian's Chromium via Playwright, tests/fix_browser.py).

Each page test saves screenshots at desktop and phone width under screenshots/. Charts are
checked on the data uPlot was given (``window.rtsConsole.charts``), never on pixels.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

import bcrypt
import httpx
from playwright.async_api import Page, expect

from rts_monitor.console import pages
from tests import factories
from tests.fix_api import ApiServer
from tests.fix_browser import ConsoleBrowser, until

PASSWORD = "a long enough passphrase"
NEW_YORK = ZoneInfo("America/New_York")  # the browser contexts' time zone (tests/fix_browser.py)
HOSTILE_HOST = "<img src=x onerror=alert(1)>"
HOSTILE_NAME = "<script>alert('name')</script>"


async def chart(page: Page, name: str) -> dict[str, Any]:
    """What the named chart was given: its request and the columns handed to uPlot."""
    result: dict[str, Any] = await page.evaluate(
        "(name) => { const c = window.rtsConsole.charts[name]; "
        "return c ? {request: c.request, data: c.data, points: c.points, step: c.step} : null; }", name)
    return result


async def ready_charts(page: Page) -> None:
    await page.wait_for_selector("body[data-charts=ready]", state="attached")


def sample(at: datetime, **values: Any) -> dict[str, Any]:
    return {"collected_at": at.isoformat(), "cpu_percent": 20.0, "memory_percent": 40.0, "disk_percent": 50.0,
            "memory_used_gb": 6.0, "disk_used_gb": 200.0, "load_average": [0.5, 0.4, 0.3], "uptime_seconds": 86400,
            "network_rx_bytes": 5_000_000, "network_tx_bytes": 1_000_000, **values}


async def named_world(conn: Any) -> dict[str, Any]:
    """One business with two locations and agents in each, plus a second business."""
    biz = await factories.business(conn, "Acme Dental " + datetime.now(UTC).strftime("%H%M%S%f"))
    north = await factories.location(conn, biz, "Northside Clinic")
    main = await factories.location(conn, biz, "Main Clinic")
    agents = {
        "reception-pc": await factories.agent(conn, biz, main, name="reception-pc"),
        "xray-server": await factories.agent(conn, biz, main, name="xray-server"),
        "north-desk": await factories.agent(conn, biz, north, name="north-desk", status="offline"),
    }
    other_biz = await factories.business(conn, "Other Co " + datetime.now(UTC).strftime("%H%M%S%f"))
    other = await factories.agent(conn, other_biz, await factories.location(conn, other_biz, "HQ"),
                                  name="someone-elses-pc")
    return {"business": biz, "main": main, "north": north, "agents": agents, "other_business": other_biz,
            "other": other}


# --- signing in ------------------------------------------------------------------------------------


async def test_handoff_signs_in_and_removes_the_token_from_the_address(console: ConsoleBrowser,
                                                                      api_conn: Any) -> None:
    w = await named_world(api_conn)
    page = await console.page()
    target = f"/console/agents/{w['agents']['xray-server'].id}"
    await console.sign_in(page, "admin", next_path=target)
    assert page.url == console.url(target)  # the token is gone from the address bar
    await expect(page.get_by_role("heading", level=1)).to_have_text("xray-server")
    history = await page.evaluate("() => history.length")
    assert history <= 2
    cookies = {c["name"]: c for c in await console.context.cookies()}
    session = cookies["rts_console_session"]
    assert session["httpOnly"] and session["sameSite"] == "Lax"
    assert await page.evaluate("() => document.cookie") == ""  # not readable by scripts


async def test_password_sign_in_refuses_a_wrong_one_and_lets_the_right_one_in(console: ConsoleBrowser,
                                                                             api_conn: Any) -> None:
    biz = await factories.business(api_conn)
    email = f"owner-{biz.hex[:8]}@acme.example"
    await api_conn.execute(
        "INSERT INTO users (email, role, business_id, password_hash) VALUES (%s, 'customer', %s, %s)",
        (email, biz, bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()))
    page = await console.page()
    await page.goto(console.url("/console/"))
    assert "/console/login" in page.url  # not signed in: the sign-in form
    await page.get_by_label("E-mail").fill(email)
    await page.get_by_label("Password").fill("not the password")
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("alert")).to_have_text("E-mail or password is not right.")
    await console.shot(page, "wrong-password")
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("heading", level=1)).to_contain_text("Fleet")
    await expect(page.locator(".who .ident")).to_contain_text(email)
    # signing out ends it
    await page.get_by_role("button", name="Sign out").click()
    await expect(page.get_by_role("status")).to_have_text("You are signed out.")
    await page.goto(console.url("/console/"))
    assert "/console/login" in page.url


async def test_an_expired_session_signs_in_again_and_returns_to_the_page(console: ConsoleBrowser,
                                                                        api_conn: Any) -> None:
    w = await named_world(api_conn)
    user = await api_conn.execute(
        "INSERT INTO users (email, role, password_hash) VALUES (%s, 'technician', %s) RETURNING id",
        (f"tech-{w['business'].hex[:8]}@msp.example", bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()))
    user_id = (await user.fetchone())["id"]
    page = await console.page()
    await console.sign_in(page, "technician", user_id=user_id)
    await page.wait_for_selector("body[data-live=connected]", state="attached")  # (else its 401 races ours)
    await api_conn.execute("UPDATE console_sessions SET last_seen_at = now() - interval '1 day' WHERE user_id = %s",
                           (user_id,))
    device = f"/console/agents/{w['agents']['reception-pc'].id}"
    await page.goto(console.url(device))
    assert "/console/login" in page.url
    await expect(page.get_by_role("status")).to_contain_text("Your session has ended")
    await console.shot(page, "session-ended")
    await page.get_by_label("E-mail").fill(f"tech-{w['business'].hex[:8]}@msp.example")
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url(console.url(device))
    await expect(page.get_by_role("heading", level=1)).to_have_text("reception-pc")


# --- the fleet ------------------------------------------------------------------------------------------


async def test_fleet_lists_agents_grouped_by_business_and_location(console: ConsoleBrowser, api_conn: Any) -> None:
    w = await named_world(api_conn)
    now = datetime.now(UTC)
    await factories.metric_samples(api_conn, [
        {"agent_device_id": w["agents"]["xray-server"].id, "collected_at": now - timedelta(minutes=2),
         "cpu_percent": 45.20000076293945, "memory_percent": 61.0, "disk_percent": 92.5}])
    page = await console.page()
    await console.sign_in(page, "admin", next_path=f"/console/?business={w['business']}")
    groups = [t.strip() for t in await page.locator("tr.group th").all_inner_texts()]
    assert len(groups) == 2
    assert groups[0].startswith(await _name(api_conn, w["business"])) and "Main Clinic" in groups[0]
    assert "2 agents" in groups[0] and "Northside Clinic" in groups[1] and "1 agent" in groups[1]
    rows = page.locator("tr.agent")
    assert await rows.locator("a.agent-link").all_inner_texts() == ["reception-pc", "xray-server", "north-desk"]
    xray = page.locator(f"tr[data-agent='{w['agents']['xray-server'].id}']")
    await expect(xray.locator("[data-field=cpu_percent]")).to_have_text("45.2 %")  # not 45.20000076293945
    await expect(xray.locator("[data-field=disk_percent]")).to_have_text("92.5 %")
    await expect(xray.locator("[data-field=last_seen]")).to_have_text("2 min ago")
    await expect(page.locator("[data-count=online]")).to_have_text("2")
    await expect(page.locator("[data-count=offline]")).to_have_text("1")
    await expect(page.get_by_text("someone-elses-pc")).to_have_count(0)
    await console.shot(page, "fleet")
    # search by name as you type: one request for the rows, none per row
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    await page.get_by_label("Search").fill("xray")
    await expect(rows).to_have_count(1)
    assert any("q=xray" in u for u in requests if "/console/?" in u)
    assert not [u for u in requests if "/api/agents/" in u]
    assert "q=xray" in page.url  # the address says what is shown (back/forward, sharing)
    # keyboard: j highlights the row, Enter opens it
    await page.locator("body").click(position={"x": 5, "y": 5})
    await page.keyboard.press("j")
    await page.keyboard.press("Enter")
    await page.wait_for_url(console.url(f"/console/agents/{w['agents']['xray-server'].id}"))


async def _name(conn: Any, business_id: UUID) -> str:
    cur = await conn.execute("SELECT business_name FROM businesses WHERE id = %s", (business_id,))
    return str((await cur.fetchone())["business_name"])


async def test_a_customer_sees_only_its_business_and_another_business_device_is_a_404(
        console: ConsoleBrowser, api_conn: Any) -> None:
    w = await named_world(api_conn)
    page = await console.page()
    await console.sign_in(page, "customer", business_id=w["business"])
    await expect(page.locator("tr.agent")).to_have_count(3)
    await expect(page.get_by_text("someone-elses-pc")).to_have_count(0)
    business_name = await _name(api_conn, w["business"])
    for header in await page.locator("tr.group th").all_inner_texts():
        assert business_name not in header  # no business level for a customer
    await expect(page.get_by_label("Business")).to_have_count(0)
    await console.shot(page, "customer-fleet")
    response = await page.goto(console.url(f"/console/agents/{w['other'].id}"))
    assert response is not None and response.status == 404
    await expect(page.get_by_role("heading", level=1)).to_have_text("Not found")
    await expect(page.get_by_text("someone-elses-pc")).to_have_count(0)
    await console.shot(page, "foreign-device-404")


async def test_the_fleet_updates_live_when_a_sample_arrives(console: ConsoleBrowser, api_conn: Any,
                                                           client: httpx.AsyncClient) -> None:
    w = await named_world(api_conn)
    agent = w["agents"]["reception-pc"]
    page = await console.page()
    await console.sign_in(page, "admin", next_path=f"/console/?business={w['business']}")
    await page.wait_for_selector("body[data-live=connected]", state="attached")
    row = page.locator(f"tr[data-agent='{agent.id}']")
    await expect(row.locator("[data-field=cpu_percent]")).to_have_text(pages.NONE)
    r = await client.post(f"/api/agents/{agent.id}/metrics", headers=agent.headers,
                          json={"metrics": [sample(datetime.now(UTC), cpu_percent=66.6)]})
    assert r.status_code == 200, r.text
    await expect(row.locator("[data-field=cpu_percent]")).to_have_text("66.6 %")
    await expect(row.locator("[data-field=last_seen]")).to_have_text("just now")
    # a status change of an agent on the page: its badge and the counts follow
    north = w["agents"]["north-desk"]
    await client.post(f"/api/agents/{north.id}/heartbeat", headers=north.headers, json={})
    await expect(page.locator(f"tr[data-agent='{north.id}'] [data-field=health]")).to_have_text("online")
    await expect(page.locator("[data-count=online]")).to_have_text("3")


async def test_bulk_pause_names_the_count_and_reports_per_device(console: ConsoleBrowser, api_conn: Any) -> None:
    w = await named_world(api_conn)
    page = await console.page()
    await console.sign_in(page, "admin", next_path=f"/console/?business={w['business']}&location={w['main']}")
    await expect(page.locator("tr.agent")).to_have_count(2)
    await page.get_by_label("Select every agent on this page").check()
    await expect(page.locator("#bulk-count")).to_have_text("2")
    await page.get_by_role("button", name="Pause monitoring").click()
    dialog = page.locator("#bulk-confirm")
    await expect(dialog.locator("#bulk-question")).to_have_text("Pause monitoring on 2 devices?")
    await console.shot(page, "bulk-confirm")
    await dialog.get_by_role("button", name="Apply to 2 devices").click()
    await expect(page.locator("#bulk-summary")).to_have_text("2 of 2 devices done.")
    cur = await api_conn.execute("SELECT count(*) AS n FROM agent_devices WHERE service_location_id = %s "
                                 "AND NOT monitoring_enabled", (w["main"],))
    assert (await cur.fetchone())["n"] == 2
    await page.get_by_role("button", name="Close").click()
    await expect(page.locator("tr.agent .b-paused")).to_have_count(2)


# --- the device page ----------------------------------------------------------------------------------------


async def test_device_charts_get_the_stored_points_with_gaps_as_gaps(console: ConsoleBrowser, api_conn: Any) -> None:
    w = await named_world(api_conn)
    agent = w["agents"]["xray-server"]
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    start = now - timedelta(hours=23)
    samples = []
    for i in range(0, 23 * 12):  # every 5 minutes for 23 hours, with three hours missing in the middle
        at = start + timedelta(minutes=5 * i)
        if now - timedelta(hours=12) <= at < now - timedelta(hours=9):
            continue
        samples.append({"agent_device_id": agent.id, "collected_at": at, "cpu_percent": float(i % 100),
                        "memory_percent": 50.0, "disk_percent": 70.0, "load_average_1m": 1.0,
                        "load_average_5m": 1.0, "load_average_15m": 1.0, "network_rx_bytes": i * 300_000,
                        "network_tx_bytes": i * 30_000})
    for i in range(0, len(samples), 100):
        await factories.metric_samples(api_conn, samples[i:i + 100])
    page = await console.page()
    await console.sign_in(page, "admin", next_path=f"/console/agents/{agent.id}")
    await ready_charts(page)
    cpu = await chart(page, "cpu")
    step = cpu["step"]
    assert cpu["request"]["url"].startswith(f"/api/agents/{agent.id}/metrics/history?")
    # what the chart holds is the stored samples averaged per chart bucket, and nothing else
    expected: dict[int, list[float]] = {}
    for s in samples:
        expected.setdefault(int(s["collected_at"].timestamp()) // step * step, []).append(s["cpu_percent"])
    xs, avg = cpu["data"][0], cpu["data"][1]
    got = {int(x): y for x, y in zip(xs, avg, strict=True) if y is not None}
    assert got.keys() == expected.keys()
    for bucket, values in expected.items():  # the API gives averages at the stored (real) precision
        assert math.isclose(got[bucket], sum(values) / len(values), rel_tol=1e-6), bucket
    # the three missing hours are a gap (a null), never a line across
    gaps = [x for x, y in zip(xs, avg, strict=True) if y is None]
    assert len(gaps) == 1
    gap_at = datetime.fromtimestamp(gaps[0], UTC)
    assert now - timedelta(hours=12, seconds=step) <= gap_at < now - timedelta(hours=9)
    network = await chart(page, "network")
    rx = [y for y in network["data"][1] if y is not None]
    assert rx and all(abs(v - 1000.0) < 1e-6 for v in rx[1:])  # 300,000 bytes per 5 minutes = 1 kB/s
    await expect(page.locator("[data-field=network_rx_rate]")).to_have_text("1.0 kB/s")
    await console.shot(page, "device")
    # a range of one's own: the charts ask for exactly it, and nothing is appended live to it
    from_local = (now - timedelta(hours=14)).astimezone(NEW_YORK).strftime("%Y-%m-%dT%H:%M")
    to_local = (now - timedelta(hours=8)).astimezone(NEW_YORK).strftime("%Y-%m-%dT%H:%M")
    await page.get_by_label("From", exact=True).fill(from_local)
    await page.get_by_label("To", exact=True).fill(to_local)
    await page.get_by_role("button", name="Show").click()
    await expect(page.locator("#range-note")).not_to_contain_text("updating live")
    custom = await chart(page, "cpu")
    assert f"start={(now - timedelta(hours=14)).isoformat().replace('+00:00', '.000Z').replace(':', '%3A')}" \
        in custom["request"]["url"]
    assert [x for x, y in zip(custom["data"][0], custom["data"][1], strict=True) if y is None]  # the gap again
    # another range is one more request per chart, at an interval that fits the width
    await page.keyboard.press("4")
    await expect(page.locator("#range-note")).to_contain_text("the last 30 days")
    month = await chart(page, "cpu")
    assert "interval=" in month["request"]["url"] and month["step"] >= 3600
    assert len(month["data"][0]) <= 2000


async def test_a_sample_ingested_through_the_api_appears_without_reload(console: ConsoleBrowser, api_conn: Any,
                                                                       client: httpx.AsyncClient) -> None:
    w = await named_world(api_conn)
    agent = w["agents"]["reception-pc"]
    page = await console.page()
    await console.sign_in(page, "customer", business_id=w["business"], next_path=f"/console/agents/{agent.id}")
    await page.wait_for_selector("body[data-live=connected]", state="attached")
    await page.get_by_role("button", name="1 hour").click()
    await expect(page.locator("#range-note")).to_contain_text("the last hour")
    await ready_charts(page)
    at = datetime.now(UTC).replace(microsecond=0)
    r = await client.post(f"/api/agents/{agent.id}/metrics", headers=agent.headers,
                          json={"metrics": [sample(at, cpu_percent=87.5, memory_percent=33.3)]})
    assert r.status_code == 200
    await expect(page.locator(".tile [data-field=cpu_percent]")).to_have_text("87.5 %")

    async def plotted() -> Any:
        cpu = await chart(page, "cpu")
        return cpu["data"][0] and cpu["data"][0][-1] == at.timestamp() and cpu["data"][1][-1]
    assert await until(plotted, what="the new sample in the CPU chart") == 87.5
    memory = await chart(page, "memory")
    assert abs(memory["data"][1][-1] - 33.3) < 1e-5  # stored as REAL
    await console.shot(page, "device-live")


async def test_hostile_strings_are_shown_as_text(console: ConsoleBrowser, api_conn: Any) -> None:
    w = await named_world(api_conn)
    agent = w["agents"]["xray-server"]
    await api_conn.execute("UPDATE agent_devices SET hostname = %s, device_name = %s WHERE id = %s",
                           (HOSTILE_HOST, HOSTILE_NAME, agent.id))
    await api_conn.execute(
        "INSERT INTO agent_monitored_services (agent_device_id, service_name, status) VALUES (%s, %s, 'running')",
        (agent.id, "<b onmouseover=alert(2)>svc</b>"))
    await api_conn.execute(
        "INSERT INTO agent_software_inventory (agent_device_id, software_name, software_version) VALUES (%s, %s, '1')",
        (agent.id, "<svg onload=alert(3)>"))
    rule = await api_conn.execute(
        "INSERT INTO agent_alerts (alert_name, alert_type, severity, business_id, conditions) "
        "VALUES ('<i>rule</i>', 'cpu_high', 'warning', %s, '{}') RETURNING id", (w["business"],))
    await api_conn.execute(
        "INSERT INTO agent_alert_history (agent_alert_id, agent_device_id, business_id, severity, alert_message) "
        "VALUES (%s, %s, %s, 'warning', %s)",
        ((await rule.fetchone())["id"], agent.id, w["business"], "<img src=y onerror=alert(4)>"))
    page = await console.page()
    await console.sign_in(page, "admin", next_path=f"/console/?business={w['business']}")
    await expect(page.get_by_text(HOSTILE_NAME)).to_be_visible()
    await expect(page.get_by_text(HOSTILE_HOST, exact=False)).to_be_visible()
    await console.shot(page, "hostile-fleet")
    await page.get_by_text(HOSTILE_NAME).click()
    await ready_charts(page)
    await expect(page.get_by_role("heading", level=1)).to_have_text(HOSTILE_NAME)
    for text in (HOSTILE_HOST, "<b onmouseover=alert(2)>svc</b>", "<svg onload=alert(3)>",
                 "<img src=y onerror=alert(4)>", "<i>rule</i>"):
        await expect(page.get_by_text(text, exact=True).first).to_be_visible()
    assert await page.locator("img, svg[onload], b[onmouseover], script:not([src])").count() == 0
    # the software list filters as you type
    await page.get_by_label("Find").fill("svg")
    await expect(page.locator("#software-table tbody tr:visible")).to_have_count(1)
    await page.get_by_label("Find").fill("no such package")
    await expect(page.locator("#software-none")).to_be_visible()
    await page.get_by_label("Find").fill("")
    await console.shot(page, "hostile-device")  # the fixture fails the test had any alert() run


async def test_state_changes_without_the_csrf_token_are_refused(console: ConsoleBrowser, api_conn: Any) -> None:
    w = await named_world(api_conn)
    page = await console.page()
    await console.sign_in(page, "admin")
    body = {"action": "pause_monitoring", "agent_ids": [str(w["agents"]["reception-pc"].id)]}
    statuses = await page.evaluate(
        """async (body) => {
            const post = (headers) => fetch('/api/agents/bulk', {method: 'POST', credentials: 'same-origin',
                headers: {'Content-Type': 'application/json', ...headers}, body: JSON.stringify(body)});
            const token = document.querySelector('meta[name=csrf-token]').content;
            const without = await post({});
            const logout = await fetch('/console/logout', {method: 'POST', credentials: 'same-origin'});
            const withToken = await post({'X-CSRF-Token': token});
            return [without.status, logout.status, withToken.status];
        }""", body)
    assert statuses == [403, 403, 200]  # refused without the token; the same request with it works


async def test_numbers_read_the_same_in_the_page_as_from_the_server(console: ConsoleBrowser) -> None:
    page = await console.page()
    await console.sign_in(page, "admin")
    values = [None, 0, 45.20000076293945, 99.96, 1234.5]
    byte_values = [None, 0, 999, 8_500_000_000, 1_234_567, 120_000]
    durations = [None, 5, 2520, 18_720, 277_200, 259_200]
    browser = await page.evaluate(
        """([v, b, d]) => { const f = window.rtsConsole.format;
            return [v.map(f.percent), b.map((x) => f.bytes(x)), d.map(f.duration), v.map((x) => f.number(x, 2))]; }""",
        [values, byte_values, durations])
    assert browser == [[pages.percent(v) for v in values], [pages.bytes_(b) for b in byte_values],
                       [pages.duration(d) for d in durations], [pages.number(v, 2) for v in values]]
    assert browser[0][2] == "45.2 %" and browser[1][3] == "8.5 GB"


async def test_admin_sees_every_business_and_empty_states_say_what_to_do(console: ConsoleBrowser,
                                                                        api_conn: Any) -> None:
    empty = await factories.business(api_conn, "Zz Empty " + datetime.now(UTC).strftime("%H%M%S%f"))
    page = await console.page()
    await console.sign_in(page, "admin", next_path="/console/businesses")
    row = page.locator("tr", has_text=await _name(api_conn, empty))
    await expect(row).to_contain_text("none yet")
    await console.shot(page, "admin-businesses")
    await row.get_by_role("link").first.click()
    await expect(page.get_by_role("heading", level=2)).to_have_text("No agents yet")
    await expect(page.locator(".empty")).to_contain_text("registration token")
    customer_page = await console.page()
    await console.sign_in(customer_page, "customer", business_id=empty)
    await expect(customer_page.get_by_role("heading", level=2)).to_have_text("No devices are monitored yet")
    await console.shot(customer_page, "empty-fleet")


async def test_bad_input_gets_a_page_not_a_trace(console: ConsoleBrowser) -> None:
    page = await console.page()
    await console.sign_in(page, "admin")
    response = await page.goto(console.url("/console/?sort=evil;drop"))
    assert response is not None and response.status == 422
    await expect(page.locator(".error-page")).to_contain_text("sort: must be one of")
    await console.shot(page, "bad-input")
    response = await page.goto(console.url("/console/agents/00000000-0000-0000-0000-000000000000"))
    assert response is not None and response.status == 404


async def test_the_api_and_the_console_share_one_server(api: ApiServer, client: httpx.AsyncClient) -> None:
    """The console is served by the API process at /console/ (no separate front-end server)."""
    assert (await client.get("/health")).status_code == 200
    r = await client.get("/console/login")
    assert r.status_code == 200 and "Sign in to the console" in r.text
