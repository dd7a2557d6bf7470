"""``rts-monitor demo`` end to end: API + scheduler, a real rts-agent and a simulated fleet, all as
real processes against a fresh database; a bounded run (``--duration``) then the same again."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import psycopg
from psycopg.rows import dict_row

from tests.fix_api import free_port


def run_demo(db_url: str, state: Path, port: int, *args: str, timeout: float = 150) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": db_url, "RTS_STATE_DIR": str(state), "RTS_ALERT_EVALUATE_SECONDS": "3"}
    env.pop("RTS_JWT_SECRET", None)
    return subprocess.run([sys.executable, "-m", "rts_monitor.cli", "demo", "--port", str(port), *args],
                          env=env, capture_output=True, text=True, timeout=timeout)


def test_demo_runs_a_real_agent_and_a_fleet_that_reports_and_alerts(db_url: str, tmp_path: Path) -> None:
    port = free_port()
    out = run_demo(db_url, tmp_path, port, "--fleet", "8", "--duration", "30", "--interval", "1",
                   "--backfill-hours", "1")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    text = out.stdout
    assert "rts-monitor demo is running" in text
    assert f"http://127.0.0.1:{port}/api" in text
    token = (tmp_path / "demo" / "admin_token").read_text()
    assert re.fullmatch(r"[\w-]+\.[\w-]+\.[\w-]+", token) and token in text
    assert "curl -s -H" in text and "/metrics/history" in text
    assert "samples sent" in text

    with psycopg.connect(db_url, row_factory=dict_row) as conn:
        devices = conn.execute(
            "SELECT d.id, d.hostname, d.agent_version, count(m.*) AS samples "
            "FROM agent_devices d LEFT JOIN agent_metrics m ON m.agent_device_id = d.id "
            "GROUP BY d.id ORDER BY d.hostname").fetchall()
        assert len(devices) == 9, devices
        assert all(d["samples"] > 12 for d in devices), devices  # 1 h backfill = 12 samples + live ones
        real = [d for d in devices if d["hostname"] == socket.gethostname()]
        assert len(real) == 1 and real[0]["agent_version"] == "0.1.0" and real[0]["samples"] >= 10
        inventory = conn.execute("SELECT count(*) AS n FROM agent_software_inventory WHERE agent_device_id = %s "
                                 "AND is_active", (real[0]["id"],)).fetchone()
        assert inventory is not None and inventory["n"] > 10
        rules = conn.execute("SELECT count(*) AS n FROM agent_alerts WHERE NOT soft_delete").fetchone()
        assert rules is not None and rules["n"] == 5 * 5
        alerts = conn.execute("SELECT a.alert_type, h.status FROM agent_alert_history h "
                              "JOIN agent_alerts a ON a.id = h.agent_alert_id").fetchall()
        assert any(a["alert_type"] == "disk_full" for a in alerts), alerts

    # Everything it started is gone: the port is free again.
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))

    # A second run continues the same world: no new businesses, agents or rules.
    out = run_demo(db_url, tmp_path, port, "--fleet", "8", "--duration", "6", "--interval", "1",
                   "--backfill-hours", "0")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "registering" not in out.stdout and "real agent installed" not in out.stdout
    with psycopg.connect(db_url, row_factory=dict_row) as conn:
        counts = conn.execute("SELECT (SELECT count(*) FROM agent_devices) AS devices, "
                              "(SELECT count(*) FROM businesses) AS businesses, "
                              "(SELECT count(*) FROM agent_alerts) AS rules").fetchone()
        assert counts == {"devices": 9, "businesses": 5, "rules": 25}

    # --fresh retires the old simulated fleet through the API and registers a new one.
    out = run_demo(db_url, tmp_path, port, "--fleet", "3", "--duration", "3", "--interval", "1",
                   "--backfill-hours", "0", "--fresh", "--no-agent")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "deleted the 8 simulated agents" in out.stdout
    with psycopg.connect(db_url, row_factory=dict_row) as conn:
        rows = conn.execute("SELECT soft_delete, agent_token_revoked_at IS NOT NULL AS revoked, count(*) AS n "
                            "FROM agent_devices GROUP BY 1, 2 ORDER BY 1").fetchall()
        assert rows == [{"soft_delete": False, "revoked": False, "n": 4},
                        {"soft_delete": True, "revoked": True, "n": 8}], rows
