"""Alerting endpoints (portal JWT): rules, episodes (list, acknowledge, resolve), maintenance.

Thin: parse, call ``rts_monitor.alerts`` services with a pooled connection, return. Tenancy is in
every query (another business's rule, alert, agent or window is a 404); writing rules and
windows needs staff, or a customer when ``RTS_ALERT_CUSTOMER_RULES`` is on.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from litestar import delete, get, patch, post
from litestar.params import Parameter
from litestar.status_codes import HTTP_204_NO_CONTENT

from rts_monitor.alerts import backtest, lifecycle, maintenance, rules
from rts_monitor.alerts.structs import (
    BacktestRequest,
    BacktestResult,
    DeliveryList,
    Episode,
    EpisodeAction,
    EpisodeList,
    Maintenance,
    MaintenanceCreate,
    MaintenanceList,
    MaintenanceUpdate,
    Rule,
    RuleCreate,
    RuleList,
    RuleUpdate,
)
from rts_monitor.auth.principal import Principal
from rts_monitor.core.context import AppContext
from rts_monitor.core.types import planned_time
from rts_monitor.db import Conn
from rts_monitor.devices.scope import visible_agent

TAGS = ["alerts"]
PORTAL: list[dict[str, list[str]]] = [{"portal": []}]
CONFLICT = {"errors": [409]}  # api/openapi.py: the alert's state may not allow it
StatusQ = Annotated[str | None, Parameter(description="Comma-separated: active, acknowledged, resolved, "
                                          "auto_resolved")]
SeverityQ = Annotated[str | None, Parameter(description="Comma-separated: info, warning, critical")]
SinceQ = Annotated[datetime | None, Parameter(description="triggered_at >= since (ISO 8601)")]
UntilQ = Annotated[datetime | None, Parameter(description="triggered_at < until (ISO 8601)")]
LimitQ = Annotated[int, Parameter(ge=1, le=1000)]
OffsetQ = Annotated[int, Parameter(ge=0)]


def _bound(value: datetime | None, name: str) -> datetime | None:
    planned_time(value, name)
    return value


# --- rules -----------------------------------------------------------------------------------

@post("/api/alerts/rules", status_code=201, tags=TAGS, security=PORTAL,
      summary="Create an alert rule for a business (all its devices) or one device; a bad body is a 400 "
              "naming the field (e.g. conditions.metric)")
async def create_rule(ctx: AppContext, conn: Conn, principal: Principal, data: RuleCreate) -> Rule:
    return await rules.create(conn, principal=principal, settings=ctx.settings, data=data)


@post("/api/alerts/rules/backtest", status_code=200, tags=TAGS, security=PORTAL,
      summary="Backtest a rule before saving it: the episodes it would have opened per device over a period "
              "(at most 30 days back), with totals and what a chart needs (threshold, clear line, episodes)",
      description="Body: `{\"rule\": <the body of POST /api/alerts/rules>, \"since\": ISO 8601, \"until\"?: "
                  "ISO 8601 (default now)}`. Metric rules only. Judged exactly as the live evaluator judges "
                  "(docs/alerts.md, \"Backtest\"). Who may: whoever may create the rule.")
async def backtest_rule(ctx: AppContext, conn: Conn, principal: Principal, data: BacktestRequest) -> BacktestResult:
    return await backtest.backtest(conn, principal=principal, settings=ctx.settings, edition=ctx.edition, data=data)


@get("/api/alerts/rules", tags=TAGS, security=PORTAL, summary="List alert rules (customers: their business)")
async def list_rules(conn: Conn, principal: Principal, business_id: UUID | None = None,
                     agent_id: Annotated[UUID | None, Parameter(description="Rules that apply to this agent")] = None,
                     active: bool | None = None) -> RuleList:
    found = await rules.list_rules(conn, principal=principal, business_id=business_id, agent_id=agent_id,
                                   active=active)
    return RuleList(rules=found)


@get("/api/alerts/rules/{rule_id:uuid}", tags=TAGS, security=PORTAL, summary="One alert rule")
async def get_rule(conn: Conn, principal: Principal, rule_id: UUID) -> Rule:
    return await rules.get(conn, principal=principal, rule_id=rule_id)


@patch("/api/alerts/rules/{rule_id:uuid}", tags=TAGS, security=PORTAL,
       summary="Update a rule (fields present only); is_active=false disables it; a bad body is a 400")
async def update_rule(ctx: AppContext, conn: Conn, principal: Principal, rule_id: UUID, data: RuleUpdate) -> Rule:
    return await rules.update(conn, principal=principal, settings=ctx.settings, rule_id=rule_id, data=data)


@post("/api/alerts/rules/{rule_id:uuid}/disable", status_code=200, tags=TAGS, security=PORTAL,
      summary="Disable a rule; its open alerts resolve")
async def disable_rule(ctx: AppContext, conn: Conn, principal: Principal, rule_id: UUID) -> Rule:
    return await rules.update(conn, principal=principal, settings=ctx.settings, rule_id=rule_id,
                              data=RuleUpdate(is_active=False), verb="disable")


@post("/api/alerts/rules/{rule_id:uuid}/enable", status_code=200, tags=TAGS, security=PORTAL,
      summary="Enable a disabled rule")
async def enable_rule(ctx: AppContext, conn: Conn, principal: Principal, rule_id: UUID) -> Rule:
    return await rules.update(conn, principal=principal, settings=ctx.settings, rule_id=rule_id,
                              data=RuleUpdate(is_active=True), verb="enable")


@delete("/api/alerts/rules/{rule_id:uuid}", status_code=HTTP_204_NO_CONTENT, tags=TAGS, security=PORTAL,
        summary="Delete a rule (soft: its alert history stays); its open alerts resolve")
async def delete_rule(ctx: AppContext, conn: Conn, principal: Principal, rule_id: UUID) -> None:
    await rules.delete(conn, principal=principal, settings=ctx.settings, rule_id=rule_id)


# --- episodes --------------------------------------------------------------------------------

@get("/api/alerts", tags=TAGS, security=PORTAL,
     summary="Alerts across the businesses the caller sees, newest first, with filters")
async def list_alerts(conn: Conn, principal: Principal, business_id: UUID | None = None,
                      agent_id: UUID | None = None, rule_id: UUID | None = None, status: StatusQ = None,
                      severity: SeverityQ = None, since: SinceQ = None, until: UntilQ = None,
                      limit: LimitQ = 100, offset: OffsetQ = 0) -> EpisodeList:
    found, total = await lifecycle.list_episodes(
        conn, principal=principal, business_id=business_id, agent_id=agent_id, rule_id=rule_id, status=status,
        severity=severity, since=_bound(since, "since"), until=_bound(until, "until"), limit=limit, offset=offset)
    return EpisodeList(alerts=found, total=total)


@get("/api/agents/{agent_id:uuid}/alerts", tags=TAGS, security=PORTAL,
     summary="Alerts of one device (the API contract's GET /agents/:id/alerts), newest first")
async def agent_alerts(conn: Conn, principal: Principal, agent_id: UUID, status: StatusQ = None,
                       severity: SeverityQ = None, since: SinceQ = None, until: UntilQ = None,
                       limit: LimitQ = 100, offset: OffsetQ = 0) -> EpisodeList:
    # another business's agent is a 404, not an empty list
    await visible_agent(conn, principal.business_scope, agent_id)
    found, total = await lifecycle.list_episodes(
        conn, principal=principal, agent_id=agent_id, status=status, severity=severity,
        since=_bound(since, "since"), until=_bound(until, "until"), limit=limit, offset=offset)
    return EpisodeList(alerts=found, total=total)


@get("/api/alerts/{alert_id:uuid}", tags=TAGS, security=PORTAL, summary="One alert episode")
async def get_alert(conn: Conn, principal: Principal, alert_id: UUID) -> Episode:
    return await lifecycle.get_episode(conn, principal=principal, alert_id=alert_id)


@post("/api/alerts/{alert_id:uuid}/acknowledge", status_code=200, tags=TAGS, security=PORTAL, opt=CONFLICT,
      summary="Acknowledge an active alert, with optional notes")
async def acknowledge_alert(conn: Conn, principal: Principal, alert_id: UUID,
                            data: EpisodeAction | None = None) -> Episode:
    return await lifecycle.acknowledge(conn, principal=principal, alert_id=alert_id,
                                       notes=data.notes if data else None)


@post("/api/alerts/{alert_id:uuid}/resolve", status_code=200, tags=TAGS, security=PORTAL, opt=CONFLICT,
      summary="Resolve an active or acknowledged alert, with optional notes")
async def resolve_alert(conn: Conn, principal: Principal, alert_id: UUID,
                        data: EpisodeAction | None = None) -> Episode:
    return await lifecycle.resolve(conn, principal=principal, alert_id=alert_id,
                                   notes=data.notes if data else None)


@get("/api/alerts/{alert_id:uuid}/deliveries", tags=TAGS, security=PORTAL,
     summary="Notification delivery log of one alert (every attempt)")
async def alert_deliveries(conn: Conn, principal: Principal, alert_id: UUID) -> DeliveryList:
    return DeliveryList(deliveries=await lifecycle.deliveries(conn, principal=principal, alert_id=alert_id))


# --- maintenance windows ---------------------------------------------------------------------

@post("/api/alerts/maintenance", status_code=201, tags=TAGS, security=PORTAL,
      summary="Create a maintenance window for a business, a location or a device")
async def create_window(ctx: AppContext, conn: Conn, principal: Principal, data: MaintenanceCreate) -> Maintenance:
    return await maintenance.create(conn, principal=principal, settings=ctx.settings, data=data)


@get("/api/alerts/maintenance", tags=TAGS, security=PORTAL,
     summary="Maintenance windows (current and future by default)")
async def list_windows(conn: Conn, principal: Principal, business_id: UUID | None = None,
                       current: Annotated[bool, Parameter(description="Only windows in effect now")] = False,
                       include_past: bool = False) -> MaintenanceList:
    found = await maintenance.list_windows(conn, principal=principal, business_id=business_id, current=current,
                                           include_past=include_past)
    return MaintenanceList(windows=found)


@get("/api/alerts/maintenance/{window_id:uuid}", tags=TAGS, security=PORTAL, summary="One maintenance window")
async def get_window(conn: Conn, principal: Principal, window_id: UUID) -> Maintenance:
    return await maintenance.get(conn, principal=principal, window_id=window_id)


@patch("/api/alerts/maintenance/{window_id:uuid}", tags=TAGS, security=PORTAL,
       summary="Move a window or end it early")
async def update_window(ctx: AppContext, conn: Conn, principal: Principal, window_id: UUID,
                        data: MaintenanceUpdate) -> Maintenance:
    return await maintenance.update(conn, principal=principal, settings=ctx.settings, window_id=window_id,
                                    data=data)


@delete("/api/alerts/maintenance/{window_id:uuid}", status_code=HTTP_204_NO_CONTENT, tags=TAGS, security=PORTAL,
        summary="Delete a maintenance window")
async def delete_window(ctx: AppContext, conn: Conn, principal: Principal, window_id: UUID) -> None:
    await maintenance.delete(conn, principal=principal, settings=ctx.settings, window_id=window_id)


HANDLERS: list[Any] = [
    create_rule, backtest_rule, list_rules, get_rule, update_rule, disable_rule, enable_rule, delete_rule,
    list_alerts, agent_alerts, get_alert, acknowledge_alert, resolve_alert, alert_deliveries,
    create_window, list_windows, get_window, update_window, delete_window,
]
