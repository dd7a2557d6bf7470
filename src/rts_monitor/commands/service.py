"""Remote commands: creation with typed params, approval, delivery, results, timeouts, audit.

State machine (enforced here and in the SQL's WHERE clauses)::

    pending ──deliver──▶ sent ──result executing──▶ executing ──result──▶ completed | failed | timeout
       │                  │ └──────────result completed/failed/timeout──────▲
       ├─reject─▶ rejected│                           │
       ├─cancel─▶ cancelled◀─cancel─┴───────cancel─────────┘ (the agent is told to stop it)
       └─deadline─▶ timeout  (also from sent/executing, by the timeout job)

A command of a sensitive type is created with ``approval_required`` and is not deliverable until
an admin/technician other than the requester approves it. Every transition writes a row to
``agent_command_events`` with the actor in the same transaction. Whatever makes a command
deliverable (creation without approval, approval, a failed push put back) sends a NOTIFY in that
same transaction, so the hub of whichever instance holds the agent's socket pushes it.
"""

from __future__ import annotations

import json
import logging
from typing import Any
from uuid import UUID

import msgspec
from psycopg import errors
from psycopg.types.json import Jsonb

from rts_monitor.audit import service as audit
from rts_monitor.auth.principal import AgentPrincipal, Principal
from rts_monitor.commands import structs as s
from rts_monitor.core.errors import Conflict, Forbidden, NotFound, ValidationFailed, error_field
from rts_monitor.core.settings import Settings
from rts_monitor.db import Conn, Queries
from rts_monitor.db.rows import fetch_all, fetch_one
from rts_monitor.devices.scope import visible_agent
from rts_monitor.installers import agent_wheel

Q = Queries.beside(__file__)
log = logging.getLogger(__name__)

CHANNEL = "rts_commands"
OPEN = ("pending", "sent", "executing")
FINAL = ("completed", "failed", "timeout", "rejected", "cancelled")
# Final states an agent reports itself; the other final states are decided by the server.
AGENT_FINAL = ("completed", "failed", "timeout")



def _csv(value: str) -> set[str]:
    return {item.strip() for item in value.split(",") if item.strip()}


def sensitive_types(settings: Settings) -> set[str]:
    return _csv(settings.command_sensitive_types)


def validate_params(settings: Settings, body: s.CreateCommand) -> dict[str, Any]:
    """Typed params per command type; errors name the field (``params.service_name``)."""
    params_type = s.PARAMS_BY_TYPE.get(body.command_type)
    if params_type is None:
        allowed = ", ".join(sorted(s.PARAMS_BY_TYPE))
        raise ValidationFailed(f"command_type: unknown type {body.command_type!r} (allowed: {allowed})",
                         field="command_type")
    try:
        params = msgspec.convert(body.params, type=params_type)
    except msgspec.ValidationError as exc:
        field, message = error_field("params", str(exc))
        raise ValidationFailed(f"{field}: {message}", field=field) from None
    if isinstance(params, s.RunScriptParams):
        interpreters = _csv(settings.command_script_interpreters)
        if params.interpreter not in interpreters:
            raise ValidationFailed(
                f"params.interpreter: {params.interpreter!r} is not allowed "
                f"(allowed: {', '.join(sorted(interpreters))})",
                field="params.interpreter",
            )
        if params.working_directory is not None and not _is_absolute(params.working_directory):
            raise ValidationFailed("params.working_directory: must be an absolute path",
                                   field="params.working_directory")
    if isinstance(params, s.UpdateAgentParams):
        if params.source is None:
            params.source = _default_update_source(settings, params.target_version)
        if params.sha256 is None:
            params.sha256 = _published_sha256(settings, params.source)
    if body.timeout_seconds > settings.command_max_timeout_seconds:
        raise ValidationFailed(f"timeout_seconds: at most {settings.command_max_timeout_seconds}",
                               field="timeout_seconds")
    return msgspec.to_builtins(params)  # type: ignore[no-any-return]


def _default_update_source(settings: Settings, target: str) -> str:
    """The server's agent source, stored with the command so it shows what was installed. The
    server's own wheel has one version: asking it for another is refused here, naming the field."""
    if settings.agent_pip_source:
        return settings.agent_pip_source
    try:
        served = agent_wheel.wheel()
    except agent_wheel.AgentSourcesMissing:
        raise ValidationFailed("params.source: required (this server serves no agent package)",
                         field="params.source") from None
    if target != served.version:
        raise ValidationFailed(f"params.target_version: this server serves rts-agent {served.version}; "
                         "give params.source for another version", field="params.target_version")
    return agent_wheel.pip_source(settings)


