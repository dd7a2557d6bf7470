"""The WebSocket side of command delivery: the agents connected to this process and a LISTEN
connection that hears, from every API instance, that an agent has a command to deliver.

Whatever makes a command deliverable sends ``NOTIFY rts_commands`` with the agent id in the same
transaction (``service.notify_deliverable``). Each instance's listener receives every
notification; the one holding that agent's socket claims the agent's deliverable commands with
the same atomic statement polling uses (so nothing is delivered twice, even if the agent were
connected to two instances) and pushes them. Notifications are not queued while nobody listens:
after the listener (re)connects, and every ``SWEEP_SECONDS`` as a safety net, it asks the
database which connected agents have something deliverable and delivers it.

A socket that connects is asked the same question, together with every other socket that
connected meanwhile (``_check_fresh``): after an API restart thousands of agents reconnect within
seconds, and a claim per socket would take a pooled connection each for what is nearly always
"nothing". Only the agents with something deliverable are claimed for.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import itertools
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any
from uuid import UUID

import msgspec
import psycopg

from rts_monitor.auth import agents
from rts_monitor.commands import service
from rts_monitor.commands import structs as s
from rts_monitor.core import metrics
from rts_monitor.core.context import AppContext
from rts_monitor.db import connection, resolve_database_url
from rts_monitor.db.rows import fetch_all

log = logging.getLogger(__name__)

SERVICE_NAME = "commands.hub"
SWEEP_SECONDS = 30.0
_ids = itertools.count(1)


# Set in the connection's task once its 503 is sent: uvicorn (0.54, websockets-sansio) counts only
# an accepted or closed handshake as completed and logs an error for a denial response it sent
# itself; ``DenialLogFilter`` drops that line for our refusals (commands/ws.py) only.
denied: contextvars.ContextVar[bool] = contextvars.ContextVar("rts_ws_denied", default=False)
_UVICORN_NOT_COMPLETED = "ASGI callable returned without completing handshake."


class DenialLogFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not (denied.get() and record.getMessage() == _UVICORN_NOT_COMPLETED)


def install_log_filter() -> None:
    """On uvicorn's error logger, once per process (the lifespan component below)."""
    logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, DenialLogFilter) for f in logger.filters):
        logger.addFilter(DenialLogFilter())


class AgentConnection:
    """One agent's socket as the hub sees it: a locked sender (pushes and replies interleave) and a
    delivery lock (one claim-and-push at a time per socket)."""

    def __init__(self, agent_id: UUID, send_text: Callable[[str], Awaitable[None]],
                 close: Callable[[int, str], Awaitable[None]]) -> None:
        self.id = next(_ids)
        self.agent_id = agent_id
        self._send_text = send_text
        self._close = close
        self._send_lock = asyncio.Lock()
        self.deliver_lock = asyncio.Lock()
        self.closed = False

    async def send(self, message: msgspec.Struct) -> None:
        text = msgspec.json.encode(message).decode()
        async with self._send_lock:
            if self.closed:
                raise ConnectionError("socket already closed")
            await self._send_text(text)

    async def close(self, code: int, reason: str) -> None:
        if self.closed:
            return
        self.closed = True
        with contextlib.suppress(Exception):
            await self._close(code, reason)


