"""Staged agent rollouts (staff) and each business's opt-out."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from litestar import delete, get, post, put
from litestar.params import Parameter
from litestar.status_codes import HTTP_204_NO_CONTENT

from rts_monitor.auth.principal import Principal
from rts_monitor.core.context import AppContext
from rts_monitor.db import Conn
from rts_monitor.rollouts import service
from rts_monitor.rollouts.structs import (
    DEVICES_OFFSET_MAX,
    DEVICES_PAGE,
    DEVICES_PAGE_MAX,
    Decision,
    DeviceState,
    OptOut,
    Rollout,
    RolloutCreate,
    RolloutList,
)

TAGS = ["rollouts"]
PORTAL: list[dict[str, list[str]]] = [{"portal": []}]
BASE = "/api/agents/rollouts"


@post(BASE, status_code=201, tags=TAGS, security=PORTAL,
      summary="Plan a staged update of the agents in scope to target_version (canary, then waves)")
async def create_rollout(ctx: AppContext, conn: Conn, principal: Principal, data: RolloutCreate) -> Rollout:
    return await service.create(conn, principal=principal, settings=ctx.settings, body=data)


@get(BASE, tags=TAGS, security=PORTAL, summary="Rollouts, newest first")
async def list_rollouts(conn: Conn, principal: Principal,
                        status: Annotated[str | None, Parameter(max_length=20)] = None,
                        limit: Annotated[int, Parameter(ge=1, le=500)] = 50) -> RolloutList:
    return await service.list_rollouts(conn, principal=principal, status=status, limit=limit)


@get(BASE + "/{rollout_id:uuid}", tags=TAGS, security=PORTAL, summary="A rollout with per-wave progress and devices",
     description=("`devices` is one page, by wave and name: `device_state` keeps one state, `device_limit` "
                  f"(default {DEVICES_PAGE:,}, at most {DEVICES_PAGE_MAX:,}) and `device_offset` page through; "
                  "`devices_matching` counts every device in that state (or all)."))
async def get_rollout(conn: Conn, principal: Principal, rollout_id: UUID, device_state: DeviceState | None = None,
                      device_limit: Annotated[int, Parameter(ge=1, le=DEVICES_PAGE_MAX)] = DEVICES_PAGE,
                      device_offset: Annotated[int, Parameter(ge=0, le=DEVICES_OFFSET_MAX)] = 0) -> Rollout:
    return await service.get(conn, principal=principal, rollout_id=rollout_id, device_state=device_state,
                             device_limit=device_limit, device_offset=device_offset)


@post(BASE + "/{rollout_id:uuid}/approve", status_code=200, tags=TAGS, security=PORTAL,
      opt={"errors": [409]},  # api/openapi.py: the rollout's state may not allow it
      summary="Approve a rollout (an admin or technician other than its requester)")
async def approve_rollout(conn: Conn, principal: Principal, rollout_id: UUID, data: Decision | None = None) -> Rollout:
    return await service.approve(conn, principal=principal, rollout_id=rollout_id, reason=data.reason if data else None)


@post(BASE + "/{rollout_id:uuid}/pause", status_code=200, tags=TAGS, security=PORTAL,
      opt={"errors": [409]},  # api/openapi.py: the rollout's state may not allow it
      summary="Pause: no further commands (those sent finish)")
async def pause_rollout(conn: Conn, principal: Principal, rollout_id: UUID, data: Decision | None = None) -> Rollout:
    return await service.act(conn, principal=principal, rollout_id=rollout_id, action="pause",
                             reason=data.reason if data else None)


@post(BASE + "/{rollout_id:uuid}/resume", status_code=200, tags=TAGS, security=PORTAL,
      opt={"errors": [409]},  # api/openapi.py: the rollout's state may not allow it
      summary="Resume a paused rollout, or a halted one once its failures were looked at")
async def resume_rollout(conn: Conn, principal: Principal, rollout_id: UUID, data: Decision | None = None) -> Rollout:
    return await service.act(conn, principal=principal, rollout_id=rollout_id, action="resume",
                             reason=data.reason if data else None)


@post(BASE + "/{rollout_id:uuid}/abort", status_code=200, tags=TAGS, security=PORTAL,
      opt={"errors": [409]},  # api/openapi.py: the rollout's state may not allow it
      summary="Abort: skip the devices not yet updated, cancel their undelivered commands")
async def abort_rollout(conn: Conn, principal: Principal, rollout_id: UUID, data: Decision | None = None) -> Rollout:
    return await service.act(conn, principal=principal, rollout_id=rollout_id, action="abort",
                             reason=data.reason if data else None)


@get(BASE + "/opt-outs", tags=TAGS, security=PORTAL, summary="Businesses that opted out of rollouts")
async def list_opt_outs(conn: Conn, principal: Principal) -> list[OptOut]:
    return await service.list_opt_outs(conn, principal=principal)


@put(BASE + "/opt-outs/{business_id:uuid}", tags=TAGS, security=PORTAL,
     summary="Opt a business out of rollouts (staff, or the business's own users)")
async def opt_out(conn: Conn, principal: Principal, business_id: UUID, data: Decision | None = None) -> OptOut:
    return await service.opt_out(conn, principal=principal, business_id=business_id,
                                 reason=data.reason if data else None)


@delete(BASE + "/opt-outs/{business_id:uuid}", status_code=HTTP_204_NO_CONTENT, tags=TAGS, security=PORTAL,
        summary="Opt a business back in")
async def opt_in(conn: Conn, principal: Principal, business_id: UUID) -> None:
    await service.opt_in(conn, principal=principal, business_id=business_id)


HANDLERS: list[Any] = [create_rollout, list_rollouts, list_opt_outs, get_rollout, approve_rollout, pause_rollout,
                       resume_rollout, abort_rollout, opt_out, opt_in]
