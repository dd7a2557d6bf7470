"""Staged agent rollouts on top of the command workflow's ``update_agent``.

* **Plan** (at creation): the devices in scope running an older agent (PEP 440 order, as pip
  compares), in a fixed pseudo-random order; wave 0 (the canary) is ``canary_percent`` of them
  (at least one), every later wave ``wave_percent``.
* **Approval**: when ``update_agent`` is a sensitive command type (the default), the rollout waits
  for an admin or technician other than its requester; that one approval covers every device's
  command (each command's history names both people and the rollout).
* **Advance** (the ``rollouts.advance`` job, a singleton across processes): sync sent devices
  from their commands' outcomes; issue the current wave's commands; when the wave has finished,
  halt if the failures so far exceed ``max_failure_percent`` of the finished devices (counting
  from the last resume: resuming a halted rollout accepts the failures seen), else start the next
  wave, or complete after the last. Paused rollouts only sync.
* **Abort** skips the devices not yet sent and cancels their commands not yet delivered.

Every state change is audited and NOTIFYs ``rts_rollouts`` (for live views), as does every
advance that changed a device (a command issued, an outcome taken, a device skipped): the
payload carries the status and the devices counted by state (queries.sql, ``notify``).
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import AsyncIterator
from typing import Any
from uuid import UUID

import msgspec
from packaging.version import InvalidVersion, Version
from psycopg import errors as pg_errors

from rts_monitor.audit import service as audit
from rts_monitor.auth.principal import Principal, require_staff
from rts_monitor.commands import service as commands
from rts_monitor.commands.structs import CreateCommand
from rts_monitor.core.errors import Conflict, Forbidden, NotFound, ValidationFailed
from rts_monitor.core.settings import Settings
from rts_monitor.db import Conn, Queries
from rts_monitor.db.rows import fetch_all, fetch_one
from rts_monitor.rollouts.structs import (
    DEVICES_PAGE,
    DeviceState,
    OptOut,
    Rollout,
    RolloutCreate,
    RolloutDevice,
    RolloutList,
)

Q = Queries.beside(__file__)
log = logging.getLogger(__name__)
FINAL = ("halted", "aborted", "completed")


@contextlib.asynccontextmanager
async def _as_portal_user() -> AsyncIterator[None]:
    """Who requests, approves or opts out is recorded by user id (a foreign key to the portal's
    users): a token whose user the portal does not know is a 403, as for commands."""
    try:
        yield
    except pg_errors.ForeignKeyViolation:
        raise Forbidden("the token's user is not a portal user") from None


def _older(version: str | None, target: Version) -> bool:
    try:
        return version is None or Version(version) < target
    except InvalidVersion:
        return True  # "unknown" or a hand-built agent: bring it to the target too


def plan_waves(n: int, canary_percent: int, wave_percent: int) -> list[int]:
    """The wave of each of ``n`` devices, in order: the canary, then equal shares."""
    canary = min(n, max(1, math.ceil(n * canary_percent / 100)))
    size = max(1, math.ceil(n * wave_percent / 100))
    return [0 if i < canary else 1 + (i - canary) // size for i in range(n)]


def _command(rollout: dict[str, Any]) -> CreateCommand:
    params: dict[str, Any] = {"target_version": rollout["target_version"]}
    if rollout["source"]:
        params["source"] = rollout["source"]
    return CreateCommand("update_agent", params, rollout["command_timeout_seconds"])


async def _notify(conn: Conn, rollout_id: UUID) -> None:
    """NOTIFY (on commit) the rollout's status and progress as this transaction leaves them."""
    await conn.execute(Q.notify, {"id": rollout_id})


