"""Alert rules: validation (errors name the field), tenancy, create/read/update/disable/delete.

Who may write: staff always; customers only for their own business and only when
``RTS_ALERT_CUSTOMER_RULES`` is on (an MSP decides whether clients tune their own alerting).
Everyone may read the rules of the businesses they can see.
"""

from __future__ import annotations

import math
import re
from typing import Any
from uuid import UUID

import msgspec
from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from rts_monitor.alerts.structs import (
    MAX_DURATION_MINUTES,
    METRICS,
    PERCENT_METRICS,
    Conditions,
    Rule,
    RuleCreate,
    RuleUpdate,
)
from rts_monitor.audit import service as audit
from rts_monitor.auth.principal import Principal
from rts_monitor.core.errors import Forbidden, NotFound, ValidationFailed
from rts_monitor.core.settings import Settings
from rts_monitor.db import Queries
from rts_monitor.devices.scope import visible_agent
from rts_monitor.notifications import outbound

Q = Queries.beside(__file__)
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+$")


def require_rule_writer(principal: Principal, settings: Settings) -> None:
    """Staff, or a customer when the MSP allows customers to manage their own rules."""
    if principal.is_staff:
        return
    if not settings.alert_customer_rules:
        raise Forbidden("managing alert rules requires an admin or technician (RTS_ALERT_CUSTOMER_RULES is off)")


def validate_conditions(c: Conditions, prefix: str = "conditions") -> None:
    """Semantic checks msgspec's types cannot express; the error names the offending field."""
    def bad(name: str, why: str) -> ValidationFailed:
        return ValidationFailed(f"{prefix}.{name}: {why}", field=f"{prefix}.{name}")

    if not 0 <= c.duration_minutes <= MAX_DURATION_MINUTES:
        raise bad("duration_minutes", f"must be between 0 and {MAX_DURATION_MINUTES}")
    if c.kind == "metric":
        if c.metric is None:
            raise bad("metric", "required for a metric rule")
        if c.metric not in METRICS:
            raise bad("metric", f"unknown metric {c.metric!r}; one of {', '.join(METRICS)}")
        if c.operator is None:
            raise bad("operator", "required for a metric rule (>, >=, <, <=)")
        if c.threshold is None or not math.isfinite(c.threshold):
            raise bad("threshold", "required, a finite number")
        if c.metric in PERCENT_METRICS and not 0 <= c.threshold <= 100:
            raise bad("threshold", "a percentage must be between 0 and 100")
        if c.hysteresis is not None and (not math.isfinite(c.hysteresis) or c.hysteresis < 0):
            raise bad("hysteresis", "must be a finite number >= 0")
        if c.service_name is not None:
            raise bad("service_name", "only for service_down rules")
        return
    for name in ("metric", "operator", "threshold", "hysteresis"):
        if getattr(c, name) is not None:
            raise bad(name, f"not allowed for a {c.kind} rule")
    if c.kind == "agent_offline":
        if c.duration_minutes < 1:
            raise bad("duration_minutes", "an offline rule needs at least 1 minute")
        if c.service_name is not None:
            raise bad("service_name", "only for service_down rules")
    if c.kind == "service_down" and c.service_name is not None and not c.service_name.strip():
        raise bad("service_name", "must not be empty (omit it to watch every monitored service)")


def _validate_rule(settings: Settings, name: str, channels: list[str], recipients: list[str],
                   webhook_url: str | None) -> None:
    if not name.strip() or len(name) > 255:
        raise ValidationFailed("alert_name: must be 1-255 characters", field="alert_name")
    for i, r in enumerate(recipients):
        if not (_EMAIL.match(r) or _is_uuid(r)):
            raise ValidationFailed(f"notification_recipients[{i}]: not an e-mail address or user id",
                                   field=f"notification_recipients[{i}]")
    if webhook_url is not None:
        outbound.check_url(settings, webhook_url, field="webhook_url")
    if "webhook" in channels and not webhook_url:
        raise ValidationFailed("webhook_url: required when notification_channels has 'webhook'", field="webhook_url")
    if "email" in channels and not recipients:
        raise ValidationFailed("notification_recipients: required when notification_channels has 'email'",
                               field="notification_recipients")


