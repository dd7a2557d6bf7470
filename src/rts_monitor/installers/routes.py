"""``GET /install.sh``: the Linux agent installer, with this server's public URL filled in; and
``GET /agent/…``: the agent wheel it installs (``agent_package``).

The registration-token answer's ``install_command_linux`` is ``curl -fsSL {public_url}/install.sh
| sudo bash -s AGT-…``: the script cannot be told the server separately, so the server writes its
own URL (and the pip source of the agent, ``RTS_AGENT_PIP_SOURCE``) into it. No auth: the script
holds no secret; the one-time token travels on the command line.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

import msgspec
from litestar import Response, get

from rts_monitor.core import resources
from rts_monitor.core.context import AppContext
from rts_monitor.core.errors import NotFound, Unavailable
from rts_monitor.installers import agent_deb, agent_wheel

# Characters that are safe inside a double-quoted bash string (no quote, $, backtick, backslash).
_SAFE = re.compile(r"^[A-Za-z0-9._:/@%+=,~\[\]-]+$")


@lru_cache(maxsize=2)
def _template(name: str = "install.sh") -> str:
    """The packaged copy (wheel: ``agent_<name>``) or the checkout's ``agent/<name>`` (editable)."""
    found = resources.find(f"agent_{name}", f"agent/{name}")
    if found is not None and found.is_file():
        return found.read_text()
    raise NotFound("the agent installer is not part of this deployment")


def render(public_url: str, agent_source: str, name: str = "install.sh", agent_sha256: str = "") -> str:
    for var, value in (("RTS_PUBLIC_URL", public_url), ("RTS_AGENT_PIP_SOURCE", agent_source)):
        if not _SAFE.match(value):
            raise Unavailable(f"{var} contains characters unsafe in a shell script", retry_after=3600)
    return (_template(name).replace("@@SERVER_URL@@", public_url).replace("@@AGENT_SOURCE@@", agent_source)
            .replace("@@AGENT_SHA256@@", agent_sha256))


# Litestar appends "; charset=utf-8" to text/* media types itself (naming it here sent it twice);
# the decorator's media_type is also what the OpenAPI document says the 200 is.
SHELL_SCRIPT = "text/x-shellscript"
POWERSHELL_SCRIPT = "text/plain"
WHEEL = "application/octet-stream"


@get("/install.sh", tags=["agent"], exclude_from_auth=True, media_type=SHELL_SCRIPT,
     summary="Linux agent installer (curl … | sudo bash -s AGT-…)")
async def install_script(ctx: AppContext) -> Response[str]:
    body = render(ctx.settings.effective_public_url, _pip_source(ctx), agent_sha256=_served_sha256(ctx))
    return Response(body, media_type=SHELL_SCRIPT)


@get("/install.ps1", tags=["agent"], exclude_from_auth=True, media_type=POWERSHELL_SCRIPT,
     summary="Windows agent installer (PowerShell; untested on Windows)")
async def install_script_windows(ctx: AppContext) -> Response[str]:
    body = render(ctx.settings.effective_public_url, _pip_source(ctx), "install.ps1")
    return Response(body, media_type=POWERSHELL_SCRIPT)


def _served_sha256(ctx: AppContext) -> str:
    """The hash the script checks the download against: our own wheel's, unless the operator
    pointed agents at another source (RTS_AGENT_PIP_SOURCE), whose hash we do not know."""
    if ctx.settings.agent_pip_source:
        return ""
    try:
        return agent_wheel.wheel().sha256
    except agent_wheel.AgentSourcesMissing:
        return ""


def _pip_source(ctx: AppContext) -> str:
    try:
        return agent_wheel.pip_source(ctx.settings)
    except agent_wheel.AgentSourcesMissing:
        raise NotFound("this deployment serves no agent package; set RTS_AGENT_PIP_SOURCE") from None


class PackageFile(msgspec.Struct):
    filename: str
    url: str
    sha256: str
    size: int


class AgentPackage(msgspec.Struct):
    """The agent version this server serves: what /install.sh installs and update_agent defaults to
    (the wheel), and the same agent as a Debian package (``deb``: Debian 13 and later)."""

    name: str
    version: str
    filename: str
    url: str
    sha256: str
    size: int
    deb: PackageFile | None = None


def _served() -> agent_wheel.AgentWheel:
    try:
        return agent_wheel.wheel()
    except agent_wheel.AgentSourcesMissing:
        raise NotFound("this deployment serves no agent package") from None


@get("/agent/package", tags=["agent"], exclude_from_auth=True, summary="The agent wheel this server serves")
async def agent_package_info(ctx: AppContext) -> AgentPackage:
    whl = _served()
    pkg = agent_deb.deb()
    base = ctx.settings.effective_public_url
    return AgentPackage(whl.name, whl.version, whl.filename, agent_wheel.wheel_url(ctx.settings, whl),
                        whl.sha256, len(whl.data),
                        deb=PackageFile(pkg.filename, f"{base}/agent/{pkg.filename}", pkg.sha256, len(pkg.data)))


@get("/agent/{filename:str}", tags=["agent"], exclude_from_auth=True, media_type=WHEEL,
     opt={"media_types": ["application/vnd.debian.binary-package"]},  # the .deb (api/openapi.py)
     summary="Download the agent wheel (pip install <url>)")
async def agent_wheel_file(filename: str) -> Response[bytes]:
    whl = _served()
    pkg = agent_deb.deb()
    served = {whl.filename: whl.data, pkg.filename: pkg.data}
    if filename not in served:
        raise NotFound(f"this server serves {whl.filename} and {pkg.filename}")
    media = "application/vnd.debian.binary-package" if filename.endswith(".deb") else WHEEL
    return Response(served[filename], media_type=media,
                    headers={"Content-Disposition": f'attachment; filename="{filename}"'})


HANDLERS: list[Any] = [install_script, install_script_windows, agent_package_info, agent_wheel_file]
