"""E-mail delivery over SMTP (stdlib ``smtplib`` in a worker thread, with a timeout)."""

from __future__ import annotations

import asyncio
import smtplib
from email.message import EmailMessage

from rts_monitor.core.settings import Settings
from rts_monitor.notifications.webhook import Outcome


def build(settings: Settings, *, to: list[str], subject: str, text: str, delivery_id: int) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = settings.smtp_from
    msg["To"] = ", ".join(to)
    msg["Subject"] = subject
    msg["X-RTS-Delivery"] = str(delivery_id)
    msg.set_content(text)
    return msg


def _send_blocking(settings: Settings, msg: EmailMessage) -> None:
    with smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=settings.smtp_timeout_seconds) as smtp:
        if settings.smtp_starttls:
            smtp.starttls()
        if settings.smtp_username:
            smtp.login(settings.smtp_username, settings.smtp_password)
        smtp.send_message(msg)


async def send(settings: Settings, msg: EmailMessage) -> Outcome:
    if not settings.smtp_host:
        return Outcome(False, None, "SMTP not configured (RTS_SMTP_HOST)")
    try:
        await asyncio.wait_for(asyncio.to_thread(_send_blocking, settings, msg),
                               timeout=settings.smtp_timeout_seconds + 5)
    except smtplib.SMTPResponseException as exc:
        return Outcome(False, exc.smtp_code, f"SMTP {exc.smtp_code}: {exc.smtp_error!r}")
    except (OSError, smtplib.SMTPException, TimeoutError) as exc:
        return Outcome(False, None, f"{type(exc).__name__}: {exc}")
    return Outcome(True, 250, None)