def _is_uuid(value: str) -> bool:
    try:
        UUID(value)
    except ValueError:
        return False
    return True


def default_type(c: Conditions) -> str:
    return f"{c.metric}_threshold" if c.kind == "metric" else c.kind


def _row_to_rule(row: dict[str, Any]) -> Rule:
    raw = row["conditions"] if isinstance(row["conditions"], dict) else {}
    known = {k: v for k, v in raw.items() if k in Conditions.__struct_fields__}
    data = dict(row)
    data["conditions"] = msgspec.convert(known, Conditions)
    return msgspec.convert(data, Rule, from_attributes=False)


async def resolve_business(conn: AsyncConnection[Any], principal: Principal, business_id: UUID | None,
                           device_id: UUID | None, *, prefix: str = "") -> UUID:
    """The rule's business: the device's, the one given, or the customer's own; 404 outside scope.
    ``prefix``: where the rule sits in the body (``rule.`` in a backtest), for the field names."""
    scope = principal.business_scope
    if device_id is not None:
        dev = await visible_agent(conn, scope, device_id, field=f"{prefix}agent_device_id")
        if business_id is not None and business_id != dev["business_id"]:
            raise ValidationFailed(f"{prefix}agent_device_id: belongs to another business",
                                   field=f"{prefix}agent_device_id")
        return dev["business_id"]  # type: ignore[no-any-return]
    business_id = business_id or principal.business_id
    if business_id is None:
        raise ValidationFailed(f"{prefix}business_id: required (or agent_device_id)", field=f"{prefix}business_id")
    cur = await conn.execute(Q.business_exists, {"id": business_id, "scope": scope})
    if await cur.fetchone() is None:
        raise NotFound("business not found", field=f"{prefix}business_id")
    return business_id


async def _check_user_recipients(conn: AsyncConnection[Any], business_id: UUID, recipients: list[str]) -> None:
    """A user id may receive a rule's mail only as an active user of the rule's business, or MSP
    staff: otherwise a rule author could mail alerts of one business to another's users."""
    ids = [r for r in recipients if _is_uuid(r)]
    if not ids:
        return
    cur = await conn.execute(Q.usable_recipients, {"ids": ids, "business_id": business_id})
    usable = {str(r["id"]) for r in await cur.fetchall()}
    for i, r in enumerate(recipients):
        if _is_uuid(r) and str(UUID(r)) not in usable:
            raise ValidationFailed(f"notification_recipients[{i}]: not an active user of this business or MSP staff",
                                   field=f"notification_recipients[{i}]")


async def create(conn: AsyncConnection[Any], *, principal: Principal, settings: Settings, data: RuleCreate) -> Rule:
    require_rule_writer(principal, settings)
    validate_conditions(data.conditions)
    _validate_rule(settings, data.alert_name, list(data.notification_channels), data.notification_recipients,
                   data.webhook_url)
    business_id = await resolve_business(conn, principal, data.business_id, data.agent_device_id)
    await _check_user_recipients(conn, business_id, data.notification_recipients)
    params = {
        "alert_name": data.alert_name.strip(), "alert_type": data.alert_type or default_type(data.conditions),
        "severity": data.severity, "business_id": business_id, "agent_device_id": data.agent_device_id,
        "conditions": Jsonb(msgspec.to_builtins(data.conditions)),
        "notification_enabled": data.notification_enabled,
        "notification_channels": Jsonb(list(data.notification_channels)),
        "notification_recipients": Jsonb(data.notification_recipients), "webhook_url": data.webhook_url,
        "create_ticket": data.create_ticket, "is_active": data.is_active, "created_by": principal.user_id,
    }
    async with conn.transaction():
        cur = await conn.execute(Q.rule_insert, params)
        row = await cur.fetchone()
        assert row is not None
        rule = await get(conn, principal=principal, rule_id=row["id"])
        await _audit(conn, principal, "create", rule.id, rule.business_id, None, rule)
    return rule


