"""What every benchmark script needs: progress lines, a scratch database, a real API process,
percentiles. One copy here, imported by the scripts (run as ``python benchmarks/<name>.py``)."""

from __future__ import annotations

import os
import resource
import socket
import subprocess
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg

from rts_monitor.devtools import apiprocess


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
