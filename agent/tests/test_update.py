"""``update_agent`` end to end: an agent installed by /install.sh into its own venv updates itself
to a new version (a real pip install from a source tree whose version was bumped), restarts into
it without changing its PID, and the server sees the new version; a source that does not provide
the requested version changes nothing."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import http.server
import os
import shutil
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from e2e_support import (
    FAST,
    AgentProc,
    World,
    install_with_script,
    portal,
    registration_token,
    wait_final,
    wait_for,
)
from rts_agent.commands import Rejected
from rts_agent.update import normalize, requirement

from tests.fix_api import ApiServer

AGENT_DIR = Path(__file__).resolve().parents[1]
OLD, NEW = "0.1.0", "0.2.0"


@pytest.mark.parametrize(("source", "spec"), [
    ("rts-agent", "rts-agent==1.2.3"),  # an index name is pinned to the requested version
    ("rts_agent-1.2.3-py3-none-any.whl", "rts_agent-1.2.3-py3-none-any.whl"),  # files as they are
    ("/opt/src/rts-agent", "/opt/src/rts-agent"),
    ("https://example.com/rts_agent-1.2.3.tar.gz", "https://example.com/rts_agent-1.2.3.tar.gz"),
])
def test_requirement_pins_names_and_takes_files_and_urls_as_they_are(source: str, spec: str) -> None:
    assert requirement(source, "1.2.3") == spec


@pytest.mark.parametrize("source", ["--index-url=https://evil.example", "rts-agent --pre", "-e."])
def test_requirement_refuses_pip_options(source: str) -> None:
    with pytest.raises(Rejected, match=r"params\.source"):
        requirement(source, "1.2.3")


def test_versions_compare_as_pip_reports_them() -> None:
    assert normalize("0.2.0-rc1") == normalize("0.2.0rc1")
    assert normalize("1.0.0") != normalize("1.0.0.post1")


def _bumped_source(dest: Path, version: str = NEW) -> Path:
    """A copy of the agent's source tree that builds as ``version``."""
    shutil.copytree(AGENT_DIR, dest, ignore=shutil.ignore_patterns("tests", "__pycache__", "*.egg-info", "build"))
    for rel, old, new in (("pyproject.toml", f'version = "{OLD}"', f'version = "{version}"'),
                          ("src/rts_agent/__init__.py", f'__version__ = "{OLD}"', f'__version__ = "{version}"')):
        path = dest / rel
        text = path.read_text()
        assert old in text, f"{rel} no longer says {old!r}: update this test's OLD"
        path.write_text(text.replace(old, new))
    return dest


def _broken_source(dest: Path, version: str) -> Path:
    """A release that installs fine but cannot start: its runner module raises on import."""
    _bumped_source(dest, version)
    runner = dest / "src" / "rts_agent" / "runner.py"
    runner.write_text(runner.read_text() + '\nraise ImportError("this release is broken")\n')
    return dest


def _command(server: ApiServer, world: World, agent: AgentProc, params: dict[str, Any]) -> dict[str, Any]:
    """Create an update_agent command, have the second admin approve it, wait for its end."""
    resp = httpx.post(f"{server.url}/api/agents/{agent.agent_id}/commands", headers=portal(server, world),
                      json={"command_type": "update_agent", "params": params, "timeout_seconds": 240}, timeout=30)
    assert resp.status_code == 201, resp.text
    cid = resp.json()["id"]
    resp = httpx.post(f"{server.url}/api/agents/{agent.agent_id}/commands/{cid}/approve",
                      headers=portal(server, world, "approver"), json={}, timeout=30)
    assert resp.status_code == 200, resp.text
    return wait_final(server, world, agent.agent_id, cid, timeout=240)


def _reported_version(world: World, agent: AgentProc) -> str:
    rows = world.query("SELECT agent_version FROM agent_devices WHERE id = %s", agent.agent_id)
    return str(rows[0]["agent_version"])


