"""Fleet software search: which devices run a package, optionally within a version range, and
which agents run an outdated rts-agent.

Versions are ordered the way the device's package manager orders them, with `univers` (a
maintained library of ecosystems' version rules, from the aboutcode.org project): Debian's dpkg
rules for inventories from dpkg (epochs, ``~`` before anything, revisions), RPM's rpmvercmp for
rpm, and dpkg's general algorithm (alternating digit and non-digit runs) for everything else
(Windows and macOS version strings). A version a device's rules cannot parse does not match a
range (it is listed when no range is asked).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from uuid import UUID

import msgspec
from packaging.version import InvalidVersion, Version
from univers.versions import DebianVersion, RpmVersion
from univers.versions import InvalidVersion as InvalidUniversVersion

from rts_monitor.auth.principal import Principal
from rts_monitor.core.errors import NotFound, ValidationFailed
from rts_monitor.db import Conn, Queries
from rts_monitor.db.rows import fetch_all
from rts_monitor.installers import agent_wheel
from rts_monitor.inventory.structs import AgentVersion, OutdatedAgents, SoftwareHit, SoftwareSearch

Q = Queries.beside(__file__)
MAX_ROWS = 20_000
Parse = Callable[[str], Any]
SCHEMES: dict[str, Parse] = {"deb": DebianVersion, "rpm": RpmVersion, "generic": DebianVersion}


def scheme_of(source: str | None, os_type: str | None) -> str:
    source = (source or "").lower()
    if source in ("dpkg", "deb", "apt"):
        return "deb"
    if source in ("rpm", "dnf", "yum", "zypper"):
        return "rpm"
    return "generic"


def _parse(scheme: str, text: str | None) -> Any | None:
    if not text:
        return None
    try:
        return SCHEMES[scheme](text.strip())
    except (InvalidUniversVersion, ValueError, TypeError):
        return None


def _like(name: str) -> str:
    """The name as a LIKE pattern: ``*`` is a wildcard, everything else literal."""
    escaped = name.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("*", "%")


def _check_bound(field: str, text: str | None) -> None:
    """A bound must be a version by the general rules (rpm's accept any string at all)."""
    if text is not None and _parse("generic", text) is None:
        raise ValidationFailed(f"{field}: {text!r} is not a version (it must start with a digit)", field=field)


def _in_range(scheme: str, version: str | None, lt: str | None, gte: str | None) -> bool:
    have = _parse(scheme, version)
    if have is None:
        return False
    upper, lower = _parse(scheme, lt), _parse(scheme, gte)
    if lt is not None and (upper is None or not have < upper):
        return False
    return not (gte is not None and (lower is None or not have >= lower))


async def search(conn: Conn, *, principal: Principal, name: str | None, version_lt: str | None,
                 version_gte: str | None, business_id: UUID | None) -> SoftwareSearch:
    if name is None or not name.strip() or name.strip() == "*":
        raise ValidationFailed("name: give a package name (``*`` matches any characters)", field="name")
    _check_bound("version_lt", version_lt)
    _check_bound("version_gte", version_gte)
    if business_id is not None and principal.business_scope not in (None, business_id):
        raise NotFound("business not found", field="business_id")
    rows = await fetch_all(conn, Q.fleet_software, {"name": _like(name.strip()), "scope": principal.business_scope,
                                                    "business_id": business_id, "limit": MAX_ROWS + 1})
    truncated = len(rows) > MAX_ROWS
    hits: list[SoftwareHit] = []
    for r in rows[:MAX_ROWS]:
        scheme = scheme_of(r["inventory_source"], r["os_type"])
        if (version_lt is not None or version_gte is not None) and not _in_range(scheme, r["version"], version_lt,
                                                                                 version_gte):
            continue
        hits.append(msgspec.convert({**r, "version_scheme": scheme}, SoftwareHit))
    return SoftwareSearch(devices=len({h.agent_id for h in hits}), hits=hits, truncated=truncated)


def _older(version: str, served: Version) -> bool:
    try:
        return Version(version) < served
    except InvalidVersion:
        return True  # "unknown" or a hand-built agent: not the served version either


async def outdated_agents(conn: Conn, *, principal: Principal, business_id: UUID | None) -> OutdatedAgents:
    """Agents whose version is older than the one this server serves (what update_agent installs)."""
    try:
        served = agent_wheel.wheel().version
    except agent_wheel.AgentSourcesMissing:
        raise NotFound("this deployment serves no agent package to compare with") from None
    if business_id is not None and principal.business_scope not in (None, business_id):
        raise NotFound("business not found", field="business_id")
    rows = await fetch_all(conn, Q.agent_versions, {"scope": principal.business_scope, "business_id": business_id})
    current = Version(served)
    old = [r for r in rows if _older(r["agent_version"], current)]
    return OutdatedAgents(served_version=served, agents=msgspec.convert(old, list[AgentVersion]))

