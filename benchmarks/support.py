"""What every benchmark script needs: progress lines, a scratch database, a real API process,
percentiles. One copy here, imported by the scripts (run as ``python benchmarks/<name>.py``)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import psycopg


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
    full_env = {**os.environ, "DATABASE_URL": url, "RTS_PORT": str(port), "RTS_HOST": "127.0.0.1",
                "RTS_STATE_DIR": str(log_dir / f"state-{port}"), "RTS_LOG_LEVEL": "WARNING", **(env or {})}
    log_path = log_dir / f"server-{port}.log"
    log = open(log_path, "wb")  # noqa: SIM115 - the child keeps writing after we return
    proc = subprocess.Popen([sys.executable, "-m", "rts_monitor.cli", "serve", "--no-migrate"], env=full_env,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}: {log_path.read_text()[-2000:]}")
        try:
            if httpx.get(base + "/health", timeout=2).status_code == 200:
                return proc, base
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)
    raise RuntimeError(f"server did not become healthy in {wait:.0f}s; see {log_path}")
