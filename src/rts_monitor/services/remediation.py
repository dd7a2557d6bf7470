"""Auto-remediation: the server restarts a monitored service itself (docs/services.md).

A service with ``auto_restart`` on a device with ``auto_remediation_enabled`` that is down gets a
``restart_service`` command the server issues on its own: no requesting user (actor ``system`` in
the command's history and in the audit log), no approval (``restart_service`` is not sensitive,
and nobody is there to approve). A crash event acts at once (``events.service.record`` calls
``remediate`` in the event's unit of work); the ``services.remediate`` job finds what samples
reported down and retries a restart that did not bring the service back, at most
``RTS_REMEDIATION_MAX_PER_HOUR`` times per service per hour, ``retry_spacing`` apart. The
``service_down`` rule holds its episode back for ``RTS_REMEDIATION_GRACE_SECONDS`` of downtime
(alerts/queries.sql), so a restart that works raises no alert and one that does not escalates as
usual; the attempts are linked to that episode and shown with it.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any
from uuid import UUID

import msgspec

from rts_monitor.audit import service as audit
from rts_monitor.commands import service as commands
from rts_monitor.commands.structs import CreateCommand
from rts_monitor.core.settings import Settings
from rts_monitor.db import Conn, Queries
from rts_monitor.db.rows import fetch_all
from rts_monitor.services import structs as s

Q = Queries.beside(__file__)
log = logging.getLogger(__name__)

RESTART_TIMEOUT_SECONDS = 120


def retry_spacing(settings: Settings) -> timedelta:
    """Between two attempts for one service: a restart that did not bring it back is tried again
    within the grace period (half of it, at most 30 s), never faster than the job runs; the
    per-hour cap bounds the total."""
    return timedelta(seconds=max(settings.remediation_check_seconds,
                                 min(30.0, settings.remediation_grace_seconds / 2)))


async def remediate(conn: Conn, *, settings: Settings, trigger: str, agent_id: UUID | None = None,
                    service_name: str | None = None) -> list[UUID]:
    """Issue the restarts due now (for one service, one device, or all); returns the command ids."""
    issued: list[UUID] = []
    async with conn.transaction():
        due = await fetch_all(conn, Q.remediation_due, {
            "agent_id": agent_id, "service_name": service_name, "spacing": retry_spacing(settings),
            "max_per_hour": settings.remediation_max_per_hour})
        for row in due:
            issued.append(await _restart(conn, settings, row, trigger))
        await conn.execute(Q.link_remediations, {"agent_id": agent_id})
    return issued


async def _restart(conn: Conn, settings: Settings, row: dict[str, Any], trigger: str) -> UUID:
    attempt = int(row["attempts_last_hour"]) + 1
    detail = {"service_name": row["service_name"], "status": row["status"], "trigger": trigger,
              "attempt_in_hour": attempt, "max_per_hour": settings.remediation_max_per_hour}
    command_id = await commands.issue(
        conn, settings=settings, agent_id=row["agent_device_id"],
        body=CreateCommand("restart_service", {"service_name": row["service_name"]},
                           timeout_seconds=RESTART_TIMEOUT_SECONDS),
        requested_by=None, approved_by=None, via="remediation", detail=detail)
    await conn.execute(Q.insert_remediation, {"agent_id": row["agent_device_id"], "service_name": row["service_name"],
                                              "command_id": command_id, "trigger": trigger})
    await audit.record(conn, principal=None, actor_type="system", action="command.remediate",
                       object_type="command", object_id=command_id, business_id=row["business_id"],
                       detail={**detail, "agent_id": str(row["agent_device_id"]), "command_type": "restart_service"})
    log.warning("remediation.restart", extra={"agent_id": str(row["agent_device_id"]), "command_id": str(command_id),
                                              **detail})
    return command_id


async def episode_attempts(conn: Conn, alert_id: UUID) -> list[s.RemediationAttempt]:
    rows = await fetch_all(conn, Q.episode_remediations, {"alert_id": alert_id})
    return msgspec.convert(rows, list[s.RemediationAttempt])