def _published_sha256(settings: Settings, source: str) -> str | None:
    """The hash of this server's own wheel when that is the source: the agent then installs only
    a file with exactly these bytes (what ``GET /agent/package`` publishes)."""
    try:
        served = agent_wheel.wheel()
    except agent_wheel.AgentSourcesMissing:
        return None
    return served.sha256 if source == agent_wheel.wheel_url(settings, served) else None


def _is_absolute(path: str) -> bool:
    """POSIX (/srv) or Windows (C:\\ or \\\\server\\share) absolute path."""
    return path.startswith(("/", "\\\\")) or (len(path) >= 3 and path[0].isalpha() and path[1:3] in (":\\", ":/"))


async def _event(conn: Conn, command_id: UUID, event: str, from_status: str | None, to_status: str | None, *,
                 user_id: UUID | None = None, agent_id: UUID | None = None, via: str,
                 detail: dict[str, Any] | None = None) -> None:
    actor = "user" if user_id else "agent" if agent_id else "system"
    await conn.execute(Q.add_event, {
        "command_id": command_id, "event": event, "from_status": from_status, "to_status": to_status,
        "actor_type": actor, "actor_user_id": user_id, "actor_agent_id": agent_id, "via": via,
        "detail": Jsonb(detail) if detail is not None else None,
    })


async def notify_deliverable(conn: Conn, agent_id: UUID, command_id: UUID | None = None) -> None:
    """NOTIFY inside the caller's transaction: delivered to listeners only if it commits."""
    await _notify(conn, agent_id, command_id)


async def notify_cancel(conn: Conn, agent_id: UUID, command_id: UUID) -> None:
    """NOTIFY (on commit) that the agent must stop ``command_id``."""
    await _notify(conn, agent_id, command_id, cancel=True)


async def notify_token_rotation(conn: Conn, agent_id: UUID) -> None:
    """NOTIFY (on commit) that the agent should heartbeat now to fetch its new token."""
    await _notify(conn, agent_id, None, rotate_token=True)


async def _notify(conn: Conn, agent_id: UUID, command_id: UUID | None, **extra: Any) -> None:
    note = {"agent_id": str(agent_id), "command_id": str(command_id) if command_id else None, **extra}
    await conn.execute(Q.notify, {"channel": CHANNEL, "payload": json.dumps(note)})


# --- portal side -----------------------------------------------------------------------------------


async def create(conn: Conn, *, settings: Settings, principal: Principal, agent_id: UUID,
                 body: s.CreateCommand) -> s.Command:
    params = validate_params(settings, body)
    needs_approval = body.command_type in sensitive_types(settings)
    async with conn.transaction():
        await visible_agent(conn, principal.business_scope, agent_id)
        try:
            row = await fetch_one(conn, Q.insert_command, {
                "agent_id": agent_id, "command_type": body.command_type, "params": Jsonb(params),
                "timeout_seconds": body.timeout_seconds, "user_id": principal.user_id,
                "approval_required": needs_approval, "pending_ttl": settings.command_pending_ttl_seconds,
            })
        except errors.ForeignKeyViolation:
            raise Forbidden("the token's user is not a portal user (requested_by must reference users)") from None
        assert row is not None
        command_id: UUID = row["id"]
        await _event(conn, command_id, "created", None, "pending", user_id=principal.user_id, via="api",
                     detail={"approval_required": needs_approval})
        if not needs_approval:
            await notify_deliverable(conn, agent_id, command_id)
        command = await _read(conn, command_id, agent_id, None, history=True)
    log.info("command.created", extra={"command_id": str(command_id), "agent_id": str(agent_id),
                                       "command_type": body.command_type, "approval_required": needs_approval,
                                       "user_id": str(principal.user_id)})
    return command


