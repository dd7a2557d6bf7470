"""The console's live channel: what changed, pushed to open pages over Server-Sent Events.

Sources, all through PostgreSQL NOTIFY so that a change made through any API instance (or by a
job, or by hand in SQL) reaches pages open on every instance:

* ``rts_console`` from triggers (migration 0090): a status change (``agent_status_transitions``)
  or an alert opened / acknowledged / resolved (``agent_alert_history``), with the business id.
* ``rts_console_samples`` from the ingest flush's own statement (ingest/queries.sql,
  ``announced``): one notification per committed flush (a chunk per 200 devices) naming the
  devices that got samples. It carries no values: each process reads the newest sample of just
  the devices its pages show, with one query per flush (``live_latest``), however many pages
  are open.
* ``rts_rollouts`` from the rollouts service (rollouts/queries.sql, ``notify``): a staged agent
  rollout's status with its devices counted by state, at every status change and every advance
  that changed a device (a command issued, an outcome taken). Sent as ``kind: rollout`` to pages
  watching ``rollout``, and only to staff: rollouts are staff-only to read (rollouts/service.py,
  ``require_staff``) and span businesses, so no customer hears of one.

Each API process keeps one LISTEN connection (reconnecting after a loss, like the command hub)
and a set of subscribers: one per open page, with the agents the page shows and the caller's
business scope. A page that was disconnected, or whose process lost its LISTEN connection, is
told to ``resync``: it re-reads what it shows (one request), so nothing missed stays missing.
Events queued for a subscriber are sent together (one SSE message per burst), and a subscriber
that does not keep up is told to resync instead of being buffered without bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

import psycopg

from rts_monitor.auth.principal import Principal
from rts_monitor.core import metrics
from rts_monitor.core.context import AppContext
from rts_monitor.db import Queries, connection, resolve_database_url
from rts_monitor.db.rows import fetch_all

log = logging.getLogger(__name__)
Q = Queries.beside(__file__)

SERVICE_NAME = "console.live"
CHANNEL = "rts_console"
SAMPLES_CHANNEL = "rts_console_samples"
ROLLOUTS_CHANNEL = "rts_rollouts"
QUEUE_LIMIT = 500
KEEPALIVE_SECONDS = 15.0
RETRY_SECONDS = 1.0


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


@dataclass(eq=False)
class Subscriber:
    """One open page. ``agents``: the rows it shows (fleet) or its device; ``fleet``: it also
    wants to know that counts in its scope changed; ``kinds``: event kinds it wants for every
    device in its scope (the alert inbox: ``alert``; the command console: ``command``; the
    rollout pages: ``rollout``, every rollout, for staff only)."""

    principal: Principal
    agents: frozenset[UUID]
    fleet: bool
    kinds: frozenset[str] = frozenset()
    queue: asyncio.Queue[dict[str, Any]] = field(default_factory=lambda: asyncio.Queue(QUEUE_LIMIT))
    overflowed: bool = False
    closed: bool = False  # the server is stopping: the stream ends

    def sees(self, business_id: str | None) -> bool:
        scope = self.principal.business_scope
        return scope is None or (business_id is not None and business_id == str(scope))

    def put(self, event: dict[str, Any]) -> None:
        if self.overflowed:
            return
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self.overflowed = True  # the page will re-read everything: drop the rest


class LiveHub:
    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx
        self.subscribers: set[Subscriber] = set()
        self.listening = asyncio.Event()
        self.connects = 0
        self._listener: asyncio.Task[None] | None = None
        self._pending: set[UUID] = set()
        self._reader: asyncio.Task[None] | None = None

    # --- subscriptions ---------------------------------------------------------------------------

    def subscribe(self, principal: Principal, agents: Iterable[UUID], *, fleet: bool,
                  kinds: Iterable[str] = ()) -> Subscriber:
        sub = Subscriber(principal, frozenset(agents), fleet, frozenset(kinds))
        self.subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        self.subscribers.discard(sub)

    def _broadcast_resync(self, reason: str) -> None:
        for sub in self.subscribers:
            sub.put({"kind": "resync", "reason": reason})

    # --- the LISTEN connection -------------------------------------------------------------------

    async def start(self, wait: float = 10.0) -> None:
        self._listener = asyncio.create_task(self._listen(), name="console-listener")
        try:
            await asyncio.wait_for(self.listening.wait(), wait)
        except TimeoutError:
            log.warning("console.listener.slow", extra={"waited_s": wait})

    async def stop(self) -> None:
        for task in (self._listener, self._reader):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        self.end_streams()

    def end_streams(self) -> None:
        for sub in self.subscribers:
            sub.closed = True
            with contextlib.suppress(asyncio.QueueFull):
                sub.queue.put_nowait({"kind": "bye"})  # wakes the stream; a full queue wakes it anyway

    async def _listen(self) -> None:
        url = resolve_database_url(self.ctx.settings)
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                    url, autocommit=True, application_name="rts-monitor:console-listen",
                    keepalives=1, keepalives_idle=30, keepalives_interval=10, keepalives_count=3,
                ) as conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    await conn.execute(f"LISTEN {SAMPLES_CHANNEL}")
                    await conn.execute(f"LISTEN {ROLLOUTS_CHANNEL}")
                    self.connects += 1
                    self.listening.set()
                    log.info("console.listener.connected", extra={"connects": self.connects})
                    if self.connects > 1:  # whatever happened while deaf is unknown: pages re-read
                        self._broadcast_resync("listener reconnected")
                    while True:
                        async for note in conn.notifies(timeout=30.0):
                            self.on_notify(note.channel, note.payload)
                        await conn.execute("SELECT 1")  # raises if the server went away silently
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.listening.clear()
                log.warning("console.listener.lost", extra={"error": repr(exc)})
            await asyncio.sleep(RETRY_SECONDS)

    def on_notify(self, channel: str, payload: str) -> None:
        if not self.subscribers:
            return
        if channel == SAMPLES_CHANNEL:
            self._on_samples(payload)
            return
        if channel == ROLLOUTS_CHANNEL:
            self._on_rollout(payload)
            return
        try:
            note = json.loads(payload)
            agent = UUID(str(note["agent"]))
            business = note.get("business")
        except (ValueError, KeyError, TypeError):
            log.warning("console.notify.bad_payload", extra={"payload": payload[:200]})
            return
        for sub in self.subscribers:
            if not sub.sees(business):
                continue
            if agent in sub.agents or note.get("kind") in sub.kinds:
                sub.put(note)
            elif sub.fleet:
                sub.put({"kind": "counts"})  # a row it does not show changed: its counts may have

    def _on_rollout(self, payload: str) -> None:
        try:
            note = json.loads(payload)
            UUID(str(note["rollout_id"]))
        except (ValueError, KeyError, TypeError):
            log.warning("console.notify.bad_payload", extra={"payload": payload[:200]})
            return
        event = {**note, "kind": "rollout"}
        for sub in self.subscribers:
            # staff only, whatever the subscription asked (the route refuses the kind to customers too)
            if "rollout" in sub.kinds and sub.principal.is_staff:
                sub.put(event)

    def _on_samples(self, payload: str) -> None:
        watched = set().union(*(s.agents for s in self.subscribers))
        for raw in payload.split(","):
            try:
                agent = UUID(raw)
            except ValueError:
                continue
            if agent in watched:
                self._pending.add(agent)
        if self._pending and (self._reader is None or self._reader.done()):
            self._reader = asyncio.create_task(self._read_samples(), name="console-samples")

    async def _read_samples(self) -> None:
        """Newest values of the watched devices that got samples; one query per round, and rounds
        do not overlap (devices announced meanwhile wait for the next), so a busy ingest costs
        this process at most one query in flight."""
        while self._pending:
            ids, self._pending = list(self._pending), set()
            try:
                async with connection(self.ctx.pool) as conn:
                    rows = await fetch_all(conn, Q.live_latest, {
                        "ids": ids, "lookback_hours": self.ctx.settings.latest_metrics_lookback_hours})
            except Exception as exc:
                log.warning("console.samples.read_failed", extra={"error": repr(exc)})
                self._broadcast_resync("sample read failed")
                return
            events = {row["id"]: sample_event(row) for row in rows if row["collected_at"] is not None}
            for sub in self.subscribers:
                for agent in sub.agents & events.keys():
                    if sub.sees(str(events[agent]["business"])):
                        sub.put(events[agent])


def _rate(now: int | None, before: int | None, seconds: float) -> float | None:
    """Bytes per second between two counter readings; a drop is a restart from 0 (as the history
    API counts resets)."""
    if now is None or before is None or seconds <= 0:
        return None
    return (now - before if now >= before else now) / seconds


def sample_event(row: dict[str, Any]) -> dict[str, Any]:
    at: datetime = row["collected_at"]
    prev: datetime | None = row["prev_at"]
    seconds = (at - prev).total_seconds() if prev is not None else 0.0
    return {
        "kind": "sample", "agent": str(row["id"]), "business": str(row["business_id"]), "status": row["status"],
        "last_seen": _iso(max((t for t in (row["last_heartbeat"], row["last_metrics_received"]) if t is not None),
                              default=None)),
        "at": at.isoformat(), "cpu_percent": row["cpu_percent"], "memory_percent": row["memory_percent"],
        "memory_used_gb": row["memory_used_gb"], "disk_percent": row["disk_percent"],
        "disk_used_gb": row["disk_used_gb"], "load_average_1m": row["load_average_1m"],
        "load_average_5m": row["load_average_5m"], "load_average_15m": row["load_average_15m"],
        "uptime_seconds": row["uptime_seconds"],
        "network_rx_rate": _rate(row["network_rx_bytes"], row["prev_rx"], seconds),
        "network_tx_rate": _rate(row["network_tx_bytes"], row["prev_tx"], seconds),
    }


async def stream(hub: LiveHub, sub: Subscriber, *, until: datetime,
                 still_valid: Callable[[], Awaitable[bool]]) -> AsyncIterator[tuple[str, str]]:
    """(event name, JSON data) for one subscriber until it disconnects, its session's end
    ``until`` passes or ``still_valid`` (asked at every keep-alive) says the session was ended
    meanwhile (signed out elsewhere, user deactivated); ``("", "")`` is a keep-alive. Queued
    events go out together as one ``changes`` message."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + max(0.0, (until - datetime.now(until.tzinfo)).total_seconds())
    try:
        yield "hello", json.dumps({"listening": hub.listening.is_set()})
        while not sub.closed:
            left = deadline - loop.time()
            if left <= 0:
                yield "expired", "{}"
                return
            try:
                first = await asyncio.wait_for(sub.queue.get(), timeout=min(KEEPALIVE_SECONDS, left))
            except TimeoutError:
                if not await still_valid():
                    yield "expired", "{}"
                    return
                yield "", ""
                continue
            batch = [first]
            while not sub.queue.empty():
                batch.append(sub.queue.get_nowait())
            if sub.overflowed:
                sub.overflowed = False
                while not sub.queue.empty():
                    sub.queue.get_nowait()
                batch = [{"kind": "resync", "reason": "too many changes at once"}]
            if sub.closed:
                return
            metrics.instruments().ws_pushes.labels("console_sse").inc()
            yield "changes", json.dumps(batch, default=str)
    finally:
        hub.unsubscribe(sub)


