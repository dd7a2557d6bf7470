"""``rts-monitor token mint``: portal JWTs for operators, scripts and tests.

Signed with the same HS256 secret the API verifies with (``RTS_JWT_SECRET``, or the development
secret in the state dir), so a token minted here works against a local ``rts-monitor serve``.
"""

from __future__ import annotations

import argparse
import re
import sys
from typing import Any
from uuid import UUID

from rts_monitor.auth import portal
from rts_monitor.auth.principal import Role
from rts_monitor.core.settings import Settings

_TTL = re.compile(r"^(?P<n>\d+)(?P<unit>[smhd]?)$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_ttl(text: str) -> int:
    """``90``, ``45s``, ``30m``, ``1h``, ``7d`` → seconds (argparse type)."""
    m = _TTL.match(text.strip())
    if not m or int(m["n"]) <= 0:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (examples: 3600, 30m, 1h, 7d)")
    return int(m["n"]) * _UNIT_SECONDS[m["unit"]]


def _uuid(text: str) -> UUID:
    try:
        return UUID(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a UUID: {text!r}") from None


def _mint(args: argparse.Namespace, settings: Settings) -> int:
    role = Role(args.role)
    if role is Role.customer and args.business is None:
        print("error: --business is required for --role customer", file=sys.stderr)
        return 2
    print(portal.mint(settings, role=role, business_id=args.business, user_id=args.user, ttl_seconds=args.ttl))
    return 0


def register(subparsers: Any) -> None:
    token = subparsers.add_parser("token", help="portal JWTs for operators and tests")
    sub = token.add_subparsers(dest="token_command", required=True)
    p = sub.add_parser("mint", help="print an HS256 portal token with sub, role, business_id, exp")
    p.add_argument("--role", required=True, choices=[r.value for r in Role])
    p.add_argument("--business", type=_uuid, help="business_id claim (required for customers)")
    p.add_argument("--user", type=_uuid, help="sub claim (default: a random UUID)")
    p.add_argument("--ttl", type=parse_ttl, default=3600, help="lifetime: 3600, 30m, 1h, 7d (default 1h)")
    p.set_defaults(func=_mint)
