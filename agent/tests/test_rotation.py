"""Agent token rotation with a real agent: samples keep flowing through the switch, none is lost,
the new token is saved before it is used (a restart keeps it), and the old one stops working
once the grace period is over."""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Callable

import httpx
from e2e_support import AgentProc, World, metric_times, portal, spool_times, wait_for

from tests.fix_api import ApiServer

GRACE = 8


def test_a_running_agent_switches_tokens_without_losing_a_sample(
        api_factory: Callable[..., ApiServer], world: World, install_agent: Callable[..., AgentProc]) -> None:
    server = api_factory(env={"RTS_AGENT_TOKEN_GRACE_SECONDS": str(GRACE)})
    agent = install_agent(server, world)
    old = agent.config["agent_token"]
    commands = f"{server.url}/api/agents/{agent.agent_id}/commands"

    def works(token: str) -> bool:
        return httpx.get(commands, headers={"Authorization": f"Bearer {token}"}, timeout=30).status_code == 200

    # Heartbeats a minute apart: the new token arriving within seconds shows the socket's push
    # (``rotate_token``) made the agent heartbeat at once.
    agent.start(RTS_AGENT_HEARTBEAT_INTERVAL="60")
    wait_for(lambda: agent.last_status().get("websocket") == "connected", 30, "the agent's socket")
    time.sleep(1)  # past the first heartbeat, made at start
    wait_for(lambda: len(metric_times(world, agent.agent_id)) >= 4, 30, "metrics before the rotation")
    resp = httpx.post(f"{server.url}/api/agents/{agent.agent_id}/rotate-token", headers=portal(server, world),
                      timeout=30)
    assert resp.status_code == 202, resp.text

    new = wait_for(lambda: (t := agent.config["agent_token"]) != old and t, 15, "the new token saved")
    assert new.startswith("rtsa_")
    assert stat.S_IMODE(os.stat(agent.state_dir / "config.json").st_mode) == 0o600
    wait_for(lambda: world.query("SELECT agent_token_acked_at FROM agent_devices WHERE id = %s",
                                 agent.agent_id)[0]["agent_token_acked_at"], 20, "the agent's acknowledgement")
    assert works(new)
    expires = world.query("SELECT agent_token_previous_expires_at AS t FROM agent_devices WHERE id = %s",
                          agent.agent_id)[0]["t"]
    if time.time() < expires.timestamp() - 1:
        assert works(old)  # still within the grace

    # Past the grace: the old token is refused, the agent goes on with the new one.
    time.sleep(max(0.0, expires.timestamp() - time.time()) + 0.5)
    assert not works(old)
    after = len(metric_times(world, agent.agent_id))
    wait_for(lambda: len(metric_times(world, agent.agent_id)) >= after + 8, 30, "metrics after the grace")
    status = agent.last_status()
    assert status["credential_rejected"] is False and not status["last_send_error"], status
    assert agent.stop() == 0

    # No sample lost or doubled: everything collected is in the database or still in the spool.
    stored, spooled = metric_times(world, agent.agent_id), spool_times(agent)
    assert len(stored) == len(set(stored)) and not set(stored) & set(spooled)
    assert len(stored) + len(spooled) == agent.spool()["spooled_total"]
    log = agent.log_path.read_text()
    assert '"agent.token_rotated"' in log and "credential_rejected" not in log and " 401 " not in log
    assert log.count('"socket.connected"') >= 2  # it reconnected with the new token

    # A restart runs on the saved token, and its socket too.
    before = len(metric_times(world, agent.agent_id))
    agent.start()
    wait_for(lambda: agent.last_status().get("websocket") == "connected", 30, "the socket with the new token")
    wait_for(lambda: len(metric_times(world, agent.agent_id)) >= before + 4, 30, "metrics after a restart")
    assert agent.config["agent_token"] == new