async def issue(conn: Conn, *, settings: Settings, agent_id: UUID, body: s.CreateCommand, requested_by: UUID,
                approved_by: UUID | None, via: str, detail: dict[str, Any]) -> UUID:
    """A command the server issues on a decision already taken elsewhere (a rollout that one person
    requested and another approved): deliverable at once, its history naming that decision
    (``via`` and ``detail``) and both people, so nobody approves it per device."""
    params = validate_params(settings, body)
    row = await fetch_one(conn, Q.insert_command, {
        "agent_id": agent_id, "command_type": body.command_type, "params": Jsonb(params),
        "timeout_seconds": body.timeout_seconds, "user_id": requested_by, "approval_required": approved_by is not None,
        "pending_ttl": settings.command_pending_ttl_seconds,
    })
    assert row is not None
    command_id: UUID = row["id"]
    await _event(conn, command_id, "created", None, "pending", user_id=requested_by, via=via, detail=detail)
    if approved_by is not None:
        await conn.execute(Q.approve, {"command_id": command_id, "user_id": approved_by,
                                       "pending_ttl": settings.command_pending_ttl_seconds})
        await _event(conn, command_id, "approved", "pending", "pending", user_id=approved_by, via=via, detail=detail)
    await notify_deliverable(conn, agent_id, command_id)
    return command_id


async def withdraw(conn: Conn, *, command_ids: list[UUID], user_id: UUID, reason: str, via: str) -> None:
    """Cancel commands not yet delivered (their decision was withdrawn, e.g. a rollout aborted):
    a command the agent already has is left to finish, and its result is kept."""
    for command_id in command_ids:
        cur = await conn.execute(Q.cancel_if_pending, {"command_id": command_id, "user_id": user_id, "reason": reason})
        if cur.rowcount:
            await _event(conn, command_id, "cancelled", "pending", "cancelled", user_id=user_id, via=via,
                         detail={"reason": reason})


async def _locked(conn: Conn, principal: Principal, agent_id: UUID, command_id: UUID) -> dict[str, Any]:
    row = await fetch_one(conn, Q.command_for_portal, {"command_id": command_id, "agent_id": agent_id,
                                                       "scope": principal.business_scope})
    if row is None:
        raise NotFound("command not found")
    return dict(row)


async def approve(conn: Conn, *, settings: Settings, principal: Principal, agent_id: UUID, command_id: UUID,
                  body: s.Decision | None) -> s.Command:
    async with conn.transaction():
        row = await _locked(conn, principal, agent_id, command_id)
        if not principal.is_staff:
            raise Forbidden("only an admin or technician can approve commands")
        if row["requested_by"] == principal.user_id:
            raise Forbidden("the requester cannot approve their own command")
        if not row["approval_required"] or row["approved_at"] is not None or row["status"] != "pending":
            raise Conflict(f"command is not awaiting approval (status {row['status']}, "
                           f"approved {'yes' if row['approved_at'] else 'no'})")
        await _decide_as_user(conn, Q.approve, {"command_id": command_id, "user_id": principal.user_id,
                                                "pending_ttl": settings.command_pending_ttl_seconds})
        await _event(conn, command_id, "approved", "pending", "pending", user_id=principal.user_id, via="api",
                     detail={"reason": body.reason} if body and body.reason else None)
        await _audit(conn, principal, "approve", row, reason=body.reason if body else None)
        await notify_deliverable(conn, agent_id, command_id)
        command = await _read(conn, command_id, agent_id, None, history=True)
    log.info("command.approved", extra={"command_id": str(command_id), "user_id": str(principal.user_id)})
    return command


async def _audit(conn: Conn, principal: Principal, verb: str, row: dict[str, Any], *, reason: str | None) -> None:
    """Approvals, rejections and cancellations are staff decisions: into the audit log too."""
    await audit.record(conn, principal=principal, action=f"command.{verb}", object_type="command",
                       object_id=row["id"], business_id=row["business_id"], before={"status": row["status"]},
                       detail={"command_type": row["command_type"], "agent_id": row["agent_id"], "reason": reason})


async def _decide_as_user(conn: Conn, query: str, params: dict[str, Any]) -> None:
    """Record a decision under the token's user: an id the portal's ``users`` table does not know
    (the FK) is a 403, not a 500."""
    try:
        await conn.execute(query, params)
    except errors.ForeignKeyViolation:
        raise Forbidden("the token's user is not a portal user") from None


