"""Webhook delivery: a JSON body signed with HMAC-SHA256.

Headers: ``X-RTS-Event`` (``alert.opened``/``alert.resolved``), ``X-RTS-Delivery`` (outbox id:
the same on every retry, so receivers can de-duplicate), ``X-RTS-Timestamp`` (unix seconds) and
``X-RTS-Signature: sha256=<hex>`` of ``HMAC(secret, timestamp + "." + body)``; binding the
timestamp lets receivers reject replays.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import time
from dataclasses import dataclass

import aiohttp

from rts_monitor.core.settings import Settings


@dataclass(frozen=True)
class Outcome:
    ok: bool
    status_code: int | None
    error: str | None


def secret(settings: Settings) -> str:
    """The configured key, or a development key generated once per state dir."""
    if settings.webhook_secret:
        return settings.webhook_secret
    path = settings.state_dir / "webhook_secret"
    if path.is_file():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as fh:
        fh.write(value)
    return value


def sign(key: str, timestamp: int, body: bytes) -> str:
    digest = hmac.new(key.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify(key: str, timestamp: str, body: bytes, signature: str) -> bool:
    """What a receiver does (used by the tests): constant-time compare of the signature."""
    return hmac.compare_digest(sign(key, int(timestamp), body), signature)


async def send(session: aiohttp.ClientSession, settings: Settings, *, url: str, event: str, delivery_id: int,
               body: bytes) -> Outcome:
    ts = int(time.time())
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "rts-monitor-alerts",
        "X-RTS-Event": event,
        "X-RTS-Delivery": str(delivery_id),
        "X-RTS-Timestamp": str(ts),
        "X-RTS-Signature": sign(secret(settings), ts, body),
    }
    try:
        timeout = aiohttp.ClientTimeout(total=settings.webhook_timeout_seconds)
        async with session.post(url, data=body, headers=headers, timeout=timeout) as resp:
            await resp.read()
            if 200 <= resp.status < 300:
                return Outcome(True, resp.status, None)
            return Outcome(False, resp.status, f"HTTP {resp.status}")
    except TimeoutError:
        return Outcome(False, None, f"timeout after {settings.webhook_timeout_seconds}s")
    except aiohttp.ClientError as exc:
        return Outcome(False, None, f"{type(exc).__name__}: {exc}")
