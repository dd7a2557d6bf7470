"""``update_agent``: install the requested rts-agent version into this agent's own Python
environment, then restart into it.

The order protects a machine nobody is watching: first a pip dry run checks that the source
really provides the requested version (a wrong wheel or an unbuildable path fails here and
nothing changes), then the real install, then a fresh interpreter imports the new code and
reports its version. Only if all three agree does the runner restart (``os.execv``: same PID,
so systemd and other supervisors see no exit). The command's result is in the spool before the
restart, and the new process delivers it.

If the install or the import check fails, the files of the running version (copied aside from
its RECORD before pip ran) are put back and checked the same way, so the next start runs the old
version rather than a broken one; the command fails with pip's and Python's own words.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.metadata
import json
import re
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rts_agent import __version__
from rts_agent.commands import Command, CommandResult, Executor, Rejected

DIST = "rts-agent"
VERSION = re.compile(r"^\d+\.\d+\.\d+(?:[-+][0-9A-Za-z.\-]+)?$")
# A requirement name (pinned to the version) or a wheel / sdist / directory / URL taken as is.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-]*$")
_PIP = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
_PROBE = ("import importlib.metadata as m, rts_agent.runner, rts_agent.cli; "
          f"print(m.version({DIST!r}))")


def normalize(version: str) -> str:
    """Compare versions the way pip reports them (``0.2.0-rc1`` is ``0.2.0rc1``)."""
    v = version.strip().lower().replace("_", "-")
    v = re.sub(r"-(?=(a|b|rc|alpha|beta|c|pre|preview|post|dev)\d*)", "", v)
    return v


def requirement(source: str, target: str) -> str:
    """What pip installs: ``name==target`` for a package name, the source itself otherwise."""
    if source.startswith("-") or any(c.isspace() for c in source):
        raise Rejected("params.source: a package name, wheel, directory or URL (no options, no spaces)")
    is_file = source.endswith((".whl", ".tar.gz", ".zip"))
    return f"{source}=={target}" if _NAME.match(source) and not is_file else source


def params(cmd: Command) -> tuple[str, str]:
    target = cmd.params.get("target_version")
    if not isinstance(target, str) or not VERSION.match(target):
        raise Rejected("params.target_version: required, a version such as 1.4.2")
    source = cmd.params.get("source") or DIST
    if not isinstance(source, str):
        raise Rejected("params.source: a string")
    return target, source


async def install(ex: Executor, cmd: Command) -> str | None:
    """Install the version ``cmd`` asks for; returns what happened, or None if already running it."""
    target, source = params(cmd)
    if normalize(target) == normalize(__version__):
        return None
    spec = requirement(source, target)
    deadline = time.monotonic() + cmd.timeout_seconds
    offered = await _dry_run(ex, spec, deadline)
    if normalize(offered) != normalize(target):
        raise Rejected(f"params.source: {spec!r} provides {DIST} {offered}, not {target}; nothing installed")
    saved = await asyncio.to_thread(_Saved.take)
    try:
        _check(await ex.run([*_PIP, "install", "--quiet", "--upgrade", spec], _left(deadline)), "pip install")
        probe = await ex.run([sys.executable, "-c", _PROBE], _left(deadline))
        _check(probe, "the new version does not import")
        installed = probe.stdout.strip()
        if normalize(installed) != normalize(target):
            raise RuntimeError(f"pip installed {DIST} {installed}, not {target}")
    except BaseException as exc:
        outcome = await _roll_back(ex, saved)
        if isinstance(exc, TimeoutError | asyncio.CancelledError):
            raise  # reported as a timeout / the agent is stopping; the old version is back either way
        raise RuntimeError(f"{exc}; {outcome}") from exc
    finally:
        shutil.rmtree(saved.where, ignore_errors=True)
    return f"installed {DIST} {installed} (was {__version__}) from {spec}; restarting into it"


@dataclass
class _Saved:
    """Copies of the running version's installed files (its RECORD), to put back after a failure."""

    where: Path
    files: list[tuple[Path, Path]]  # (installed path, copy)

    @classmethod
    def take(cls) -> _Saved:
        dist = importlib.metadata.distribution(DIST)
        where = Path(tempfile.mkdtemp(prefix="rts-agent-rollback-"))
        files = []
        for i, rel in enumerate(dist.files or []):
            path = Path(str(dist.locate_file(rel))).resolve()
            if path.is_file():
                shutil.copy2(path, where / str(i))
                files.append((path, where / str(i)))
        return cls(where, files)

    def put_back(self) -> None:
        """Remove what the failed install added, then restore every saved file."""
        importlib.invalidate_caches()
        ours = {path for path, _ in self.files}
        try:
            dist = importlib.metadata.distribution(DIST)
            added = {Path(str(dist.locate_file(rel))).resolve() for rel in dist.files or []} - ours
        except importlib.metadata.PackageNotFoundError:
            added = set()
        for path in added:
            path.unlink(missing_ok=True)
        for folder in sorted({p.parent for p in added}, key=lambda p: len(p.parts), reverse=True):
            if folder.name.endswith(".dist-info") and not any(folder.iterdir()):
                folder.rmdir()
        for path, copy in self.files:
            path.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(copy, path)


async def _roll_back(ex: Executor, saved: _Saved) -> str:
    """Put the running version's files back and prove they import; says what happened."""
    try:
        await asyncio.to_thread(saved.put_back)
        probe = await ex.run([sys.executable, "-c", _PROBE], 120)
    except Exception as exc:  # the failure report must still reach the server
        return f"rolling back to {__version__} failed: {exc}"
    if probe.status == "completed" and normalize(probe.stdout.strip()) == normalize(__version__):
        return f"rolled back to {DIST} {__version__}"
    return f"rolling back to {__version__} failed: {(probe.stderr or probe.stdout).strip()[-500:]}"


async def _dry_run(ex: Executor, spec: str, deadline: float) -> str:
    """The version pip would install from ``spec`` (pip's JSON install report), changing nothing."""
    res = await ex.run([*_PIP, "install", "--dry-run", "--no-deps", "--ignore-installed", "--quiet",
                        "--report", "-", spec], _left(deadline))
    _check(res, "pip could not resolve the source")
    try:
        report: dict[str, Any] = json.loads(res.stdout)
    except ValueError:
        raise RuntimeError(f"pip's install report is not JSON: {res.stdout[:300]!r}") from None
    for item in report.get("install", []):
        meta = item.get("metadata", {})
        if str(meta.get("name", "")).lower().replace("_", "-") == DIST:
            return str(meta.get("version", "?"))
    raise Rejected(f"params.source: {spec!r} does not provide {DIST}")


def _left(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError
    return left


def _check(res: CommandResult, what: str) -> None:
    if res.status == "timeout":
        raise TimeoutError
    if res.status != "completed":
        detail = (res.stderr or res.error_message or res.stdout or "").strip()[-1500:]
        raise RuntimeError(f"{what} (exit {res.exit_code}): {detail}")