async def get(conn: Conn, *, principal: Principal, rollout_id: UUID, devices: bool = True,
              device_state: DeviceState | None = None, device_limit: int = DEVICES_PAGE,
              device_offset: int = 0) -> Rollout:
    """The rollout, its per-wave progress and (``devices``) one page of its devices, in
    ``device_state`` or all; ``devices_matching`` says how many there are (from the progress)."""
    require_staff(principal)
    row = await fetch_one(conn, Q.get_rollout, {"id": rollout_id})
    if row is None:
        raise NotFound("rollout not found")
    rollout = msgspec.convert(row, Rollout)
    if devices:
        rows = await fetch_all(conn, Q.rollout_devices, {"id": rollout_id, "state": device_state,
                                                         "limit": device_limit, "offset": device_offset})
        rollout.devices = msgspec.convert(rows, list[RolloutDevice])
        rollout.devices_matching = sum(getattr(w, device_state) if device_state else w.devices
                                       for w in rollout.progress)
    return rollout


async def list_rollouts(conn: Conn, *, principal: Principal, status: str | None, limit: int) -> RolloutList:
    require_staff(principal)
    rows = await fetch_all(conn, Q.list_rollouts, {"status": status, "limit": limit})
    return RolloutList(msgspec.convert(rows, list[Rollout]))


async def create(conn: Conn, *, principal: Principal, settings: Settings, body: RolloutCreate) -> Rollout:
    require_staff(principal)
    try:
        target = Version(body.target_version)
    except InvalidVersion:  # the wire pattern allows suffixes PEP 440 cannot order (1.2.3-6jy)
        raise ValidationFailed(f"target_version: {body.target_version!r} is not a version pip can compare",
                               field="target_version") from None
    # the same checks a single update_agent gets (a source when the server does not serve this
    # version), named after this body's fields (params.source here is source)
    try:
        commands.validate_params(settings, _command(msgspec.structs.asdict(body)))
    except ValidationFailed as exc:
        field = (exc.field or "").removeprefix("params.") or None
        raise ValidationFailed(exc.message.replace(f"params.{field}", str(field)), field=field) from None
    business_ids = body.business_ids or None
    for i, business_id in enumerate(business_ids or []):
        if await fetch_one(conn, Q.business_visible, {"id": business_id, "scope": None}) is None:
            raise ValidationFailed(f"business_ids[{i}]: no such business", field=f"business_ids[{i}]")
    candidates = [r for r in await fetch_all(conn, Q.eligible_devices, {"business_ids": business_ids})
                  if _older(r["agent_version"], target)]
    if not candidates:
        raise ValidationFailed(f"target_version: no agent in scope runs an older version than {target}",
                               field="target_version")
    waves = plan_waves(len(candidates), body.canary_percent, body.wave_percent)
    needs_approval = "update_agent" in commands.sensitive_types(settings)
    async with _as_portal_user(), conn.transaction():
        row = await fetch_one(conn, Q.insert_rollout, {
            **msgspec.structs.asdict(body), "business_ids": business_ids, "requested_by": principal.user_id,
            "status": "awaiting_approval" if needs_approval else "running", "waves": max(waves) + 1})
        assert row is not None
        rollout_id: UUID = row["id"]
        await conn.execute(Q.insert_devices, {
            "rollout_id": rollout_id, "devices": [c["agent_id"] for c in candidates],
            "businesses": [c["business_id"] for c in candidates], "waves": waves,
            "versions": [c["agent_version"] for c in candidates]})
        await audit.record(conn, principal=principal, action="rollout.create", object_type="rollout",
                           object_id=rollout_id, after={**msgspec.structs.asdict(body), "devices": len(candidates),
                                                        "waves": max(waves) + 1})
        await _notify(conn, rollout_id)
    log.info("rollout.created", extra={"rollout_id": str(rollout_id), "target": body.target_version,
                                       "devices": len(candidates), "by": str(principal.user_id)})
    return await get(conn, principal=principal, rollout_id=rollout_id, devices=False)


async def _locked(conn: Conn, rollout_id: UUID) -> dict[str, Any]:
    row = await fetch_one(conn, Q.lock_rollout, {"id": rollout_id})
    if row is None:
        raise NotFound("rollout not found")
    return row


