"""The agent end to end: real ``rts-agent`` processes against real ``rts-monitor serve`` processes
and a fresh TimescaleDB database per test.

What "exactly once" is checked against: the agent logs (debug) every sample it spooled; the
database must hold exactly that set of ``collected_at`` for the device, no more, no fewer.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import psycopg
from e2e_support import (
    AGENT,
    AgentProc,
    World,
    command_state,
    metric_times,
    portal,
    spool_times,
    start_server_on,
    wait_final,
    wait_for,
)

from tests.fix_api import ApiServer, free_port


def agent_events(agent: AgentProc, event: str) -> list[dict[str, Any]]:
    out = []
    for line in agent.log_path.read_text(errors="replace").splitlines():
        if line.startswith("{") and f'"event": "{event}"' in line:
            out.append(json.loads(line))
    return out


def spooled_times(agent: AgentProc) -> list[str]:
    return [e["collected_at"] for e in agent_events(agent, "sample.spooled")]


def test_install_register_report_and_run_commands_over_socket_and_polling(
        api_factory: Callable[..., ApiServer], world: World, install_agent: Callable[..., AgentProc],
        tmp_path: Path) -> None:
    server = api_factory()
    unit_dir = tmp_path / "units"
    agent = install_agent(server, world, extra_args=["--unit-dir", str(unit_dir), "--no-start",
                                                     "--services", "cron,ssh"], RTS_AGENT_LOG_LEVEL="DEBUG")

    # Install: registered under the token's business and location, secrets readable by us only.
    config = agent.config
    assert config["server_url"] == server.url and config["agent_token"].startswith("rtsa_")
    assert config["business_id"] == str(world.business_id)
    assert config["monitored_services"] == ["cron", "ssh"]
    assert stat.S_IMODE(os.stat(agent.state_dir / "config.json").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(agent.state_dir).st_mode) == 0o700
    unit = (unit_dir / "rts-agent.service").read_text()
    assert f"run --state-dir {agent.state_dir}" in unit
    assert "Restart=always" in unit
    device = world.query("SELECT business_id, service_location_id, hostname, os_type, device_name "
                         "FROM agent_devices WHERE id = %s", agent.agent_id)
    assert device and device[0]["service_location_id"] == world.location_id and device[0]["os_type"] == "linux"
    assert device[0]["device_name"] == "e2e-host"
    assert not agent.status()["running"]

    agent.start(RTS_AGENT_INVENTORY_INTERVAL="3600")
    # Metrics flow and are visible in the history API.
    wait_for(lambda: len(metric_times(world, agent.agent_id)) >= 4, 30, "metrics in the database")
    end = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 60))
    resp = httpx.get(f"{server.url}/api/agents/{agent.agent_id}/metrics/history",
                     params={"interval": "10s", "metric": "cpu_percent,memory_percent,disk_percent",
                             "start": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 600)),
                             "end": end},
                     headers=portal(server, world), timeout=30)
    assert resp.status_code == 200, resp.text
    points = resp.json()["metrics"]
    assert points and all(p["memory_percent"] is not None and p["memory_percent"] > 0 for p in points)

    # A second runner on the same state dir refuses to start (it would run commands twice).
    second = subprocess.run([*AGENT, "--state-dir", str(agent.state_dir), "run"], env=agent.env,
                            capture_output=True, text=True, timeout=30)
    assert second.returncode == 2 and "already running" in second.stderr

    # status: running, socket connected, nothing failing to send. The status file follows the
    # runner within a few seconds (rewritten at most every STATUS_SPACING_SECONDS), so wait for a
    # view that has both the socket and a send.
    st = wait_for(lambda: (s := agent.status())["running"] and s.get("last_status", {}).get("websocket")
                  == "connected" and s["last_status"].get("last_send_ok_at") and s, 20,
                  "agent connected over the WebSocket, a send acknowledged")
    assert st["last_status"]["agent_id"] == agent.agent_id
    assert "services" in (st["last_status"]["collector_errors"] or {})  # no systemd in this sandbox...
    assert st["last_status"]["last_send_ok_at"]  # ...and it costs nothing else

    # Software inventory (dpkg on this machine) reached the server.
    def inventory() -> list[dict[str, Any]]:
        r = httpx.get(f"{server.url}/api/agents/{agent.agent_id}/inventory", headers=portal(server, world))
        return list(r.json().get("software", [])) if r.status_code == 200 else []

    software = wait_for(inventory, 30, "software inventory")
    assert len(software) > 10 and any(s["name"].startswith("python3") for s in software)

    # A run_script command (needs a second admin's approval) goes over the socket.
    hostile = "x; touch /tmp/rts-pwned-$$"
    resp = httpx.post(f"{server.url}/api/agents/{agent.agent_id}/commands", headers=portal(server, world),
                      json={"command_type": "run_script", "timeout_seconds": 30,
                            "params": {"interpreter": "sh", "script": 'echo "hello $1"', "arguments": [hostile]}})
    assert resp.status_code == 201, resp.text
    cid = resp.json()["id"]
    resp = httpx.post(f"{server.url}/api/agents/{agent.agent_id}/commands/{cid}/approve",
                      headers=portal(server, world, "approver"), json={})
    assert resp.status_code == 200, resp.text
    done = wait_final(server, world, agent.agent_id, cid)
    assert done["status"] == "completed", done
    assert done["exit_code"] == 0 and done["stdout"] == f"hello {hostile}\n"
    assert done["delivered_via"] == "ws"
    # ...and its result came back over the socket too (the executing notice, then the result).
    results = [h for h in done["history"] or [] if h["actor_type"] == "agent"]
    assert results and all(h["via"] == "ws" for h in results), done["history"]
    assert results[-1]["to_status"] == "completed"

    # Socket unavailable (an address nothing listens on): commands arrive by polling instead.
    agent.stop()
    agent.start(RTS_AGENT_WEBSOCKET_URL=f"ws://127.0.0.1:{free_port()}/ws")
    wait_for(lambda: agent.last_status().get("pid") == agent.proc.pid if agent.proc else False, 20, "restart")
    resp = httpx.post(f"{server.url}/api/agents/{agent.agent_id}/commands", headers=portal(server, world),
                      json={"command_type": "collect_inventory", "timeout_seconds": 60, "params": {}})
    assert resp.status_code == 201, resp.text
    done = wait_final(server, world, agent.agent_id, resp.json()["id"])
    assert done["status"] == "completed", done
    assert done["delivered_via"] == "poll"
    assert "inventory sent" in done["stdout"]
    assert agent.last_status()["websocket"] == "disconnected"
    # An unknown command type never reaches the agent: the server refuses to create it.
    resp = httpx.post(f"{server.url}/api/agents/{agent.agent_id}/commands", headers=portal(server, world),
                      json={"command_type": "format_disk", "params": {}})
    assert resp.status_code == 422

    # A config change on the server reaches the agent through its heartbeat (config_updated).
    resp = httpx.patch(f"{server.url}/api/agents/{agent.agent_id}", headers=portal(server, world),
                       json={"alerts_enabled": False})
    assert resp.status_code == 200, resp.text

    def acknowledged() -> bool:
        row = world.query("SELECT config_version, config_version_delivered FROM agent_devices WHERE id = %s",
                          agent.agent_id)[0]
        return bool(row["config_version"] > 1 and row["config_version"] == row["config_version_delivered"])

    wait_for(acknowledged, 20, "the agent to fetch its new config")
    # The server records the delivery while answering; the agent logs it once the answer arrives.
    wait_for(lambda: agent_events(agent, "config.updated"), 10, "the agent to apply its new config")

    # Every sample spooled by both runs is in the database exactly once (or still spooled).
    agent.stop()
    assert_exactly_once(agent, world)


def test_monitoring_paused_from_the_portal_stops_samples_and_resumes(
        api_factory: Callable[..., ApiServer], world: World, install_agent: Callable[..., AgentProc]) -> None:
    """PATCH monitoring_enabled=false reaches the agent through its heartbeat: it stops sampling
    (heartbeats go on, what was spooled is still delivered) until monitoring is enabled again."""
    server = api_factory()
    agent = install_agent(server, world, RTS_AGENT_LOG_LEVEL="DEBUG")
    agent.start()
    try:
        wait_for(lambda: len(metric_times(world, agent.agent_id)) >= 3, 30, "first metrics")

        def patch(enabled: bool) -> None:
            resp = httpx.patch(f"{server.url}/api/agents/{agent.agent_id}", headers=portal(server, world),
                               json={"monitoring_enabled": enabled})
            assert resp.status_code == 200, resp.text

        patch(False)
        wait_for(lambda: agent_events(agent, "monitoring.paused"), 20, "the agent to pause monitoring")
        wait_for(lambda: agent.last_status().get("monitoring_enabled") is False, 10, "status to say paused")
        wait_for(lambda: not spool_times(agent), 20, "the spooled samples to be delivered")
        paused_count = len(metric_times(world, agent.agent_id))
        beats = world.query("SELECT last_heartbeat FROM agent_devices WHERE id = %s", agent.agent_id)[0]
        time.sleep(3)  # 12 metric intervals, 1.5 heartbeat intervals
        assert len(metric_times(world, agent.agent_id)) == paused_count
        assert not spool_times(agent)
        again = world.query("SELECT last_heartbeat FROM agent_devices WHERE id = %s", agent.agent_id)[0]
        assert again["last_heartbeat"] > beats["last_heartbeat"], "heartbeats must go on while paused"

        patch(True)
        wait_for(lambda: agent_events(agent, "monitoring.resumed"), 20, "the agent to resume monitoring")
        wait_for(lambda: len(metric_times(world, agent.agent_id)) >= paused_count + 3, 20, "metrics again")
        assert agent.config["monitoring_enabled"] is True  # persisted for the next start
    finally:
        agent.stop()


def test_server_down_for_a_while_every_sample_arrives_exactly_once(
        api_factory: Callable[..., ApiServer], world: World, install_agent: Callable[..., AgentProc],
        db_url: str, tmp_path: Path) -> None:
    port = free_port()
    server = start_server_on(db_url, tmp_path / "srv1", port)
    try:
        agent = install_agent(server, world, RTS_AGENT_LOG_LEVEL="DEBUG", RTS_AGENT_BATCH_SIZE="7")
        agent.start()
        wait_for(lambda: len(metric_times(world, agent.agent_id)) >= 3, 30, "first metrics")
    finally:
        server.stop()
    down_at = time.time()
    # Down for ~5 s: ~20 samples at 0.25 s pile up in the spool while sends fail and back off.
    wait_for(lambda: agent.spool()["depth"] >= 15, 30, "a backlog in the spool")
    errors = wait_for(lambda: agent.last_status().get("last_send_error"), 10, "the send error in the status")
    assert "Connect" in errors, errors

    server = start_server_on(db_url, tmp_path / "srv2", port)
    try:
        up_at = time.time()
        wait_for(lambda: agent.spool()["depth"] <= 1 and agent.last_status().get("last_send_ok_at"), 90,
                 "the backlog to drain")
        agent.stop()
    finally:
        server.stop()

    stored = assert_exactly_once(agent, world)
    outage = [t for t in stored if down_at + 0.5 < _epoch(t) < up_at - 0.5]
    assert len(outage) >= 10, f"only {len(outage)} samples from the outage arrived"
    sent = [e["answer"] for e in agent_events(agent, "metrics.sent")]
    assert sum(a["received"] for a in sent) == len(stored)
    assert agent.spool()["dropped_total"] == 0


def test_agent_sigkilled_mid_send_loses_and_duplicates_nothing(
        api_factory: Callable[..., ApiServer], world: World, install_agent: Callable[..., AgentProc],
        db_url: str, tmp_path: Path) -> None:
    port = free_port()
    server = start_server_on(db_url, tmp_path / "srv1", port)
    agent = install_agent(server, world, RTS_AGENT_LOG_LEVEL="DEBUG", RTS_AGENT_BATCH_SIZE="4",
                          RTS_AGENT_CATCHUP_PAUSE="0.2")
    server.stop()
    # Build a backlog offline, then kill the agent while it drains it in small, paced batches.
    agent.start()
    wait_for(lambda: agent.spool()["depth"] >= 30, 40, "an offline backlog")
    server = start_server_on(db_url, tmp_path / "srv2", port)
    kills = 0
    try:
        for _ in range(3):
            before = len(metric_times(world, agent.agent_id))
            wait_for(lambda b=before: len(metric_times(world, agent.agent_id)) > b, 30, "draining to start")
            assert agent.stop(signal.SIGKILL) == -signal.SIGKILL
            kills += 1
            assert agent.spool()["depth"] > 0, "the backlog drained before the kill"
            agent.start()
        wait_for(lambda: agent.spool()["depth"] <= 1, 60, "the backlog to drain after the kills")
        agent.stop()
    finally:
        server.stop()
    assert kills == 3
    stored = assert_exactly_once(agent, world)
    # A batch the server committed just before a kill is sent again after the restart and
    # answered as duplicates: logged answers account for every row at most once.
    answers = [e["answer"] for e in agent_events(agent, "metrics.sent")]
    assert sum(a["received"] for a in answers) <= len(stored)


def test_spool_full_drops_oldest_and_reports_it(
        api_factory: Callable[..., ApiServer], world: World, install_agent: Callable[..., AgentProc],
        db_url: str, tmp_path: Path) -> None:
    port = free_port()
    server = start_server_on(db_url, tmp_path / "srv1", port)
    # Room for about six samples.
    agent = install_agent(server, world, RTS_AGENT_LOG_LEVEL="DEBUG", RTS_AGENT_SPOOL_MAX_BYTES="3000")
    server.stop()
    agent.start()
    wait_for(lambda: agent.spool()["dropped_total"] >= 10, 40, "the spool to overflow")
    spool = agent.spool()
    assert 0 < spool["bytes"] <= 3000 and spool["depth"] <= len(spooled_times(agent)) - 10
    assert spool["dropped_unreported"] > 0
    wait_for(lambda: agent_events(agent, "spool.full_dropped_oldest"), 10, "the drop to be logged")
    server = start_server_on(db_url, tmp_path / "srv2", port)
    try:
        # Reported (the socket reports on connect, the sender after each success) and drained: until
        # the sender has emptied the full spool, a new sample can still push out an old one.
        wait_for(lambda: (s := agent.spool())["dropped_unreported"] == 0 and s["depth"] <= 2, 40,
                 "the drop to be reported and the spool drained")
        agent.stop()
    finally:
        server.stop()
    events = world.query("SELECT data FROM agent_events WHERE agent_device_id = %s AND event_type = 'spool_overflow'",
                         agent.agent_id)
    assert events, "no spool_overflow event reached the server"
    reported = sum(int(e["data"]["dropped"]) for e in events)
    final = agent.spool()
    assert reported == final["dropped_total"] >= 10
    first = events[0]["data"]
    assert first["first_collected_at"] <= first["last_collected_at"]
    # What was dropped is the oldest: everything stored is newer than the last dropped sample,
    # except what had been sent before the server went away.
    stored = metric_times(world, agent.agent_id)
    produced = spooled_times(agent)
    assert len(stored) + final["dropped_total"] + final["depth"] == len(produced)
    newest_dropped = max(e["data"]["last_collected_at"] for e in events)
    # The batch on the wire is never dropped, so on a slow box a drop can land just after an
    # in-flight batch's samples; what is stored last is still newer than anything dropped.
    assert stored[-1] > newest_dropped


def assert_exactly_once(agent: AgentProc, world: World) -> list[str]:
    """Every sample the agent spooled is in the database exactly once, or still in its spool
    (sent but not yet acknowledged when the agent stopped: the next run re-sends it)."""
    produced = spooled_times(agent)
    stored = metric_times(world, agent.agent_id)
    waiting = spool_times(agent)
    spool = agent.spool()
    assert len(produced) == len(set(produced)) == spool["spooled_total"]
    assert len(stored) == len(set(stored))
    assert spool["dropped_total"] == 0 and spool["quarantined_total"] == 0
    assert sorted(set(stored) | set(waiting)) == sorted(produced), "database and agent disagree"
    assert len(waiting) <= 2
    return stored


def test_hours_of_backlog_catch_up_oldest_first_in_bounded_paced_batches(
        api_factory: Callable[..., ApiServer], world: World, install_agent: Callable[..., AgentProc]) -> None:
    from rts_agent.collect import Sample
    from rts_agent.spool import Spool

    server = api_factory()
    agent = install_agent(server, world, RTS_AGENT_LOG_LEVEL="DEBUG", RTS_AGENT_BATCH_SIZE="500",
                          RTS_AGENT_CATCHUP_PAUSE="1.0", RTS_AGENT_METRICS_INTERVAL="5")
    # Eight hours offline at a 10-second interval: 2,880 samples waiting in the spool.
    start = time.time() - 8 * 3600
    backlog = [Sample(collected_at=time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(start + i * 10)) + ".000000Z",
                      cpu_percent=float(i % 100), memory_percent=50.0, disk_percent=40.0, uptime_seconds=i)
               for i in range(2880)]
    import msgspec

    with Spool(agent.state_dir / "spool.db", max_bytes=64 * 1024 * 1024) as spool:
        for sample in backlog:
            spool.put(sample.collected_at, msgspec.json.encode(sample))
    began = time.monotonic()
    agent.start()
    wait_for(lambda: len(metric_times(world, agent.agent_id)) >= 2880, 60, "the backlog to arrive")
    took = time.monotonic() - began
    agent.stop()

    stored = set(metric_times(world, agent.agent_id))
    assert {s.collected_at for s in backlog} <= stored
    sizes = [e["samples"] for e in agent_events(agent, "metrics.sent")]
    # Bounded batches (the last one may carry the first live sample too)...
    assert sizes[:5] == [500] * 5 and 380 <= sizes[5] <= 382 and max(sizes) == 500
    assert took >= 5.0  # ...with a pause after each full one: a trickle, not a flood
    # Oldest first: each committed range starts no earlier than the previous one.
    ranges = world.query("SELECT range_start FROM metric_ingest_ranges WHERE agent_device_id = %s ORDER BY id",
                         agent.agent_id)
    starts = [r["range_start"] for r in ranges]
    assert len(starts) >= 6 and starts == sorted(starts)


def _epoch(stamp: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def test_cancelling_a_running_script_stops_it_over_the_socket_and_by_heartbeat(
        api_factory: Callable[..., ApiServer], world: World, install_agent: Callable[..., AgentProc],
        tmp_path: Path) -> None:
    """A script cancelled in the portal while it runs is killed with its children: pushed over the
    socket (the agent answers within a second), or, for an agent without a socket, named in its
    next heartbeat answer. The command stays `cancelled`; the agent's answer is kept as late."""
    server = api_factory()
    agent = install_agent(server, world)

    def run_and_cancel(name: str) -> tuple[dict[str, Any], float]:
        marker = tmp_path / f"{name}-survived"
        resp = httpx.post(f"{server.url}/api/agents/{agent.agent_id}/commands", headers=portal(server, world),
                          json={"command_type": "run_script", "timeout_seconds": 120, "params": {
                              "interpreter": "sh", "script": f"(sleep 4; touch {marker}) &\nsleep 100\n"}})
        assert resp.status_code == 201, resp.text
        cid = resp.json()["id"]
        resp = httpx.post(f"{server.url}/api/agents/{agent.agent_id}/commands/{cid}/approve",
                          headers=portal(server, world, "approver"), json={})
        assert resp.status_code == 200, resp.text
        wait_for(lambda: command_state(server, world, agent.agent_id, cid)["status"] == "executing", 30,
                 "the script to start")
        started = time.monotonic()
        resp = httpx.post(f"{server.url}/api/agents/{agent.agent_id}/commands/{cid}/cancel",
                          headers=portal(server, world), json={"reason": "wrong machine"})
        assert resp.status_code == 200 and resp.json()["status"] == "cancelled", resp.text
        done = wait_for(lambda: (c := command_state(server, world, agent.agent_id, cid))["late_result_at"] and c,
                        30, "the agent's answer")
        elapsed = time.monotonic() - started
        time.sleep(4.5)
        assert not marker.exists(), "a child of the cancelled script kept running"
        return done, elapsed

    agent.start()
    try:
        wait_for(lambda: agent.last_status().get("websocket") == "connected", 30, "the socket")
        done, elapsed = run_and_cancel("ws")
        assert done["status"] == "cancelled" and done["status_reason"] == "wrong machine"
        assert "cancelled from the portal while running" in done["error_message"]
        assert elapsed < 3, elapsed  # pushed, not waiting for a heartbeat
        assert agent_events(agent, "command.cancel_requested")[0]["via"] == "ws"

        agent.stop()
        agent.start(RTS_AGENT_WEBSOCKET_URL=f"ws://127.0.0.1:{free_port()}/ws")  # no socket: polling
        done, elapsed = run_and_cancel("poll")
        assert done["status"] == "cancelled" and "cancelled from the portal" in done["error_message"]
        assert agent_events(agent, "command.cancel_requested")[-1]["via"] == "heartbeat"
    finally:
        agent.stop()


