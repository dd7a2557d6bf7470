"""A staged rollout end to end with real agents: three agents installed by /install.sh; the one
the plan puts in the last wave cannot update (its venv loses pip). The canary wave updates the
others for real, the last wave's failure is recorded, the rollout halts, and the broken agent stays
on its old version."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from e2e_support import FAST, AgentProc, World, install_with_script, portal, registration_token, wait_for
from test_update import NEW, OLD, _bumped_source, _reported_version

from tests.fix_api import ApiServer


def test_a_rollout_updates_real_agents_and_halts_on_the_one_that_fails(
        api_factory: Callable[..., ApiServer], world: World, tmp_path: Path) -> None:
    server = api_factory(env={"RTS_ROLLOUT_JOB_SECONDS": "0.5"})
    agents: list[AgentProc] = []
    for name in ("r-one", "r-two", "r-three"):
        prefix, state = tmp_path / name / "venv", tmp_path / name / "state"
        out = install_with_script(server, registration_token(server, world, name), prefix, state, "--no-systemd")
        assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
        agent = AgentProc(state, {**os.environ, **FAST}, tmp_path / f"{name}.log",
                          argv=[str(prefix / "bin" / "python"), "-m", "rts_agent.cli"])
        agents.append(agent)
    source = _bumped_source(tmp_path / "rts-agent-new")
    for agent in agents:
        agent.start()
    try:
        for agent in agents:
            wait_for(lambda a=agent: _reported_version(world, a) == OLD, 60, "every agent's first heartbeat")
        requester, approver = portal(server, world), portal(server, world, "approver")
        resp = httpx.post(f"{server.url}/api/agents/rollouts", headers=requester, timeout=30, json={
            "target_version": NEW, "source": str(source), "business_ids": [str(world.business_id)],
            "canary_percent": 34, "wave_percent": 50, "max_failure_percent": 0, "command_timeout_seconds": 240})
        assert resp.status_code == 201, resp.text
        rid = resp.json()["id"]
        assert resp.json()["status"] == "awaiting_approval"
        assert [w["devices"] for w in resp.json()["progress"]] == [2, 1]  # canary 34% of 3, then the rest
        plan = httpx.get(f"{server.url}/api/agents/rollouts/{rid}", headers=requester, timeout=30).json()
        last = next(d["agent_id"] for d in plan["devices"] if d["wave"] == 1)
        broken = next(a for a in agents if a.agent_id == last)
        for site in (broken.state_dir.parent / "venv" / "lib").glob("python3*/site-packages/pip"):
            shutil.rmtree(site)  # it still runs; it can no longer install anything
        resp = httpx.post(f"{server.url}/api/agents/rollouts/{rid}/approve", headers=approver, json={}, timeout=30)
        assert resp.status_code == 200 and resp.json()["status"] == "running", resp.text

        def rollout() -> dict[str, Any]:
            return dict(httpx.get(f"{server.url}/api/agents/rollouts/{rid}", headers=requester, timeout=30).json())

        halted = wait_for(lambda: (r := rollout())["status"] in ("halted", "completed") and r, 400,
                          "the rollout to halt", step=1.0)
        assert halted["status"] == "halted", halted
        devices = {d["agent_id"]: d for d in halted["devices"]}
        failed = [d for d in devices.values() if d["state"] == "failed"]
        assert [d["agent_id"] for d in failed] == [broken.agent_id], halted
        assert "pip" in (failed[0]["error"] or "").lower(), failed[0]
        updated = [a for a in agents if devices[a.agent_id]["state"] == "succeeded"]
        for agent in updated:  # updated for real: the new version heartbeats
            wait_for(lambda a=agent: _reported_version(world, a) == NEW, 90, "a heartbeat from the new version")
        assert _reported_version(world, broken) == OLD
        # nothing was sent after the failure: devices of later waves are still planned
        assert all(d["state"] in ("succeeded", "failed", "planned") for d in devices.values())
    finally:
        for agent in agents:
            agent.stop()