class CommandHub:
    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx
        self._conns: dict[UUID, AgentConnection] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._listener: asyncio.Task[None] | None = None
        self.listening = asyncio.Event()
        self.listener_connects = 0
        self.handshaking = 0  # handshakes between admission and accept (commands/ws.py)
        self._fresh: set[UUID] = set()
        self._fresh_task: asyncio.Task[None] | None = None

    # --- sockets ---------------------------------------------------------------------------------

    def attach(self, conn: AgentConnection) -> None:
        """Register a new socket; an older one of the same agent here is closed (it is stale).
        Whatever became deliverable while the agent was away is pushed shortly (``_check_fresh``)."""
        old = self._conns.get(conn.agent_id)
        self._conns[conn.agent_id] = conn
        if old is not None and old is not conn:
            self._spawn(old.close(4000, "replaced by a newer connection"))
        self._fresh.add(conn.agent_id)
        if self._fresh_task is None or self._fresh_task.done():
            self._fresh_task = asyncio.create_task(self._check_fresh(), name="commands-connect-check")

    async def _check_fresh(self) -> None:
        """One query for every socket that connected since the last one (module docstring). The
        agent is registered before the query reads, so a command committed after the read is
        pushed by its NOTIFY; one committed before it is found here."""
        await asyncio.sleep(0)  # the sockets accepted in this turn of the loop join the first query
        while self._fresh:
            agent_ids = [a for a in self._fresh if a in self._conns]
            self._fresh.clear()
            if not agent_ids:
                continue
            try:
                async with connection(self.ctx.pool) as db:
                    rows = await fetch_all(db, service.Q.agents_with_deliverable, {"agent_ids": agent_ids})
            except Exception as exc:
                # the database unreachable or the pool dry: ask again shortly (the sweep would, later)
                log.warning("commands.connect_check_failed", extra={"agents": len(agent_ids), "error": repr(exc)})
                self._fresh.update(agent_ids)
                await asyncio.sleep(self.ctx.settings.command_listen_retry_seconds)
                continue
            for row in rows:
                self._spawn(self._deliver_logged(row["agent_id"]))

    def detach(self, conn: AgentConnection) -> None:
        conn.closed = True
        if self._conns.get(conn.agent_id) is conn:
            del self._conns[conn.agent_id]

    @property
    def connected(self) -> int:
        return len(self._conns)

    async def deliver(self, agent_id: UUID) -> int:
        """Claim and push this agent's deliverable commands; a failed push goes back to pending."""
        conn = self._conns.get(agent_id)
        if conn is None or conn.closed:
            return 0
        async with conn.deliver_lock:
            if conn.closed:
                return 0
            # claimed (marked sent) and committed before the push; a failed push puts the rest back
            async with connection(self.ctx.pool) as db:
                commands = await service.claim(db, settings=self.ctx.settings, agent_id=agent_id, via="ws")
            for i, cmd in enumerate(commands):
                try:
                    await conn.send(s.WsCommand(cmd.command_id, cmd.command_type, cmd.params, cmd.timeout_seconds))
                    metrics.instruments().ws_pushes.labels("agent").inc()
                except Exception as exc:
                    async with connection(self.ctx.pool) as db:
                        await service.unsend(db, settings=self.ctx.settings, agent_id=agent_id,
                                             command_ids=[c.command_id for c in commands[i:]], error=repr(exc))
                    return i
            return len(commands)

    # --- the LISTEN connection -------------------------------------------------------------------

    async def start(self, wait: float = 10.0) -> None:
        self._listener = asyncio.create_task(self._listen(), name="commands-listener")
        try:
            await asyncio.wait_for(self.listening.wait(), wait)
        except TimeoutError:
            log.warning("commands.listener.slow", extra={"waited_s": wait})

    async def stop(self) -> None:
        if self._fresh_task is not None:
            self._fresh_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._fresh_task
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._listener
        for conn in list(self._conns.values()):
            await conn.close(1001, "server shutting down")
        self._conns.clear()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _listen(self) -> None:
        url = resolve_database_url(self.ctx.settings)
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                    url, autocommit=True, application_name="rts-monitor:commands-listen",
                    keepalives=1, keepalives_idle=30, keepalives_interval=10, keepalives_count=3,
                ) as conn:
                    await conn.execute(f"LISTEN {service.CHANNEL}")
                    await conn.execute(f"LISTEN {agents.AUTH_CHANNEL}")
                    agents.forget()  # revocations sent while we were not listening: start afresh
                    self.listener_connects += 1
                    self.listening.set()
                    log.info("commands.listener.connected", extra={"connects": self.listener_connects})
                    await self._resend(reason="listener_connected")
                    while True:
                        async for note in conn.notifies(timeout=SWEEP_SECONDS):
                            if note.channel == agents.AUTH_CHANNEL:
                                agents.forget(note.payload)
                            else:
                                self._on_notify(note.payload)
                        await conn.execute("SELECT 1")  # raises if the server went away silently
                        await self._resend(reason="sweep")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.listening.clear()
                log.warning("commands.listener.lost", extra={"error": repr(exc)})
            await asyncio.sleep(self.ctx.settings.command_listen_retry_seconds)

    def _on_notify(self, payload: str) -> None:
        try:
            note = json.loads(payload)
            agent_id = UUID(note["agent_id"])
            cancel = UUID(note["command_id"]) if note.get("cancel") else None
        except (ValueError, KeyError, TypeError):
            log.warning("commands.notify.bad_payload", extra={"payload": payload[:200]})
            return
        sent_at = note.get("sent_at")
        if isinstance(sent_at, int | float):
            metrics.instruments().notify_lag.observe(max(0.0, time.time() - sent_at))
        if agent_id not in self._conns:
            return
        if note.get("rotate_token"):
            self._spawn(self._push(agent_id, s.WsRotateToken(), "token_rotation"))
        elif cancel is not None:
            self._spawn(self._push_cancel(agent_id, cancel))
        else:
            self._spawn(self._deliver_logged(agent_id))

    async def _push_cancel(self, agent_id: UUID, command_id: UUID) -> None:
        """Best effort: a lost push is repeated by the agent's next heartbeat answer."""
        conn = self._conns.get(agent_id)
        if conn is None:
            return
        try:
            await conn.send(s.WsCancel(command_id))
            metrics.instruments().ws_pushes.labels("agent").inc()
            log.info("commands.cancel_pushed", extra={"agent_id": str(agent_id), "command_id": str(command_id)})
        except Exception as exc:
            log.info("commands.cancel_push_failed", extra={"agent_id": str(agent_id), "error": repr(exc)})

    async def _push(self, agent_id: UUID, message: msgspec.Struct, what: str) -> None:
        """Best effort: without it the agent's next scheduled heartbeat does the same."""
        conn = self._conns.get(agent_id)
        if conn is None:
            return
        try:
            await conn.send(message)
            log.info(f"commands.{what}_pushed", extra={"agent_id": str(agent_id)})
        except Exception as exc:
            log.info(f"commands.{what}_push_failed", extra={"agent_id": str(agent_id), "error": repr(exc)})

    async def _resend(self, *, reason: str) -> None:
        """Deliver what became deliverable while no notification could reach us."""
        agent_ids = list(self._conns)
        if not agent_ids:
            return
        async with connection(self.ctx.pool) as conn:
            rows = await fetch_all(conn, service.Q.agents_with_deliverable, {"agent_ids": agent_ids})
            due = [r["agent_id"] for r in rows]
        if due:
            log.info("commands.resend", extra={"reason": reason, "agents": len(due)})
        for agent_id in due:
            self._spawn(self._deliver_logged(agent_id))

    async def _deliver_logged(self, agent_id: UUID) -> None:
        try:
            await self.deliver(agent_id)
        except Exception:
            log.exception("commands.deliver.failed", extra={"agent_id": str(agent_id)})

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


@contextlib.asynccontextmanager
async def component(ctx: AppContext) -> AsyncIterator[None]:
    """Lifespan component: the hub in ``ctx.services["commands.hub"]``, listening before we serve."""
    hub = CommandHub(ctx)
    ctx.services[SERVICE_NAME] = hub
    install_log_filter()
    await hub.start()
    try:
        yield
    finally:
        await hub.stop()


def get(ctx: AppContext) -> CommandHub:
    hub: CommandHub = ctx.services[SERVICE_NAME]
    return hub
