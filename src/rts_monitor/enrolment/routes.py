"""Registration tokens (portal, staff) and agent registration (token in the body, no bearer)."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from litestar import Request, delete, get, post
from litestar.params import Parameter, QueryParameter
from litestar.status_codes import HTTP_201_CREATED, HTTP_204_NO_CONTENT

from rts_monitor.auth import credentials
from rts_monitor.auth.principal import Principal, require_staff
from rts_monitor.core.context import AppContext
from rts_monitor.db import Conn
from rts_monitor.enrolment import service
from rts_monitor.enrolment.structs import (
    RegisterRequest,
    RegisterResponse,
    RegistrationTokenCreate,
    RegistrationTokenCreated,
    RegistrationTokenList,
)

TAGS = ["enrolment"]
PORTAL: list[dict[str, list[str]]] = [{"portal": []}]


@post("/api/agents/registration-tokens", status_code=HTTP_201_CREATED, tags=TAGS, security=PORTAL,
      summary="Create a one-time registration token (admin, technician)")
async def create_registration_token(
    ctx: AppContext, conn: Conn, principal: Principal, data: RegistrationTokenCreate
) -> RegistrationTokenCreated:
    require_staff(principal)
    return await service.create_registration_token(conn, settings=ctx.settings, principal=principal, request=data)


@get("/api/agents/registration-tokens", tags=TAGS, security=PORTAL,
     summary="List registration tokens, newest first (admin, technician)")
async def list_registration_tokens(
    conn: Conn, principal: Principal, business_id: UUID | None = None,
    token_state: Annotated[str | None, QueryParameter(name="state", description="active | used | expired | revoked")]
    = None,
    limit: Annotated[int, Parameter(ge=1, le=1000)] = 100,
) -> RegistrationTokenList:
    require_staff(principal)
    tokens = await service.list_registration_tokens(conn, business_id=business_id, state=token_state,
                                                    limit=limit)
    return RegistrationTokenList(registration_tokens=tokens)


@delete("/api/agents/registration-tokens/{token_id:uuid}", status_code=HTTP_204_NO_CONTENT, tags=TAGS,
        security=PORTAL, summary="Revoke an unused registration token (admin, technician)")
async def revoke_registration_token(conn: Conn, principal: Principal, token_id: UUID) -> None:
    require_staff(principal)
    await service.revoke_registration_token(conn, principal=principal, token_id=token_id)


@post("/api/agents/register", status_code=HTTP_201_CREATED, tags=TAGS, opt={"errors": [401]},
      summary="Exchange a registration token and system info for an agent credential")
async def register(request: Request[Any, Any, Any], ctx: AppContext, conn: Conn,
                   data: RegisterRequest) -> RegisterResponse:
    source = credentials.client_address(ctx.settings, request.client.host if request.client else None,
                                        request.headers.get("x-forwarded-for"))
    return await service.register(conn, settings=ctx.settings, pool=ctx.pool, request=data, source=source)


HANDLERS: list[Any] = [create_registration_token, list_registration_tokens, revoke_registration_token, register]
