"""Signing in to the console: a portal JWT handed over by the portal, or e-mail + password.

Hand-off: the token is checked by ``auth.portal.verify``, the very function the API's bearer
authentication uses, so a token the API refuses never opens a console session.

Password: the portal's ``users`` table, its ``password_hash`` column in bcrypt (``$2a$``/``$2b$``/
``$2y$``, what the portal writes). Every refusal has the same message and takes about the same
time (a bcrypt check runs even when the e-mail is unknown), so the answer does not tell whether an
account exists. Failed attempts are counted per account (the e-mail as typed) and per client
address over ``RTS_CONSOLE_SIGN_IN_WINDOW_MINUTES``; past either limit the answer is 429 until
the window has moved on, whether or not the password would have been right.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import bcrypt
from psycopg import AsyncConnection

from rts_monitor.auth import portal
from rts_monitor.auth.principal import Principal, Role
from rts_monitor.core.errors import TooManyRequests, Unauthorized
from rts_monitor.core.settings import Settings
from rts_monitor.db import Queries
from rts_monitor.db.rows import execute, fetch_all, fetch_one

log = logging.getLogger(__name__)
Q = Queries.beside(__file__)

WRONG = "E-mail or password is not right."
MAX_EMAIL = 255
MAX_PASSWORD = 1024  # bcrypt reads 72 bytes; a bound keeps a huge body from costing anything
_BCRYPT = re.compile(r"^\$2[aby]\$(\d\d)\$[./A-Za-z0-9]{53}$")
# Used when no user matches, so the answer takes as long as a real check. Its cost follows the
# last real hash seen (the portal's cost factor); 10 until then (bcryptjs' default).
_dummy: dict[str, bytes] = {}
_last_cost = 10


def too_many(retry_after_seconds: int) -> TooManyRequests:
    minutes = max(1, -(-retry_after_seconds // 60))
    return TooManyRequests(f"Too many failed sign-ins. Try again in {minutes} minute{'s' if minutes > 1 else ''}.",
                           retry_after=max(1, retry_after_seconds))


def handoff(settings: Settings, token: str) -> Principal:
    """The principal of a portal JWT, validated exactly as the API validates bearer tokens."""
    if not token or len(token) > 8192:
        raise Unauthorized("the sign-in link has no valid token")
    return portal.verify(settings, token)


def _account_key(email: str) -> str:
    return hashlib.sha256(email.strip().lower().encode()).hexdigest()


def _check(password: bytes, stored: str | None) -> bool:
    global _last_cost
    if stored:
        m = _BCRYPT.match(stored)
        if m:
            _last_cost = int(m[1])
            try:
                return bcrypt.checkpw(password, stored.encode())
            except ValueError:
                return False
    dummy = _dummy.get(str(_last_cost))
    if dummy is None:
        dummy = _dummy[str(_last_cost)] = bcrypt.hashpw(b"not a password", bcrypt.gensalt(_last_cost))
    bcrypt.checkpw(password, dummy)
    return False


async def password(conn: AsyncConnection[Any], *, settings: Settings, email: str, secret: str,
                   address: str) -> Principal:
    """The principal of a portal user whose e-mail and password match; Unauthorized (one message
    for every reason) or TooManyRequests otherwise."""
    email = email.strip()[:MAX_EMAIL]
    account = _account_key(email)
    window = settings.console_sign_in_window_minutes * 60
    counts = await fetch_one(conn, Q.sign_in_failures, {"account": account, "address": address,
                                                        "window_seconds": window})
    assert counts is not None
    if (counts["account_failures"] >= settings.console_sign_in_max_per_account
            or counts["address_failures"] >= settings.console_sign_in_max_per_address):
        oldest: datetime = counts["oldest_failure"] or datetime.now(UTC)
        wait = oldest + timedelta(seconds=window) - datetime.now(UTC)
        log.warning("console.sign_in.limited", extra={"address": address})
        raise too_many(max(1, int(wait.total_seconds())))
    candidates = await fetch_all(conn, Q.sign_in_candidates, {"email": email}) if email else []
    pw = secret.encode()[:MAX_PASSWORD]
    found: Principal | None = None
    if not candidates:
        await asyncio.to_thread(_check, pw, None)
    for row in candidates:
        if await asyncio.to_thread(_check, pw, row["password_hash"]):
            found = _principal(row)
            break
    await execute(conn, Q.sign_in_record, {"account": account, "address": address, "succeeded": found is not None})
    await conn.commit()  # before the refusal is raised: leaving the pool's block would roll it back
    if found is None:
        log.info("console.sign_in.refused", extra={"address": address})
        raise Unauthorized(WRONG)
    log.info("console.sign_in", extra={"user_id": str(found.user_id), "role": found.role.value})
    return found


def _principal(row: dict[str, Any]) -> Principal | None:
    """A matching user who may use the console; None (refused like a wrong password) otherwise."""
    if not row["active"]:
        return None
    try:
        role = Role(str(row["role"]))
    except ValueError:
        return None
    business: UUID | None = row["business_id"]
    if role is Role.customer and business is None:
        return None
    return Principal(user_id=row["id"], role=role, business_id=business)