async def approve(conn: Conn, *, principal: Principal, rollout_id: UUID, reason: str | None) -> Rollout:
    require_staff(principal)
    async with conn.transaction():
        row = await _locked(conn, rollout_id)
        if row["status"] != "awaiting_approval":
            raise Conflict(f"rollout is {row['status']}, not awaiting approval")
        if row["requested_by"] == principal.user_id:
            raise Forbidden("the requester cannot approve their own rollout")
        async with _as_portal_user():
            await conn.execute(Q.approve, {"id": rollout_id, "user_id": principal.user_id})
        await audit.record(conn, principal=principal, action="rollout.approve", object_type="rollout",
                           object_id=rollout_id, before={"status": row["status"]}, after={"status": "running"},
                           detail={"reason": reason})
        await _notify(conn, rollout_id)
    return await get(conn, principal=principal, rollout_id=rollout_id, devices=False)


# what each operator action may change: from these states, to this one
_ACTIONS = {"pause": (("running",), "paused"), "resume": (("paused", "halted"), "running"),
            "abort": (("awaiting_approval", "running", "paused", "halted"), "aborted")}


def actions_for(principal: Principal, rollout: Rollout) -> list[str]:
    """What ``principal`` may do to ``rollout`` in its state now (the console offers only these)."""
    if not principal.is_staff:
        return []
    approve = rollout.status == "awaiting_approval" and rollout.requested_by != principal.user_id
    return (["approve"] if approve else []) + [a for a, (allowed, _) in _ACTIONS.items() if rollout.status in allowed]


async def act(conn: Conn, *, principal: Principal, rollout_id: UUID, action: str, reason: str | None) -> Rollout:
    """Pause, resume (also a halted rollout, once someone looked at its failures) or abort."""
    require_staff(principal)
    allowed, to_status = _ACTIONS[action]
    async with conn.transaction():
        row = await _locked(conn, rollout_id)
        if row["status"] not in allowed:
            raise Conflict(f"rollout is {row['status']}; {action} applies to {', '.join(allowed)} rollouts")
        await conn.execute(Q.set_status, {"id": rollout_id, "status": to_status, "reason": reason})
        if action == "resume":
            await conn.execute(Q.set_baseline, {"id": rollout_id})
        if action == "abort":
            await conn.execute(Q.abort_devices, {"id": rollout_id})
            undelivered = [r["command_id"] for r in await fetch_all(conn, Q.undelivered_commands, {"id": rollout_id})]
            await commands.withdraw(conn, command_ids=undelivered, user_id=principal.user_id,
                                    reason="rollout aborted", via="rollout")
        await audit.record(conn, principal=principal, action=f"rollout.{action}", object_type="rollout",
                           object_id=rollout_id, before={"status": row["status"]}, after={"status": to_status},
                           detail={"reason": reason})
        await _notify(conn, rollout_id)
    return await get(conn, principal=principal, rollout_id=rollout_id, devices=False)


async def advance_all(conn: Conn, *, settings: Settings) -> int:
    """One pass of the advance job over every open rollout (each in its own transaction)."""
    rows = await fetch_all(conn, Q.open_rollouts, {})
    for row in rows:
        await _advance(conn, settings, row)
    return len(rows)


