"""Helpers for the agent's end-to-end tests: real ``rts-monitor serve`` processes (the root
``tests.fix_api`` plugin), real ``rts-agent`` processes, a fresh database per test."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock
from uuid import UUID

import httpx
import psycopg
import pytest
from psycopg.rows import dict_row

from tests.fix_api import ApiServer, start_server

AGENT = [sys.executable, "-m", "rts_agent.cli"]


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, step: float = 0.1) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(step)


def start_server_on(db_url: str, log_dir: Path, port: int, env: dict[str, str] | None = None) -> ApiServer:
    """``fix_api.start_server`` on a chosen port: a restarted server must be where agents left it."""
    with mock.patch("tests.fix_api.free_port", return_value=port):
        return start_server(db_url, log_dir, env=env)


@dataclass
class World:
    """A business, a location, two admins (commands that need approval need a second one)."""

    db_url: str
    business_id: UUID
    location_id: UUID
    admin_id: UUID
    approver_id: UUID

    def query(self, sql: str, *params: Any) -> list[dict[str, Any]]:
        with psycopg.connect(self.db_url, autocommit=True, row_factory=dict_row) as conn:
            return conn.execute(sql, params).fetchall()


@pytest.fixture
def world(db_url: str) -> World:
    with psycopg.connect(db_url, autocommit=True, row_factory=dict_row) as conn:
        b = conn.execute("INSERT INTO businesses (business_name) VALUES ('Agent Test Co') RETURNING id").fetchone()
        assert b is not None
        loc = conn.execute("INSERT INTO service_locations (business_id, location_name) VALUES (%s, 'HQ') "
                           "RETURNING id", (b["id"],)).fetchone()
        ids = [conn.execute("INSERT INTO users (email, role) VALUES (%s, 'admin') RETURNING id",
                            (f"{name}@msp.test",)).fetchone() for name in ("admin", "approver")]
    assert loc is not None and ids[0] is not None and ids[1] is not None
    return World(db_url, b["id"], loc["id"], ids[0]["id"], ids[1]["id"])


def registration_token(server: ApiServer, world: World, name: str = "e2e-host") -> str:
    token = server.token("admin", user_id=world.admin_id)
    resp = httpx.post(server.url + "/api/agents/registration-tokens", headers=server.headers(token),
                      json={"business_id": str(world.business_id), "service_location_id": str(world.location_id),
                            "device_name": name, "expires_in_hours": 1}, timeout=30)
    assert resp.status_code == 201, resp.text
    value = resp.json()["token"]
    assert value.startswith("AGT-")
    return str(value)


@dataclass
class AgentProc:
    """One installed agent (its state dir) and, while running, its process."""

    state_dir: Path
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    runs: int = field(default=0)
    argv: list[str] = field(default_factory=lambda: list(AGENT))  # another venv's agent: its python

    @property
    def config(self) -> dict[str, Any]:
        return dict(json.loads((self.state_dir / "config.json").read_text()))

    @property
    def agent_id(self) -> str:
        return str(self.config["agent_id"])

    def start(self, **env: str) -> None:
        assert self.proc is None or self.proc.poll() is not None
        self.runs += 1
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child writes after we return
        self.proc = subprocess.Popen([*self.argv, "--state-dir", str(self.state_dir), "run"],
                                     env={**self.env, **env}, stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True)

    def status(self) -> dict[str, Any]:
        out = subprocess.run([*self.argv, "--state-dir", str(self.state_dir), "status", "--json"],
                             env=self.env, capture_output=True, text=True, timeout=30)
        return dict(json.loads(out.stdout))

    def last_status(self) -> dict[str, Any]:
        path = self.state_dir / "status.json"
        try:
            return dict(json.loads(path.read_text()))
        except (OSError, ValueError):
            return {}

    def spool(self) -> dict[str, Any]:
        """Spool figures from ``rts-agent status`` (zeros before the spool file exists)."""
        zeros = dict.fromkeys(("depth", "bytes", "spooled_total", "sent_total", "dropped_total",
                               "dropped_unreported", "quarantined_total"), 0)
        return {**zeros, **self.status().get("spool", {})}

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        os.killpg(self.proc.pid, sig)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        return self.proc.returncode

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


FAST = {
    "RTS_AGENT_METRICS_INTERVAL": "0.25",
    "RTS_AGENT_HEARTBEAT_INTERVAL": "2",
    "RTS_AGENT_POLL_INTERVAL": "1",
    "RTS_AGENT_INVENTORY_INTERVAL": "3600",
    "RTS_AGENT_CATCHUP_PAUSE": "0.05",
    "RTS_AGENT_RETRY_CAP": "2",
    "RTS_AGENT_LOG_FORMAT": "json",
}


@pytest.fixture
def install_agent(tmp_path: Path) -> Iterator[Callable[..., AgentProc]]:
    """``rts-agent install`` against a server; returns the agent (not yet running)."""
    agents: list[AgentProc] = []

    def install(server: ApiServer, world: World, *, name: str = "e2e-host", extra_args: list[str] | None = None,
                **env: str) -> AgentProc:
        state_dir = tmp_path / f"agent-{len(agents)}"
        full_env = {**os.environ, **FAST, **env}
        full_env.pop("RTS_AGENT_STATE_DIR", None)
        token = registration_token(server, world, name)
        out = subprocess.run([*AGENT, "--state-dir", str(state_dir), "install", "--server", server.url,
                              "--token", token, *(extra_args or ["--no-systemd"])],
                             env=full_env, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stdout + out.stderr
        agent = AgentProc(state_dir, full_env, tmp_path / f"agent-{len(agents)}.log")
        agents.append(agent)
        return agent

    yield install
    for agent in agents:
        agent.stop(signal.SIGKILL)
        # Shown by pytest only when the test failed: what the agent did is the first clue.
        print(f"--- {agent.log_path.name} (last 60 lines) ---\n{agent.log_tail(60)}")


def metric_times(world: World, agent_id: str) -> list[str]:
    rows = world.query("SELECT to_char(collected_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') AS t "
                       "FROM agent_metrics WHERE agent_device_id = %s ORDER BY collected_at", agent_id)
    return [str(r["t"]) for r in rows]


def spool_times(agent: AgentProc) -> list[str]:
    """collected_at of the samples still in the agent's spool (read-only, as ``status`` does)."""
    import sqlite3

    db = sqlite3.connect(f"file:{agent.state_dir / 'spool.db'}?mode=ro", uri=True)
    try:
        return [str(r[0]) for r in db.execute("SELECT collected_at FROM samples ORDER BY seq")]
    finally:
        db.close()


