"""The fleet page's data: filters, counts by health, one page of agents in group order.

Why the console has its own page query next to ``GET /api/agents`` (devices/service.py): the page
groups rows by business and location (the API pages in one global sort order with cursors),
shows page numbers and counts by health (the API has neither), searches IP addresses and filters
by OS. It keeps the API's rules: the caller's business scope in the query, another business's id
in a filter is a 404, and the latest values come from the same bounded per-agent probe.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from psycopg import AsyncConnection

from rts_monitor.auth.principal import Principal
from rts_monitor.core.errors import NotFound, ValidationFailed
from rts_monitor.db import Queries
from rts_monitor.db.rows import Row, fetch_all

Q = Queries.beside(__file__)

HEALTHS = ("online", "warning", "critical", "offline", "disabled")
PAGE_SIZES = (25, 50, 100, 200)
DEFAULT_PAGE_SIZE = 50
MAX_IDS = 10_000  # a bulk selection "all matching" (and POST /api/agents/bulk) takes at most this many
# Sort name -> (label, SQL over alias f). Descending with a leading "-". Fixed text, never input.
SORTS: dict[str, tuple[str, str]] = {
    "name": ("Name", "lower(f.device_name)"),
    "status": ("Status", "CASE f.health WHEN 'critical' THEN 0 WHEN 'warning' THEN 1 WHEN 'offline' THEN 2 "
                         "WHEN 'online' THEN 3 ELSE 4 END"),
    "last_seen": ("Last seen", "f.last_seen"),
    "hostname": ("Hostname", "lower(coalesce(f.hostname, ''))"),
    "version": ("Agent version", "f.agent_version"),
    "alerts": ("Open alerts", "f.open_alerts"),
}
GROUP_ORDER = "f.business_name, f.business_id, f.location_name NULLS LAST, f.service_location_id"


@dataclass(frozen=True)
class FleetQuery:
    q: str | None = None
    business_id: UUID | None = None
    location_id: UUID | None = None
    healths: tuple[str, ...] = ()
    os: str | None = None
    sort: str = "name"
    page: int = 1
    per_page: int = DEFAULT_PAGE_SIZE
    grouped: bool = True

    def params(self, **changes: Any) -> dict[str, str]:
        """This query as URL parameters (defaults left out), with ``changes`` applied."""
        values: dict[str, Any] = {
            "q": self.q, "business": self.business_id, "location": self.location_id,
            "status": ",".join(self.healths) or None, "os": self.os,
            "sort": None if self.sort == "name" else self.sort,
            "page": None if self.page == 1 else self.page,
            "per": None if self.per_page == DEFAULT_PAGE_SIZE else self.per_page,
            "group": None if self.grouped else "off",
        }
        values.update(changes)
        return {k: str(v) for k, v in values.items() if v not in (None, "")}

    @property
    def filtered(self) -> bool:
        return bool(self.q or self.business_id or self.location_id or self.healths or self.os)


def uuid_param(params: Mapping[str, str], name: str) -> UUID | None:
    """An optional id from a page's query string; a malformed one is a 422 naming it."""
    raw = (params.get(name) or "").strip()
    if not raw:
        return None
    try:
        return UUID(raw)
    except ValueError:
        raise ValidationFailed(f"{name}: {raw[:60]!r} is not an id", field=name) from None


def _int(params: Mapping[str, str], name: str, default: int) -> int:
    raw = (params.get(name) or "").strip()
    if not raw:
        return default
    if not raw.isdigit() or int(raw) < 1:
        raise ValidationFailed(f"{name}: {raw[:60]!r} is not a whole number of 1 or more", field=name)
    return int(raw)


def parse(params: Mapping[str, str]) -> FleetQuery:
    """The fleet page's URL parameters; a bad one is a 422 naming it."""
    healths = tuple(dict.fromkeys(h.strip() for h in (params.get("status") or "").split(",") if h.strip()))
    for h in healths:
        if h not in HEALTHS:
            raise ValidationFailed(f"status: {h[:40]!r} is not one of {', '.join(HEALTHS)}", field="status")
    sort = (params.get("sort") or "name").strip()
    if sort.removeprefix("-") not in SORTS:
        raise ValidationFailed(f"sort: must be one of {', '.join(SORTS)} (prefix - for descending)", field="sort")
    per_page = _int(params, "per", DEFAULT_PAGE_SIZE)
    if per_page not in PAGE_SIZES:
        raise ValidationFailed(f"per: must be one of {', '.join(map(str, PAGE_SIZES))}", field="per")
    q = (params.get("q") or "").strip()
    if len(q) > 200:
        raise ValidationFailed("q: at most 200 characters", field="q")
    os_name = (params.get("os") or "").strip()
    return FleetQuery(
        q=q or None, business_id=uuid_param(params, "business"), location_id=uuid_param(params, "location"),
        healths=healths, os=os_name[:50] or None, sort=sort, page=_int(params, "page", 1), per_page=per_page,
        grouped=(params.get("group") or "on") != "off",
    )


def _like(q: str | None) -> str | None:
    if not q:
        return None
    return "%" + q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _order(query: FleetQuery) -> str:
    desc = query.sort.startswith("-")
    expr = SORTS[query.sort.removeprefix("-")][1]
    direction = "DESC NULLS LAST" if desc else "ASC NULLS LAST"
    key = f"{expr} {direction}, lower(f.device_name), f.id"
    return f"{GROUP_ORDER}, {key}" if query.grouped else key


