"""The console's part 2 in a real browser: the alert inbox, the rule editor, the command console
and the DBA pages (tests/fix_browser.py: Debian's Chromium, the real server, screenshots)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import httpx
from playwright.async_api import Page, expect

from tests import factories
from tests.fix_browser import ConsoleBrowser

HOT = 97.0


def cpu_samples(start: datetime, minutes: int, cpu: float) -> list[dict[str, Any]]:
    """One sample a minute from ``start``: what an agent reporting every minute sends."""
    return [{"collected_at": (start + timedelta(minutes=i)).isoformat().replace("+00:00", "Z"), "cpu_percent": cpu,
             "memory_percent": 40.0} for i in range(minutes)]


async def staff_user(conn: Any, role: str, tag: str) -> UUID:
    cur = await conn.execute("INSERT INTO users (email, role) VALUES (%s, %s) RETURNING id",
                             (f"{tag}-{datetime.now(UTC).strftime('%H%M%S%f')}@msp.example", role))
    return UUID(str((await cur.fetchone())["id"]))


async def fill_rule(page: Page, *, name: str, business: UUID, threshold: str) -> None:
    form = page.locator("#rule-form")
    await form.locator("[name=alert_name]").fill(name)
    await form.locator("[name=business_id]").select_option(str(business))
    await form.locator("[name=kind]").select_option("metric")
    await form.locator("[name=metric]").select_option("cpu_percent")
    await form.locator("[name=aggregation]").select_option("avg")
    await form.locator("[name=operator]").select_option(">")
    await form.locator("[name=threshold]").fill(threshold)
    await form.locator("[name=duration_minutes]").fill("5")


# --- the alert inbox ----------------------------------------------------------------------------


async def test_an_episode_opens_live_in_the_inbox_and_is_acknowledged_and_resolved(
        console: ConsoleBrowser, api_conn: Any, client: httpx.AsyncClient) -> None:
    t = await factories.tenant(api_conn)
    operator = await staff_user(api_conn, "technician", "operator")
    page = await console.page()
    await console.sign_in(page, "technician", user_id=operator, next_path="/console/alerts/rules/new")
    # the operator writes the rule in the editor; a mistake is shown beside its field
    await fill_rule(page, name="CPU hot (console)", business=t.business_id, threshold="250")
    await page.get_by_role("button", name="Save rule").click()
    error = page.locator("[data-error-for='conditions.threshold']")
    await expect(error).to_contain_text("threshold")
    await console.shot(page, "rule-field-error")
    await page.locator("#rule-form [name=threshold]").fill("90")
    await page.get_by_role("button", name="Save rule").click()
    await page.wait_for_url(console.url("/console/alerts/rules"))
    rule_row = page.locator("tr.rule", has_text="CPU hot (console)")
    await expect(rule_row).to_contain_text("avg cpu_percent > 90 for 5 min")
    cur = await api_conn.execute("SELECT id, conditions FROM agent_alerts WHERE alert_name = 'CPU hot (console)'")
    stored = await cur.fetchone()
    assert stored["conditions"]["threshold"] == 90 and stored["conditions"]["duration_minutes"] == 5

    # the inbox is open when the hot window is ingested: the episode appears without a reload
    await page.goto(console.url(f"/console/alerts?business={t.business_id}"))
    await page.wait_for_selector("body[data-live=connected]", state="attached")
    await expect(page.locator("tr.episode")).to_have_count(0)
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=7)
    r = await client.post(f"/api/agents/{t.agent.id}/metrics", headers=t.agent.headers,
                          json={"metrics": cpu_samples(start, 7, HOT)})
    assert r.status_code == 200 and r.json()["alerts_triggered"] == ["CPU hot (console)"], r.text
    row = page.locator("tr.episode")
    await expect(row).to_have_count(1)
    await expect(row).to_contain_text("CPU hot (console)")
    await expect(row.locator("[data-field=state]")).to_contain_text("active")
    await console.shot(page, "inbox-live")

    # acknowledge with a note, then resolve with another
    await row.get_by_role("button", name="Acknowledge").click()
    dialog = page.locator("#alert-action")
    await dialog.get_by_label("Notes").fill("looking at it <b>now</b>")
    await dialog.get_by_role("button", name="Acknowledge").click()
    await expect(row.locator("[data-field=state]")).to_contain_text("acknowledged")
    await expect(row).to_contain_text("looking at it <b>now</b>")  # notes are text
    await page.get_by_label("State").select_option("all")
    await page.wait_for_url("**status=all**")
    row = page.locator("tr.episode")
    await row.get_by_role("button", name="Resolve").click()
    await dialog.get_by_label("Notes").fill("runaway backup job stopped")
    await dialog.get_by_role("button", name="Resolve").click()
    await expect(row.locator("[data-field=state]")).to_contain_text("resolved")
    cur = await api_conn.execute("SELECT status, acknowledged_by, resolved_by, resolution_notes "
                                 "FROM agent_alert_history WHERE agent_alert_id = %s", (stored["id"],))
    episode = await cur.fetchone()
    assert episode["status"] == "resolved" and episode["acknowledged_by"] == operator
    assert episode["resolved_by"] == operator and "runaway backup job stopped" in episode["resolution_notes"]
    # the episode's page: its ticket (none for this rule) and the notification delivery log
    await row.get_by_role("link", name="CPU hot (console)").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("CPU hot (console)")
    await expect(page.locator("#deliveries")).to_contain_text("Notification deliveries")
    await console.shot(page, "alert-detail")


async def test_the_inbox_shows_the_linked_ticket_and_the_delivery_log(console: ConsoleBrowser,
                                                                     api_conn: Any) -> None:
    t = await factories.tenant(api_conn)
    rule = await (await api_conn.execute(
        "INSERT INTO agent_alerts (alert_name, alert_type, severity, business_id, conditions) "
        "VALUES ('disk full', 'disk', 'critical', %s, '{}') RETURNING id", (t.business_id,))).fetchone()
    ticket = await (await api_conn.execute(
        "INSERT INTO service_requests (business_id, title) VALUES (%s, %s) RETURNING id",
        (t.business_id, "[CRITICAL] disk full on the file server"))).fetchone()
    episode = await (await api_conn.execute(
        "INSERT INTO agent_alert_history (agent_alert_id, agent_device_id, business_id, severity, alert_message, "
        "service_request_created) VALUES (%s, %s, %s, 'critical', 'disk at 99 %%', %s) RETURNING id",
        (rule["id"], t.agent.id, t.business_id, ticket["id"]))).fetchone()
    outbox = await (await api_conn.execute(  # given up already: the delivery job leaves it alone
        "INSERT INTO alert_outbox (alert_history_id, channel, event, status, attempts) "
        "VALUES (%s, 'webhook', 'opened', 'failed', 1) RETURNING id", (episode["id"],))).fetchone()
    await api_conn.execute(
        "INSERT INTO alert_notification_log (outbox_id, alert_history_id, channel, event, attempt, target, ok, "
        "status_code, error, duration_ms) VALUES (%s, %s, 'webhook', 'opened', 1, 'https://hooks.example/x', false, "
        "500, 'server error', 12.5)", (outbox["id"], episode["id"]))
    page = await console.page()
    await console.sign_in(page, "customer", business_id=t.business_id, next_path="/console/alerts")
    row = page.locator("tr.episode")
    await expect(row).to_contain_text("[CRITICAL] disk full on the file server")
    await row.get_by_role("link", name="disk full").click()
    await expect(page.locator("#alert")).to_contain_text("[CRITICAL] disk full on the file server")
    log = page.locator("#deliveries tbody tr")
    await expect(log).to_have_count(1)
    await expect(log).to_contain_text("https://hooks.example/x")
    await expect(log).to_contain_text("HTTP 500")
    await console.shot(page, "alert-ticket-deliveries")