def test_samples_the_database_refuses_are_quarantined_and_the_rest_flow(
        world: World, install_agent: Callable[..., AgentProc], api_factory: Callable[..., ApiServer]) -> None:
    """The server's database refuses some samples (a CHECK behind the API's back: every sample of
    a second divisible by 3): each is answered 422 naming it, the agent quarantines exactly those
    and its spool never stalls; every other sample is stored once."""
    server = api_factory(db=world.db_url)
    with psycopg.connect(world.db_url, autocommit=True) as conn:
        conn.execute("ALTER TABLE agent_metrics ADD CONSTRAINT refuse_every_third_second "
                     "CHECK (extract(epoch from date_trunc('second', collected_at))::bigint % 3 <> 0)")
    agent = install_agent(server, world, RTS_AGENT_LOG_LEVEL="DEBUG", RTS_AGENT_BATCH_SIZE="5")
    agent.start()
    wait_for(lambda: agent.spool()["quarantined_total"] >= 3, 60, "refused samples to be quarantined")
    wait_for(lambda: agent.spool()["depth"] <= 2, 60, "the spool to keep draining")
    agent.stop()
    produced = spooled_times(agent)
    stored = metric_times(world, agent.agent_id)
    refused = [t for t in produced if int(_epoch(t)) % 3 == 0]
    spool = agent.spool()
    assert refused and spool["quarantined_total"] == len(refused)
    assert all(int(_epoch(t)) % 3 != 0 for t in stored)
    assert sorted(set(stored) | set(spool_times(agent)) | set(refused)) == sorted(produced)
    assert len(stored) == len(set(stored))


