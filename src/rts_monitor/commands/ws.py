"""``/ws``: the agent's WebSocket (the API contract's "WEBSOCKET PROTOCOL"; extra message types in
docs/websocket.md).

The agent token comes from ``Authorization: Bearer`` or the API contract's ``?token=``; a bad one is
refused before the handshake completes (HTTP 403). While the process cannot take more agents at
once (a reconnect storm after a restart: ``RTS_WS_MAX_HANDSHAKES`` handshakes already waiting for
the database, or requests queueing for a pooled connection) or the database is unreachable, a
handshake whose token is not already known here is answered HTTP 503 with a Retry-After spread
over a few seconds, so the refused agents come back apart, not together. Once connected, every
deliverable command is pushed (``{"type": "command", …}``) at once and whenever another becomes
deliverable, on any instance. The agent sends ``command_result``, ``event`` and ``heartbeat`` (the HTTP heartbeat's
service, so both transports behave the same); each gets an ack, a
bad message gets ``{"type": "error", …}`` and the socket stays open. Keep-alive pings are
uvicorn's (``RTS_WS_PING_INTERVAL_SECONDS`` / ``RTS_WS_PING_TIMEOUT_SECONDS``).
"""

from __future__ import annotations

import logging
import random
import time
from typing import Any

import msgspec
from litestar import WebSocket, websocket
from litestar.exceptions import WebSocketDisconnect

from rts_monitor.auth import agents as agent_tokens
from rts_monitor.auth import credentials
from rts_monitor.auth.principal import AgentPrincipal
from rts_monitor.commands import hub as hub_mod
from rts_monitor.commands import service as commands
from rts_monitor.commands import structs as s
from rts_monitor.core.context import AppContext
from rts_monitor.core.errors import DomainError, TooManyRequests, Unauthorized, Unavailable, error_field
from rts_monitor.core.types import check_json_shape, nesting_error, scrub_json
from rts_monitor.db import Conn, connection
from rts_monitor.devices import service as devices
from rts_monitor.devices.structs import HeartbeatRequest
from rts_monitor.events import service as events
from rts_monitor.events.structs import EventIn

log = logging.getLogger(__name__)

CLOSE_UNAUTHORIZED = 4401
CLOSE_TOO_MANY = 4429  # rate limited (auth/limits.py): reconnect later
# Retry-After of a refused handshake, drawn per refusal: thousands of agents refused in the same
# second must not all come back in the same second.
BUSY_RETRY_AFTER = (2, 10)
_decoder = msgspec.json.Decoder(s.AgentMessage)


def _token(socket: WebSocket[Any, Any, Any]) -> str | None:
    header = socket.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    token = socket.query_params.get("token")
    return token.strip() if token else None


@websocket("/ws", opt={"exclude_from_auth": True})
async def agent_socket(socket: WebSocket[Any, Any, Any]) -> None:
    ctx: AppContext = socket.app.state.ctx
    hub = hub_mod.get(ctx)
    token = _token(socket)
    admitted = False
    try:
        if not token:
            raise Unauthorized("missing agent token (Authorization: Bearer or ?token=)")
        admit(ctx, hub, token)
        admitted = True
        hub.handshaking += 1
        agent = await credentials.agent(
            ctx.pool, f"Bearer {token}", settings=ctx.settings,
            source=credentials.client_address(ctx.settings, socket.client.host if socket.client else None,
                                              socket.headers.get("x-forwarded-for")))
    except (Unauthorized, TooManyRequests) as exc:
        log.info("ws.rejected", extra={"reason": exc.message})
        code = CLOSE_TOO_MANY if isinstance(exc, TooManyRequests) else CLOSE_UNAUTHORIZED
        await socket.close(code=code, reason=exc.message)
        return
    except Unavailable as exc:  # busy, or the database unreachable: the agent retries after Retry-After
        log.info("ws.refused", extra={"reason": exc.message, "retry_after": exc.retry_after})
        await refuse(socket, exc)
        return
    finally:
        if admitted:
            hub.handshaking -= 1
    await socket.accept()
    conn = hub_mod.AgentConnection(agent.agent_id, socket.send_text, lambda code, why: socket.close(code, why))
    hub.attach(conn)
    started = time.monotonic()
    log.info("ws.connected", extra={"agent_id": str(agent.agent_id), "connection": conn.id})
    close_code: int | None = None
    try:
        while True:
            event = await socket.receive()
            if event["type"] == "websocket.disconnect":
                close_code = event.get("code")
                break
            text, data = event.get("text"), event.get("bytes")
            raw: str | bytes = text if isinstance(text, str) else data if isinstance(data, bytes) else b""
            reply = await handle_message(ctx, agent, raw)
            await conn.send(reply)
            if isinstance(reply, s.WsError) and reply.code == "unauthorized":  # revoked meanwhile
                await conn.close(CLOSE_UNAUTHORIZED, reply.message[:120])
                break
    except WebSocketDisconnect as exc:
        close_code = exc.code if isinstance(exc.code, int) else None
    except ConnectionError:
        pass
    finally:
        hub.detach(conn)
        log.info("ws.disconnected", extra={"agent_id": str(agent.agent_id), "connection": conn.id,
                                           "code": close_code, "seconds": round(time.monotonic() - started, 1)})