def test_update_agent_installs_the_version_and_restarts_into_it(
        api_factory: Callable[..., ApiServer], world: World, tmp_path: Path) -> None:
    server = api_factory()  # installs the agent wheel this server serves
    prefix, state = tmp_path / "venv", tmp_path / "state"
    out = install_with_script(server, registration_token(server, world, "updatable"), prefix, state,
                              "--no-systemd")
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    agent = AgentProc(state, {**os.environ, **FAST}, tmp_path / "agent.log",
                      argv=[str(prefix / "bin" / "python"), "-m", "rts_agent.cli"])
    new_source = _bumped_source(tmp_path / "rts-agent-new")
    agent.start()
    try:
        wait_for(lambda: _reported_version(world, agent) == OLD, 30, "the agent's first heartbeat")
        pid = agent.proc.pid if agent.proc else 0

        # A source that builds another version than the one asked for: refused before installing.
        wrong = _command(server, world, agent, {"target_version": "0.3.0", "source": str(new_source)})
        assert wrong["status"] == "failed", wrong
        assert f"provides rts-agent {NEW}, not 0.3.0; nothing installed" in wrong["error_message"]
        assert agent.last_status().get("version") == OLD

        done = _command(server, world, agent, {"target_version": NEW, "source": str(new_source)})
        assert done["status"] == "completed", done
        assert f"installed rts-agent {NEW} (was {OLD})" in done["stdout"]
        wait_for(lambda: _reported_version(world, agent) == NEW, 60, "a heartbeat from the new version")
        assert agent.proc is not None and agent.proc.poll() is None and agent.proc.pid == pid  # execv: same PID
        wait_for(lambda: agent.last_status().get("version") == NEW, 30, "status.json from the new version")
        status = agent.status()
        assert status["installed_version"] == NEW and status["last_status"]["version"] == NEW

        # A broken release: installed, fails the import check, the running version's files go back.
        broken = _command(server, world, agent, {"target_version": "0.3.0",
                                                 "source": str(_broken_source(tmp_path / "broken", "0.3.0"))})
        assert broken["status"] == "failed", broken
        assert "this release is broken" in broken["error_message"], broken
        assert f"rolled back to rts-agent {NEW}" in broken["error_message"], broken
        assert agent.proc.poll() is None and agent.proc.pid == pid  # no restart into it
        assert agent.status()["installed_version"] == NEW  # what the next start would run
        probe = subprocess.run([str(prefix / "bin" / "python"), "-c", "import rts_agent.runner"],
                               capture_output=True, text=True, timeout=60)
        assert probe.returncode == 0, probe.stderr
        listed = subprocess.run([str(prefix / "bin" / "python"), "-m", "pip", "list", "--format", "json"],
                                capture_output=True, text=True, timeout=60).stdout
        assert f'"name": "rts-agent", "version": "{NEW}"' in listed

        # Asking again for the version it runs is a no-op that succeeds.
        again = _command(server, world, agent, {"target_version": NEW, "source": str(new_source)})
        assert again["status"] == "completed" and "already running rts-agent 0.2.0" in again["stdout"], again
    finally:
        agent.stop()
    log = agent.log_path.read_text()
    assert '"agent.updated"' in log and '"agent.restarting"' in log


@contextlib.contextmanager
def _serving(directory: Path) -> Iterator[str]:
    """A plain file server on loopback (a mirror someone tampered with)."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(directory))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_update_agent_refuses_a_package_whose_hash_differs_from_the_published_one(
        api_factory: Callable[..., ApiServer], world: World, install_agent: Callable[..., AgentProc],
        tmp_path: Path) -> None:
    server = api_factory()
    agent = install_agent(server, world)
    package = httpx.get(server.url + "/agent/package", timeout=30).json()
    genuine = httpx.get(package["url"], timeout=30).content
    assert hashlib.sha256(genuine).hexdigest() == package["sha256"]
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    name = f"rts_agent-{NEW}-py3-none-any.whl"
    # The genuine wheel with one byte changed: what a compromised mirror or proxy would serve.
    tampered = bytearray(genuine)
    tampered[len(tampered) // 2] ^= 0x01
    (mirror / name).write_bytes(bytes(tampered))
    agent.start()
    try:
        wait_for(lambda: _reported_version(world, agent) == OLD, 30, "the agent's first heartbeat")
        pid = agent.proc.pid if agent.proc else 0
        with _serving(mirror) as url:
            bad = _command(server, world, agent, {"target_version": NEW, "source": f"{url}/{name}",
                                                  "sha256": package["sha256"]})
        assert bad["status"] == "failed", bad
        message = bad["error_message"]
        assert "SHA-256 mismatch" in message and hashlib.sha256(tampered).hexdigest() in message, message
        assert package["sha256"] in message and "nothing installed" in message, message
        # A local file is checked the same way.
        bad = _command(server, world, agent, {"target_version": NEW, "source": str(mirror / name),
                                              "sha256": package["sha256"]})
        assert bad["status"] == "failed" and "SHA-256 mismatch" in bad["error_message"], bad

        # The server's own wheel: the server stores the hash it publishes with the command, the
        # agent downloads, verifies, and only then asks pip (which finds the version is not the
        # one requested: refused before installing anything, and the hash was checked first).
        cmd = _command(server, world, agent, {"target_version": NEW, "source": package["url"]})
        assert cmd["params"]["sha256"] == package["sha256"]
        assert cmd["status"] == "failed", cmd
        assert f"sha256 {package['sha256']} verified" in cmd["error_message"], cmd
        assert f"provides rts-agent {OLD}, not {NEW}; nothing installed" in cmd["error_message"], cmd

        assert agent.proc is not None and agent.proc.poll() is None and agent.proc.pid == pid
        assert _reported_version(world, agent) == OLD
    finally:
        agent.stop()
