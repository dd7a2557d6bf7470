"""``GET /install.sh``: the Linux agent installer, with this server's public URL filled in.

The registration-token answer's ``install_command_linux`` is ``curl -fsSL {public_url}/install.sh
| sudo bash -s AGT-…``: the script cannot be told the server separately, so the server writes its
own URL (and the pip source of the agent, ``RTS_AGENT_PIP_SOURCE``) into it. No auth: the script
holds no secret; the one-time token travels on the command line.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Any

from litestar import Response, get

from rts_monitor.api.context import AppContext
from rts_monitor.errors import NotFound, Unavailable

# Characters that are safe inside a double-quoted bash string (no quote, $, backtick, backslash).
_SAFE = re.compile(r"^[A-Za-z0-9._:/@%+=,~\[\]-]+$")


@lru_cache(maxsize=2)
def _template(name: str = "install.sh") -> str:
    """The packaged copy (wheel: ``agent_<name>``) or the checkout's ``agent/<name>`` (editable)."""
    here = Path(__file__).resolve()
    for candidate in (here.parents[1] / f"agent_{name}", here.parents[3] / "agent" / name):
        if candidate.is_file():
            return candidate.read_text()
    raise NotFound("the agent installer is not part of this deployment")


def render(public_url: str, agent_source: str, name: str = "install.sh") -> str:
    for var, value in (("RTS_PUBLIC_URL", public_url), ("RTS_AGENT_PIP_SOURCE", agent_source)):
        if not _SAFE.match(value):
            raise Unavailable(f"{var} contains characters unsafe in a shell script", retry_after=3600)
    return _template(name).replace("@@SERVER_URL@@", public_url).replace("@@AGENT_SOURCE@@", agent_source)


@get("/install.sh", tags=["agent"], exclude_from_auth=True,
     summary="Linux agent installer (curl … | sudo bash -s AGT-…)")
async def install_script(ctx: AppContext) -> Response[str]:
    body = render(ctx.settings.effective_public_url, ctx.settings.agent_pip_source)
    return Response(body, media_type="text/x-shellscript; charset=utf-8")


@get("/install.ps1", tags=["agent"], exclude_from_auth=True,
     summary="Windows agent installer (PowerShell; untested on Windows)")
async def install_script_windows(ctx: AppContext) -> Response[str]:
    body = render(ctx.settings.effective_public_url, ctx.settings.agent_pip_source, "install.ps1")
    return Response(body, media_type="text/plain; charset=utf-8")


HANDLERS: list[Any] = [install_script, install_script_windows]