def portal(server: ApiServer, world: World, user: str = "admin") -> dict[str, str]:
    uid = world.admin_id if user == "admin" else world.approver_id
    return server.headers(server.token("admin", user_id=uid))


def command_state(server: ApiServer, world: World, agent_id: str, command_id: str) -> dict[str, Any]:
    resp = httpx.get(f"{server.url}/api/agents/{agent_id}/commands/{command_id}", headers=portal(server, world),
                     timeout=30)
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


def wait_final(server: ApiServer, world: World, agent_id: str, command_id: str, timeout: float = 30) -> dict[str, Any]:
    def final() -> dict[str, Any] | None:
        cmd = command_state(server, world, agent_id, command_id)
        return cmd if cmd["status"] in ("completed", "failed", "timeout", "cancelled", "rejected") else None

    return dict(wait_for(final, timeout, f"command {command_id} to finish", step=0.2))


def install_with_script(server: ApiServer, token: str, prefix: Path, state: Path,
                        *args: str) -> subprocess.CompletedProcess[str]:
    """The documented one-liner: the served /install.sh on stdin, the token as its argument."""
    script = httpx.get(server.url + "/install.sh", timeout=30).text
    env = {**os.environ, "RTS_AGENT_PREFIX": str(prefix), "RTS_AGENT_STATE_DIR": str(state), "RTS_AGENT_LINK": ""}
    return subprocess.run(["bash", "-s", token, *args], input=script, env=env, capture_output=True, text=True,
                          timeout=300)
