"""``curl {server}/install.sh | sudo bash -s AGT-…``: the server serves the script with its URL
filled in; the script builds a venv, installs the agent and registers it (real pip, real server)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from collections.abc import Callable
from pathlib import Path

import httpx
from e2e_support import World, install_with_script, registration_token
from rts_agent import __version__

from tests.fix_api import ApiServer


def test_install_script_served_by_the_api_registers_an_agent(
        api_factory: Callable[..., ApiServer], world: World, tmp_path: Path) -> None:
    server = api_factory()  # the default source: the agent wheel this server serves
    resp = httpx.get(server.url + "/install.sh", timeout=30)
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/x-shellscript")
    script = resp.text
    assert f'SERVER="${{RTS_SERVER:-{server.url}}}"' in script
    wheel_url = httpx.get(server.url + "/agent/package", timeout=30).json()["url"]
    assert wheel_url == f"{server.url}/agent/rts_agent-{__version__}-py3-none-any.whl"
    assert f'SOURCE="${{RTS_AGENT_SOURCE:-{wheel_url}}}"' in script
    assert not any(f"@@{p}@@" in script for p in ("SERVER_URL", "AGENT_SOURCE", "AGENT_SHA256"))

    state = tmp_path / "state"
    token = registration_token(server, world, "installed-by-script")
    out = install_with_script(server, token, tmp_path / "venv", state, "--no-systemd", "--services", "cron")
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert "registered agent" in out.stdout
    config = json.loads((state / "config.json").read_text())
    assert config["server_url"] == server.url and config["monitored_services"] == ["cron"]
    assert stat.S_IMODE(os.stat(state / "config.json").st_mode) == 0o600
    rows = world.query("SELECT device_name, business_id FROM agent_devices WHERE id = %s", config["agent_id"])
    assert rows == [{"device_name": "installed-by-script", "business_id": world.business_id}]
    status = subprocess.run([str(tmp_path / "venv" / "bin" / "rts-agent"), "--state-dir", str(state), "status",
                             "--json"], capture_output=True, text=True, timeout=60)
    assert status.returncode == 3 and json.loads(status.stdout)["installed"] is True  # installed, not running
    assert json.loads(status.stdout)["installed_version"] == __version__

    # A used token cannot enrol a second machine.
    out = install_with_script(server, token, tmp_path / "venv", tmp_path / "other", "--no-systemd")
    assert out.returncode != 0 and "registration failed" in out.stderr


def test_windows_install_command_points_at_a_served_powershell_script(
        api_factory: Callable[..., ApiServer], world: World) -> None:
    """The Windows one-liner of the registration answer fetches {url}/install.ps1: it must exist and
    carry this server's URL. (Running it needs Windows, which this project cannot test.)"""
    server = api_factory()
    admin = server.token("admin")
    resp = httpx.post(server.url + "/api/agents/registration-tokens", headers=server.headers(admin),
                      json={"business_id": str(world.business_id), "device_name": "win-box"}, timeout=30)
    assert resp.status_code in (200, 201), resp.text
    command = resp.json()["install_command_windows"]
    assert f"{server.url}/install.ps1" in command and resp.json()["token"] in command
    script = httpx.get(server.url + "/install.ps1", timeout=30)
    assert script.status_code == 200
    assert f'[string]$Server = "{server.url}"' in script.text
    assert "Register-ScheduledTask" in script.text and "@@SERVER_URL@@" not in script.text


def test_the_script_installs_only_what_the_server_published(
        api_factory: Callable[..., ApiServer], world: World, tmp_path: Path) -> None:
    """The served script carries the wheel's SHA-256 and refuses a download that does not match;
    run on its own it asks the server which wheel and hash (never a bare name from a public index);
    the token can come from the environment, and never reaches a command line."""
    server = api_factory()
    package = httpx.get(server.url + "/agent/package", timeout=30).json()
    script = httpx.get(server.url + "/install.sh", timeout=30).text
    assert f'SHA256="${{RTS_AGENT_SHA256:-{package["sha256"]}}}"' in script
    env = {**os.environ, "RTS_AGENT_PREFIX": str(tmp_path / "venv"), "RTS_AGENT_LINK": ""}

    # a wheel that is not the published one: refused before pip runs, nothing registered
    token = registration_token(server, world, "tampered")
    out = subprocess.run(["bash", "-s", token, "--no-systemd"], input=script, capture_output=True, text=True,
                         timeout=300, env={**env, "RTS_AGENT_STATE_DIR": str(tmp_path / "s1"),
                                           "RTS_AGENT_SHA256": "0" * 64})
    assert out.returncode != 0 and "does not match the SHA-256" in out.stderr, out.stderr[-2000:]
    assert not (tmp_path / "s1" / "config.json").exists()
    assert world.query("SELECT count(*) AS n FROM agent_devices WHERE device_name = 'tampered'") == [{"n": 0}]

    # the checkout's own script (no server URL or source filled in), the token from the environment
    raw = Path(__file__).resolve().parents[1] / "install.sh"
    token = registration_token(server, world, "standalone")
    out = subprocess.run(["bash", str(raw), "--server", server.url, "--no-systemd"], capture_output=True, text=True,
                         timeout=300,
                         env={**env, "RTS_AGENT_STATE_DIR": str(tmp_path / "s2"), "RTS_AGENT_TOKEN": token})
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert token not in out.stdout + out.stderr
    config = json.loads((tmp_path / "s2" / "config.json").read_text())
    assert world.query("SELECT device_name FROM agent_devices WHERE id = %s", config["agent_id"]) == [
        {"device_name": "standalone"}]
