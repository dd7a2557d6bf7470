"""Console sessions: a cookie names a row of ``console_sessions``; the row names a portal user.

The session carries exactly the portal principal (user, role, business) the API would derive
from that user's JWT, so every page and every API call made with the cookie sees what the API
would show that person, no more. A session ends when it is signed out, when it has not been used
for ``RTS_CONSOLE_SESSION_IDLE_MINUTES``, when ``RTS_CONSOLE_SESSION_ABSOLUTE_HOURS`` have passed
since sign-in, or when the user's row in the portal's ``users`` table is deactivated or deleted.

CSRF: every session has its own random token, rendered into pages (``<meta name="csrf-token">``
and hidden form fields) and required on every state-changing request made with the cookie
(``X-CSRF-Token`` header or ``csrf_token`` form field), together with a same-origin check of the
``Origin`` header when the browser sends one. The cookie is SameSite=Lax as well, which alone
stops cross-site POSTs in current browsers; the token covers the rest.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID

from psycopg import AsyncConnection

from rts_monitor.auth.principal import Principal, Role
from rts_monitor.core.errors import Forbidden
from rts_monitor.core.settings import Settings
from rts_monitor.db import Queries
from rts_monitor.db.rows import execute, fetch_one

Q = Queries.beside(__file__)

COOKIE = "rts_console_session"
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
HOME = "/console/"
# Touching last_seen_at on every request would be a write per API call; a minute of precision
# is plenty for an idle timeout counted in tens of minutes.
TOUCH_EVERY_SECONDS = 60


@dataclass(frozen=True)
class Session:
    id: UUID
    principal: Principal
    csrf_token: str
    source: str
    created_at: datetime
    expires_at: datetime  # absolute end
    idle_expires_at: datetime  # end if unused from now on
    email: str | None  # from the portal's users table, when it has the user
    business_name: str | None

    @property
    def ends_at(self) -> datetime:
        return min(self.expires_at, self.idle_expires_at)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def is_secure(settings: Settings, scheme: str) -> bool:
    """Secure cookies when the request came over https, or the server is published as https
    (TLS ends at a proxy in front of it)."""
    return scheme == "https" or settings.effective_public_url.startswith("https://")


async def start(conn: AsyncConnection[Any], *, settings: Settings, principal: Principal, source: str,
                address: str | None, user_agent: str | None) -> tuple[str, Session]:
    """A new session for ``principal``: (the cookie's token, the session)."""
    token = secrets.token_urlsafe(32)
    row = await fetch_one(conn, Q.session_start, {
        "token_hash": hash_token(token), "user_id": principal.user_id, "role": principal.role.value,
        "business_id": principal.business_id, "source": source, "csrf_token": secrets.token_urlsafe(32),
        "absolute_seconds": settings.console_session_absolute_hours * 3600,
        "address": address, "user_agent": (user_agent or "")[:500] or None,
    })
    assert row is not None
    return token, _session(settings, row)


async def resolve(conn: AsyncConnection[Any], *, settings: Settings, token: str) -> Session | None:
    """The live session the cookie names, its idle clock restarted; None if there is none."""
    if not token or len(token) > 200:
        return None
    row = await fetch_one(conn, Q.session_resolve, {
        "token_hash": hash_token(token), "idle_seconds": settings.console_session_idle_minutes * 60,
        "touch_seconds": TOUCH_EVERY_SECONDS,
    })
    return None if row is None else _session(settings, row)


async def alive(conn: AsyncConnection[Any], *, settings: Settings, token: str) -> bool:
    """Whether the session is still live, without restarting its idle clock."""
    row = await fetch_one(conn, Q.session_alive, {"token_hash": hash_token(token),
                                                  "idle_seconds": settings.console_session_idle_minutes * 60})
    return row is not None


async def end(conn: AsyncConnection[Any], *, token: str) -> None:
    await execute(conn, Q.session_end, {"token_hash": hash_token(token)})


def _session(settings: Settings, row: dict[str, Any]) -> Session:
    principal = Principal(user_id=row["user_id"], role=Role(row["role"]), business_id=row["business_id"])
    idle = timedelta(minutes=settings.console_session_idle_minutes)
    return Session(id=row["id"], principal=principal, csrf_token=row["csrf_token"], source=row["source"],
                   created_at=row["created_at"], expires_at=row["expires_at"],
                   idle_expires_at=row["last_seen_at"] + idle, email=row["email"],
                   business_name=row["business_name"])


# ---------------------------------------------------------------- CSRF and redirects


def check_csrf(*, expected: str, method: str, supplied: str | None, origin: str | None, host: str | None) -> None:
    """A state-changing request made with the cookie must carry the session's token and, if the
    browser names its origin, come from this site. Raises Forbidden otherwise."""
    if method.upper() in SAFE_METHODS:
        return
    if origin and origin != "null" and host and urlsplit(origin).netloc != host:
        raise Forbidden("cross-site request refused (Origin does not match this site)")
    if not supplied or not hmac.compare_digest(supplied.encode(), expected.encode()):
        raise Forbidden("CSRF token missing or wrong: reload the page and try again")


def safe_next(value: str | None) -> str:
    """Where to go after sign-in: a console path on this site, else the fleet page.

    Only absolute paths under /console/ are accepted: no scheme or host (``https://evil``,
    ``//evil``, ``/\\evil`` which browsers read as ``//evil``), no control characters.
    """
    if not value or len(value) > 2000:
        return HOME
    if any(ord(c) < 0x20 or c == "\\" for c in value):
        return HOME
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or not value.startswith("/") or value.startswith("//"):
        return HOME
    if not (parts.path == "/console" or parts.path.startswith(HOME)):
        return HOME
    return value
