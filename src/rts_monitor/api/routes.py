"""Every route handler of the API, by concern. Each concern adds its controllers here."""

from __future__ import annotations

from typing import Any

from rts_monitor.api import health


def handlers() -> list[Any]:
    out: list[Any] = []
    out += health.HANDLERS
    return out
