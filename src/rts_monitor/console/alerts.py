"""The alert inbox's and the rule editor's data, from the services the API uses.

Episodes come from ``alerts.lifecycle.list_episodes`` (tenancy and filter validation there: an
unknown ``status`` is the API's 422 naming the field), rules from ``alerts.rules``, windows from
``alerts.maintenance``. Only what no service offers is read here: the linked tickets' titles and
the names of the people involved.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from rts_monitor.alerts import lifecycle, maintenance, rules
from rts_monitor.alerts.structs import METRICS, Delivery, Episode, Maintenance, Rule
from rts_monitor.auth.principal import Principal
from rts_monitor.console.fleet import uuid_param
from rts_monitor.core.errors import NotFound, ValidationFailed
from rts_monitor.db import Conn, Queries
from rts_monitor.db.rows import Row, fetch_all, fetch_one

Q = Queries.beside(__file__)
PAGE_SIZE = 100
# The inbox's status choices: "open" (what needs someone) is the default view.
STATUS_VIEWS = {"open": "active,acknowledged", "active": "active", "acknowledged": "acknowledged",
                "resolved": "resolved,auto_resolved", "all": None}
PERIODS = {"1h": timedelta(hours=1), "24h": timedelta(days=1), "7d": timedelta(days=7), "30d": timedelta(days=30),
           "all": None}
SEVERITIES = ("critical", "warning", "info")
AGGREGATIONS = ("avg", "min", "max")
OPERATORS = (">", ">=", "<", "<=")


def _choice(params: dict[str, str], name: str, choices: Any, default: str) -> str:
    value = params.get(name) or default
    if value not in choices:
        raise ValidationFailed(f"{name}: must be one of {', '.join(choices)}", field=name)
    return value


@dataclass
class InboxQuery:
    status: str = "open"
    severity: str = ""
    period: str = "7d"
    business_id: UUID | None = None
    agent_id: UUID | None = None

    def args(self, **override: Any) -> dict[str, str]:
        out = {"status": self.status, "severity": self.severity, "period": self.period,
               "business": str(self.business_id or ""), "agent": str(self.agent_id or ""), **override}
        return {k: v for k, v in out.items() if v}


def parse_inbox(params: dict[str, str]) -> InboxQuery:
    severity = params.get("severity") or ""
    if severity and severity not in SEVERITIES:
        raise ValidationFailed(f"severity: must be one of {', '.join(SEVERITIES)}", field="severity")
    return InboxQuery(status=_choice(params, "status", STATUS_VIEWS, "open"), severity=severity,
                      period=_choice(params, "period", PERIODS, "7d"), business_id=uuid_param(params, "business"),
                      agent_id=uuid_param(params, "agent"))


@dataclass
class Inbox:
    query: InboxQuery
    episodes: list[Episode]
    total: int
    tickets: dict[UUID, str]
    people: dict[UUID, str]
    businesses: list[Row] = field(default_factory=list)
    device: Row | None = None


async def _names(conn: Conn, query: str, ids: set[UUID], column: str) -> dict[UUID, str]:
    if not ids:
        return {}
    return {r["id"]: r[column] for r in await fetch_all(conn, query, {"ids": list(ids)})}


async def inbox(conn: Conn, *, principal: Principal, query: InboxQuery) -> Inbox:
    span = PERIODS[query.period]
    since = datetime.now(UTC) - span if span else None
    device = None
    if query.agent_id is not None:
        device = await fetch_one(conn, Q.agent_name, {"id": query.agent_id, "scope": principal.business_scope})
        if device is None:
            raise NotFound("agent not found", field="agent")
    episodes, total = await lifecycle.list_episodes(
        conn, principal=principal, business_id=query.business_id, agent_id=query.agent_id,
        status=STATUS_VIEWS[query.status], severity=query.severity or None, since=since, limit=PAGE_SIZE)
    tickets = await _names(conn, Q.ticket_titles, {e.service_request_created for e in episodes
                                                   if e.service_request_created}, "title")
    people = await _names(conn, Q.user_emails, {u for e in episodes for u in (e.acknowledged_by, e.resolved_by)
                                                if u}, "email")
    businesses = await fetch_all(conn, Q.business_options, {"scope": None}) if principal.is_staff else []
    if query.business_id is not None and principal.is_staff and not any(
            b["id"] == query.business_id for b in businesses):
        raise NotFound("business not found", field="business")
    return Inbox(query, episodes, total, tickets, people, businesses, device)


@dataclass
class EpisodeDetail:
    episode: Episode
    deliveries: list[Delivery]
    ticket_title: str | None
    people: dict[UUID, str]


async def episode(conn: Conn, *, principal: Principal, alert_id: UUID) -> EpisodeDetail:
    found = await lifecycle.get_episode(conn, principal=principal, alert_id=alert_id)
    sent = await lifecycle.deliveries(conn, principal=principal, alert_id=alert_id)
    title = None
    if found.service_request_created:
        title = (await _names(conn, Q.ticket_titles, {found.service_request_created}, "title")).get(
            found.service_request_created)
    people = await _names(conn, Q.user_emails, {u for u in (found.acknowledged_by, found.resolved_by) if u}, "email")
    return EpisodeDetail(found, sent, title, people)


# ---------------------------------------------------------------- rules and maintenance


@dataclass
class RulesPage:
    rules: list[Rule]
    windows: list[Maintenance]
    businesses: list[Row]
    devices: dict[UUID, str]


async def rules_page(conn: Conn, *, principal: Principal) -> RulesPage:
    found = await rules.list_rules(conn, principal=principal)
    windows = await maintenance.list_windows(conn, principal=principal, business_id=None, current=False,
                                              include_past=False)
    businesses = await fetch_all(conn, Q.business_options, {"scope": principal.business_scope})
    device_ids = {r.agent_device_id for r in found if r.agent_device_id} | {
        w.agent_device_id for w in windows if w.agent_device_id}
    devices = {}
    for agent_id in device_ids:
        row = await fetch_one(conn, Q.agent_name, {"id": agent_id, "scope": principal.business_scope})
        if row is not None:
            devices[agent_id] = str(row["device_name"])
    return RulesPage(found, windows, businesses, devices)


async def rule_form(conn: Conn, *, principal: Principal, rule_id: UUID | None) -> dict[str, Any]:
    rule = await rules.get(conn, principal=principal, rule_id=rule_id) if rule_id else None
    businesses = await fetch_all(conn, Q.business_options, {"scope": principal.business_scope})
    return {"rule": rule, "businesses": businesses, "metrics": METRICS, "aggregations": AGGREGATIONS,
            "operators": OPERATORS, "severities": SEVERITIES}
