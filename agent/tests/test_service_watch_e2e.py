"""Crash events in real time: a real agent watches a service the portal chose, backed by a real
process the test controls (a systemd-less stand-in: systemd's D-Bus API on a private bus and a
``systemctl`` that starts and stops the process), and the server reacts at once."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sqlite3
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import fake_systemd
import httpx
import pytest
from e2e_support import AgentProc, World, portal, start_server_on, wait_for

from tests.fix_api import ApiServer

pytestmark = pytest.mark.skipif(shutil.which("dbus-daemon") is None, reason="dbus-daemon not installed")


class StandIn:
    """The ``web`` service: a process started by the stand-in ``systemctl``."""

    def __init__(self, tmp_path: Path) -> None:
        self.bindir, self.piddir = tmp_path / "bin", tmp_path / "units"
        self.systemctl = fake_systemd.write_systemctl(self.bindir, self.piddir)
        self.address, self.procs = fake_systemd.start(tmp_path, [], piddir=self.piddir)

    def start(self) -> None:
        subprocess.run([str(self.systemctl), "start", "--no-pager", "--", "web"], check=True, capture_output=True)

    def pid(self) -> int:
        return int((self.piddir / "web.service.pid").read_text())

    def crash(self) -> None:
        os.kill(self.pid(), signal.SIGKILL)

    def calls(self) -> list[str]:
        path = self.piddir / "systemctl.log"
        return path.read_text().splitlines() if path.exists() else []

    def close(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            os.kill(self.pid(), signal.SIGKILL)
        fake_systemd.stop(self.procs)


@pytest.fixture
def stand_in(tmp_path: Path) -> Any:
    s = StandIn(tmp_path)
    yield s
    s.close()


def watch_env(stand_in: StandIn, **extra: str) -> dict[str, str]:
    # Samples and heartbeats hourly: whatever the server learns within seconds came from the watch.
    return {"DBUS_SYSTEM_BUS_ADDRESS": stand_in.address, "PATH": f"{stand_in.bindir}:{os.environ['PATH']}",
            "RTS_AGENT_METRICS_INTERVAL": "3600", "RTS_AGENT_HEARTBEAT_INTERVAL": "3600",
            "RTS_AGENT_SERVICE_CHECK_INTERVAL": "0.5", **extra}


def choose_web(server: ApiServer, world: World, **choice: Any) -> None:
    resp = httpx.put(f"{server.url}/api/businesses/{world.business_id}/monitored-services",
                     headers=portal(server, world), timeout=30,
                     json={"services": [{"service_name": "web", "os_type": "linux", **choice}]})
    assert resp.status_code == 200, resp.text


def service_rule(server: ApiServer, world: World) -> str:
    resp = httpx.post(f"{server.url}/api/alerts/rules", headers=portal(server, world), timeout=30, json={
        "alert_name": "web_down", "severity": "critical", "business_id": str(world.business_id),
        "conditions": {"kind": "service_down", "duration_minutes": 0, "service_name": "web"}})
    assert resp.status_code == 201, resp.text
    return str(resp.json()["id"])


def events(world: World, agent_id: str, event_type: str) -> list[dict[str, Any]]:
    return world.query("SELECT data, via FROM agent_events WHERE agent_device_id = %s AND event_type = %s "
                       "ORDER BY id", agent_id, event_type)


def service_row(world: World, agent_id: str) -> dict[str, Any] | None:
    rows = world.query("SELECT status, pid FROM agent_monitored_services WHERE agent_device_id = %s "
                       "AND service_name = 'web'", agent_id)
    return rows[0] if rows else None


def open_episodes(world: World, rule_id: str) -> list[dict[str, Any]]:
    return world.query("SELECT id FROM agent_alert_history WHERE agent_alert_id = %s AND resolved_at IS NULL",
                       rule_id)


def running_agent(server: ApiServer, world: World, install_agent: Callable[..., AgentProc], stand_in: StandIn,
                  **env: str) -> AgentProc:
    agent = install_agent(server, world, **watch_env(stand_in, **env))
    assert agent.config["monitored_services"] == ["web"]  # from the portal, with the registration
    agent.start()
    wait_for(lambda: (row := service_row(world, agent.agent_id)) and row["status"] == "running", 30,
             "the first sample to report web running")
    wait_for(lambda: agent.last_status().get("websocket") == "connected", 30, "the socket")
    time.sleep(1.5)  # the watch loop has looked at least once
    return agent


def test_a_crash_reaches_the_server_in_seconds_and_a_recovery_resolves_it(
        api_factory: Callable[..., ApiServer], world: World, install_agent: Callable[..., AgentProc],
        stand_in: StandIn, db_url: str, tmp_path: Path) -> None:
    stand_in.start()
    server = api_factory()
    choose_web(server, world)
    rule_id = service_rule(server, world)
    agent = running_agent(server, world, install_agent, stand_in)
    first_pid = stand_in.pid()

    started = time.monotonic()
    stand_in.crash()
    (crash,) = wait_for(lambda: events(world, agent.agent_id, "service_crashed"), 15, "service_crashed")
    # Samples are hourly here: seconds means the watch loop (0.5 s checks; slack for a busy machine).
    assert time.monotonic() - started < 10
    assert crash["via"] == "ws" and crash["data"]["service_name"] == "web" and crash["data"]["pid"] == first_pid
    assert service_row(world, agent.agent_id) == {"status": "stopped", "pid": None}
    # The event's request judges the device's service_down rules after committing the event (events/
    # service.py), so the episode can trail the event row by that evaluation: seconds, not a cycle.
    wait_for(lambda: open_episodes(world, rule_id), 5, "the service_down rule to see the crash at once")

    stand_in.start()
    (back,) = wait_for(lambda: events(world, agent.agent_id, "service_recovered"), 10, "service_recovered")
    assert back["data"]["pid"] == stand_in.pid()
    assert service_row(world, agent.agent_id) == {"status": "running", "pid": stand_in.pid()}
    wait_for(lambda: open_episodes(world, rule_id) == [], 5, "the recovery to resolve the episode at once")

    # The server away: the crash is spooled, and delivered once it is back.
    port = int(server.url.rsplit(":", 1)[1])
    server.kill()
    wait_for(lambda: agent.last_status().get("websocket") == "disconnected", 15, "the socket to drop")
    stand_in.crash()
    spool = agent.state_dir / "spool.db"
    wait_for(lambda: _spooled_events(spool), 10, "the crash in the spool")
    restarted = start_server_on(db_url, tmp_path / "srv2", port)
    try:
        crashes = wait_for(lambda: (rows := events(world, agent.agent_id, "service_crashed")) and len(rows) == 2
                           and rows, 30, "the spooled crash")
        assert crashes[1]["data"]["service_name"] == "web"
        wait_for(lambda: not _spooled_events(spool), 15, "the spool to let go of the event")
        assert service_row(world, agent.agent_id) == {"status": "stopped", "pid": None}
    finally:
        restarted.kill()


def _spooled_events(path: Path) -> int:
    with sqlite3.connect(path) as db:
        return int(db.execute("SELECT count(*) FROM events").fetchone()[0])


def remediation_commands(world: World, agent_id: str) -> list[dict[str, Any]]:
    return world.query("SELECT c.id, c.status, c.requested_by, c.exit_code FROM service_remediations r "
                       "JOIN agent_commands c ON c.id = r.command_id WHERE r.agent_device_id = %s "
                       "ORDER BY r.requested_at", agent_id)


def test_auto_remediation_restarts_a_crashed_service_and_escalates_when_it_stays_down(
        api_factory: Callable[..., ApiServer], world: World, install_agent: Callable[..., AgentProc],
        stand_in: StandIn) -> None:
    stand_in.start()
    server = api_factory(env={"RTS_REMEDIATION_GRACE_SECONDS": "4", "RTS_REMEDIATION_MAX_PER_HOUR": "2",
                              "RTS_REMEDIATION_CHECK_SECONDS": "1", "RTS_ALERT_EVALUATE_SECONDS": "1"})
    choose_web(server, world, auto_restart=True)
    rule_id = service_rule(server, world)
    agent = running_agent(server, world, install_agent, stand_in)
    resp = httpx.patch(f"{server.url}/api/agents/{agent.agent_id}", headers=portal(server, world), timeout=30,
                       json={"auto_remediation_enabled": True})
    assert resp.status_code == 200, resp.text

    # 1. A crash: the server restarts the service itself, and nobody is alerted. (Before the first
    # sample the chosen service was unknown, hence down: that early episode is not this one.)
    wait_for(lambda: not open_episodes(world, rule_id), 15, "the first sample's state to resolve the start-up")
    crashed_at = world.query("SELECT now() AS t")[0]["t"]
    first_pid = stand_in.pid()
    stand_in.crash()
    (restart,) = wait_for(lambda: [c for c in remediation_commands(world, agent.agent_id)
                                   if c["status"] == "completed"], 20, "the restart to complete")
    assert restart["requested_by"] is None and restart["exit_code"] == 0
    assert "restart web.service" in stand_in.calls()
    wait_for(lambda: events(world, agent.agent_id, "service_recovered"), 10, "service_recovered")
    assert stand_in.pid() != first_pid
    history = world.query("SELECT event, actor_type, via FROM agent_command_events WHERE command_id = %s "
                          "ORDER BY at", restart["id"])
    assert history[0] == {"event": "created", "actor_type": "system", "via": "remediation"}
    assert "approved" not in [h["event"] for h in history]  # never waited for anyone
    (audit,) = world.query("SELECT actor_type, actor_user_id, detail FROM audit_log WHERE action = "
                           "'command.remediate' AND object_id = %s", str(restart["id"]))
    assert audit["actor_type"] == "system" and audit["actor_user_id"] is None
    assert audit["detail"]["service_name"] == "web" and audit["detail"]["trigger"] == "event"
    time.sleep(5)  # past the grace period: the restart worked, so no episode
    assert world.query("SELECT id FROM agent_alert_history WHERE agent_alert_id = %s AND triggered_at > %s",
                       rule_id, crashed_at) == []

    # 2. A restart that fails: tried until the per-hour cap (2), then the alert opens as usual,
    # with its ticket (new business: tickets on) and the attempts on the episode.
    (stand_in.piddir / "web.service.broken").touch()
    stand_in.crash()
    (episode,) = wait_for(lambda: open_episodes(world, rule_id), 20, "the escalation")
    attempts = remediation_commands(world, agent.agent_id)
    assert len(attempts) == 2 and attempts[1]["status"] in ("failed", "sent", "executing", "pending")
    wait_for(lambda: remediation_commands(world, agent.agent_id)[1]["status"] == "failed", 20, "the failed restart")
    time.sleep(3)  # the job keeps running: the cap holds
    assert len(remediation_commands(world, agent.agent_id)) == 2
    detail = wait_for(lambda: (r := httpx.get(f"{server.url}/api/alerts/{episode['id']}",
                                              headers=portal(server, world), timeout=30).json())
                      and r["remediation_attempts"] and r, 15, "the attempts on the episode")
    assert [(a["service_name"], a["status"], a["trigger"]) for a in detail["remediation_attempts"]] == [
        ("web", "failed", "event")]
    assert detail["remediation_attempts"][0]["exit_code"] == 1
    assert world.query("SELECT channel FROM alert_outbox WHERE alert_history_id = %s AND event = 'opened'",
                       episode["id"]) == [{"channel": "ticket"}]


def test_the_portal_list_reaches_a_running_agent_unless_pinned(
        api_factory: Callable[..., ApiServer], world: World, install_agent: Callable[..., AgentProc],
        stand_in: StandIn) -> None:
    server = api_factory()
    env = {"DBUS_SYSTEM_BUS_ADDRESS": stand_in.address, "RTS_AGENT_METRICS_INTERVAL": "3600",
           "RTS_AGENT_HEARTBEAT_INTERVAL": "1", "RTS_AGENT_SERVICE_CHECK_INTERVAL": "0.5"}
    free = install_agent(server, world, name="free", **env)
    pinned = install_agent(server, world, name="pinned", extra_args=["--no-systemd", "--services", "cron"], **env)
    assert free.config["monitored_services"] == [] and pinned.config["monitored_services"] == ["cron"]
    free.start()
    pinned.start()
    for agent in (free, pinned):
        wait_for(lambda a=agent: a.last_status().get("last_heartbeat_at"), 30, "a heartbeat")
    choose_web(server, world)  # every Linux device of the business: both get config_updated
    wait_for(lambda: free.config["monitored_services"] == ["web"], 20, "the free agent to take the list")
    wait_for(lambda: world.query("SELECT 1 FROM agent_devices WHERE id = %s AND config_version_delivered = "
                                 "config_version AND config_version > 1", pinned.agent_id), 20,
             "the pinned agent to fetch its config")
    assert pinned.config["monitored_services"] == ["cron"]  # its --services pin wins
    # The free agent watches web at once (not there yet, then started): no sample needed.
    time.sleep(1.5)
    stand_in.start()
    wait_for(lambda: events(world, free.agent_id, "service_recovered"), 20, "the free agent to see web start")
    assert events(world, pinned.agent_id, "service_recovered") == []