async def _advance(conn: Conn, settings: Settings, rollout: dict[str, Any]) -> None:
    rollout_id = rollout["id"]
    # devices changed by this pass: a live view hears of them even when the status stays the same
    # (a wave's progress is what an operator watches); an idle pass notifies nobody
    changed = (await conn.execute(Q.sync_results, {"id": rollout_id})).rowcount
    if rollout["status"] != "running":
        if changed:  # a paused rollout's commands already sent still finish
            await _notify(conn, rollout_id)
        return
    changed += (await conn.execute(Q.skip_opted_out, {"id": rollout_id})).rowcount
    wave = rollout["current_wave"]
    for r in await fetch_all(conn, Q.planned_in_wave, {"id": rollout_id, "wave": wave}):
        changed += 1
        command_id = await commands.issue(conn, settings=settings, agent_id=r["agent_device_id"],
                                          body=_command(rollout), requested_by=rollout["requested_by"],
                                          approved_by=rollout["approved_by"], via="rollout",
                                          detail={"rollout_id": str(rollout_id), "wave": wave})
        await conn.execute(Q.mark_sent, {"id": rollout_id, "agent_id": r["agent_device_id"], "command_id": command_id})
    counts = await fetch_one(conn, Q.counts, {"id": rollout_id, "wave": wave})
    assert counts is not None
    if counts["wave_open"]:
        if changed:
            await _notify(conn, rollout_id)
        return
    # failures judged since the last resume (someone looked at the earlier ones and went on)
    finished = counts["succeeded"] + counts["failed"] - rollout["baseline_finished"]
    failed = counts["failed"] - rollout["baseline_failed"]
    if finished > 0 and failed * 100 > rollout["max_failure_percent"] * finished:
        since = " since it was resumed" if rollout["baseline_finished"] else ""
        reason = (f"{failed} of {finished} updates failed{since} (more than {rollout['max_failure_percent']}%) "
                  f"by the end of wave {wave}")
        await _finish(conn, rollout_id, "halted", reason)
        return
    if wave + 1 >= rollout["waves"]:
        await _finish(conn, rollout_id, "completed", f"{counts['succeeded']} updated, {counts['failed']} failed")
        return
    await conn.execute(Q.next_wave, {"id": rollout_id})
    log.info("rollout.wave", extra={"rollout_id": str(rollout_id), "wave": wave + 1})
    await _notify(conn, rollout_id)


async def _finish(conn: Conn, rollout_id: UUID, status: str, reason: str) -> None:
    await conn.execute(Q.set_status, {"id": rollout_id, "status": status, "reason": reason})
    await audit.record(conn, principal=None, action=f"rollout.{status}", object_type="rollout", object_id=rollout_id,
                       after={"status": status}, detail={"reason": reason})
    await _notify(conn, rollout_id)
    log.info(f"rollout.{status}", extra={"rollout_id": str(rollout_id), "reason": reason})


# --- opting out --------------------------------------------------------------------------------


def _may_set_opt_out(principal: Principal, business_id: UUID) -> None:
    """Staff, or the business's own users: it is the customer's machines that get updated."""
    principal.require_visible(business_id, "business")


async def opt_out(conn: Conn, *, principal: Principal, business_id: UUID, reason: str | None) -> OptOut:
    _may_set_opt_out(principal, business_id)
    if await fetch_one(conn, Q.business_visible, {"id": business_id, "scope": principal.business_scope}) is None:
        raise NotFound("business not found")
    async with _as_portal_user():
        row = await fetch_one(conn, Q.opt_out, {"business_id": business_id, "user_id": principal.user_id,
                                                "reason": reason})
    await audit.record(conn, principal=principal, action="rollout_opt_out.set", object_type="business",
                       object_id=business_id, business_id=business_id, detail={"reason": reason})
    return msgspec.convert(row, OptOut)


async def opt_in(conn: Conn, *, principal: Principal, business_id: UUID) -> None:
    _may_set_opt_out(principal, business_id)
    if await fetch_one(conn, Q.opt_in, {"business_id": business_id}) is None:
        raise NotFound("this business has not opted out")
    await audit.record(conn, principal=principal, action="rollout_opt_out.clear", object_type="business",
                       object_id=business_id, business_id=business_id)


async def list_opt_outs(conn: Conn, *, principal: Principal) -> list[OptOut]:
    rows = await fetch_all(conn, Q.list_opt_outs, {"scope": principal.business_scope})
    return msgspec.convert(rows, list[OptOut])