async def reject(conn: Conn, *, principal: Principal, agent_id: UUID, command_id: UUID,
                 body: s.Decision | None) -> s.Command:
    reason = body.reason if body else None
    async with conn.transaction():
        row = await _locked(conn, principal, agent_id, command_id)
        if not principal.is_staff:
            raise Forbidden("only an admin or technician can reject commands")
        if not row["approval_required"] or row["approved_at"] is not None or row["status"] != "pending":
            raise Conflict(f"command is not awaiting approval (status {row['status']})")
        await _decide_as_user(conn, Q.reject, {"command_id": command_id, "user_id": principal.user_id,
                                               "reason": reason})
        await _event(conn, command_id, "rejected", "pending", "rejected", user_id=principal.user_id, via="api",
                     detail={"reason": reason} if reason else None)
        await _audit(conn, principal, "reject", row, reason=reason)
        command = await _read(conn, command_id, agent_id, None, history=True)
    log.info("command.rejected", extra={"command_id": str(command_id), "user_id": str(principal.user_id)})
    return command


async def cancel(conn: Conn, *, principal: Principal, agent_id: UUID, command_id: UUID,
                 body: s.Decision | None) -> s.Command:
    """The requester or any admin/technician may cancel an open command. One the agent already has
    (sent or executing) is cancelled at once here, and the agent is told to stop it: pushed over
    its socket (NOTIFY to whichever instance holds it), and listed in heartbeat answers until its
    result arrives. Whatever result the agent then sends is kept as a late result."""
    reason = body.reason if body else None
    async with conn.transaction():
        row = await _locked(conn, principal, agent_id, command_id)
        if not principal.is_staff and row["requested_by"] != principal.user_id:
            raise Forbidden("only the requester or an admin/technician can cancel a command")
        if row["status"] not in OPEN:
            raise Conflict(f"command is {row['status']}; only pending, sent or executing commands can be cancelled")
        await _decide_as_user(conn, Q.cancel, {"command_id": command_id, "user_id": principal.user_id,
                                               "reason": reason})
        if row["status"] != "pending":
            await notify_cancel(conn, agent_id, command_id)
        await _event(conn, command_id, "cancelled", row["status"], "cancelled", user_id=principal.user_id,
                     via="api", detail={"reason": reason} if reason else None)
        await _audit(conn, principal, "cancel", row, reason=reason)
        command = await _read(conn, command_id, agent_id, None, history=True)
    log.info("command.cancelled", extra={"command_id": str(command_id), "user_id": str(principal.user_id)})
    return command


async def detail(conn: Conn, *, principal: Principal, agent_id: UUID, command_id: UUID) -> s.Command:
    return await _read(conn, command_id, agent_id, principal.business_scope, history=True)


async def list_commands(conn: Conn, *, principal: Principal, agent_id: UUID | None,
                        statuses: list[str] | None, awaiting_approval: bool, limit: int) -> s.CommandList:
    if agent_id is not None:
        await visible_agent(conn, principal.business_scope, agent_id)
    rows = await fetch_all(conn, Q.list_commands, {
        "scope": principal.business_scope, "agent_id": agent_id, "statuses": statuses,
        "awaiting_approval": awaiting_approval, "limit": limit,
    })
    return s.CommandList(msgspec.convert(rows, list[s.Command]))


async def _read(conn: Conn, command_id: UUID, agent_id: UUID, scope: UUID | None, *, history: bool) -> s.Command:
    row = await fetch_one(conn, Q.command_by_id, {"command_id": command_id, "agent_id": agent_id, "scope": scope})
    if row is None:
        raise NotFound("command not found")
    if history:
        row["history"] = await fetch_all(conn, Q.command_history, {"command_id": command_id})
    return msgspec.convert(row, s.Command)


# --- agent side ------------------------------------------------------------------------------------


async def claim(conn: Conn, *, settings: Settings, agent_id: UUID, via: str, limit: int = 50) -> list[s.AgentCommand]:
    """Deliverable commands for ``agent_id``, marked sent atomically (poll or WebSocket push)."""
    async with conn.transaction():
        rows = await fetch_all(conn, Q.claim_deliverable, {
            "agent_id": agent_id, "limit": limit, "via": via, "grace": settings.command_timeout_grace_seconds,
        })
    out = msgspec.convert(rows, list[s.AgentCommand])
    if out:
        log.info("command.sent", extra={"agent_id": str(agent_id), "via": via,
                                        "command_ids": [str(c.command_id) for c in out]})
    return out


async def unsend(conn: Conn, *, settings: Settings, agent_id: UUID, command_ids: list[UUID], error: str) -> None:
    """Put commands whose push failed back to pending, and say so to every listener."""
    async with conn.transaction():
        await conn.execute(Q.unsend, {"ids": command_ids, "error": error,
                                      "pending_ttl": settings.command_pending_ttl_seconds})
        await notify_deliverable(conn, agent_id)
    log.warning("command.unsent", extra={"agent_id": str(agent_id), "command_ids": [str(c) for c in command_ids],
                                         "error": error})


