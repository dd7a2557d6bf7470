"""What other concerns run right after a flush of metric rows has committed.

Alerting registers a hook here so ``POST /api/agents/{id}/metrics`` can answer
``alerts_triggered`` for the rules that fired because of that batch. A hook receives the
devices of the flush with the (first, last) ``collected_at`` each had committed, and returns,
per device, the names of the alert rules it opened. Hooks run after the commit, so a failing
hook is logged and never loses or fails the ingest.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from uuid import UUID

from rts_monitor.api.context import AppContext

CommittedRanges = Mapping[UUID, tuple[datetime, datetime]]
AlertHook = Callable[[AppContext, CommittedRanges], Awaitable[dict[UUID, list[str]]]]

ALERT_HOOKS: list[AlertHook] = []
