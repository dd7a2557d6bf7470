"""SMS: texts through a provider's REST API, behind a small interface.

``Provider.send`` posts one text and says what happened as the webhook channel's ``Outcome``: a
2xx is delivered, a 4xx is the request's own fault and is not retried (logged with the provider's
message; 429, the provider's rate limit, is the one 4xx worth retrying), a 5xx, a timeout or a
connection failure is retried by the outbox. The first provider speaks Twilio's Messages API:
``POST {RTS_SMS_API_URL}/2010-04-01/Accounts/{RTS_SMS_ACCOUNT_SID}/Messages.json`` with HTTP
basic auth (account SID, ``RTS_SMS_AUTH_TOKEN``) and the form fields ``To``, ``From``
(``RTS_SMS_FROM``), ``Body``; the answer's ``sid`` is kept. The URL goes through the same
outbound guard as webhooks (outbound.py); redirects are not followed.
"""

from __future__ import annotations

import base64
import json
import re
from typing import Protocol

import aiohttp

from rts_monitor.core.settings import Settings
from rts_monitor.notifications import outbound
from rts_monitor.notifications.webhook import Outcome

# ITU-T E.164: "+", a country code that does not start with 0, at most 15 digits in all.
E164 = re.compile(r"^\+[1-9]\d{7,14}$")
MAX_BODY_CHARS = 600  # four concatenated segments: enough for an alert, never a bill surprise


class Provider(Protocol):
    async def send(self, session: aiohttp.ClientSession, settings: Settings, *, to: str,
                   body: str) -> tuple[Outcome, str | None]:
        """(outcome, the provider's message id when delivered)."""
        ...


class Twilio:
    async def send(self, session: aiohttp.ClientSession, settings: Settings, *, to: str,
                   body: str) -> tuple[Outcome, str | None]:
        missing = [name for name, value in (("RTS_SMS_ACCOUNT_SID", settings.sms_account_sid),
                                            ("RTS_SMS_AUTH_TOKEN", settings.sms_auth_token),
                                            ("RTS_SMS_FROM", settings.sms_from)) if not value]
        if missing:  # retried: the operator may still configure it before the attempts run out
            return Outcome(False, None, f"SMS provider not configured: {', '.join(missing)}"), None
        url = (f"{settings.sms_api_url.rstrip('/')}/2010-04-01/Accounts/{settings.sms_account_sid}"
               "/Messages.json")
        form = {"To": to, "From": settings.sms_from, "Body": body[:MAX_BODY_CHARS]}
        try:
            outbound.check_before_send(settings, url)
            timeout = aiohttp.ClientTimeout(total=settings.sms_timeout_seconds,
                                            connect=min(5.0, settings.sms_timeout_seconds))
            credentials = base64.b64encode(f"{settings.sms_account_sid}:{settings.sms_auth_token}".encode()).decode()
            async with session.post(url, data=form, timeout=timeout, allow_redirects=False,
                                    headers={"Authorization": f"Basic {credentials}"}) as resp:
                raw = await resp.content.read(outbound.MAX_RESPONSE_BYTES)
                answer = _json(raw)
                if 200 <= resp.status < 300:
                    sid = answer.get("sid")
                    return Outcome(True, resp.status, None), sid if isinstance(sid, str) else None
                message = answer.get("message") if isinstance(answer.get("message"), str) else raw[:200].decode(
                    errors="replace")
                error = f"HTTP {resp.status}: {message}"
                if 400 <= resp.status < 500 and resp.status != 429:
                    return Outcome(False, resp.status, error, retry=False), None
                return Outcome(False, resp.status, error), None
        except TimeoutError:
            return Outcome(False, None, f"timeout after {settings.sms_timeout_seconds}s"), None
        except outbound.DestinationRefused as exc:
            return Outcome(False, None, f"destination refused: {exc}", retry=False), None
        except aiohttp.ClientConnectorError as exc:
            if isinstance(exc.os_error, outbound.DestinationRefused):
                return Outcome(False, None, f"destination refused: {exc.os_error}", retry=False), None
            return Outcome(False, None, f"{type(exc).__name__}: {exc}"), None
        except aiohttp.ClientError as exc:
            return Outcome(False, None, f"{type(exc).__name__}: {exc}"), None


def _json(raw: bytes) -> dict[str, object]:
    try:
        value = json.loads(raw)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


PROVIDERS: dict[str, Provider] = {"twilio": Twilio()}


def provider(settings: Settings) -> Provider | None:
    """The configured provider; None for a name this server does not know (every text fails,
    logged with the name, rather than going to a provider nobody chose)."""
    return PROVIDERS.get(settings.sms_provider.lower())
