"""Remote commands: only allow-listed types run, each under the server's timeout, output capped.

There is no shell anywhere on this path. ``run_script`` writes the script body to a private
temporary file and executes ``[interpreter, file, *args]`` with ``shell=False``: parameters
reach the program as separate argv entries, so text like ``; rm -rf /`` in an argument is just
an argument. Service names are checked against a strict pattern and passed after ``--``.
Each child gets its own process group, so a timeout kills the whole tree it started.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import msgspec

from rts_agent.collect import utc_stamp
from rts_agent.services import SERVICE_NAME

DEFAULT_TIMEOUT = 300.0
MAX_TIMEOUT = 3600.0
INTERPRETERS: dict[str, list[str]] = {
    "sh": ["/bin/sh"],
    "bash": ["bash"],
    "python": [sys.executable],
    "python3": [sys.executable],
    "powershell": ["powershell", "-NoProfile", "-NonInteractive", "-ExecutionPolicy", "Bypass", "-File"],
    "pwsh": ["pwsh", "-NoProfile", "-NonInteractive", "-File"],
    "cmd": ["cmd", "/d", "/c"],  # Windows batch file; untested here
}
_SUFFIX = {"powershell": ".ps1", "pwsh": ".ps1", "python": ".py", "python3": ".py", "cmd": ".bat"}


class CommandResult(msgspec.Struct, omit_defaults=True):
    """The API contract's ``POST …/commands/{id}/result`` body (also the WebSocket ``command_result``)."""

    status: str  # completed | failed | timeout (a refused command is "failed" with a message)
    exit_code: int | None = None
    stdout: str = ""
    stderr: str = ""
    error_message: str | None = None
    started_at: str | None = None
    completed_at: str | None = None
    stdout_truncated: bool = False
    stderr_truncated: bool = False


class Rejected(Exception):
    """The command is not allowed or its parameters are unusable; nothing was executed."""


CANCELLED = "cancelled from the portal while running; its processes were killed"
# Stopping these half-way would do more harm than letting them finish (a half-installed venv).
UNINTERRUPTIBLE = frozenset({"update_agent"})


@dataclass(frozen=True)
class Command:
    command_id: str
    command_type: str
    params: dict[str, Any]
    timeout_seconds: float

    @classmethod
    def from_message(cls, msg: dict[str, Any]) -> Command:
        """Both the polling shape and the WebSocket ``{"type": "command", …}`` shape."""
        params = msg.get("params")
        if params is None:
            params = msg.get("command_params")
        timeout = msg.get("timeout_seconds") or DEFAULT_TIMEOUT
        return cls(str(msg.get("command_id") or msg.get("id")), str(msg.get("command_type", "")),
                   params if isinstance(params, dict) else {},
                   min(MAX_TIMEOUT, max(1.0, float(timeout))))


Handler = Callable[["Executor", Command], Awaitable[CommandResult]]


class Executor:
    """Runs allow-listed commands; ``hooks`` lets the runner add agent-internal ones."""

    def __init__(self, *, output_cap: int = 64 * 1024,
                 hooks: dict[str, Callable[[Command], Awaitable[str]]] | None = None) -> None:
        self.output_cap = output_cap
        self.hooks = hooks or {}

    @property
    def allowed(self) -> list[str]:
        return sorted({*_HANDLERS, *self.hooks})

    async def execute(self, cmd: Command, cancel: asyncio.Event | None = None) -> CommandResult:
        """Run ``cmd``; setting ``cancel`` stops it (its process group killed) unless it is uninterruptible."""
        started = utc_stamp()
        try:
            if cancel is None or cmd.command_type in UNINTERRUPTIBLE:
                result = await self._dispatch(cmd)
            else:
                result = await _unless(cancel, self._dispatch(cmd))
        except _Cancelled:
            result = CommandResult(status="failed", error_message=CANCELLED)
        except Rejected as exc:
            result = CommandResult(status="failed", error_message=f"rejected by agent: {exc}"[:4000])
        except TimeoutError:
            result = CommandResult(status="timeout", error_message=f"timed out after {cmd.timeout_seconds:g}s")
        except Exception as exc:
            result = CommandResult(status="failed", error_message=f"{type(exc).__name__}: {exc}"[:4000])
        result.started_at = result.started_at or started
        result.completed_at = utc_stamp()
        return result

    async def _dispatch(self, cmd: Command) -> CommandResult:
        if cmd.command_type in self.hooks:
            out = await asyncio.wait_for(self.hooks[cmd.command_type](cmd), cmd.timeout_seconds)
            return CommandResult(status="completed", exit_code=0, stdout=out[: self.output_cap])
        if cmd.command_type in _HANDLERS:
            return await _HANDLERS[cmd.command_type](self, cmd)
        raise Rejected(f"command type {cmd.command_type!r} is not allowed; allowed: " + ", ".join(self.allowed))

    async def run(self, argv: list[str], time_limit: float, *, stdin: bytes | None = None,
                  cwd: str | None = None) -> CommandResult:
        """Run ``argv`` (no shell) in its own process group; capped output, killed on timeout."""
        started = utc_stamp()
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                start_new_session=os.name != "nt", cwd=cwd,
            )
        except OSError as exc:
            return CommandResult(status="failed", error_message=f"cannot start {argv[0]}: {exc}",
                                 started_at=started)
        if stdin is not None and proc.stdin is not None:
            proc.stdin.write(stdin)
            with contextlib.suppress(OSError):
                await proc.stdin.drain()
            proc.stdin.close()
        assert proc.stdout is not None and proc.stderr is not None
        readers = asyncio.gather(_read_capped(proc.stdout, self.output_cap),
                                 _read_capped(proc.stderr, self.output_cap))
        timed_out = False
        try:
            await asyncio.wait_for(proc.wait(), time_limit)
        except TimeoutError:
            timed_out = True
            _kill_tree(proc)
            await proc.wait()
        except asyncio.CancelledError:  # cancelled from the portal, or the agent is stopping
            _kill_tree(proc)
            await asyncio.shield(proc.wait())
            readers.cancel()
            raise
        (out, out_cut), (err, err_cut) = await readers
        result = CommandResult(status="completed" if proc.returncode == 0 else "failed",
                               exit_code=proc.returncode, stdout=out, stderr=err, started_at=started,
                               stdout_truncated=out_cut, stderr_truncated=err_cut)
        if timed_out:
            result.status, result.error_message = "timeout", f"timed out after {time_limit:g}s"
        return result


