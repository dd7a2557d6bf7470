"""``rts-monitor serve`` as a child process: what the demo, the tests and the benchmarks start.

One copy of starting it in its own process group, waiting for ``/health`` and stopping it the way
systemd would (SIGTERM to the group, so the ingest pipeline drains; SIGKILL after ``timeout``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import httpx


class ApiStartError(RuntimeError):
    """The server exited or did not answer ``/health`` in time (the message says which)."""


def spawn(env: Mapping[str, str], log_path: Path, *, append: bool = False) -> subprocess.Popen[bytes]:
    """Start ``rts-monitor serve --no-migrate`` with ``env``, output to ``log_path``."""
    log = open(log_path, "ab" if append else "wb")  # noqa: SIM115 - the child keeps writing after we return
    return subprocess.Popen([sys.executable, "-m", "rts_monitor.cli", "serve", "--no-migrate"], env=dict(env),
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def wait_healthy(proc: subprocess.Popen[bytes], base_url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise ApiStartError(f"exited with {proc.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(base_url + "/health", timeout=2).status_code == 200:
                return
        if time.monotonic() > deadline:
            raise ApiStartError(f"did not become healthy in {timeout:.0f} s")
        time.sleep(0.1)


def stop(proc: subprocess.Popen[bytes], timeout: float = 30) -> int:
    """SIGTERM to the process group, SIGKILL if it has not exited after ``timeout``."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    return int(proc.returncode or 0)
