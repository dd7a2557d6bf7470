"""The operator commands against the real local server (or DATABASE_URL when set)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import psycopg


def rts(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rts_monitor.cli", *args], capture_output=True, text=True, timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def test_db_url_connects_and_shows_the_server_edition() -> None:
    res = rts("db", "url")
    assert res.returncode == 0, res.stderr
    url = res.stdout.strip()
    if os.environ.get("DATABASE_URL"):
        assert url == os.environ["DATABASE_URL"]
    with psycopg.connect(url) as conn:
        assert conn.execute("SHOW timescaledb.license").fetchone() is not None


def test_db_up_is_idempotent_and_fast_when_running() -> None:
    if os.environ.get("DATABASE_URL"):
        return  # the local route is not in use: nothing of it to check (asserted in the test above)
    first = rts("db", "up")  # brings the schema up to date if a migration was just added
    assert first.returncode == 0, first.stderr
    started = time.monotonic()
    res = rts("db", "up")
    elapsed = time.monotonic() - started
    assert res.returncode == 0, res.stderr
    assert "already running" in res.stderr
    assert "applied=0" in res.stderr
    assert res.stdout.strip() == rts("db", "url").stdout.strip()
    assert elapsed < 15
    status = rts("db", "status")
    assert status.returncode == 0
    edition = next(line.split()[1] for line in status.stdout.splitlines() if line.startswith("edition"))
    license_name = {"tsl": "timescale", "apache": "apache", "postgres": "None"}[edition]
    assert any(line.split() == ["running", "True"] for line in status.stdout.splitlines())
    assert any(line.split() == ["license", license_name] for line in status.stdout.splitlines())


def test_migrate_status_lists_every_file_applied(db_url: str) -> None:
    res = rts("db", "migrate", "--status", env={"DATABASE_URL": db_url})
    assert res.returncode == 0, res.stderr
    lines = [line for line in res.stdout.splitlines() if line.strip()]
    assert lines and all(line.startswith("applied") for line in lines)
    assert any("0003_agent_metrics_hypertable.sql" in line for line in lines)


def test_config_documents_every_variable() -> None:
    res = rts("config")
    assert res.returncode == 0
    for name in ("DATABASE_URL", "RTS_PORT", "RTS_JWT_SECRET", "RTS_DB_PORT"):
        assert name in res.stdout


def test_migrate_against_server_without_database_fails_clearly(server_url: str) -> None:
    from tests.fix_db import with_dbname

    res = rts("db", "migrate", env={"DATABASE_URL": with_dbname(server_url, "no_such_db_here")})
    assert res.returncode != 0
    assert "no_such_db_here" in (res.stderr + res.stdout)