def cap_output(text: str | None, max_bytes: int) -> tuple[str | None, bool]:
    """At most ``max_bytes`` of UTF-8 (cut on a character boundary); NUL bytes (which PostgreSQL
    text cannot hold) become U+FFFD. Returns (text, truncated)."""
    if text is None:
        return None, False
    text = text.replace("\x00", "\ufffd")
    raw = text.encode("utf-8", errors="replace")
    if len(raw) <= max_bytes:
        return text, False
    return raw[:max_bytes].decode("utf-8", errors="ignore"), True


async def record_result(conn: Conn, *, settings: Settings, agent: AgentPrincipal, command_id: UUID,
                        result: s.CommandResult,
                        via: str) -> s.ResultAck:
    """Apply an agent's report, enforcing the state machine; repeats change nothing."""
    stdout, out_cut = cap_output(result.stdout, settings.command_output_max_bytes)
    stderr, err_cut = cap_output(result.stderr, settings.command_output_max_bytes)
    error_message = result.error_message.replace("\x00", "\ufffd") if result.error_message else None
    values = {
        "command_id": command_id, "status": result.status, "final": result.status in AGENT_FINAL,
        "started_at": result.started_at, "completed_at": result.completed_at, "exit_code": result.exit_code,
        "stdout": stdout, "stderr": stderr, "stdout_truncated": out_cut or result.stdout_truncated,
        "stderr_truncated": err_cut or result.stderr_truncated, "error_message": error_message,
    }
    detail = {"status": result.status, "exit_code": result.exit_code}
    async with conn.transaction():
        row = await fetch_one(conn, Q.command_for_agent, {"command_id": command_id})
        if row is None:
            raise NotFound("command not found")
        if row["agent_device_id"] != agent.agent_id:
            raise Forbidden("this command belongs to another agent")
        current: str = row["status"]
        applied, late = _decide(current, result.status, row)
        if applied:
            await conn.execute(Q.record_result, values)
            event = "started" if result.status == "executing" else result.status
            await _event(conn, command_id, event, current, result.status, agent_id=agent.agent_id, via=via,
                         detail=detail)
        elif late:
            await conn.execute(Q.record_late_result, values)
            await _event(conn, command_id, "late_result", current, current, agent_id=agent.agent_id, via=via,
                         detail=detail)
        status = result.status if applied else current
    log.info("command.result", extra={"command_id": str(command_id), "agent_id": str(agent.agent_id), "via": via,
                                      "reported": result.status, "status": status, "applied": applied, "late": late})
    return s.ResultAck(command_id=command_id, status=status, applied=applied, late=late)


def _decide(current: str, reported: str, row: dict[str, Any]) -> tuple[bool, bool]:
    """(apply as a transition, keep as a late result); raises for reports the machine forbids."""
    if current in ("sent", "executing"):
        if reported == "executing" and current == "executing":
            return False, False  # repeated start
        return True, False
    if current == "pending":
        raise Conflict("command has not been delivered to the agent yet")
    if current == "rejected" or row["sent_at"] is None:
        raise Conflict(f"command is {current} and was never delivered")
    if current in ("timeout", "cancelled") and (row["result_received_at"] is None or current != reported):
        # Timed out (by the job) or cancelled: keep the first late final result, reopen nothing.
        if reported == "executing" or row["late_result_at"] is not None:
            return False, False
        return False, True
    # completed / failed / timeout reported by the agent earlier
    if reported == current or reported == "executing":
        return False, False  # a repeat, or a start report arriving after the end
    raise Conflict(f"command already {current}; a different result ({reported}) cannot replace it")


async def expire_overdue(conn: Conn, *, limit: int = 1000) -> int:
    """Mark open commands past their deadline as 'timeout' (the timeout job)."""
    total = 0
    while True:
        async with conn.transaction():
            rows = await fetch_all(conn, Q.expire_overdue, {"limit": limit})
        for r in rows:
            log.info("command.timeout", extra={"command_id": str(r["id"]), "agent_id": str(r["agent_device_id"]),
                                               "from_status": r["from_status"]})
        total += len(rows)
        if len(rows) < limit:
            return total
