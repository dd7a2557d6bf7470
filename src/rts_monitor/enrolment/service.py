"""Registration tokens and registration: the only way an agent gets its credential.

A registration token is a one-time secret an operator hands to an installer. It is stored as a
SHA-256 hash, expires, can be revoked, and is spent by one conditional UPDATE inside the
registration transaction: if anything after the claim fails, the claim rolls back with it.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import secrets
from typing import Any
from uuid import UUID

import msgspec
from psycopg_pool import AsyncConnectionPool

from rts_monitor.audit import service as audit
from rts_monitor.auth import agents, limits
from rts_monitor.auth.principal import Principal
from rts_monitor.core.errors import NotFound, Unauthorized, ValidationFailed
from rts_monitor.core.settings import Settings
from rts_monitor.db import Conn, Queries
from rts_monitor.db.rows import fetch_all, fetch_one
from rts_monitor.enrolment.structs import (
    AgentConfig,
    RegisterRequest,
    RegisterResponse,
    RegistrationTokenCreate,
    RegistrationTokenCreated,
    RegistrationTokenInfo,
    SystemInfo,
)
from rts_monitor.services import service as monitored
from rts_monitor.services.structs import ServiceChoice

log = logging.getLogger(__name__)
Q = Queries.beside(__file__)

TOKEN_GROUPS = 5  # 5 x 8 hex = 160 bits of entropy
TOKEN_STATES = ("active", "used", "expired", "revoked")
_MAC = re.compile(r"^[0-9A-Fa-f]{2}([:-][0-9A-Fa-f]{2}){5}$")
_MSGSPEC_PATH = re.compile(r" - at `\$\.?(?P<path>[^`]*)`")


def new_registration_token() -> str:
    """``AGT-xxxxxxxx-…``: grouped hex so it survives copy/paste, shells and msiexec arguments."""
    return agents.REGISTRATION_PREFIX + "-".join(secrets.token_hex(4) for _ in range(TOKEN_GROUPS))


def install_commands(settings: Settings, token: str) -> tuple[str, str]:
    """(linux, windows) one-liners that fetch the installer from this server's public URL."""
    url = settings.effective_public_url
    linux = f"curl -fsSL {url}/install.sh | sudo bash -s {token}"
    windows = (
        'powershell -NoProfile -ExecutionPolicy Bypass -Command "& ([scriptblock]::Create('
        f"(Invoke-RestMethod '{url}/install.ps1'))) -Token '{token}' -Server '{url}'\""
    )
    return linux, windows


def websocket_url(settings: Settings) -> str:
    base = settings.effective_public_url
    if base.startswith("https://"):
        return "wss://" + base.removeprefix("https://") + "/ws"
    return "ws://" + base.removeprefix("http://") + "/ws"


def agent_config(settings: Settings, row: dict[str, Any],
                 services: list[ServiceChoice] | None = None) -> AgentConfig:
    """The config an agent runs with; ``row`` carries the device's version and flags."""
    return AgentConfig(
        # Per-agent intervals (set by POST /api/agents/bulk) override the server's defaults.
        heartbeat_interval_seconds=row.get("heartbeat_interval_seconds") or settings.heartbeat_interval_seconds,
        metrics_interval_seconds=row.get("metrics_interval_seconds") or settings.metrics_interval_seconds,
        api_url=settings.effective_public_url + "/api",
        websocket_url=websocket_url(settings),
        config_version=int(row["config_version"]),
        monitoring_enabled=bool(row["monitoring_enabled"]),
        alerts_enabled=bool(row["alerts_enabled"]),
        auto_remediation_enabled=bool(row["auto_remediation_enabled"]),
        monitored_services=services or [],
    )


async def _require_business_location(
    conn: Conn, business_id: UUID, location_id: UUID | None
) -> None:
    """Staff pick any business; the location must be one of that business's (field error)."""
    if await fetch_one(conn, Q.business_exists, {"business_id": business_id}) is None:
        raise ValidationFailed("business_id: no such business", field="business_id")
    if location_id is None:
        return
    params = {"location_id": location_id, "business_id": business_id}
    if await fetch_one(conn, Q.location_of_business, params) is None:
        raise ValidationFailed(
            "service_location_id: not a location of this business", field="service_location_id"
        )


async def create_registration_token(
    conn: Conn, *, settings: Settings, principal: Principal, request: RegistrationTokenCreate
) -> RegistrationTokenCreated:
    token = new_registration_token()
    await _require_business_location(conn, request.business_id, request.service_location_id)
    row = await fetch_one(conn, Q.insert_registration_token, {
        "token_hash": agents.hash_token(token), "token_hint": token[:8],
        "business_id": request.business_id, "location_id": request.service_location_id,
        "device_name": request.device_name, "created_by": principal.user_id,
        "ttl_seconds": request.expires_in_hours * 3600,
    })
    assert row is not None
    await audit.record(conn, principal=principal, action="registration_token.create",
                       object_type="registration_token", object_id=row["id"], business_id=request.business_id,
                       after={"token_hint": token[:8], "service_location_id": request.service_location_id,
                              "device_name": request.device_name, "expires_at": row["expires_at"]})
    linux, windows = install_commands(settings, token)
    log.info("enrolment.token_created", extra={
        "token_id": str(row["id"]), "business_id": str(request.business_id), "by": str(principal.user_id)})
    return RegistrationTokenCreated(
        id=row["id"], token=token, expires_at=row["expires_at"], business_id=request.business_id,
        service_location_id=request.service_location_id, device_name=request.device_name,
        install_command_linux=linux, install_command_windows=windows, install_command=linux,
    )


