"""Portal user tokens: verify the JWTs the existing portal issues, and mint them for operators.

Claims: ``sub`` (user id), ``role`` (admin|technician|customer), ``business_id`` (customers).
HS256 with a shared secret, or RS256/ES256 with a configured public key; ``exp`` required,
clock skew tolerated up to ``RTS_JWT_LEEWAY_SECONDS``.
"""

from __future__ import annotations

import time
import uuid
from functools import lru_cache
from pathlib import Path
from typing import Any
from uuid import UUID

import jwt

from rts_monitor.auth.principal import Principal, Role
from rts_monitor.core.errors import Unauthorized
from rts_monitor.core.settings import Settings

ASYMMETRIC = ["RS256", "ES256"]


@lru_cache(maxsize=8)
def _public_key(value: str) -> str:
    if value.strip().startswith("-----BEGIN"):
        return value
    return Path(value).expanduser().read_text()


def verify(settings: Settings, token: str) -> Principal:
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise Unauthorized("malformed token") from None
    alg = header.get("alg")
    key: Any
    if alg == "HS256":
        key = settings.effective_jwt_secret()
    elif alg in ASYMMETRIC and settings.jwt_public_key:
        key = _public_key(settings.jwt_public_key)
    else:
        raise Unauthorized(f"token algorithm {alg!r} is not accepted")
    options: Any = {"require": ["exp", "sub", "role"]}
    try:
        claims = jwt.decode(
            token, key, algorithms=[alg], leeway=settings.jwt_leeway_seconds, options=options,
            audience=settings.jwt_audience or None, issuer=settings.jwt_issuer or None,
        )
    except jwt.ExpiredSignatureError:
        raise Unauthorized("token expired") from None
    except jwt.ImmatureSignatureError:
        raise Unauthorized("token not yet valid") from None
    except jwt.InvalidSignatureError:
        raise Unauthorized("token signature invalid") from None
    except jwt.MissingRequiredClaimError as exc:
        raise Unauthorized(f"token lacks claim {exc.claim!r}") from None
    except jwt.PyJWTError as exc:
        raise Unauthorized(f"invalid token: {exc}") from None
    return _principal(claims)


def _principal(claims: dict[str, Any]) -> Principal:
    try:
        role = Role(claims["role"])
    except ValueError:
        raise Unauthorized(f"unknown role {claims['role']!r}") from None
    try:
        user_id = UUID(str(claims["sub"]))
        business_id = UUID(str(claims["business_id"])) if claims.get("business_id") else None
    except ValueError:
        raise Unauthorized("token sub/business_id is not a UUID") from None
    if role is Role.customer and business_id is None:
        raise Unauthorized("customer token without business_id")
    return Principal(user_id=user_id, role=role, business_id=business_id)


def mint(
    settings: Settings,
    *,
    role: Role | str,
    user_id: UUID | None = None,
    business_id: UUID | None = None,
    ttl_seconds: int = 3600,
    extra: dict[str, Any] | None = None,
) -> str:
    """An HS256 token with the portal's claims (operators, tests, the demo)."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": str(user_id or uuid.uuid4()),
        "role": Role(role).value,
        "iat": now,
        "exp": now + ttl_seconds,
    }
    if business_id is not None:
        claims["business_id"] = str(business_id)
    if settings.jwt_audience:
        claims["aud"] = settings.jwt_audience
    if settings.jwt_issuer:
        claims["iss"] = settings.jwt_issuer
    claims.update(extra or {})
    return jwt.encode(claims, settings.effective_jwt_secret(), algorithm="HS256")
