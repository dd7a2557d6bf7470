"""Webhook delivery: a JSON body signed with HMAC-SHA256.

Headers: ``X-RTS-Event`` (``alert.opened``/``alert.resolved``), ``X-RTS-Delivery`` (outbox id:
the same on every retry, so receivers can de-duplicate), ``X-RTS-Timestamp`` (unix seconds) and
``X-RTS-Signature: sha256=<hex>`` of ``HMAC(secret, timestamp + "." + body)``; binding the
timestamp lets receivers reject replays.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass

import aiohttp

from rts_monitor.core.settings import Settings
from rts_monitor.notifications import outbound


@dataclass(frozen=True)
class Outcome:
    ok: bool
    status_code: int | None
    error: str | None
    retry: bool = True  # False: the same request can never succeed (a refused destination)


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
        "X-RTS-Signature": sign(settings.effective_webhook_secret(), ts, body),
    }
    try:
        outbound.check_before_send(settings, url)
        timeout = aiohttp.ClientTimeout(total=settings.webhook_timeout_seconds,
                                        connect=min(5.0, settings.webhook_timeout_seconds))
        # Redirects are not followed: a receiver could point the server anywhere (outbound.py).
        async with session.post(url, data=body, headers=headers, timeout=timeout, allow_redirects=False) as resp:
            await resp.content.read(outbound.MAX_RESPONSE_BYTES)  # drained up to a cap, never stored
            if 200 <= resp.status < 300:
                return Outcome(True, resp.status, None)
            if 300 <= resp.status < 400:
                return Outcome(False, resp.status, f"HTTP {resp.status}: redirects are not followed")
            return Outcome(False, resp.status, f"HTTP {resp.status}")
    except TimeoutError:
        return Outcome(False, None, f"timeout after {settings.webhook_timeout_seconds}s")
    except outbound.DestinationRefused as exc:
        return Outcome(False, None, f"destination refused: {exc}", retry=False)
    except aiohttp.ClientConnectorError as exc:
        if isinstance(exc.os_error, outbound.DestinationRefused):
            return Outcome(False, None, f"destination refused: {exc.os_error}", retry=False)
        return Outcome(False, None, f"{type(exc).__name__}: {exc}")
    except aiohttp.ClientError as exc:
        return Outcome(False, None, f"{type(exc).__name__}: {exc}")