def _end_streams_on_shutdown(hub: LiveHub) -> None:
    """Event streams never finish by themselves, and uvicorn stops only after every response has
    (its graceful-shutdown timeout, 30 s, would pass first). So the first SIGTERM/SIGINT also ends
    the streams (browsers reconnect, to another instance if there is one), then goes on to the
    server's own handler. Only possible from the main thread (not in tests' in-process apps)."""
    if threading.current_thread() is not threading.main_thread():
        return
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        previous = signal.getsignal(sig)

        def handler(signum: int, frame: Any, previous: Any = previous) -> None:
            loop.call_soon_threadsafe(hub.end_streams)
            if callable(previous):
                previous(signum, frame)

        with contextlib.suppress(ValueError, OSError):
            signal.signal(sig, handler)


@contextlib.asynccontextmanager
async def component(ctx: AppContext) -> AsyncIterator[None]:
    """Lifespan component: the hub in ``ctx.services["console.live"]``, listening before we serve."""
    hub = LiveHub(ctx)
    ctx.services[SERVICE_NAME] = hub
    await hub.start()
    _end_streams_on_shutdown(hub)
    try:
        yield
    finally:
        await hub.stop()


def get(ctx: AppContext) -> LiveHub:
    hub: LiveHub = ctx.services[SERVICE_NAME]
    return hub
