"""What every benchmark script needs: progress lines, a scratch database, a real API process,
percentiles. One copy here, imported by the scripts (run as ``python benchmarks/<name>.py``)."""

from __future__ import annotations

import os
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


def pct(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) by nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def start_api(url: str, log_dir: Path, env: dict[str, str] | None = None,
              wait: float = 60) -> tuple[subprocess.Popen[bytes], str]:
    """``rts-monitor serve`` on a free loopback port against ``url``; returns (process, base URL)
    once ``/health`` answers. ``env`` adds or overrides settings (RTS_JWT_SECRET, workers, ...)."""
    port = free_port()
    full_env = {**os.environ, "RTS_ENV": "development", "DATABASE_URL": url, "RTS_PORT": str(port),
                "RTS_HOST": "127.0.0.1", "RTS_STATE_DIR": str(log_dir / f"state-{port}"), "RTS_LOG_LEVEL": "WARNING",
                **(env or {})}
    log_path = log_dir / f"server-{port}.log"
    proc = apiprocess.spawn(full_env, log_path)
    base = f"http://127.0.0.1:{port}"
    try:
        apiprocess.wait_healthy(proc, base, wait)
    except apiprocess.ApiStartError as exc:
        apiprocess.stop(proc, timeout=5)
        raise RuntimeError(f"server {exc}: {log_path.read_text()[-2000:]}") from None
    return proc, base
