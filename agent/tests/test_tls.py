"""The agent sends its token only over TLS, unless the server is on this machine (loopback) or the
operator said ``--insecure``: real ``rts-agent`` processes against a real server, reached once by
its loopback address (accepted) and once by a host name (refused unless insecure)."""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from e2e_support import AGENT, FAST, AgentProc, World, metric_times, registration_token, wait_for
from rts_agent.config import InsecureServer, check_transport

from tests.fix_api import ApiServer

INSTALL_SH = Path(__file__).resolve().parents[1] / "install.sh"


@pytest.mark.parametrize("url", [
    "https://api.example.com", "wss://api.example.com/ws", "http://127.0.0.1:8000", "http://127.8.9.10",
    "http://localhost:8000", "ws://[::1]:8000/ws", "http://[::ffff:127.0.0.1]:80",
])
def test_tls_and_loopback_urls_are_accepted(url: str) -> None:
    check_transport(url, insecure=False)


@pytest.mark.parametrize("url", [
    "http://api.example.com", "ws://api.example.com/ws", "http://10.0.0.5:8000", "http://[fe80::1]",
    "http://localhost.example.com", "http://127.0.0.1.example.com",
])
def test_clear_text_to_another_host_is_refused_unless_insecure(url: str) -> None:
    with pytest.raises(InsecureServer, match=r"not TLS.*--insecure"):
        check_transport(url, insecure=False)
    check_transport(url, insecure=True)


def test_other_schemes_are_refused_even_when_insecure() -> None:
    with pytest.raises(InsecureServer, match="https://"):
        check_transport("ftp://api.example.com", insecure=True)


def _by_name(server: ApiServer) -> str:
    """The server's URL with a host name that resolves to loopback but is not a loopback literal:
    the agent does not resolve names, so to it this is a remote server."""
    name = socket.gethostname()
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(name, None, socket.AF_INET)}
    except OSError:
        addresses = set()
    if name in ("localhost", "") or "127.0.0.1" not in addresses:
        pytest.skip(f"this machine's name {name!r} does not resolve to 127.0.0.1")
    return f"http://{name}:{urlsplit(server.url).port}"


def test_install_over_clear_text_is_refused_without_insecure_and_kept_with_it(
        api_factory: Callable[..., ApiServer], world: World, tmp_path: Path) -> None:
    server = api_factory()
    url = _by_name(server)
    env = {**os.environ, **FAST}
    env.pop("RTS_AGENT_INSECURE", None)
    token = registration_token(server, world, "tls-host")
    state = tmp_path / "state"
    argv = [*AGENT, "--state-dir", str(state), "install", "--server", url, "--token-env", "TOKEN", "--no-systemd"]
    out = subprocess.run(argv, env={**env, "TOKEN": token}, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2, out.stdout + out.stderr
    assert "is not TLS" in out.stderr and "--insecure" in out.stderr and "RTS_AGENT_INSECURE=1" in out.stderr
    # Refused before anything was sent: the token is still unused and no device exists.
    assert not (state / "config.json").exists()
    assert world.query("SELECT id FROM agent_devices WHERE device_name = 'tls-host'") == []

    out = subprocess.run([*argv, "--insecure"], env={**env, "TOKEN": token}, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    agent = AgentProc(state, env, tmp_path / "agent.log")
    assert agent.config["allow_insecure"] is True and agent.config["server_url"] == url
    # The service started later (no flag, no variable) keeps the operator's choice.
    agent.start()
    try:
        wait_for(lambda: len(metric_times(world, agent.agent_id)) >= 2, 30, "metrics over clear text")
    finally:
        agent.stop()


def test_run_refuses_a_clear_text_server_unless_insecure(
        api_factory: Callable[..., ApiServer], world: World, install_agent: Callable[..., AgentProc]) -> None:
    server = api_factory()
    agent = install_agent(server, world)  # http://127.0.0.1: loopback, accepted as it is
    assert agent.config["allow_insecure"] is False
    url = _by_name(server)
    env = {k: v for k, v in agent.env.items() if k != "RTS_AGENT_INSECURE"}
    out = subprocess.run([*AGENT, "--state-dir", str(agent.state_dir), "run"],
                         env={**env, "RTS_AGENT_SERVER_URL": url}, capture_output=True, text=True, timeout=30)
    assert out.returncode == 2 and "is not TLS" in out.stderr, out.stdout + out.stderr
    assert metric_times(world, agent.agent_id) == []
    # A WebSocket URL in clear text to another host is refused the same way.
    out = subprocess.run([*AGENT, "--state-dir", str(agent.state_dir), "run"],
                         env={**env, "RTS_AGENT_WEBSOCKET_URL": url.replace("http", "ws", 1) + "/ws"},
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 2 and "WebSocket URL" in out.stderr, out.stdout + out.stderr

    agent.env = {**env, "RTS_AGENT_SERVER_URL": url}
    agent.start(RTS_AGENT_INSECURE="1")
    wait_for(lambda: len(metric_times(world, agent.agent_id)) >= 2, 30, "metrics with RTS_AGENT_INSECURE=1")


def test_install_script_refuses_clear_text_before_installing_anything(tmp_path: Path) -> None:
    env = {**os.environ, "RTS_AGENT_ALLOW_USER": "1", "RTS_AGENT_PREFIX": str(tmp_path / "venv"),
           "RTS_AGENT_PYTHON": "/nonexistent/python"}
    env.pop("RTS_AGENT_INSECURE", None)
    out = subprocess.run(["bash", str(INSTALL_SH), "AGT-x", "--server", "http://api.example.com"], env=env,
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 1 and "is not TLS" in out.stderr and "--insecure" in out.stderr, out.stderr
    assert not (tmp_path / "venv").exists()
    # Loopback passes this check (and then stops at the missing Python, still before any install).
    out = subprocess.run(["bash", str(INSTALL_SH), "AGT-x", "--server", "http://127.0.0.1:9"], env=env,
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 1 and "cannot create a venv" in out.stderr, out.stderr
    out = subprocess.run(["bash", str(INSTALL_SH), "AGT-x", "--server", "http://api.example.com", "--insecure"],
                         env=env, capture_output=True, text=True, timeout=30)
    assert out.returncode == 1 and "cannot create a venv" in out.stderr, out.stderr
