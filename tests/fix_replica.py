"""A streaming hot standby of the server under test, made once per session as ``rts-monitor db up
--replica`` makes it (``devtools/standby.py``: pg_basebackup of the local server, same edition and
binaries), for the read-replica tests (``tests/test_replicas.py``). Stopped at the end of the
session unless it was already running.

Helpers for the drills: ``kill_standby`` (SIGKILL of its postmaster, as a crash), ``restart_standby``
and ``standby_sql`` (a statement on the standby, e.g. ``pg_wal_replay_pause()``).
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator

import psycopg
import pytest

from rts_monitor.core.settings import Settings
from rts_monitor.devtools import standby
from tests.fix_db import with_dbname


@pytest.fixture(scope="session")
def standby_url() -> Iterator[str]:
    """DSN of the standby (any database on it: ``with_dbname`` picks a test's own)."""
    if os.environ.get("DATABASE_URL"):
        pytest.skip("the standby is made of this checkout's local server; DATABASE_URL points elsewhere")
    settings = Settings.from_env()
    was_running = standby.pid(settings) is not None
    url = standby.up(settings)
    yield url
    standby_sql(url, "SELECT pg_wal_replay_resume()")  # whatever a failed test left paused
    if not was_running:
        standby.down(settings)


def standby_sql(url: str, sql: str) -> None:
    with psycopg.connect(with_dbname(url, "postgres"), autocommit=True, connect_timeout=5) as conn:
        conn.execute(sql)


def kill_standby() -> int:
    pid = standby.pid(Settings.from_env())
    assert pid is not None, "the standby is not running"
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while standby.pid(Settings.from_env()) is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    return pid


def restart_standby() -> None:
    standby.up(Settings.from_env())