class _Cancelled(Exception):
    """The portal cancelled the command while it ran."""


async def _unless(cancel: asyncio.Event, work: Awaitable[CommandResult]) -> CommandResult:
    """``work``'s result, or ``_Cancelled`` once ``cancel`` is set (``work`` is then cancelled)."""
    task = asyncio.ensure_future(work)
    stopper = asyncio.ensure_future(cancel.wait())
    try:
        await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            return task.result()
        raise _Cancelled
    finally:  # also when the agent stops: the work (and its processes) must not outlive us
        stopper.cancel()
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def _read_capped(stream: asyncio.StreamReader, cap: int) -> tuple[str, bool]:
    """Keep the first ``cap`` bytes, keep draining the rest (a full pipe would block the child)."""
    kept = bytearray()
    dropped = 0
    while chunk := await stream.read(65536):
        room = cap - len(kept)
        if room > 0:
            kept += chunk[:room]
        dropped += max(0, len(chunk) - max(room, 0))
    text = kept.decode(errors="replace")
    if dropped:
        text += f"\n[output truncated: {dropped} more bytes]"
    return text, dropped > 0


def _kill_tree(proc: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if os.name != "nt":
            os.killpg(proc.pid, signal.SIGKILL)
        else:  # pragma: no cover - Windows
            proc.kill()


# -- the allow-list -------------------------------------------------------------------------

async def _ping(_: Executor, cmd: Command) -> CommandResult:
    return CommandResult(status="completed", exit_code=0, stdout="pong")


def _service_name(cmd: Command) -> str:
    name = cmd.params.get("service_name")
    if not isinstance(name, str) or not SERVICE_NAME.match(name) or name.startswith("-"):
        raise Rejected("params.service_name: required, letters, digits and @._:- only")
    return name


def _service_argv(action: str, name: str) -> list[str]:
    if sys.platform == "win32":  # pragma: no cover - Windows
        verb = {"restart": "Restart-Service", "start": "Start-Service", "stop": "Stop-Service",
                "status": "Get-Service"}[action]
        return ["powershell", "-NoProfile", "-NonInteractive", "-Command", verb, "-Name", name]
    import shutil

    if shutil.which("systemctl") is None:
        raise Rejected("systemctl is not available on this machine")
    return ["systemctl", action, "--no-pager", "--", name]


def _service(action: str) -> Handler:
    async def handler(ex: Executor, cmd: Command) -> CommandResult:
        return await ex.run(_service_argv(action, _service_name(cmd)), cmd.timeout_seconds)

    return handler


async def _run_script(ex: Executor, cmd: Command) -> CommandResult:
    """``{"script": "...", "interpreter": "sh|bash|python3|powershell", "arguments": [...],
    "working_directory": "..."}`` (the server's RunScriptParams)."""
    script = cmd.params.get("script")
    interpreter = cmd.params.get("interpreter", "powershell" if sys.platform == "win32" else "sh")
    args = cmd.params.get("arguments", cmd.params.get("args", []))
    cwd = cmd.params.get("working_directory")
    if cwd is not None and (not isinstance(cwd, str) or not await asyncio.to_thread(os.path.isdir, cwd)):
        raise Rejected("params.working_directory: not a directory on this machine")
    if not isinstance(script, str) or not script:
        raise Rejected("params.script: required, the script text")
    if interpreter not in INTERPRETERS:
        raise Rejected(f"params.interpreter: one of {', '.join(sorted(INTERPRETERS))}")
    if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
        raise Rejected("params.arguments: a list of strings")
    import tempfile

    fd, path = tempfile.mkstemp(prefix="rts-script-", suffix=_SUFFIX.get(interpreter, ".sh"))
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:  # mkstemp: 0600, ours alone
            fh.write(script)
        return await ex.run([*INTERPRETERS[interpreter], path, *args], cmd.timeout_seconds, cwd=cwd)
    finally:
        os.unlink(path)


async def _sleep(_: Executor, cmd: Command) -> CommandResult:
    """Diagnostics: hold a command slot for ``seconds`` (checks timeouts end to end)."""
    seconds = float(cmd.params.get("seconds", 1))
    started = time.monotonic()
    await asyncio.wait_for(asyncio.sleep(seconds), cmd.timeout_seconds)
    return CommandResult(status="completed", exit_code=0, stdout=f"slept {time.monotonic() - started:.2f}s")


_HANDLERS: dict[str, Handler] = {
    "ping": _ping,
    "sleep": _sleep,
    "restart_service": _service("restart"),
    "start_service": _service("start"),
    "stop_service": _service("stop"),
    "service_status": _service("status"),
    "run_script": _run_script,
}
