"""Delivering the notification rows of ``alert_outbox`` (webhook, e-mail, SMS): claim with a
lease, deliver concurrently, record.

At-least-once: a row is leased while delivered; success marks it done (and the episode
``notification_sent``), failure goes through the outbox's retry rule (``outbox.py``). Every
attempt lands in ``alert_notification_log``.

SMS (``_deliver_sms``): one text per episode per recipient, ever (``sms_deliveries``; a retried row
skips the numbers already reached), only for the opening; the numbers a batch would text are
grouped, and a number that would get more than ``RTS_SMS_DIGEST_THRESHOLD`` texts within a
minute gets one digest text for this batch's episodes instead.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
from psycopg_pool import AsyncConnectionPool

from rts_monitor.core.settings import Settings
from rts_monitor.db import Queries, connection
from rts_monitor.db.rows import fetch_all, fetch_one
from rts_monitor.notifications import email, outbound, outbox, sms, webhook
from rts_monitor.notifications.outbox import OutboxJob
from rts_monitor.notifications.webhook import Outcome

log = logging.getLogger(__name__)
Q = Queries.beside(__file__)
BATCH = 100


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z") if value else None


def payload(ep: dict[str, Any], event: str, delivery_id: int) -> dict[str, Any]:
    """The webhook body: the episode as the API shows it, plus the event."""
    return {
        "event": f"alert.{event}",
        "delivery_id": delivery_id,
        "sent_at": _iso(datetime.now(UTC)),
        "alert": {
            "id": str(ep["id"]), "rule_id": str(ep["agent_alert_id"]), "alert_name": ep["alert_name"],
            "alert_type": ep["alert_type"], "severity": ep["severity"], "status": ep["status"],
            "message": ep["alert_message"], "metric_value": ep["metric_value"],
            "threshold_value": ep["threshold_value"], "triggered_at": _iso(ep["triggered_at"]),
            "resolved_at": _iso(ep["resolved_at"]), "condition_since": _iso(ep["condition_since"]),
            "business_id": str(ep["business_id"]),
            "device": {"id": str(ep["agent_device_id"]), "name": ep["device_name"], "hostname": ep["hostname"]},
            "service_request_id": str(ep["service_request_created"]) if ep["service_request_created"] else None,
            "resolution_notes": ep["resolution_notes"],
        },
    }


async def drain(pool: AsyncConnectionPool, settings: Settings, *, limit: int = BATCH) -> int:
    """Deliver what is due now; returns how many rows were attempted."""
    lease = timedelta(seconds=max(settings.webhook_timeout_seconds, settings.smtp_timeout_seconds) + 60)
    async with connection(pool) as conn:
        jobs = await outbox.claim(conn, channels=["webhook", "email", "sms"], limit=limit, lease=lease)
    if not jobs:
        return 0
    texts = [job for job in jobs if job.channel == "sms"]
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(**outbound.connector_kwargs(settings))) as session:
        await asyncio.gather(*(_deliver(pool, settings, session, job) for job in jobs if job.channel != "sms"),
                             _deliver_sms(pool, settings, session, texts))
    return len(jobs)


async def _deliver(pool: AsyncConnectionPool, settings: Settings, session: aiohttp.ClientSession,
                   job: OutboxJob) -> None:
    async with connection(pool) as conn:
        ep = await fetch_one(conn, Q.episode_payload, {"id": job.alert_history_id})
    started = time.perf_counter()
    target: str | None = None
    if ep is None:  # the episode was deleted with its rule/device: nothing to tell anyone
        outcome = Outcome(False, None, "episode no longer exists")
    elif job.channel == "webhook":
        target = ep["webhook_url"]
        if not target:
            outcome = Outcome(False, None, "rule has no webhook_url")
        else:
            body = json.dumps(payload(ep, job.event, job.id), separators=(",", ":")).encode()
            outcome = await webhook.send(session, settings, url=target, event=f"alert.{job.event}",
                                         delivery_id=job.id, body=body)
    else:
        to = list(ep["emails"] or [])
        target = ", ".join(to) or None
        if not to:
            outcome = Outcome(False, None, "no e-mail recipients")
        else:
            outcome = await email.send(settings, _email(settings, ep, job, to))
    ms = round((time.perf_counter() - started) * 1000, 1)
    await _record(pool, settings, job, target, outcome, ms)


@dataclass
class _Texts:
    """One SMS outbox row in this batch: the numbers it still has to reach, what went wrong."""

    job: OutboxJob
    ep: dict[str, Any]
    pending: set[str]
    failures: list[Outcome] = field(default_factory=list)


async def _deliver_sms(pool: AsyncConnectionPool, settings: Settings, session: aiohttp.ClientSession,
                       jobs: list[OutboxJob]) -> None:
    by_number: dict[str, list[_Texts]] = {}
    rows: list[_Texts] = []
    for job in jobs:
        async with connection(pool) as conn:
            if job.event != "opened":  # one text per episode: the opening; a resolve sends none
                await outbox.done(conn, job=job)
                continue
            ep = await fetch_one(conn, Q.episode_payload, {"id": job.alert_history_id})
            reached = {r["recipient"] for r in await fetch_all(conn, Q.sms_reached, {"id": job.alert_history_id})}
        if ep is None or not ep["phones"]:
            why = ("episode no longer exists" if ep is None
                   else "no SMS recipients (E.164 numbers or users with a phone)")
            await _record(pool, settings, job, None, Outcome(False, None, why, retry=False), 0.0)
            continue
        row = _Texts(job, ep, {p for p in ep["phones"] if p not in reached})
        rows.append(row)
        for number in sorted(row.pending):
            by_number.setdefault(number, []).append(row)
    provider = sms.provider(settings)
    await asyncio.gather(*(_text_number(pool, settings, session, provider, number, items)
                           for number, items in by_number.items()))
    for row in rows:
        await _settle_sms(pool, settings, row)


async def _text_number(pool: AsyncConnectionPool, settings: Settings, session: aiohttp.ClientSession,
                       provider: sms.Provider | None, number: str, items: list[_Texts]) -> None:
    """Text one number about ``items``' episodes: each on its own, or one digest in a storm."""
    async with connection(pool) as conn:
        recent = await fetch_one(conn, Q.sms_recent, {"recipient": number})
    digest = (recent["n"] if recent else 0) + len(items) > settings.sms_digest_threshold
    batches = [items] if digest else [[item] for item in items]
    for batch in batches:
        body = _sms_digest(batch) if digest else _sms_text(batch[0].ep)
        started = time.perf_counter()
        if provider is None:
            outcome, provider_id = Outcome(False, None, f"unknown SMS provider {settings.sms_provider!r}",
                                           retry=False), None
        else:
            outcome, provider_id = await provider.send(session, settings, to=number, body=body)
        ms = round((time.perf_counter() - started) * 1000, 1)
        async with connection(pool) as conn:
            for item in batch:
                await conn.execute(Q.log_attempt, {
                    "outbox_id": item.job.id, "alert_history_id": item.job.alert_history_id, "channel": "sms",
                    "event": item.job.event, "attempt": item.job.attempts,
                    "target": number + (f" (digest of {len(batch)})" if digest else ""), "ok": outcome.ok,
                    "status_code": outcome.status_code, "error": outcome.error, "duration_ms": ms})
                if outcome.ok:
                    await conn.execute(Q.sms_record, {"id": item.job.alert_history_id, "recipient": number,
                                                      "digest": digest, "provider_id": provider_id})
                    item.pending.discard(number)
                else:
                    item.failures.append(outcome)
        log.log(logging.INFO if outcome.ok else logging.WARNING, "alerts.sms",
                extra={"recipient": number, "episodes": len(batch), "digest": digest, "ok": outcome.ok,
                       "status_code": outcome.status_code, "error": outcome.error, "ms": ms})