async def list_registration_tokens(
    conn: Conn, *, business_id: UUID | None, state: str | None, limit: int
) -> list[RegistrationTokenInfo]:
    if state is not None and state not in TOKEN_STATES:
        raise ValidationFailed(f"state: must be one of {', '.join(TOKEN_STATES)}", field="state")
    rows = await fetch_all(conn, Q.list_registration_tokens,
                           {"business_id": business_id, "state": state, "limit": limit})
    return [msgspec.convert(r, RegistrationTokenInfo) for r in rows]


async def revoke_registration_token(conn: Conn, *, principal: Principal, token_id: UUID) -> None:
    row = await fetch_one(conn, Q.revoke_registration_token,
                          {"token_id": token_id, "user_id": principal.user_id})
    if row is None:
        raise NotFound("registration token not found or already used")
    await audit.record(conn, principal=principal, action="registration_token.revoke",
                       object_type="registration_token", object_id=token_id, business_id=row["business_id"],
                       detail={"token_hint": row["token_hint"]})
    log.info("enrolment.token_revoked", extra={"token_id": str(token_id), "by": str(principal.user_id)})


def _system_info(request: RegisterRequest) -> SystemInfo:
    """Top-level fields win over ``system_info``; either place is validated with its path."""
    nested = SystemInfo()
    if request.system_info:
        try:
            nested = msgspec.convert(request.system_info, SystemInfo, strict=False)
        except msgspec.ValidationError as exc:
            m = _MSGSPEC_PATH.search(str(exc))
            path = "system_info" + ("." + m["path"] if m and m["path"] else "")
            text = str(exc)[: m.start()] if m else str(exc)
            raise ValidationFailed(f"{path}: {text}", field=path) from None
    merged = {f: getattr(request, f) if getattr(request, f) is not None else getattr(nested, f)
              for f in SystemInfo.__struct_fields__}
    info = SystemInfo(**merged)
    if info.ip_address is not None:
        try:
            ipaddress.ip_address(info.ip_address)
        except ValueError:
            raise ValidationFailed("ip_address: not an IP address", field="ip_address") from None
    if info.mac_address is not None and not _MAC.match(info.mac_address):
        raise ValidationFailed("mac_address: expected six hex pairs like 00:1A:2B:3C:4D:5E",
                               field="mac_address")
    return info


async def _refuse_claim(conn: Conn, token_hash: str) -> Unauthorized:
    """The 401 for a token that could not be claimed, saying which of the reasons applies."""
    row = await fetch_one(conn, Q.registration_token_state, {"token_hash": token_hash})
    if row is None:
        reason = "unknown"
    elif row["used_at"] is not None:
        reason = "used"
    elif row["revoked_at"] is not None:
        reason = "revoked"
    else:
        reason = "expired"
    return Unauthorized(f"registration token {reason}", extra={"reason": reason})


async def register(conn: Conn, *, settings: Settings, pool: AsyncConnectionPool, request: RegisterRequest,
                   source: str | None) -> RegisterResponse:
    """Spend the token and create the device, all or nothing. Failed attempts are rate limited per
    source address and per token prefix (auth/limits.py; recorded through ``pool``, outside the
    request's transaction, which the refusal rolls back)."""
    limited = {limits.address_key(source): settings.auth_failures_per_address,
               limits.token_key(request.token): settings.auth_failures_per_token}
    limits.check(limited)
    info = _system_info(request)
    if not request.token.startswith(agents.REGISTRATION_PREFIX):
        await limits.failed(pool, settings, limited)
        raise Unauthorized("registration token unknown", extra={"reason": "unknown"})
    token_hash = agents.hash_token(request.token)
    agent_token, agent_token_hash = agents.new_token()
    async with conn.transaction():
        claim = await fetch_one(conn, Q.claim_registration_token, {"token_hash": token_hash})
        if claim is None:
            refusal = await _refuse_claim(conn, token_hash)
            await limits.failed(pool, settings, limited)
            raise refusal
        device = await fetch_one(conn, Q.insert_agent_device, {
            "business_id": claim["business_id"], "location_id": claim["service_location_id"],
            "token_hash": agent_token_hash, "device_name": claim["device_name"] or request.hostname,
            "device_type": info.device_type or "unknown", "os_type": request.os_type.lower(),
            "os_version": info.os_version, "os_architecture": info.os_architecture,
            "hostname": request.hostname, "agent_version": info.agent_version or "unknown",
            "cpu_model": info.cpu_model, "total_memory_gb": info.total_memory_gb,
            "total_disk_gb": info.total_disk_gb, "ip_address": info.ip_address,
            "mac_address": info.mac_address.upper().replace("-", ":") if info.mac_address else None,
            "created_by": claim["created_by"],
        })
        assert device is not None
        await conn.execute(Q.record_registration, {"agent_id": device["id"], "token_id": claim["id"]})
        # The business's default services apply from the first config on (delivered here, so the
        # first heartbeat does not ask for it again).
        if await monitored.sync_devices(conn, [device["id"]]):
            delivered = await fetch_one(conn, Q.deliver_current_config, {"agent_id": device["id"]})
            assert delivered is not None
            device = {**device, "config_version": delivered["config_version"]}
        services = await monitored.config_services(conn, device["id"])
    log.info("enrolment.registered", extra={
        "agent_id": str(device["id"]), "business_id": str(claim["business_id"]), "hostname": request.hostname})
    config = agent_config(settings, device, services)
    return RegisterResponse(
        agent_id=device["id"], agent_token=agent_token, business_id=claim["business_id"],
        service_location_id=claim["service_location_id"], api_url=config.api_url,
        websocket_url=config.websocket_url, heartbeat_interval_seconds=config.heartbeat_interval_seconds,
        metrics_interval_seconds=config.metrics_interval_seconds, config=config,
    )
