"""``update_agent``: install the requested rts-agent version into this agent's own Python
environment, then restart into it.

The order protects a machine nobody is watching: first a pip dry run checks that the source
really provides the requested version (a wrong wheel or an unbuildable path fails here and
nothing changes), then the real install, then a fresh interpreter imports the new code and
reports its version. Only if all three agree does the runner restart (``os.execv``: same PID,
so systemd and other supervisors see no exit). The command's result is in the spool before the
restart, and the new process delivers it.

When the server published a SHA-256 for the source (the command's ``params.sha256``, which the
server fills in for its own wheel, or the hash ``GET /agent/package`` publishes for that URL), the
file is downloaded once, checked, and pip installs that checked copy: a wheel that differs by
one byte from what the server published fails the command and changes nothing.

If the install or the import check fails, the files of the running version (copied aside from
its RECORD before pip ran) are put back and checked the same way, so the next start runs the old
version rather than a broken one; the command fails with pip's and Python's own words.
"""

from __future__ import annotations

import asyncio
import hashlib
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
from rts_agent.transport import new_client

DIST = "rts-agent"
VERSION = re.compile(r"^\d+\.\d+\.\d+(?:[-+][0-9A-Za-z.\-]+)?$")
# A requirement name (pinned to the version) or a wheel / sdist / directory / URL taken as is.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-]*$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
MAX_PACKAGE_BYTES = 64 * 1024 * 1024  # the agent wheel is well under 1 MiB; a bound on a bad source
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


def params(cmd: Command) -> tuple[str, str, str | None]:
    target = cmd.params.get("target_version")
    if not isinstance(target, str) or not VERSION.match(target):
        raise Rejected("params.target_version: required, a version such as 1.4.2")
    source = cmd.params.get("source") or DIST
    if not isinstance(source, str):
        raise Rejected("params.source: a string")
    sha256 = cmd.params.get("sha256")
    if sha256 is not None and (not isinstance(sha256, str) or not _SHA256.match(sha256.lower())):
        raise Rejected("params.sha256: 64 hexadecimal digits")
    return target, source, sha256.lower() if sha256 else None


async def published_sha256(server_url: str | None, source: str) -> str | None:
    """The hash ``GET /agent/package`` publishes, when ``source`` is that package's URL."""
    if not server_url or not source.startswith(server_url.rstrip("/") + "/agent/"):
        return None
    async with new_client() as client:
        resp = await client.request("GET", server_url.rstrip("/") + "/agent/package", time_limit=30)
    if resp.status != 200:
        return None
    try:
        info = json.loads(resp.body)
    except ValueError:
        return None
    packages = [info, info.get("deb") or {}] if isinstance(info, dict) else []
    for package in packages:
        if isinstance(package, dict) and package.get("url") == source and _SHA256.match(str(package.get("sha256"))):
            return str(package["sha256"])
    return None


async def _fetch(source: str, deadline: float) -> bytes:
    if source.startswith(("http://", "https://")):
        async with new_client() as client:
            resp = await client.request("GET", source, time_limit=_left(deadline))
        if resp.status != 200:
            raise RuntimeError(f"downloading {source}: HTTP {resp.status}")
        return resp.body
    try:
        return await asyncio.to_thread(Path(source.removeprefix("file://")).read_bytes)
    except OSError as exc:
        raise Rejected(f"params.sha256: {source!r} is not a readable file or URL, so it cannot be checked "
                       f"against a hash ({exc.strerror})") from None


async def verified_copy(source: str, expected: str, into: Path, deadline: float) -> Path:
    """Download or read ``source``, check its SHA-256, and return the checked copy pip installs
    (installing from ``source`` again would let it change between the check and the install)."""
    data = await _fetch(source, deadline)
    if len(data) > MAX_PACKAGE_BYTES:
        raise Rejected(f"params.source: {source!r} is over {MAX_PACKAGE_BYTES} bytes; nothing installed")
    got = hashlib.sha256(data).hexdigest()
    if got != expected:
        raise Rejected(f"params.sha256: SHA-256 mismatch: {source!r} is {got}, the server published {expected}; "
                       "nothing installed")
    name = Path(source.split("?", 1)[0].rstrip("/")).name or "package.whl"
    path = into / name
    await asyncio.to_thread(path.write_bytes, data)
    return path


async def install(ex: Executor, cmd: Command, *, server_url: str | None = None) -> str | None:
    """Install the version ``cmd`` asks for; returns what happened, or None if already running it."""
    target, source, sha256 = params(cmd)
    if normalize(target) == normalize(__version__):
        return None
    deadline = time.monotonic() + cmd.timeout_seconds
    sha256 = sha256 or await published_sha256(server_url, source)
    checked = Path(tempfile.mkdtemp(prefix="rts-agent-package-"))
    try:
        if sha256 is not None:
            if _NAME.match(source) and not source.endswith((".whl", ".tar.gz", ".zip")):
                raise Rejected(f"params.sha256: {source!r} is a package name; only a file or URL can be checked")
            spec = str(await verified_copy(source, sha256, checked, deadline))
            shown = f"{source} (sha256 {sha256} verified)"
        else:
            spec = shown = requirement(source, target)
        return await _install(ex, spec, shown, target, deadline)
    finally:
        shutil.rmtree(checked, ignore_errors=True)


async def _install(ex: Executor, spec: str, shown: str, target: str, deadline: float) -> str:
    offered = await _dry_run(ex, spec, deadline)
    if normalize(offered) != normalize(target):
        raise Rejected(f"params.source: {shown!r} provides {DIST} {offered}, not {target}; nothing installed")
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
    return f"installed {DIST} {installed} (was {__version__}) from {shown}; restarting into it"


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
