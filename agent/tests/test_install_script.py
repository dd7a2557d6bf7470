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
    assert "@@" not in script.split("case \"$SOURCE\"")[0]

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