def orders() -> list[str]:
    """Every ORDER BY the page query can be given (tests parse the query with each)."""
    return [_order(FleetQuery(sort=sign + key, grouped=grouped))
            for key in SORTS for sign in ("", "-") for grouped in (True, False)]


@dataclass
class FleetPage:
    query: FleetQuery
    rows: list[Row]
    counts: dict[str, int]
    total: int  # agents matching every filter, health included
    all_total: int  # agents matching the filters but health (the counts' sum)
    businesses: list[Row] = field(default_factory=list)
    locations: list[Row] = field(default_factory=list)
    os_types: list[str] = field(default_factory=list)

    @property
    def pages(self) -> int:
        return max(1, math.ceil(self.total / self.query.per_page))

    @property
    def first(self) -> int:
        return 0 if not self.total else (self.query.page - 1) * self.query.per_page + 1

    @property
    def last(self) -> int:
        return min(self.total, self.query.page * self.query.per_page)


def _filter_params(principal: Principal, query: FleetQuery) -> dict[str, Any]:
    return {"scope": principal.business_scope, "business_id": query.business_id, "location_id": query.location_id,
            "os": query.os, "q": _like(query.q), "healths": list(query.healths) or None}


async def _check_filters(conn: AsyncConnection[Any], principal: Principal, query: FleetQuery) -> list[Row]:
    """Another business's id in a filter is a 404, as on the API; returns the location options."""
    scope = principal.business_scope
    if query.business_id is not None:
        options = await fetch_all(conn, Q.business_options, {"scope": scope})
        if not any(b["id"] == query.business_id for b in options):
            raise NotFound("business not found")
    business = query.business_id or scope
    locations = await fetch_all(conn, Q.location_options, {"business_id": business, "scope": scope}) \
        if business else []
    if query.location_id is not None and not any(loc["id"] == query.location_id for loc in locations):
        raise NotFound("service location not found")
    return locations


def _tally(rows: list[Row], healths: tuple[str, ...]) -> tuple[dict[str, int], dict[tuple[UUID, UUID | None], int]]:
    """(agents per health, agents per (business, location) among the healths asked for)."""
    counts = {h: 0 for h in HEALTHS}
    groups: dict[tuple[UUID, UUID | None], int] = {}
    for r in rows:
        counts[r["health"]] += int(r["n"])
        if not healths or r["health"] in healths:
            key = (r["business_id"], r["service_location_id"])
            groups[key] = groups.get(key, 0) + int(r["n"])
    return counts, groups


async def page(conn: AsyncConnection[Any], *, principal: Principal, query: FleetQuery,
               lookback_hours: int) -> FleetPage:
    locations = await _check_filters(conn, principal, query)
    params = _filter_params(principal, query)
    counts, groups = _tally(await fetch_all(conn, Q.fleet_counts, params), query.healths)
    total = sum(groups.values())
    pages = max(1, math.ceil(total / query.per_page))
    if query.page > pages:  # past the end (e.g. a filter shrank the list): the last page
        query = dataclasses.replace(query, page=pages)
    sql = Q.fleet_page.format(order=_order(query))  # {order}: whitelisted text, see SORTS
    rows = await fetch_all(conn, sql, {**params, "limit": query.per_page,
                                       "offset": (query.page - 1) * query.per_page,
                                       "lookback_hours": lookback_hours})
    for r in rows:
        r["group_size"] = groups.get((r["business_id"], r["service_location_id"]), 0)
    scope = principal.business_scope
    businesses = await fetch_all(conn, Q.business_options, {"scope": None}) if scope is None else []
    os_types = [r["os_type"] for r in await fetch_all(conn, Q.os_options, {"scope": scope})]
    return FleetPage(query=query, rows=rows, counts=counts, total=total, all_total=sum(counts.values()),
                     businesses=businesses, locations=locations, os_types=os_types)


async def counts(conn: AsyncConnection[Any], *, principal: Principal, query: FleetQuery) -> dict[str, int]:
    await _check_filters(conn, principal, query)
    return _tally(await fetch_all(conn, Q.fleet_counts, _filter_params(principal, query)), query.healths)[0]


async def matching_ids(conn: AsyncConnection[Any], *, principal: Principal, query: FleetQuery) -> list[UUID]:
    await _check_filters(conn, principal, query)
    rows = await fetch_all(conn, Q.fleet_ids, {**_filter_params(principal, query), "limit": MAX_IDS})
    return [r["id"] for r in rows]


async def admin_businesses(conn: AsyncConnection[Any]) -> list[Row]:
    """Every business with its agents counted by health (MSP staff only; the caller checks)."""
    return await fetch_all(conn, Q.admin_businesses, {
        "scope": None, "business_id": None, "location_id": None, "os": None, "q": None})



async def visible(conn: AsyncConnection[Any], *, principal: Principal, ids: list[UUID]) -> list[UUID]:
    """The subset of ``ids`` the caller may see (others are silently left out of a live feed)."""
    rows = await fetch_all(conn, Q.visible_agents, {"ids": ids, "scope": principal.business_scope})
    return [r["id"] for r in rows]
