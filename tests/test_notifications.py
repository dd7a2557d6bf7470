"""Alert notifications: signed webhooks with retries and a delivery log, SMTP e-mail to a local sink,
and a slow channel that never delays evaluation. Real database, real local receivers."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import psycopg
import pytest
from aiohttp import web
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from rts_monitor.alerts import evaluator
from rts_monitor.core.settings import Settings
from rts_monitor.db import open_pool
from rts_monitor.notifications import delivery, webhook
from tests import factories
from tests.test_alerts import CPU90, FAST, add_rule, add_samples, deliver, wait_for


@dataclass
class Receiver:
    """A local webhook endpoint answering from a script of statuses (last one repeats)."""

    statuses: list[int]
    delay: float = 0.0
    calls: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    url: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.calls.append((dict(request.headers), body))
        if self.delay:
            await asyncio.sleep(self.delay)
        status = self.statuses[min(len(self.calls), len(self.statuses)) - 1]
        return web.Response(status=status, text="ok" if status < 300 else "nope")


@pytest.fixture
async def receiver() -> AsyncIterator[Callable[..., Any]]:
    runners: list[web.AppRunner] = []

    async def start(statuses: list[int], delay: float = 0.0) -> Receiver:
        rec = Receiver(statuses, delay)
        app = web.Application()
        app.router.add_post("/hook", rec.handle)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        rec.url = f"http://127.0.0.1:{port}/hook"
        runners.append(runner)
        return rec

    yield start
    for runner in runners:
        await runner.cleanup()


@dataclass
class SmtpSink:
    """A tiny SMTP server (enough of RFC 5321 for smtplib) that keeps every message it accepts."""

    messages: list[dict[str, Any]] = field(default_factory=list)
    port: int = 0

    async def session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 sink ready\r\n")
        rcpt: list[str] = []
        sender = ""
        while line := (await reader.readline()).decode(errors="replace"):
            verb = line[:4].upper()
            if verb in ("EHLO", "HELO"):
                writer.write(b"250 sink\r\n")
            elif verb == "MAIL":
                sender, rcpt = line.split(":", 1)[1].strip(), []
                writer.write(b"250 ok\r\n")
            elif verb == "RCPT":
                rcpt.append(line.split(":", 1)[1].strip().strip("<>"))
                writer.write(b"250 ok\r\n")
            elif verb == "DATA":
                writer.write(b"354 go ahead\r\n")
                await writer.drain()
                data = await reader.readuntil(b"\r\n.\r\n")
                self.messages.append({"from": sender, "to": rcpt, "data": data.decode(errors="replace")})
                writer.write(b"250 queued\r\n")
            elif verb == "QUIT":
                writer.write(b"221 bye\r\n")
                await writer.drain()
                break
            else:
                writer.write(b"250 ok\r\n")
            await writer.drain()
        writer.close()


@pytest.fixture
async def smtp_sink() -> AsyncIterator[SmtpSink]:
    sink = SmtpSink()
    server = await asyncio.start_server(sink.session, "127.0.0.1", 0)
    sink.port = server.sockets[0].getsockname()[1]
    yield sink
    server.close()
    await server.wait_closed()


@pytest.fixture
async def pool(settings: Settings) -> AsyncIterator[AsyncConnectionPool]:
    p = await open_pool(settings, max_size=4)
    yield p
    await p.close()


async def open_episode(conn: Any, settings: Settings, **rule_extra: Any) -> tuple[UUID, UUID]:
    """A tenant, a CPU rule with ``rule_extra`` and an episode opened by a real evaluation."""
    t = await factories.tenant(conn)
    rule = await add_rule(conn, t.business_id, CPU90, severity="critical", **rule_extra)
    await add_samples(conn, t.agent.id, datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=12),
                      [95.0] * 11)
    (opened,) = (await evaluator.evaluate(conn, settings)).opened
    return rule, opened.history_id


async def episode(conn: Any, history_id: UUID) -> dict[str, Any]:
    cur = await conn.execute("SELECT * FROM agent_alert_history WHERE id = %s", (history_id,))
    return await cur.fetchone()  # type: ignore[no-any-return]


async def log_rows(conn: Any, history_id: UUID) -> list[dict[str, Any]]:
    cur = await conn.execute("SELECT * FROM alert_notification_log WHERE alert_history_id = %s ORDER BY id",
                             (history_id,))
    return list(await cur.fetchall())


async def test_webhook_is_signed_retried_with_backoff_and_logged(
        conn: psycopg.AsyncConnection[Any], settings: Settings, pool: AsyncConnectionPool, receiver: Any) -> None:
    rec = await receiver([500, 502, 200])
    settings = settings.with_(notify_backoff_seconds=0.3, webhook_secret="s3cret")
    _, hid = await open_episode(conn, settings, notification_channels=Jsonb(["webhook"]), webhook_url=rec.url)
    assert await delivery.drain(pool, settings) == 1
    assert await delivery.drain(pool, settings) == 0  # the retry is not due yet: backoff
    assert (await episode(conn, hid))["notification_sent"] is False  # truthful: nothing delivered yet
    await asyncio.sleep(0.35)
    assert await delivery.drain(pool, settings) == 1  # second attempt (502), next backoff 0.6 s
    await asyncio.sleep(0.65)
    assert await delivery.drain(pool, settings) == 1
    ep = await episode(conn, hid)
    assert ep["notification_sent"] is True and ep["notification_sent_at"] is not None
    rows = await log_rows(conn, hid)
    assert [(r["attempt"], r["ok"], r["status_code"]) for r in rows] == [(1, False, 500), (2, False, 502),
                                                                          (3, True, 200)]
    assert all(r["target"] == rec.url and r["channel"] == "webhook" for r in rows)
    assert len(rec.calls) == 3
    deliveries = {h["X-RTS-Delivery"] for h, _ in rec.calls}
    assert len(deliveries) == 1  # the same delivery id on every retry: receivers can de-duplicate
    for headers, body in rec.calls:
        assert webhook.verify("s3cret", headers["X-RTS-Timestamp"], body, headers["X-RTS-Signature"])
        assert not webhook.verify("other", headers["X-RTS-Timestamp"], body, headers["X-RTS-Signature"])
    payload = json.loads(rec.calls[-1][1])
    assert payload["event"] == "alert.opened" and payload["alert"]["id"] == str(hid)
    assert payload["alert"]["severity"] == "critical" and payload["alert"]["status"] == "active"
    cur = await conn.execute("SELECT status, attempts FROM alert_outbox WHERE alert_history_id = %s", (hid,))
    assert await cur.fetchall() == [{"status": "done", "attempts": 3}]


async def test_a_webhook_that_keeps_failing_ends_failed_and_not_sent(
        conn: psycopg.AsyncConnection[Any], settings: Settings, pool: AsyncConnectionPool, receiver: Any) -> None:
    rec = await receiver([503])
    settings = settings.with_(notify_backoff_seconds=0.0, notify_max_attempts=3)
    _, hid = await open_episode(conn, settings, notification_channels=Jsonb(["webhook"]), webhook_url=rec.url)
    for _ in range(5):
        await delivery.drain(pool, settings)
    cur = await conn.execute("SELECT status, attempts, last_error FROM alert_outbox WHERE alert_history_id = %s",
                             (hid,))
    assert await cur.fetchall() == [{"status": "failed", "attempts": 3, "last_error": "HTTP 503"}]
    assert len(rec.calls) == 3 and len(await log_rows(conn, hid)) == 3
    ep = await episode(conn, hid)
    assert ep["notification_sent"] is False and ep["notification_sent_at"] is None


async def test_email_to_addresses_and_users_through_a_local_smtp_sink(
        conn: psycopg.AsyncConnection[Any], settings: Settings, pool: AsyncConnectionPool,
        smtp_sink: SmtpSink) -> None:
    settings = settings.with_(smtp_host="127.0.0.1", smtp_port=smtp_sink.port, smtp_from="alerts@msp.test")
    b = await factories.business(conn)
    user = await factories.user(conn, b, "customer")
    cur = await conn.execute("SELECT email FROM users WHERE id = %s", (user,))
    user_email = (await cur.fetchone())["email"]
    dev = await factories.agent(conn, b, name="mail-box")
    await add_rule(conn, b, CPU90, name="cpu_mail", severity="critical",
                   notification_channels=Jsonb(["email"]),
                   notification_recipients=Jsonb(["oncall@msp.test", str(user)]))
    last = await add_samples(conn, dev.id, datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=23),
                             [95.0] * 11)
    (opened,) = (await evaluator.evaluate(conn, settings.with_(alert_data_stale_seconds=3600))).opened
    assert await delivery.drain(pool, settings) == 1
    (msg,) = smtp_sink.messages
    assert sorted(msg["to"]) == sorted(["oncall@msp.test", user_email])
    assert "alerts@msp.test" in msg["from"]
    assert "Subject: [CRITICAL] cpu_mail on mail-box" in msg["data"]
    ep = await episode(conn, opened.history_id)
    assert ep["notification_sent"] is True
    # Clearing the condition mails a resolution too.
    await add_samples(conn, dev.id, last + timedelta(minutes=1), [10.0] * 11)
    r = await evaluator.evaluate(conn, settings.with_(alert_data_stale_seconds=3600))
    assert r.resolved == [opened.history_id]
    assert await delivery.drain(pool, settings) == 1
    assert "Subject: [RESOLVED] cpu_mail on mail-box" in smtp_sink.messages[1]["data"]
    rows = await log_rows(conn, opened.history_id)
    assert [(r["event"], r["ok"]) for r in rows] == [("opened", True), ("resolved", True)]


async def test_unconfigured_or_unreachable_channels_fail_visibly(
        conn: psycopg.AsyncConnection[Any], settings: Settings, pool: AsyncConnectionPool) -> None:
    from tests.fix_api import free_port

    _, hid = await open_episode(conn, settings, notification_channels=Jsonb(["webhook", "email"]),
                                notification_recipients=Jsonb(["a@b.test"]),
                                webhook_url=f"http://127.0.0.1:{free_port()}/nobody-listens")
    assert await delivery.drain(pool, settings.with_(smtp_host="")) == 2
    rows = {r["channel"]: r for r in await log_rows(conn, hid)}
    assert rows["email"]["ok"] is False and "RTS_SMTP_HOST" in rows["email"]["error"]
    assert rows["webhook"]["ok"] is False and "Connect" in rows["webhook"]["error"]
    assert (await episode(conn, hid))["notification_sent"] is False


async def test_a_slow_webhook_never_delays_evaluation(conn: psycopg.AsyncConnection[Any], api_factory: Any,
                                                      receiver: Any) -> None:
    """Real server, evaluation every second; the webhook takes 6 s to answer. Alerts for other
    devices keep opening on time while that delivery hangs, and notification_sent only turns true
    once it really went through."""
    rec = await receiver([200], delay=6.0)
    b = await factories.business(conn)
    first, second = await factories.agent(conn, b), await factories.agent(conn, b)
    rule = await add_rule(conn, b, CPU90, notification_channels=Jsonb(["webhook"]), webhook_url=rec.url)
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=12)
    await add_samples(conn, first.id, start, [95.0] * 11)
    api_factory(env={**FAST, "RTS_WEBHOOK_TIMEOUT_SECONDS": "20"})

    async def opened(device: UUID) -> Any:
        cur = await conn.execute("SELECT * FROM agent_alert_history WHERE agent_alert_id = %s AND "
                                 "agent_device_id = %s", (rule, device))
        return await cur.fetchone()

    await wait_for(lambda: opened(first.id))
    await wait_for(lambda: asyncio.sleep(0, result=bool(rec.calls)))  # delivery in flight, receiver stalling
    stalled_at = time.monotonic()
    # As an ingest flush writes them (last_metrics_received moves): the server's cycles are
    # incremental, so samples written around ingest would wait for the hourly full cycle.
    await deliver(conn, second.id, [(start + timedelta(minutes=i), 95.0) for i in range(11)])
    ep2 = await wait_for(lambda: opened(second.id), timeout=5)
    assert time.monotonic() - stalled_at < 4.5, "the second alert waited for the slow webhook"
    assert (await opened(first.id))["notification_sent"] is False
    assert ep2 is not None
    ep1 = await wait_for(lambda: _sent(conn, first.id), timeout=30)
    assert ep1["notification_sent_at"] is not None


async def _sent(conn: Any, device: UUID) -> Any:
    cur = await conn.execute("SELECT * FROM agent_alert_history WHERE agent_device_id = %s AND notification_sent",
                             (device,))
    return await cur.fetchone()