def admit(ctx: AppContext, hub: hub_mod.CommandHub, token: str) -> None:
    """Admission control for handshakes that need the database (module docstring): a token this
    process already knows costs nothing and is always admitted."""
    if agent_tokens.cached(token) is not None:
        return
    busy = hub.handshaking >= ctx.settings.ws_max_handshakes
    if not busy:
        # requests queue for a connection while the pool is at its largest: saturated (a queue
        # while it grows is only a connection being opened)
        stats = ctx.pool.get_stats()
        busy = stats.get("requests_waiting", 0) > 0 and stats.get("pool_size", 0) >= ctx.pool.max_size
    if busy:
        raise Unavailable("too many agents are connecting at once; retry after Retry-After seconds",
                          retry_after=random.randint(*BUSY_RETRY_AFTER))


async def refuse(socket: WebSocket[Any, Any, Any], exc: Unavailable) -> None:
    """HTTP 503 with Retry-After and the HTTP error body, instead of the handshake (the ASGI
    WebSocket Denial Response extension; a server without it can only close: HTTP 403)."""
    retry_after = str(max(1, round(exc.retry_after)))
    if "websocket.http.response" not in (socket.scope.get("extensions") or {}):
        await socket.close(code=1013, reason=f"try again later (retry after {retry_after} s)")
        return
    body = msgspec.json.encode({"status": 503, "code": exc.code, "message": exc.message, **exc.extra})
    await socket.send({"type": "websocket.http.response.start", "status": 503,
                       "headers": [(b"retry-after", retry_after.encode()), (b"content-type", b"application/json"),
                                   (b"content-length", str(len(body)).encode())]})
    await socket.send({"type": "websocket.http.response.body", "body": body, "more_body": False})
    hub_mod.denied.set(True)  # uvicorn's error line about it is not one (hub.DenialLogFilter)


async def handle_message(ctx: AppContext, agent: AgentPrincipal, raw: str | bytes) -> msgspec.Struct:
    """One agent message → its ack, or an error message (the socket stays open either way)."""
    data = raw.encode() if isinstance(raw, str) else raw
    try:
        # the input rules of every HTTP body (core/types.py): shape limits first, then the NUL rule
        check_json_shape(data)
        message = _decoder.decode(scrub_json(data))
    except msgspec.DecodeError as exc:
        path, text = error_field("", str(exc))
        field = path.lstrip(".") or None
        # the same codes as HTTP (api/errors.py): a named field breaks a rule, else unreadable
        return s.WsError(code="validation_error" if field else "bad_request",
                         message=f"{field}: {text}" if field else text, field=field)
    except RecursionError:
        error = nesting_error()
        return s.WsError(code=error.code, message=error.message, field=error.field)
    except DomainError as exc:  # too deep or too large, or a time outside its window
        return s.WsError(code=exc.code, message=exc.message, field=exc.field)
    try:
        async with connection(ctx.pool) as conn:
            return await _apply(ctx, conn, agent, message)
    except DomainError as exc:
        return s.WsError(code=exc.code, message=exc.message, field=exc.field,
                         command_id=getattr(message, "command_id", None))


async def _apply(ctx: AppContext, conn: Conn, agent: AgentPrincipal, message: s.AgentMessage) -> msgspec.Struct:
    """The same services the HTTP endpoints call, on one connection per message."""
    if isinstance(message, s.WsCommandResult):
        result = s.CommandResult(**{f: getattr(message, f) for f in s.CommandResult.__struct_fields__})
        ack = await commands.record_result(conn, settings=ctx.settings, agent=agent, command_id=message.command_id,
                                           result=result, via="ws")
        return s.WsCommandResultAck(ack.command_id, ack.status, ack.applied, ack.late)
    if isinstance(message, s.WsEvent):
        event_in = EventIn(message.event_type, message.timestamp, message.data, message.event_id)
        stored = await events.record(conn, settings=ctx.settings, agent_id=agent.agent_id, event=event_in, via="ws")
        return s.WsEventAck(stored.event_type, stored.id, stored.duplicate, stored.event_id)
    beat = await devices.heartbeat(conn, agent=agent, request=HeartbeatRequest(
        timestamp=message.timestamp, status=message.status, agent_version=message.agent_version,
        config_version=message.config_version))
    return s.WsHeartbeatAck(beat.config_updated, beat.pending_commands, beat.config_version, beat.status,
                            beat.server_time, beat.cancel_commands)


HANDLERS: list[Any] = [agent_socket]
