"""``update_agent``: install the requested rts-agent version into this agent's own Python
environment, then restart into it.

The order protects a machine nobody is watching: first a pip dry run checks that the source
really provides the requested version (a wrong wheel or an unbuildable path fails here and
nothing changes), then the real install, then a fresh interpreter imports the new code and
reports its version. Only if all three agree does the runner restart (``os.execv``: same PID,
so systemd and other supervisors see no exit). The command's result is in the spool before the
restart, and the new process delivers it. If the import check fails the old code keeps running
and the command fails with pip's and Python's own words.
"""

from __future__ import annotations

import json
import re
import sys
import time
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
    _check(await ex.run([*_PIP, "install", "--quiet", "--upgrade", spec], _left(deadline)), "pip install")
    probe = await ex.run([sys.executable, "-c", _PROBE], _left(deadline))
    _check(probe, "the new version does not import; the running agent keeps the old code in memory")
    installed = probe.stdout.strip()
    if normalize(installed) != normalize(target):
        raise RuntimeError(f"pip installed {DIST} {installed}, not {target}")
    return f"installed {DIST} {installed} (was {__version__}) from {spec}; restarting into it"


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