async def _settle_sms(pool: AsyncConnectionPool, settings: Settings, row: _Texts) -> None:
    """Done once every number was reached; else retried, unless every failure was final (a 4xx)."""
    async with connection(pool) as conn:
        if not row.pending:
            await outbox.done(conn, job=row.job)
            await conn.execute(Q.mark_notified, {"id": row.job.alert_history_id})
            return
        final = all(not f.retry for f in row.failures) if row.failures else False
        error = "; ".join(sorted({f.error or "failed" for f in row.failures})) or "not sent"
        await outbox.retry(conn, settings=settings, job=row.job, error=f"{len(row.pending)} number(s) not reached: "
                           f"{error}", final=final)


def _sms_text(ep: dict[str, Any]) -> str:
    return f"[{ep['severity'].upper()}] {ep['alert_name']} on {ep['device_name']}: {ep['alert_message']}"


def _sms_digest(items: list[_Texts]) -> str:
    names = ", ".join(f"{i.ep['alert_name']} on {i.ep['device_name']}" for i in items[:5])
    more = f" and {len(items) - 5} more" if len(items) > 5 else ""
    worst = max((i.ep["severity"] for i in items), key=["info", "warning", "critical"].index)
    return f"[{worst.upper()}] {len(items)} alerts opened: {names}{more}"


def _email(settings: Settings, ep: dict[str, Any], job: OutboxJob, to: list[str]) -> Any:
    head = "RESOLVED" if job.event == "resolved" else ep["severity"].upper()
    subject = f"[{head}] {ep['alert_name']} on {ep['device_name']}"
    lines = [ep["alert_message"], "", f"Status: {ep['status']}", f"Triggered: {_iso(ep['triggered_at'])}"]
    if ep["resolved_at"]:
        lines.append(f"Resolved: {_iso(ep['resolved_at'])}")
    if ep["resolution_notes"]:
        lines.append(f"Notes: {ep['resolution_notes']}")
    lines.append(f"Alert id: {ep['id']}")
    return email.build(settings, to=to, subject=subject, text="\n".join(lines), delivery_id=job.id)


async def _record(pool: AsyncConnectionPool, settings: Settings, job: OutboxJob, target: str | None,
                  outcome: Outcome, ms: float) -> None:
    async with connection(pool) as conn:
        await conn.execute(Q.log_attempt, {
            "outbox_id": job.id, "alert_history_id": job.alert_history_id, "channel": job.channel,
            "event": job.event, "attempt": job.attempts, "target": target, "ok": outcome.ok,
            "status_code": outcome.status_code, "error": outcome.error, "duration_ms": ms})
        if outcome.ok:
            await outbox.done(conn, job=job)
            if job.event == "opened":
                await conn.execute(Q.mark_notified, {"id": job.alert_history_id})
        else:
            await outbox.retry(conn, settings=settings, job=job, error=outcome.error or "delivery failed",
                               final=not outcome.retry)
    level = logging.INFO if outcome.ok else logging.WARNING
    log.log(level, "alerts.notification", extra={"channel": job.channel, "event": job.event, "outbox_id": job.id,
                                                 "attempt": job.attempts, "ok": outcome.ok,
                                                 "status_code": outcome.status_code, "error": outcome.error,
                                                 "ms": ms})