async def _audit(conn: AsyncConnection[Any], principal: Principal, verb: str, rule_id: UUID, business_id: UUID,
                 before: Rule | None, after: Rule | None) -> None:
    await audit.record(conn, principal=principal, action=f"alert_rule.{verb}", object_type="alert_rule",
                       object_id=rule_id, business_id=business_id, before=before, after=after)


async def get(conn: AsyncConnection[Any], *, principal: Principal, rule_id: UUID) -> Rule:
    cur = await conn.execute(Q.rule_get, {"id": rule_id, "scope": principal.business_scope})
    row = await cur.fetchone()
    if row is None:
        raise NotFound("alert rule not found")
    return _row_to_rule(row)


async def list_rules(conn: AsyncConnection[Any], *, principal: Principal, business_id: UUID | None = None,
                     agent_id: UUID | None = None, active: bool | None = None) -> list[Rule]:
    cur = await conn.execute(Q.rule_list, {"scope": principal.business_scope, "business_id": business_id,
                                           "agent_id": agent_id, "active": active})
    return [_row_to_rule(r) for r in await cur.fetchall()]


async def update(conn: AsyncConnection[Any], *, principal: Principal, settings: Settings, rule_id: UUID,
                 data: RuleUpdate, verb: str = "update") -> Rule:
    """Apply the fields present; disabling resolves the rule's open episodes (it no longer watches).
    ``verb`` names the change in the audit log (``enable``/``disable`` from their endpoints)."""
    require_rule_writer(principal, settings)
    current = await get(conn, principal=principal, rule_id=rule_id)
    merged = {f: getattr(current, f) for f in RuleUpdate.__struct_fields__}
    for f in RuleUpdate.__struct_fields__:
        value = getattr(data, f)
        if value is not msgspec.UNSET:
            merged[f] = value
    conditions: Conditions = merged["conditions"]
    if data.conditions is not msgspec.UNSET:
        validate_conditions(conditions)
    _validate_rule(settings, merged["alert_name"], list(merged["notification_channels"]),
                   merged["notification_recipients"], merged["webhook_url"])
    if data.notification_recipients is not msgspec.UNSET:
        await _check_user_recipients(conn, current.business_id, merged["notification_recipients"])
    params = {**merged, "id": rule_id, "conditions": Jsonb(msgspec.to_builtins(conditions)),
              "notification_channels": Jsonb(list(merged["notification_channels"])),
              "notification_recipients": Jsonb(list(merged["notification_recipients"]))}
    async with conn.transaction():
        await conn.execute(Q.rule_update, params)
        if current.is_active and not merged["is_active"]:
            await _close_episodes(conn, rule_id, "auto-resolved: rule disabled")
        rule = await get(conn, principal=principal, rule_id=rule_id)
        await _audit(conn, principal, verb, rule_id, current.business_id, current, rule)
    return rule


async def delete(conn: AsyncConnection[Any], *, principal: Principal, settings: Settings, rule_id: UUID) -> None:
    """Soft delete (history keeps pointing at the rule); open episodes resolve."""
    require_rule_writer(principal, settings)
    async with conn.transaction():
        before = await get(conn, principal=principal, rule_id=rule_id)
        cur = await conn.execute(Q.rule_soft_delete, {"id": rule_id, "scope": principal.business_scope})
        if await cur.fetchone() is None:
            raise NotFound("alert rule not found")
        await _close_episodes(conn, rule_id, "auto-resolved: rule deleted")
        await _audit(conn, principal, "delete", rule_id, before.business_id, before, None)


async def _close_episodes(conn: AsyncConnection[Any], rule_id: UUID, note: str) -> None:
    cur = await conn.execute(Q.close_rule_episodes, {"id": rule_id, "note": note})
    ids = [r["id"] for r in await cur.fetchall()]
    if ids:
        await conn.execute(Q.enqueue_resolved, {"ids": ids})
