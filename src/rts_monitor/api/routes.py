"""Every route handler of the API, by concern. Each concern adds its controllers here."""

from __future__ import annotations

from typing import Any

from rts_monitor.api import (
    alerts,
    commands,
    devices,
    enrolment,
    events,
    health,
    history,
    install,
    inventory,
    metrics,
    tiers,
    ws,
)


def handlers() -> list[Any]:
    out: list[Any] = []
    out += health.HANDLERS
    out += enrolment.HANDLERS
    out += devices.HANDLERS
    out += metrics.HANDLERS
    out += inventory.HANDLERS
    out += install.HANDLERS
    out += commands.HANDLERS
    out += events.HANDLERS
    out += ws.HANDLERS
    out += history.HANDLERS
    out += tiers.HANDLERS
    out += alerts.HANDLERS
    return out
