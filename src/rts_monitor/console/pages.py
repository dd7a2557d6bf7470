"""Rendering console pages: Jinja2 templates (autoescaped: every string is text unless a template
says otherwise, and none does for data), the built assets' names, and number/time formatting.

The same formatting rules exist once more in the browser (frontend/src/format.ts) for values
that arrive live; ``tests/test_console.py::test_numbers_read_the_same_in_the_page_as_from_the_server``
checks both give the same text.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2

from rts_monitor.core import resources

TEMPLATES = Path(__file__).with_name("templates")
NONE = "\u2013"  # an en dash: what a missing value looks like
# Built by `npm run build` in frontend/ (./dev does it); shipped in the wheel as console/static.
ASSETS_PACKAGED, ASSETS_IN_CHECKOUT = "console/static", "frontend/dist"


@dataclass(frozen=True)
class NavItem:
    """A top-level console section; ``staff`` ones are shown to MSP staff only, ``admin`` ones
    to admins only."""

    key: str
    label: str
    href: str
    staff: bool = False
    admin: bool = False


NAV: list[NavItem] = [
    NavItem("fleet", "Fleet", "/console/"),
    NavItem("alerts", "Alerts", "/console/alerts"),
    NavItem("commands", "Commands", "/console/commands"),
    NavItem("rollouts", "Rollouts", "/console/rollouts", staff=True),
    NavItem("businesses", "Businesses", "/console/businesses", staff=True),
    NavItem("admin", "Database", "/console/admin", admin=True),
]


def assets_dir() -> Path | None:
    found = resources.find(ASSETS_PACKAGED, ASSETS_IN_CHECKOUT)
    return found if found is not None and (found / "manifest.json").is_file() else None


_manifest: tuple[float, dict[str, str]] | None = None


def asset(name: str) -> str:
    """URL of a built asset by entry name (``console.js``, ``style.css``), content-hashed."""
    global _manifest
    where = assets_dir()
    if where is None:
        raise AssetsMissing()
    path = where / "manifest.json"
    mtime = path.stat().st_mtime
    if _manifest is None or _manifest[0] != mtime:  # a rebuild while the server runs is picked up
        _manifest = (mtime, json.loads(path.read_text()))
    return "/console/static/" + _manifest[1][name]


class AssetsMissing(RuntimeError):
    def __init__(self) -> None:
        super().__init__("the console's assets are not built: run `./dev setup` (or `npm ci && npm run build` "
                         "in frontend/) and restart")


# ---------------------------------------------------------------- formatting


def number(value: float | None, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return NONE
    return f"{value:,.{digits}f}"


def percent(value: float | None) -> str:
    return NONE if value is None else f"{number(value)} %"


def gigabytes(value: float | None) -> str:
    return NONE if value is None else f"{number(value)} GB"


_BYTE_UNITS = ("B", "kB", "MB", "GB", "TB", "PB")


def bytes_(value: float | None, suffix: str = "") -> str:
    """Decimal units, as network and disk vendors count: ``8.5 GB``, ``120 kB/s``."""
    if value is None:
        return NONE
    v, unit = float(value), 0
    while abs(v) >= 1000 and unit < len(_BYTE_UNITS) - 1:
        v, unit = v / 1000, unit + 1
    digits = 0 if unit == 0 or abs(v) >= 100 else 1
    return f"{v:,.{digits}f} {_BYTE_UNITS[unit]}{suffix}"


def duration(seconds: float | None) -> str:
    """``3 d 4 h``, ``5 h 12 min``, ``42 min``, ``30 s``: two units at most."""
    if seconds is None:
        return NONE
    s = int(seconds)
    days, rest = divmod(s, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h" if hours else f"{days} d"
    if hours:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    if minutes:
        return f"{minutes} min"
    return f"{secs} s"


def plain(value: float | None) -> str:
    """A threshold as its author typed it: ``90``, ``0.5``, ``1e+06`` (no padding zeros)."""
    return NONE if value is None else f"{value:g}"


def utc(value: datetime | None) -> str:
    """The server-rendered text of a time (UTC); the browser replaces it with the viewer's local
    time and keeps this in the hover title."""
    if value is None:
        return "never"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def iso(value: datetime | None) -> str:
    return "" if value is None else value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def ago(value: datetime | None, now: datetime | None = None) -> str:
    if value is None:
        return "never"
    seconds = ((now or datetime.now(UTC)) - value).total_seconds()
    if seconds < 60:
        return "just now"
    if seconds < 3600:
        return f"{int(seconds // 60)} min ago"
    if seconds < 86400:
        return f"{int(seconds // 3600)} h ago"
    return f"{int(seconds // 86400)} d ago"


def _env() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True, undefined=jinja2.StrictUndefined,
        trim_blocks=True, lstrip_blocks=True,
    )
    env.filters.update(number=number, percent=percent, gigabytes=gigabytes, bytes=bytes_, duration=duration,
                       utc=utc, iso=iso, ago=ago, plain=plain)
    env.globals.update(asset=asset, nav=NAV)
    for name in env.list_templates():  # compiled now, at start-up, not by the first visitor
        env.get_template(name)
    return env


ENV = _env()


def render(template: str, **context: Any) -> str:
    return ENV.get_template(template).render(**context)
