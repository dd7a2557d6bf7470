"""What every benchmark script needs: progress lines, a scratch database, a real API process,
percentiles. One copy here, imported by the scripts (run as ``python benchmarks/<name>.py``)."""

from __future__ import annotations

import asyncio
import os
import resource
import socket
import subprocess
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit, urlunsplit

import psycopg

from rts_monitor.devtools import apiprocess

T = TypeVar("T")
# TimescaleDB's own jobs: continuous aggregate refresh, compression, retention (not telemetry)
_POLICIES = "FROM timescaledb_information.jobs WHERE proc_name LIKE 'policy%' AND proc_name <> 'policy_telemetry'"


def say(msg: str) -> None:
    """A timestamped progress line (benchmarks run for minutes: show that they move)."""
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def with_dbname(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path="/" + name))


def create_db(server: str, name: str) -> str:
    with psycopg.connect(with_dbname(server, "postgres"), autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    return with_dbname(server, name)


def drop_db(server: str, name: str) -> None:
    with psycopg.connect(with_dbname(server, "postgres"), autocommit=True) as c:
        c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def raise_open_files() -> int:
    """The soft open-files limit raised to the hard one (thousands of sockets); returns it. Child
    processes started afterwards inherit it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return int(soft)


def rss_bytes(pid: int) -> int:
    """Resident set size of a process (``VmRSS`` in /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pct(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) by nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def start_api(url: str, log_dir: Path, env: dict[str, str] | None = None,
              wait: float = 60, port: int | None = None) -> tuple[subprocess.Popen[bytes], str]:
    """``rts-monitor serve`` on a free loopback port (or ``port``: a restart on the same address)
    against ``url``; returns (process, base URL) once ``/health`` answers. ``env`` adds or overrides
    settings (RTS_JWT_SECRET, workers, ...). The log is appended to, so a restart keeps the first."""
    port = port or free_port()
    full_env = {**os.environ, "RTS_ENV": "development", "DATABASE_URL": url, "RTS_PORT": str(port),
                "RTS_HOST": "127.0.0.1", "RTS_STATE_DIR": str(log_dir / f"state-{port}"), "RTS_LOG_LEVEL": "WARNING",
                **(env or {})}
    log_path = log_dir / f"server-{port}.log"
    proc = apiprocess.spawn(full_env, log_path, append=True)
    base = f"http://127.0.0.1:{port}"
    try:
        apiprocess.wait_healthy(proc, base, wait)
    except apiprocess.ApiStartError as exc:
        apiprocess.stop(proc, timeout=5)
        raise RuntimeError(f"server {exc}: {log_path.read_text()[-2000:]}") from None
    return proc, base


def pause_policies(url: str, wait: float = 600) -> int:
    """Pause TimescaleDB's policy jobs and wait until none of them is still running; returns how
    many were paused (0 without TimescaleDB). For a benchmark that refreshes the tiers or compresses
    by hand: a refresh by hand that meets a policy's refresh of the same tier fails ("concurrent
    refresh"), and a job running mid-measurement shares the cores. Pausing does not stop a run in
    progress (on a new database the first runs start right after the migrations), hence the wait."""
    with psycopg.connect(url, autocommit=True) as c:
        # policies (and alter_job) exist on the timescale license only; apache and postgres have none
        if c.execute("SELECT current_setting('timescaledb.license', true)").fetchone() != ("timescale",):
            return 0
        paused = c.execute(f"SELECT alter_job(job_id, scheduled => false) {_POLICIES}").rowcount
        running = ("SELECT count(*) FROM timescaledb_information.job_stats "
                   f"WHERE job_status = 'Running' AND job_id IN (SELECT job_id {_POLICIES})")
        deadline = time.monotonic() + wait
        while c.execute(running).fetchone() != (0,):
            if time.monotonic() > deadline:
                raise RuntimeError(f"TimescaleDB policy jobs still running after {wait:.0f} s")
            time.sleep(0.5)
    return paused


async def retry_concurrent_refresh(work: Callable[[], Awaitable[T]], wait: float = 600) -> T:
    """``work`` (a refresh of the continuous aggregates by hand) again until it does not meet a
    policy job refreshing the same tier (TimescaleDB refuses two refreshes of one window: "concurrent
    refresh"; the 5-minute tier's policy runs every minute). Where the policies keep running, as in
    production; what the job materialises is what ours would, so the end state is the same."""
    deadline = time.monotonic() + wait
    while True:
        try:
            return await work()
        except psycopg.errors.LockNotAvailable as exc:
            if "concurrent refresh" not in str(exc) or time.monotonic() > deadline:
                raise
            say("  a TimescaleDB policy job is refreshing the same tier: again in 2 s")
            await asyncio.sleep(2)
