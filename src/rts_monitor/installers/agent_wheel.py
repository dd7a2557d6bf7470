"""The agent as a wheel served by this server (``GET /agent/{wheel}``), built from the agent's
sources that ship with it.

Why the server serves it: ``/install.sh`` and ``update_agent`` need a pip source that customer
machines can reach and that is certainly ours. A bare package name would resolve on a public
index, where ``rts-agent`` is not ours to trust; the server's own URL is reachable by every agent
by definition, and the version it serves is the version this server was tested with.

The wheel is pure Python, so it is assembled here (zip + ``.dist-info``, PEP 427 / 376) instead of
calling a build backend at run time: no network, no build tools on the server, the same bytes for
the same sources (fixed timestamps), built once per process.
"""

from __future__ import annotations

import base64
import hashlib
import io
import tomllib
import zipfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from rts_monitor.core import resources
from rts_monitor.core.settings import Settings

_EPOCH = (2020, 1, 1, 0, 0, 0)  # fixed zip timestamps: identical sources give identical bytes


class AgentSourcesMissing(RuntimeError):
    """This deployment was built without the agent's sources."""


@dataclass(frozen=True)
class AgentPackage:
    """A built agent artefact (the wheel, the .deb): what /agent/ serves and publishes the hash of."""

    name: str
    version: str
    filename: str
    data: bytes

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


AgentWheel = AgentPackage


def sources() -> Path:
    """The packaged copy (``rts_monitor/agent_src``) or the checkout's ``agent/`` (editable install)."""
    root = resources.find("agent_src", "agent")
    if root is not None and (root / "pyproject.toml").is_file() and (root / _package_dir(root)).is_dir():
        return root
    raise AgentSourcesMissing("the agent's sources are not part of this deployment")


def _package_dir(root: Path) -> Path:
    return Path("src/rts_agent") if (root / "src" / "rts_agent").is_dir() else Path("rts_agent")


def pip_source(settings: Settings) -> str:
    """What customer machines pip-install: ``RTS_AGENT_PIP_SOURCE``, else this server's wheel URL."""
    return settings.agent_pip_source or wheel_url(settings, wheel())


def wheel_url(settings: Settings, whl: AgentWheel) -> str:
    return f"{settings.effective_public_url}/agent/{whl.filename}"


@lru_cache(maxsize=1)
def wheel() -> AgentWheel:
    root = sources()
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    name, version = str(project["name"]), str(project["version"])
    dist = name.replace("-", "_")
    files: dict[str, bytes] = {}
    package = root / _package_dir(root)
    for path in sorted(package.rglob("*.py")):
        files[f"rts_agent/{path.relative_to(package).as_posix()}"] = path.read_bytes()
    info = f"{dist}-{version}.dist-info"
    files[f"{info}/METADATA"] = _metadata(project).encode()
    files[f"{info}/WHEEL"] = (
        b"Wheel-Version: 1.0\nGenerator: rts-monitor\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    )
    scripts = project.get("scripts", {})
    if scripts:
        lines = "".join(f"{k} = {v}\n" for k, v in scripts.items())
        files[f"{info}/entry_points.txt"] = f"[console_scripts]\n{lines}".encode()
    files[f"{info}/RECORD"] = _record(files, f"{info}/RECORD").encode()
    filename = f"{dist}-{version}-py3-none-any.whl"
    return AgentWheel(name, version, filename, _zip(files))


def _metadata(project: dict[str, object]) -> str:
    lines = [
        "Metadata-Version: 2.1",
        f"Name: {project['name']}",
        f"Version: {project['version']}",
        f"Summary: {project.get('description', '')}",
        f"Requires-Python: {project.get('requires-python', '>=3.11')}",
    ]
    deps = project.get("dependencies") or []
    lines += [f"Requires-Dist: {dep}" for dep in (deps if isinstance(deps, list) else [])]
    return "\n".join(lines) + "\n"


def _record(files: dict[str, bytes], record_name: str) -> str:
    rows = []
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        rows.append(f"{path},sha256={digest},{len(data)}")
    rows.append(f"{record_name},,")
    return "\n".join(rows) + "\n"


def _zip(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for path, data in files.items():
            entry = zipfile.ZipInfo(path, date_time=_EPOCH)
            entry.external_attr = 0o644 << 16
            entry.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(entry, data)
    return buf.getvalue()
