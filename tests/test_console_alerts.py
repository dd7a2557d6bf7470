"""The console's part 2 in a real browser: the alert inbox, the rule editor, the command console
and the DBA pages (tests/fix_browser.py: Debian's Chromium, the real server, screenshots)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

import httpx
from playwright.async_api import Page, expect

from tests import factories
from tests.fix_api import ApiServer
from tests.fix_browser import DESKTOP, ConsoleBrowser, until

HOT = 97.0
NEW_YORK = ZoneInfo("America/New_York")  # the browser contexts' time zone (tests/fix_browser.py)


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
    # yesterday's history: quiet, then twelve hot minutes (one sample a minute), then quiet again
    hot_at = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=3)
    await factories.metric_samples(api_conn, [
        {"agent_device_id": t.agent.id, "collected_at": hot_at + timedelta(minutes=i),
         "cpu_percent": HOT if 0 <= i < 12 else 20.0} for i in range(-30, 40)])
    page = await console.page()
    await console.sign_in(page, "technician", user_id=operator, next_path="/console/alerts/rules/new")
    # the operator writes the rule in the editor; a mistake is shown beside its field
    await fill_rule(page, name="CPU hot (console)", business=t.business_id, threshold="250")
    await page.get_by_role("button", name="Save rule").click()
    error = page.locator("[data-error-for='conditions.threshold']")
    await expect(error).to_contain_text("threshold")
    await console.shot(page, "rule-field-error")
    await page.locator("#rule-form [name=threshold]").fill("90")
    # the backtest, before saving: one would-be episode in the hot minutes, shaded on the chart
    await page.locator("#backtest-period").select_option("1d")
    await page.get_by_role("button", name="Run the backtest").click()
    await page.wait_for_selector("#backtest[data-state=ready]", state="attached")
    await expect(page.locator("#backtest-summary")).to_contain_text("would have opened 1 alert(s) on 1 of 1 device(s)")
    backtest = await page.evaluate("() => window.rtsConsole.backtest")
    assert backtest["agent"] == str(t.agent.id) and backtest["points"] > 0
    [(band_start, band_end)] = backtest["bands"]
    # it opens once five minutes of the window are hot and clears when the window has cooled
    assert hot_at.timestamp() + 4 * 60 <= band_start <= hot_at.timestamp() + 6 * 60, (band_start, hot_at)
    assert hot_at.timestamp() + 12 * 60 <= band_end <= hot_at.timestamp() + 20 * 60
    await expect(page.locator("#backtest-episodes li")).to_have_count(1)
    assert backtest["result"]["chart"]["threshold"] == 90
    await console.shot(page, "rule-backtest")
    cur = await api_conn.execute("SELECT count(*) AS n FROM agent_alerts WHERE alert_name = 'CPU hot (console)'")
    assert (await cur.fetchone())["n"] == 0  # nothing saved by the preview
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
    assert r.status_code == 200, r.text  # the episode may open in the flush's hook or the next cycle
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
    await console.shot(page, "customer-inbox")
    await row.get_by_role("link", name="disk full").click()
    await expect(page.locator("#alert")).to_contain_text("[CRITICAL] disk full on the file server")
    log = page.locator("#deliveries tbody tr")
    await expect(log).to_have_count(1)
    await expect(log).to_contain_text("https://hooks.example/x")
    await expect(log).to_contain_text("HTTP 500")
    await console.shot(page, "alert-ticket-deliveries")


# --- the command console ------------------------------------------------------------------------

AGENT = [sys.executable, "-m", "rts_agent.cli"]
# A real agent reporting quickly (as agent/tests/e2e_support.py runs it), so the test is short.
FAST_AGENT = {"RTS_AGENT_METRICS_INTERVAL": "1", "RTS_AGENT_HEARTBEAT_INTERVAL": "2", "RTS_AGENT_POLL_INTERVAL": "1",
              "RTS_AGENT_INVENTORY_INTERVAL": "3600", "RTS_AGENT_RETRY_CAP": "2", "RTS_AGENT_LOG_FORMAT": "json"}
HOSTILE_OUTPUT = "<script>alert('output')</script>"


@contextlib.contextmanager
def running_agent(api: ApiServer, business: UUID, location: UUID, admin: UUID,
                  state_dir: Path) -> Iterator[str]:
    """``rts-agent install`` with a registration token, then ``rts-agent run``; yields its id."""
    token = api.token("admin", user_id=admin)
    r = httpx.post(api.url + "/api/agents/registration-tokens", headers=api.headers(token), timeout=30,
                   json={"business_id": str(business), "service_location_id": str(location),
                         "device_name": "console-agent", "expires_in_hours": 1})
    assert r.status_code == 201, r.text
    env = {**os.environ, **FAST_AGENT}
    env.pop("RTS_AGENT_STATE_DIR", None)
    out = subprocess.run([*AGENT, "--state-dir", str(state_dir), "install", "--server", api.url,
                          "--token", r.json()["token"], "--no-systemd"], env=env, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    agent_id = json.loads((state_dir / "config.json").read_text())["agent_id"]
    with open(state_dir.parent / "agent.log", "ab") as log:
        proc = subprocess.Popen([*AGENT, "--state-dir", str(state_dir), "run"], env=env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield str(agent_id)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


async def test_a_script_needs_a_second_person_and_its_output_arrives_live_as_text(
        console: ConsoleBrowser, api_conn: Any, tmp_path: Path) -> None:
    t = await factories.tenant(api_conn)
    requester = await staff_user(api_conn, "technician", "requester")
    approver = await staff_user(api_conn, "admin", "approver")
    approver_email = (await (await api_conn.execute("SELECT email FROM users WHERE id = %s",
                                                     (approver,))).fetchone())["email"]
    with running_agent(console.api, t.business_id, t.location_id, approver, tmp_path / "agent") as agent_id:
        async def connected() -> bool:
            cur = await api_conn.execute("SELECT status FROM agent_devices WHERE id = %s", (agent_id,))
            row = await cur.fetchone()
            return bool(row and row["status"] == "online")
        await until(connected, seconds=30, what="the agent online")
        page = await console.page()
        await console.sign_in(page, "technician", user_id=requester, next_path=f"/console/agents/{agent_id}")
        form = page.locator("#command-form")
        await form.locator("[name=command_type]").select_option("run_script")
        await expect(page.locator("#command-approval")).to_contain_text("other than you approves it")
        await form.locator("[name=interpreter]").select_option("sh")
        await form.locator("[name=script]").fill(f"echo \"{HOSTILE_OUTPUT}\"\necho \"argument: $1\"\necho oops >&2")
        await form.locator("[name=arguments]").fill("x; touch /tmp/pwned")
        await console.shot(page, "command-form")
        await form.get_by_role("button", name="Send command").click()
        await page.wait_for_url("**/console/commands/**")
        await expect(page.locator("#command [data-field=status]")).to_have_text("pending")
        await expect(page.locator("#who-may-approve")).to_contain_text("cannot approve their own command")
        await expect(page.locator("#who-may-approve")).to_contain_text(approver_email)
        await expect(page.get_by_role("button", name="Approve")).to_have_count(0)  # not for the requester
        await page.wait_for_selector("body[data-live=connected]", state="attached")
        await console.shot(page, "command-awaiting-approval")
        command_url = page.url

        # a second person approves it from the approval queue, in their own browser
        other = await console.context.browser.new_context(viewport=DESKTOP)  # type: ignore[union-attr]
        second = ConsoleBrowser(console.api, other, console.test_name + "-approver")
        approver_page = await second.page()
        await second.sign_in(approver_page, "admin", user_id=approver, next_path="/console/commands")
        # the queue holds every command awaiting approval (other tests' too, on the shared server): find ours
        queued = approver_page.locator(f'#approvals tr.command[data-command="{command_url.rsplit("/", 1)[1]}"]')
        await expect(queued).to_have_count(1)
        await console.shot(approver_page, "approval-queue")
        await queued.get_by_role("link", name="run_script").click()
        await approver_page.get_by_role("button", name="Approve").click()
        await expect(approver_page.locator("#command .facts")).to_contain_text(approver_email)
        await other.close()
        assert not second.problems, second.problems

        # the requester's page follows it live, to the output, which is text
        await expect(page.locator("#command [data-field=status]")).to_have_text("completed", timeout=30_000)
        assert page.url == command_url
        await expect(page.locator("#stdout")).to_have_text(f"{HOSTILE_OUTPUT}\nargument: x; touch /tmp/pwned\n")
        await expect(page.locator("#stderr")).to_have_text("oops\n")
        assert await page.locator("#command script").count() == 0
        trail = page.locator("#trail li")
        events = " ".join(await trail.all_inner_texts())
        for what in ("created", "approved", "sent", "completed"):
            assert what in events, events
        assert approver_email in events
        await console.shot(page, "command-output")
        cur = await api_conn.execute("SELECT action FROM audit_log WHERE object_id = %s::text",
                                     (page.url.rsplit("/", 1)[1],))
        assert [r["action"] for r in await cur.fetchall()] == ["command.approve"]


async def test_a_pending_command_is_cancelled_and_output_flags_truncation(console: ConsoleBrowser,
                                                                         api_conn: Any) -> None:
    t = await factories.tenant(api_conn)
    requester = await staff_user(api_conn, "technician", "canceller")
    name = f"web-{t.agent.id.hex[:6]}_x"
    await api_conn.execute("UPDATE agent_devices SET device_name = %s WHERE id = %s", (name, t.agent.id))
    await api_conn.execute("INSERT INTO agent_monitored_services (agent_device_id, service_name, status) "
                           "VALUES (%s, 'nginx', 'running'), (%s, 'cron', 'stopped')", (t.agent.id, t.agent.id))
    page = await console.page()
    # from the command console: find the device, then the same form as on its page
    await console.sign_in(page, "technician", user_id=requester, next_path="/console/commands")
    await page.get_by_role("searchbox", name="Device").fill(name)
    await page.get_by_role("button", name="Find").click()
    await page.get_by_role("link", name=name).click()
    form = page.locator("#command-form")
    options = await form.locator("[name=service_name] option").all_inner_texts()
    assert options == ["cron (stopped)", "nginx (running)"]  # the device's monitored services
    await form.locator("[name=service_name]").select_option("nginx")
    await form.get_by_role("button", name="Send command").click()
    await page.wait_for_url("**/console/commands/**")
    await expect(page.locator("#command")).to_contain_text("nginx")
    await page.get_by_role("button", name="Cancel command").click()
    await expect(page.locator("#command [data-field=status]")).to_have_text("cancelled")
    # a result the agent cut (and the server kept the flag of) says so beside the output
    command_id = page.url.rsplit("/", 1)[1]
    await api_conn.execute("UPDATE agent_commands SET stdout = 'first part', stdout_truncated = true "
                           "WHERE id = %s", (command_id,))
    await page.reload()
    await expect(page.locator("[data-field=stdout_truncated]")).to_contain_text("truncated")
    await expect(page.locator("#stdout")).to_have_text("first part")
    await console.shot(page, "command-cancelled")
    # the device page lists it, and a customer of another business cannot open it
    await page.goto(console.url(f"/console/agents/{t.agent.id}"))
    await expect(page.locator("#commands tr.command")).to_have_count(1)
    other = await factories.tenant(api_conn)
    stranger = await console.page()
    await console.sign_in(stranger, "customer", business_id=other.business_id)
    response = await stranger.goto(console.url(f"/console/commands/{t.agent.id}/{command_id}"))
    assert response is not None and response.status == 404


# --- the DBA pages and tenancy ----------------------------------------------------------------------


async def test_the_database_page_shows_the_tiers_charts_and_confirms_what_a_retention_drops(
        console: ConsoleBrowser, api_conn: Any, client: httpx.AsyncClient) -> None:
    t = await factories.tenant(api_conn)
    old = datetime.now(UTC) - timedelta(days=3)
    await factories.metric_samples(api_conn, [{"agent_device_id": t.agent.id, "cpu_percent": 10.0,
                                               "collected_at": old + timedelta(minutes=i)} for i in range(6)])
    r = await client.post(f"/api/agents/{t.agent.id}/metrics", headers=t.agent.headers,  # the ingest chart's rows
                          json={"metrics": cpu_samples(datetime.now(UTC) - timedelta(minutes=3), 3, 12.0)})
    assert r.status_code == 200, r.text
    page = await console.page()
    await console.sign_in(page, "admin", next_path="/console/admin")
    await expect(page.get_by_role("heading", level=1)).to_have_text("Database")
    raw = page.locator("tr.level[data-level=agent_metrics]")
    cur = await api_conn.execute("SELECT count(*) AS n FROM agent_metrics")
    stored = (await cur.fetchone())["n"]
    await expect(raw.locator("[data-field=rows]")).to_have_text(f"{stored:,}")
    await page.wait_for_selector("body[data-charts=ready]", state="attached")
    charts = await page.evaluate("() => window.rtsConsole.adminCharts")
    assert sum(charts["ingest"]["rows_per_s"]) * 60 >= 3  # this test's own flush, at least
    await expect(page.locator("#jobs")).to_contain_text("Scheduled jobs")
    await console.shot(page, "database")
    # a retention on the raw table: the confirmation counts what it would drop, and Cancel changes nothing
    await raw.get_by_label("Retention of agent_metrics").fill("2 days")
    await raw.get_by_role("button", name="Change…").click()
    what = page.locator("#tier-confirm-what")
    await expect(what).to_contain_text("rows older than")
    dropped = int((await what.inner_text()).split("drops ", 1)[1].split(" rows", 1)[0].replace(",", ""))
    cur = await api_conn.execute(
        "SELECT count(*) AS n FROM agent_metrics WHERE collected_at < now() - interval '2 days'")
    assert dropped == (await cur.fetchone())["n"] and dropped >= 6
    await console.shot(page, "retention-confirm")
    await page.locator("#tier-confirm").get_by_role("button", name="Cancel").click()
    cur = await api_conn.execute("SELECT retention FROM rts_tier_levels WHERE name = 'agent_metrics'")
    before = (await cur.fetchone())["retention"]
    # the top tier: applied through the API, then put back to forever the same way
    top = page.locator("tr.level[data-level=agent_metrics_1d]")
    await top.get_by_label("Retention of agent_metrics_1d").fill("3650 days")
    await top.get_by_role("button", name="Change…").click()
    await expect(what).to_contain_text("Keep agent_metrics_1d for 3650 days")
    async with page.expect_navigation():  # applied, the page shows the new state
        await page.locator("#tier-confirm").get_by_role("button", name="Apply").click()
    await expect(page.locator("tr.level[data-level=agent_metrics_1d] input")).to_have_value("3650 days")
    top = page.locator("tr.level[data-level=agent_metrics_1d]")
    await top.get_by_label("Retention of agent_metrics_1d").fill("")
    await top.get_by_role("button", name="Change…").click()
    await expect(what).to_contain_text("forever")
    async with page.expect_navigation():  # applied, the page shows the new state
        await page.locator("#tier-confirm").get_by_role("button", name="Apply").click()
    await expect(page.locator("tr.level[data-level=agent_metrics_1d] input")).to_have_value("")
    cur = await api_conn.execute("SELECT name, retention FROM rts_tier_levels WHERE name IN ('agent_metrics', "
                                 "'agent_metrics_1d') ORDER BY name")
    assert [r["retention"] for r in await cur.fetchall()] == [before, None]


async def test_a_customer_gets_no_database_page_and_sees_only_its_own_rules(console: ConsoleBrowser,
                                                                          api_conn: Any) -> None:
    mine, theirs = await factories.tenant(api_conn), await factories.tenant(api_conn)
    for tenant, name in ((mine, "my disk rule"), (theirs, "their secret rule")):
        await api_conn.execute(
            "INSERT INTO agent_alerts (alert_name, alert_type, severity, business_id, conditions) VALUES "
            "(%s, 'disk', 'warning', %s, '{\"kind\": \"metric\", \"metric\": \"disk_percent\", \"operator\": \">\", "
            "\"threshold\": 90, \"duration_minutes\": 5}')", (name, tenant.business_id))
    page = await console.page()
    await console.sign_in(page, "customer", business_id=mine.business_id, next_path="/console/alerts/rules")
    await expect(page.locator("tr.rule")).to_have_count(1)
    await expect(page.locator("tr.rule")).to_contain_text("my disk rule")
    await expect(page.locator("tr.rule")).to_contain_text("avg disk_percent > 90 for 5 min")
    await expect(page.get_by_text("their secret rule")).to_have_count(0)
    await expect(page.get_by_role("link", name="New rule")).to_have_count(0)  # RTS_ALERT_CUSTOMER_RULES is off
    await expect(page.get_by_role("link", name="Database")).to_have_count(0)
    await console.shot(page, "customer-rules")
    response = await page.goto(console.url("/console/admin"))
    assert response is not None and response.status == 404
    await expect(page.get_by_role("heading", level=1)).to_have_text("Not found")
    response = await page.goto(console.url("/console/data/admin/charts"))
    assert response is not None and response.status == 404
    technician = await console.page()
    await console.sign_in(technician, "technician", next_path="/console/alerts")
    await expect(technician.get_by_role("link", name="Database")).to_have_count(0)
    response = await technician.goto(console.url("/console/admin"))
    assert response is not None and response.status == 403


async def test_rules_are_disabled_enabled_and_deleted_and_a_maintenance_window_ends_early(
        console: ConsoleBrowser, api_conn: Any) -> None:
    t = await factories.tenant(api_conn)
    await api_conn.execute("UPDATE agent_devices SET device_name = 'front-desk' WHERE id = %s", (t.agent.id,))
    operator = await staff_user(api_conn, "admin", "rules")
    page = await console.page()
    await console.sign_in(page, "admin", user_id=operator, next_path="/console/alerts/rules/new")
    form = page.locator("#rule-form")
    await form.locator("[name=alert_name]").fill("front desk offline")
    await form.locator("[name=business_id]").select_option(str(t.business_id))
    await expect(form.locator("[name=agent_device_id] option")).to_have_count(2)
    await form.locator("[name=agent_device_id]").select_option(str(t.agent.id))
    await form.locator("[name=kind]").select_option("agent_offline")
    await expect(form.locator("[name=threshold]")).to_be_hidden()  # the metric fields belong to metric rules
    await form.locator("[name=duration_minutes]").fill("15")
    await form.locator("[name=channel_webhook]").check()
    await form.get_by_role("button", name="Save rule").click()
    await expect(page.locator("[data-error-for=webhook_url]")).to_contain_text("webhook_url")
    await form.locator("[name=webhook_url]").fill("https://hooks.example.com/rts")
    await form.locator("[name=create_ticket]").check()
    await form.get_by_role("button", name="Save rule").click()
    await page.wait_for_url(console.url("/console/alerts/rules"))
    row = page.locator("tr.rule", has_text="front desk offline")
    await expect(row).to_contain_text("offline for 15 min")
    await expect(row).to_contain_text("front-desk")
    await expect(row).to_contain_text("opens a ticket")
    await row.get_by_role("button", name="Disable").click()
    await expect(page.locator("tr.rule", has_text="front desk offline")).to_contain_text("disabled")
    await page.locator("tr.rule", has_text="front desk offline").get_by_role("button", name="Enable").click()
    await expect(page.locator("tr.rule", has_text="front desk offline")).to_contain_text("active")
    # edit: the stored rule's values are in the form; a change is a PATCH
    await page.locator("tr.rule", has_text="front desk offline").get_by_role("link").first.click()
    await expect(page.locator("#rule-form [name=duration_minutes]")).to_have_value("15")
    await page.locator("#rule-form [name=duration_minutes]").fill("30")
    await page.get_by_role("button", name="Save rule").click()
    await page.wait_for_url(console.url("/console/alerts/rules"))
    await expect(page.locator("tr.rule", has_text="front desk offline")).to_contain_text("offline for 30 min")

    # a maintenance window for the device, in effect now, then ended early
    wf = page.locator("#window-form")
    await wf.locator("[name=business_id]").select_option(str(t.business_id))
    await expect(wf.locator("[name=agent_device_id] option")).to_have_count(2)
    await wf.locator("[name=agent_device_id]").select_option(str(t.agent.id))
    now = datetime.now(UTC)
    local = "%Y-%m-%dT%H:%M"
    await wf.locator("[name=starts_at]").fill((now - timedelta(minutes=5)).astimezone(NEW_YORK).strftime(local))
    await wf.locator("[name=ends_at]").fill((now + timedelta(hours=2)).astimezone(NEW_YORK).strftime(local))
    await wf.locator("[name=reason]").fill("replacing the <b>switch</b>")
    await wf.get_by_role("button", name="Create window").click()
    window = page.locator("tr.window", has_text="replacing the <b>switch</b>")
    await expect(window).to_contain_text("in effect")
    await expect(window).to_contain_text("front-desk")
    await console.shot(page, "rules-and-windows")
    await window.get_by_role("button", name="End now").click()
    await expect(page.locator("tr.window", has_text="replacing the <b>switch</b>")).to_have_count(0)
    cur = await api_conn.execute("SELECT ends_at <= now() AS ended FROM alert_maintenance_windows "
                                 "WHERE agent_device_id = %s", (t.agent.id,))
    assert (await cur.fetchone())["ended"]
    # delete, confirmed
    await page.locator("tr.rule", has_text="front desk offline").get_by_role("button", name="Delete").click()
    await page.locator("#rule-delete").get_by_role("button", name="Delete rule").click()
    await expect(page.locator("tr.rule", has_text="front desk offline")).to_have_count(0)
