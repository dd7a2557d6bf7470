"""API fixtures: real ``rts-monitor serve`` processes on free ports against a test database.

``api`` is one server for the whole session on its own database (tests isolate themselves by
creating their own businesses); ``api_factory`` starts extra servers with their own settings
(two-instance tests, a server to SIGKILL, a small queue for the 503 path) and stops them after.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import pytest

from rts_monitor.auth import portal
from rts_monitor.auth.principal import Role
from rts_monitor.core.settings import Settings
from rts_monitor.devtools import apiprocess
from tests.fix_db import TEST_JWT_SECRET, clone_template, drop_database


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ApiServer:
    url: str
    db_url: str
    port: int
    proc: subprocess.Popen[bytes]
    log_path: Path
    settings: Settings
    env: dict[str, str] = field(default_factory=dict)

    def token(self, role: Role | str, *, business_id: UUID | None = None,
              user_id: UUID | None = None, ttl_seconds: int = 3600) -> str:
        return portal.mint(self.settings, role=role, business_id=business_id, user_id=user_id,
                           ttl_seconds=ttl_seconds)

    def headers(self, token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    def client(self, **kwargs: Any) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, timeout=30, **kwargs)

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            self.proc.wait(timeout=30)

    def stop(self, timeout: float = 30) -> int:
        """Graceful stop (SIGTERM, as systemd would), waiting for the drain."""
        return apiprocess.stop(self.proc, timeout)


def start_server(db_url: str, log_dir: Path, *, env: dict[str, str] | None = None,
                 workers: int = 1, wait: float = 60) -> ApiServer:
    port = free_port()
    state_dir = log_dir / f"state-{port}"
    state_dir.mkdir(parents=True, exist_ok=True)
    full_env = dict(os.environ)
    full_env.update({
        "DATABASE_URL": db_url,
        "RTS_JWT_SECRET": TEST_JWT_SECRET,
        "RTS_HOST": "127.0.0.1",
        "RTS_PORT": str(port),
        "RTS_WORKERS": str(workers),
        "RTS_STATE_DIR": str(state_dir),
        "RTS_LOG_FORMAT": "json",
        "RTS_LOG_LEVEL": "INFO",
        # Every test client is 127.0.0.1 and many tests fail credentials on purpose: one shared
        # address limit would turn later tests' valid requests into 429s. test_security sets its own.
        "RTS_AUTH_FAILURES_PER_ADDRESS": "1000000",
    })
    full_env.update(env or {})
    log_path = log_dir / f"server-{port}.log"
    proc = apiprocess.spawn(full_env, log_path)
    settings = Settings.from_env(full_env)
    server = ApiServer(f"http://127.0.0.1:{port}", db_url, port, proc, log_path, settings, full_env)
    try:
        apiprocess.wait_healthy(proc, server.url, wait)
    except apiprocess.ApiStartError as exc:
        server.kill()
        raise RuntimeError(f"server {exc}:\n{server.log_tail()}") from None
    return server


@pytest.fixture(scope="session")
def api_db(server_url: str, template_db: str) -> Iterator[str]:
    name, url = clone_template(server_url, template_db, label="api")
    yield url
    drop_database(server_url, name)


@pytest.fixture(scope="session")
def api(api_db: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    """One real API server for the session."""
    server = start_server(api_db, tmp_path_factory.mktemp("api"))
    yield server
    server.stop()


@pytest.fixture
def api_factory(tmp_path: Path, db_url: str) -> Iterator[Callable[..., ApiServer]]:
    """Start more servers (default: on this test's own database); all stopped at teardown."""
    started: list[ApiServer] = []

    def start(*, db: str | None = None, env: dict[str, str] | None = None, workers: int = 1) -> ApiServer:
        server = start_server(db or db_url, tmp_path, env=env, workers=workers)
        started.append(server)
        return server

    yield start
    for server in started:
        server.kill()


@pytest.fixture
async def client(api: ApiServer) -> AsyncIterator[httpx.AsyncClient]:
    async with api.client() as c:
        yield c


@pytest.fixture
async def api_conn(api_db: str) -> AsyncIterator[Any]:
    """An autocommit connection to the session API server's database (for factories, checks)."""
    import psycopg
    from psycopg.rows import dict_row

    async with await psycopg.AsyncConnection.connect(api_db, autocommit=True, row_factory=dict_row) as c:
        yield c