def _proc_io_write_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("write_bytes:"):
            return int(line.split()[1])
    raise AssertionError("no write_bytes in /proc/<pid>/io")


def test_an_idle_agent_writes_nothing_and_reads_services_over_dbus(
        api_factory: Callable[..., ApiServer], world: World, install_agent: Callable[..., AgentProc],
        tmp_path: Path) -> None:
    """Nothing due (metrics and heartbeats hourly): once started, the agent writes nothing to disk
    (no status rewrites, no spool traffic) while its socket stays up. Its monitored services come
    from systemd's D-Bus API (a stand-in on a private bus: this machine has no systemd)."""
    import shutil

    import fake_systemd

    server = api_factory()
    env = {"RTS_AGENT_METRICS_INTERVAL": "3600", "RTS_AGENT_HEARTBEAT_INTERVAL": "3600"}
    procs: list[subprocess.Popen[bytes]] = []
    if shutil.which("dbus-daemon"):
        address, procs = fake_systemd.start(tmp_path, ["cron", "ssh=failed"])
        env["DBUS_SYSTEM_BUS_ADDRESS"] = address
    try:
        agent = install_agent(server, world, extra_args=["--no-systemd", "--services", "cron,ssh"], **env)
        agent.start()
        assert agent.proc is not None
        wait_for(lambda: metric_times(world, agent.agent_id), 30, "the first sample")
        status = wait_for(lambda: (s := agent.last_status()).get("websocket") == "connected"
                          and s.get("inventory_sent_at") and s, 30, "the socket and the inventory")
        if procs:
            assert status["collector_errors"] is None, status["collector_errors"]
            rows = wait_for(lambda: world.query("SELECT service_name, status, pid FROM agent_monitored_services "
                                                "WHERE agent_device_id = %s", agent.agent_id), 10, "services")
            assert {r["service_name"]: r["status"] for r in rows} == {"cron": "running", "ssh": "error"}, rows
            assert [r["pid"] is not None for r in sorted(rows, key=lambda r: r["service_name"])] == [True, False]
        time.sleep(3)  # the status file's last rewrite (it trails a change by at most 2.5 s)
        files = {p.name: p.stat().st_mtime_ns for p in agent.state_dir.iterdir()}
        written = _proc_io_write_bytes(agent.proc.pid)
        time.sleep(8)
        assert _proc_io_write_bytes(agent.proc.pid) == written, "the idle agent wrote to disk"
        assert {p.name: p.stat().st_mtime_ns for p in agent.state_dir.iterdir()} == files
        assert agent.status()["running"]
    finally:
        fake_systemd.stop(procs)
