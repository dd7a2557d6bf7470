"""``rts-agent run``: the loops of a running agent, in one asyncio process.

* collect   every ``metrics_interval``: sample -> spool (durable) -> wake the sender
* send      drain the spool oldest first in batches; delete only what the server acknowledged;
            back off with jitter while the server is away; pause between full batches so hours
            of backlog reach the server as a steady trickle, not a flood
* heartbeat every ``heartbeat_interval`` (at once on a ``rotate_token`` push); ``pending_commands`` > 0
            wakes the poller; a new ``agent_token`` in the answer is saved, then used
* socket    WebSocket ``/ws?token=`` for commands, reconnecting with backoff + jitter
* poll      ``GET …/commands`` whenever the socket is down (and when a heartbeat says so)
* results   command results are spooled, then delivered (socket or POST) until acknowledged
* inventory software list, read when the package database changed, sent only when it changed
* status    ``status.json`` for ``rts-agent status``, rewritten when what it shows changes

Idle means idle: every loop sleeps until its next due work or until another loop wakes it, and
none wakes to find nothing to do (no polling while the socket is up, no result retries while
there is no result, no status rewrites while nothing changed), so between samples and heartbeats
the process makes no system calls but the socket's keep-alive. ``benchmarks/agent_footprint.py``
measures it.

SIGTERM/SIGINT stop the loops; anything collected stays in the spool for the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import signal
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import msgspec

from rts_agent import __version__
from rts_agent.collect import Collector, package_db_signature, utc_stamp
from rts_agent.commands import Command, CommandResult, Executor
from rts_agent.config import (
    PID_NAME,
    SPOOL_NAME,
    STATUS_NAME,
    AgentConfig,
    load_raw,
    overridden_fields,
    portal_services,
    save,
    write_private,
)
from rts_agent.http import HandshakeRejected, WebSocket
from rts_agent.spool import DropReport, Spool
from rts_agent.transport import Api, Backoff, TransportError, new_client

log = logging.getLogger("rts_agent")
_SAMPLE_FIELD = re.compile(r"^metrics\[(\d+)\]")
_encoder = msgspec.json.Encoder()
STATUS_SPACING_SECONDS = 2.0  # the status file is rewritten at most this often...
STATUS_SETTLE_SECONDS = 0.5  # ...and this long after a change, so a sample and its send make one write
RESULT_RETRY_SECONDS = 5.0
# A package database that changed is read once it has stayed unchanged this long (an upgrade
# rewrites it many times).
PACKAGES_SETTLE_SECONDS = 60.0


class _Info(dict[str, Any]):
    """What ``status`` shows of the runner; every assignment marks the status file stale."""

    def __init__(self, changed: asyncio.Event, **values: Any) -> None:
        super().__init__(**values)
        self._changed = changed

    def __setitem__(self, key: str, value: Any) -> None:
        if self.get(key, _Info) != value:
            super().__setitem__(key, value)
            self._changed.set()


def _refused_unnamed(exc: TransportError, batch: list[Any]) -> bool:
    """A 400/422 for a batch of several samples that names none of them (``metrics[i]…``)."""
    return exc.status in (400, 422) and len(batch) > 1 and not _SAMPLE_FIELD.match(exc.field or "")


class Runner:
    """One running agent. ``run()`` returns after ``stop()`` (or a signal)."""

    def __init__(self, config: AgentConfig, state_dir: Path, *, collector: Collector | None = None) -> None:
        self.config = config
        self.state_dir = state_dir
        self._pinned = overridden_fields(os.environ)
        self.spool = Spool(state_dir / SPOOL_NAME, max_bytes=config.spool_max_bytes)
        self.collector = collector or Collector(config.monitored_services)
        self.executor = Executor(output_cap=config.output_cap_bytes,
                                 hooks={"collect_inventory": self._inventory_command,
                                        "update_agent": self._update_command})
        self.restart_requested = False  # set by update_agent; ``rts-agent run`` then re-executes
        self._stop = asyncio.Event()
        self._wake_sender = asyncio.Event()
        self._wake_poll = asyncio.Event()
        self._wake_results = asyncio.Event()
        self._wake_inventory = asyncio.Event()
        self._wake_heartbeat = asyncio.Event()
        self._wake_watch = asyncio.Event()
        self._status_changed = asyncio.Event()
        self._status_written: dict[str, Any] | None = None
        self._packages_seen: tuple[str | None, float] = (None, 0.0)  # (signature, since when)
        self._packages_read: str | None = None  # the signature the last inventory read saw
        self._ws: WebSocket | None = None
        self._done: OrderedDict[str, None] = OrderedDict()  # recently finished command ids
        self._running: dict[str, asyncio.Event] = {}  # commands in flight; set the event to stop one
        self._cancelled: OrderedDict[str, None] = OrderedDict()  # cancel requests (also before a start)
        self._result_sent_at: dict[str, float] = {}
        self._event_sent_at: dict[str, float] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.api: Api | None = None
        self.started_at = utc_stamp()
        self.info = _Info(
            self._status_changed,
            last_sample_at=None, last_send_ok_at=None, last_send_error=None, last_heartbeat_at=None,
            websocket="disconnected", commands_executed=0, inventory_sent_at=None, inventory_packages=None,
            collector_errors=None, credential_rejected=False, pending_results=self.spool.count_results(),
        )

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self.stop)
        write_private(self.state_dir / PID_NAME, str(os.getpid()).encode())
        log.info("agent.started", extra={"agent_id": self.config.agent_id, "server": self.config.server_url,
                                         "version": __version__})
        self._status_changed.set()
        async with new_client() as client:
            self.api = Api(client, self.config.api_url, self.config.agent_id, self.config.agent_token)
            loops: list[Callable[[], Awaitable[None]]] = [
                self._collect_loop, self._send_loop, self._heartbeat_loop, self._socket_loop,
                self._poll_loop, self._results_loop, self._inventory_loop, self._status_loop, self._watch_loop,
            ]
            tasks = [asyncio.create_task(self._guard(fn), name=fn.__name__) for fn in loops]
            await self._stop.wait()
            # Let a batch already on the wire get its answer (and be acknowledged in the spool),
            # so a clean stop does not leave a sent-but-unacknowledged batch behind to re-send.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(tasks[1]), timeout=5)
            for task in [*tasks, *self._tasks]:
                task.cancel()
            await asyncio.gather(*tasks, *self._tasks, return_exceptions=True)
            self.info["websocket"] = "disconnected"
            self._write_status()
        self.collector.close()
        self.spool.close()
        (self.state_dir / PID_NAME).unlink(missing_ok=True)
        log.info("agent.stopped", extra={"agent_id": self.config.agent_id})

    async def _guard(self, fn: Callable[[], Awaitable[None]]) -> None:
        """A loop that crashes is logged and restarted: one bug must not silence the agent."""
        while not self._stop.is_set():
            try:
                await fn()
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("agent.loop_failed", extra={"loop": fn.__name__})
                await self._sleep(5)

    async def _sleep(self, seconds: float | None, wake: asyncio.Event | None = None) -> bool:
        """Sleep ``seconds`` (``None``: until woken), returning early on stop or on ``wake``
        (which is then cleared); True if ``wake`` ended it."""
        waiters = [asyncio.ensure_future(self._stop.wait())]
        if wake is not None:
            waiters.append(asyncio.ensure_future(wake.wait()))
        try:
            await asyncio.wait(waiters, timeout=None if seconds is None else max(0.0, seconds),
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waiters:
                w.cancel()
        if wake is None:
            return False
        woken = wake.is_set()
        wake.clear()
        return woken

    # -- collect ----------------------------------------------------------------------------
    async def _collect_loop(self) -> None:
        next_at = time.monotonic() + min(1.0, self.config.metrics_interval_seconds)
        while not self._stop.is_set():
            await self._sleep(next_at - time.monotonic())
            if self._stop.is_set():
                return
            interval = self.config.metrics_interval_seconds  # the server may change it
            next_at += interval
            if next_at < time.monotonic():  # suspended or overloaded: skip, do not burst
                next_at = time.monotonic() + interval
            self._watch_packages()
            if not self.config.monitoring_enabled:  # paused from the portal: no samples at all
                continue
            self.collect_once(await asyncio.to_thread(self.collector.sample))

    def collect_once(self, sample: Any) -> None:
        dropped = self.spool.put(sample.collected_at, _encoder.encode(sample))
        log.debug("sample.spooled", extra={"collected_at": sample.collected_at})
        self.info["last_sample_at"] = sample.collected_at
        self.info["collector_errors"] = sample.errors
        if dropped:
            log.warning("spool.full_dropped_oldest", extra={"dropped": dropped,
                                                            "max_bytes": self.config.spool_max_bytes})
        self._wake_sender.set()

    # -- send -------------------------------------------------------------------------------
    async def _send_loop(self) -> None:
        assert self.api is not None
        batch_size = max(1, self.config.send_batch_size)
        one_by_one = 0  # samples still to send alone, to find the one a refusal did not name
        backoff = Backoff(base=min(1.0, self.config.retry_cap_seconds), cap=self.config.retry_cap_seconds)
        while not self._stop.is_set():
            batch = self.spool.peek(1 if one_by_one else batch_size)
            if not batch:
                # Nothing to send: sleep until the next sample, unless a drop report still waits
                # for the server (then try again at the sample pace).
                unreported = not await self._report_drops()
                await self._sleep(self.config.metrics_interval_seconds if unreported else None, self._wake_sender)
                continue
            self.spool.lease([p.seq for p in batch])
            try:
                answer = await self.api.send_metrics([p.body for p in batch])
            except TransportError as exc:
                self.spool.release()
                if _refused_unnamed(exc, batch):
                    # The server refused the batch without saying which sample: send its samples
                    # one at a time, so the bad one is refused alone and quarantined.
                    log.warning("metrics.batch_refused", extra={"error": str(exc)[:300], "samples": len(batch)})
                    one_by_one = len(batch)
                    continue
                delay = self._send_failed(exc, batch, backoff)
                if exc.status in (400, 422) and not delay:
                    one_by_one = 0  # quarantined: back to whole batches
                if exc.status == 413 and batch_size > 1:
                    batch_size = max(1, batch_size // 2)
                if delay:
                    await self._sleep(delay)
                continue
            except BaseException:
                self.spool.release()
                raise
            self.spool.ack([p.seq for p in batch])
            self.spool.release()
            backoff.reset()
            one_by_one = max(0, one_by_one - 1)
            batch_size = max(1, self.config.send_batch_size)
            self.info["last_send_ok_at"] = utc_stamp()
            self.info["last_send_error"] = None
            self.info["credential_rejected"] = False
            log.debug("metrics.sent", extra={"samples": len(batch), "answer": answer})
            await self._report_drops()
            if len(batch) == batch_size:  # more backlog: pace the catch-up
                await self._sleep(self.config.catchup_pause_seconds)

    def _send_failed(self, exc: TransportError, batch: list[Any], backoff: Backoff) -> float:
        """Decide what a failed batch means; returns how long to wait before the next try."""
        self.info["last_send_error"] = str(exc)[:300]
        if exc.status in (400, 422):
            # One sample the server will never accept must not block everything behind it.
            m = _SAMPLE_FIELD.match(exc.field or "")
            index = int(m[1]) if m else (0 if len(batch) == 1 else None)
            if index is not None and index < len(batch):
                log.error("spool.sample_rejected", extra={"collected_at": batch[index].collected_at,
                                                          "error": str(exc)[:300]})
                self.spool.quarantine(batch[index].seq)
                return 0
        if exc.status in (401, 403):
            self.info["credential_rejected"] = True
            log.error("agent.credential_rejected", extra={"status": exc.status})
            return 300.0 if not exc.retry_after else exc.retry_after
        if exc.status == 413:
            return 0
        delay = exc.retry_after if exc.retry_after is not None else backoff.next_delay()
        log.warning("metrics.send_failed", extra={"error": str(exc)[:300], "retry_in": round(delay, 2),
                                                  "pending": len(batch)})
        return delay

    async def _report_drops(self) -> bool:
        """Tell the server (event ``spool_overflow``) how many samples were dropped, once;
        False while a report could not be delivered."""
        report = self.spool.drop_report()
        if report is None:
            return True
        event = self._drop_event(report)
        if await self._send_event(event):
            self.spool.clear_drop_report(report)
            log.warning("spool.drop_reported", extra={"dropped": report.count})
            return True
        return False

    def _drop_event(self, report: DropReport) -> dict[str, Any]:
        key = f"{self.config.agent_id}:{report.first_collected_at}:{report.last_collected_at}:{report.count}"
        return {"event_type": "spool_overflow", "timestamp": utc_stamp(),
                "event_id": str(uuid.uuid5(uuid.NAMESPACE_URL, key)),
                "data": {"dropped": report.count, "first_collected_at": report.first_collected_at,
                         "last_collected_at": report.last_collected_at,
                         "spool_max_bytes": self.config.spool_max_bytes}}

    async def _send_event(self, event: dict[str, Any]) -> bool:
        assert self.api is not None
        ws = self._ws
        if ws is not None and not ws.closed:
            try:
                await ws.send_str(_encoder.encode({"type": "event", **event}).decode())
                return True
            except OSError:
                pass
        try:
            await self.api.request("POST", "/events", _encoder.encode(event))
            return True
        except TransportError as exc:
            log.debug("event.not_sent", extra={"error": str(exc)[:200]})
            return False

    # -- heartbeat --------------------------------------------------------------------------
    async def _heartbeat_loop(self) -> None:
        assert self.api is not None
        while not self._stop.is_set():
            rotated = False
            try:
                answer = await self.api.heartbeat({"timestamp": utc_stamp(), "status": "online",
                                                   "agent_version": __version__})
                self.info["last_heartbeat_at"] = utc_stamp()
                if not isinstance(answer, dict):
                    answer = {}
                token = answer.get("agent_token")
                if isinstance(token, str) and token and token != self.api.token:
                    rotated = await self._adopt_token(token)
                if answer.get("pending_commands"):
                    self._wake_poll.set()
                for command_id in answer.get("cancel_commands") or []:
                    self._request_cancel(str(command_id), via="heartbeat")
                if answer.get("config_updated"):
                    await self._refresh_config()
            except TransportError as exc:
                log.warning("heartbeat.failed", extra={"error": str(exc)[:300]})
            if rotated:
                continue  # a heartbeat with the new token at once: that is the acknowledgement
            await self._sleep(self.config.heartbeat_interval_seconds, self._wake_heartbeat)

    async def _adopt_token(self, token: str) -> bool:
        """The server rotated this agent's token: save it (atomically, fsync'd) before using it,
        so a crash from here on restarts with the token the server now expects; then every
        request, and a fresh socket, use it. The old token works for a grace period, so requests
        already on their way are not lost. If the save fails the old token is kept: the server
        issues another new one at the next heartbeat made with the old."""
        assert self.api is not None
        try:
            saved = load_raw(self.state_dir)
            save(msgspec.structs.replace(saved, agent_token=token), self.state_dir)
        except (OSError, msgspec.DecodeError) as exc:
            log.error("agent.token_not_saved", extra={"error": f"{type(exc).__name__}: {exc}"[:300]})
            return False
        self.config = msgspec.structs.replace(self.config, agent_token=token)
        self.api.token = token
        log.warning("agent.token_rotated", extra={"agent_id": self.config.agent_id})
        ws = self._ws
        if ws is not None and not ws.closed:
            await ws.close(wait=False)  # the socket loop reconnects with the new token
        return True

    async def _refresh_config(self) -> None:
        """The server changed this agent's config: fetch it (which acknowledges it) and apply
        the intervals, except where an ``RTS_AGENT_*`` variable pins them, and the monitoring
        switch (collection paused or resumed at once)."""
        assert self.api is not None
        answer = await self.api.request("GET", "/config")
        if not isinstance(answer, dict):
            return
        changes: dict[str, Any] = {
            name: float(answer[name]) for name in ("heartbeat_interval_seconds", "metrics_interval_seconds")
            if isinstance(answer.get(name), int | float) and answer[name] > 0}
        services = answer.get("monitored_services")
        if isinstance(services, list) and not load_raw(self.state_dir).services_pin:
            names = portal_services(services)
            if names != self.config.monitored_services:
                changes["monitored_services"] = names
        if isinstance(answer.get("monitoring_enabled"), bool):
            changes["monitoring_enabled"] = answer["monitoring_enabled"]
            if answer["monitoring_enabled"] != self.config.monitoring_enabled:
                log.warning("monitoring.resumed" if answer["monitoring_enabled"] else "monitoring.paused",
                            extra={"version": answer.get("config_version")})
        if not changes:
            return
        self._status_changed.set()
        saved = load_raw(self.state_dir)
        save(msgspec.structs.replace(saved, **changes), self.state_dir)
        live = {k: v for k, v in changes.items() if k not in self._pinned}
        if live:
            self.config = msgspec.structs.replace(self.config, **live)
            if "monitored_services" in live:
                self.collector.watch(self.config.monitored_services)
                self._wake_watch.set()
        log.info("config.updated", extra={"changes": changes, "applied_now": sorted(live),
                                          "version": answer.get("config_version")})

    # -- commands ---------------------------------------------------------------------------
    async def _socket_loop(self) -> None:
        assert self.api is not None
        backoff = Backoff(base=min(1.0, self.config.retry_cap_seconds), cap=self.config.retry_cap_seconds)
        while not self._stop.is_set():
            url = f"{self.config.ws_url}?token={self.config.agent_token}"  # the token may have been rotated
            try:
                async with await self.api.client.ws_connect(
                    url, heartbeat=30, close_timeout=10,
                    headers={"Authorization": f"Bearer {self.config.agent_token}"},
                ) as ws:
                    self._ws = ws
                    self.info["websocket"] = "connected"
                    log.info("socket.connected", extra={"url": self.config.ws_url})
                    backoff.reset()
                    self._result_sent_at.clear()  # re-deliver anything unacknowledged
                    await self._deliver_results()
                    await self._report_drops()
                    self._event_sent_at.clear()
                    await self._deliver_events()
                    async for data in ws:
                        await self._on_message(data)
            except HandshakeRejected as exc:
                log.info("socket.refused", extra={"status": exc.status, "error": str(exc)[:300]})
            except (OSError, TimeoutError, ValueError) as exc:
                log.info("socket.unavailable", extra={"error": f"{type(exc).__name__}: {exc}"[:300]})
            finally:
                if self._ws is not None:
                    self._ws = None
                    self.info["websocket"] = "disconnected"
                    self._wake_poll.set()  # polling covers the gap at once
            await self._sleep(backoff.next_delay())

    async def _on_message(self, data: str | bytes) -> None:
        try:
            msg = msgspec.json.decode(data)
        except msgspec.DecodeError:
            log.warning("socket.bad_message", extra={"data": str(data)[:200]})
            return
        if not isinstance(msg, dict):
            return
        kind = msg.get("type")
        if kind == "command":
            self._spawn(self._execute(msg, via="ws"))
        elif kind == "cancel_command":
            self._request_cancel(str(msg.get("command_id")), via="ws")
        elif kind == "rotate_token":
            self._wake_heartbeat.set()  # the new token comes in the heartbeat's answer
        elif kind == "command_result_ack":
            command_id = str(msg.get("command_id"))
            self.spool.delete_result(command_id)
            self._result_sent_at.pop(command_id, None)
            self.info["pending_results"] = self.spool.count_results()
        elif kind == "event_ack" and msg.get("event_id"):
            event_id = str(msg["event_id"])
            self.spool.delete_event(event_id)
            self._event_sent_at.pop(event_id, None)
        elif kind == "error":
            log.warning("socket.server_error", extra={"message": msg})

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _poll_loop(self) -> None:
        assert self.api is not None
        while not self._stop.is_set():
            # While the socket is up it delivers the commands: no timer then, only a heartbeat
            # that reports pending commands (or the socket's loss) wakes this loop.
            woken = self._wake_poll.is_set() or await self._sleep(
                None if self._ws is not None else self.config.poll_interval_seconds, self._wake_poll)
            self._wake_poll.clear()
            if self._stop.is_set():
                return
            if self._ws is not None and not woken:
                continue  # the socket delivers commands; poll only as a fallback
            try:
                for msg in await self.api.poll_commands():
                    self._spawn(self._execute(msg, via="poll"))
            except TransportError as exc:
                log.info("commands.poll_failed", extra={"error": str(exc)[:300]})

    def _request_cancel(self, command_id: str, *, via: str) -> None:
        """The portal cancelled ``command_id``: stop it if it runs, and never start it later."""
        if command_id in self._cancelled:
            return  # heartbeats repeat the request until the result reaches the server
        self._cancelled[command_id] = None
        while len(self._cancelled) > 1000:
            self._cancelled.popitem(last=False)
        event = self._running.get(command_id)
        log.warning("command.cancel_requested", extra={"command_id": command_id, "via": via,
                                                       "running": event is not None})
        if event is not None:
            event.set()

    async def _execute(self, msg: dict[str, Any], *, via: str) -> None:
        cmd = Command.from_message(msg)
        if cmd.command_id in self._running or cmd.command_id in self._done or self.spool.has_result(cmd.command_id):
            return  # the same command over both channels, or already answered: run it once
        # Registered before anything is awaited: a cancel arriving from here on finds it.
        cancel = self._running[cmd.command_id] = asyncio.Event()
        started_key = "started:" + cmd.command_id
        try:
            if self.spool.get_state(started_key) is not None:
                # Started before a crash or kill, never finished: running it again could repeat
                # a side effect (a script, a restart) the operator did not ask for twice.
                result = CommandResult(status="failed", error_message="the agent stopped while this command "
                                       "was running; it was not run again", completed_at=utc_stamp())
                self.spool.put_result(cmd.command_id, _encoder.encode(result))
                self.spool.delete_state(started_key)
                log.warning("command.interrupted", extra={"command_id": cmd.command_id})
                return
            if cmd.command_id in self._cancelled:
                result = CommandResult(status="failed", error_message="cancelled from the portal before it started",
                                       completed_at=utc_stamp())
                self.spool.put_result(cmd.command_id, _encoder.encode(result))
                return
            self.spool.set_state(started_key, utc_stamp())
            log.info("command.started", extra={"command_id": cmd.command_id, "type": cmd.command_type, "via": via})
            await self._send_result(cmd.command_id, CommandResult(status="executing", started_at=utc_stamp()))
            result = await self.executor.execute(cmd, cancel)
            self.spool.put_result(cmd.command_id, _encoder.encode(result))
            self.spool.delete_state(started_key)
            self.info["commands_executed"] += 1
            self._wake_results.set()
            log.info("command.finished", extra={"command_id": cmd.command_id, "status": result.status,
                                                "exit_code": result.exit_code})
        finally:
            del self._running[cmd.command_id]
            self._wake_results.set()  # whatever it spooled, the results loop sees to its delivery
            self._done[cmd.command_id] = None
            while len(self._done) > 1000:
                self._done.popitem(last=False)
        await self._deliver_results()
        if self.restart_requested and not self._running:
            log.warning("agent.restarting", extra={"reason": "update_agent", "command_id": cmd.command_id})
            self.stop()

    async def _send_result(self, command_id: str, result: CommandResult) -> bool:
        """Best effort (the ``executing`` notice); final results go through the spool."""
        return await self._deliver(command_id, _encoder.encode(result))

    async def _deliver(self, command_id: str, body: bytes) -> bool:
        assert self.api is not None
        ws = self._ws
        if ws is not None and not ws.closed:
            try:
                payload = b'{"type":"command_result","command_id":"' + command_id.encode() + b'",' + body[1:]
                await ws.send_str(payload.decode())  # text frames, as the API contract's JSON messages
                return True
            except OSError:
                pass
        try:
            await self.api.command_result(command_id, body)
            return True
        except TransportError as exc:
            if exc.status is not None and not exc.retryable:
                log.error("command.result_refused", extra={"command_id": command_id, "error": str(exc)[:300]})
                return exc.status in (404, 409, 422)  # the server will never take it: stop trying
            return False

    async def _deliver_results(self) -> None:
        """Send spooled results; a POST ack deletes at once, a socket send waits for its ack."""
        now = time.monotonic()
        for command_id in self.spool.result_ids():
            sent = self._result_sent_at.get(command_id)
            if sent is not None and now - sent < 15:
                continue
            body = self.spool.get_result(command_id)  # one body in memory at a time
            if body is None:
                continue
            over_socket = self._ws is not None and not self._ws.closed
            if await self._deliver(command_id, body):
                if over_socket:
                    self._result_sent_at[command_id] = now
                else:
                    self.spool.delete_result(command_id)
        self.info["pending_results"] = self.spool.count_results()

    async def _results_loop(self) -> None:
        """Retries what ``_execute`` and the socket's (re)connection could not deliver, every
        ``RESULT_RETRY_SECONDS`` while any result is spooled; no timer while none is (a spooled
        result wakes the loop, which then waits its retry delay: ``_execute`` delivers first)."""
        while not self._stop.is_set():
            if not self.spool.count_results():
                await self._sleep(None, self._wake_results)
                continue
            await self._sleep(RESULT_RETRY_SECONDS)
            if self._stop.is_set():
                return
            await self._deliver_results()

    # -- service watch ----------------------------------------------------------------------
    async def _watch_loop(self) -> None:
        """The cheap check between samples: every ``service_check_seconds`` the monitored
        services' states (one D-Bus call for all of them); a running service that stops is a
        ``service_crashed`` event, a crashed one running again ``service_recovered``. Events are
        spooled first and delivered over the socket (or POST), so a crash while the server is
        away reaches it later, once. No services to watch: no timer."""
        known: dict[str, tuple[str, int | None]] = {}
        while not self._stop.is_set():
            if not self.collector.services or not self.config.monitoring_enabled:
                known.clear()
                await self._sleep(None if not self.collector.services else self.config.service_check_seconds,
                                  self._wake_watch)
                continue
            try:
                states = await asyncio.to_thread(self.collector.read_services)
            except Exception as exc:  # the service manager could not be asked: try again next tick
                log.info("services.watch_failed", extra={"error": f"{type(exc).__name__}: {exc}"[:300]})
                states = []
            for svc in states:
                before = known.get(svc.name)
                pid = svc.pid
                if pid is None and before is not None and before[0] == svc.status:
                    # a read that raced the service's exit (state, then MainPID gone): the main PID
                    # of this same state is still the one seen before, and a crash should name it
                    pid = before[1]
                known[svc.name] = (svc.status, pid)
                if before is None or (before[0] == "running") == (svc.status == "running"):
                    continue  # first look, or no change across running / not running
                if svc.status == "running":
                    self._spool_event("service_recovered", {"service_name": svc.name, "pid": svc.pid,
                                                            "status": svc.status})
                else:
                    self._spool_event("service_crashed", {"service_name": svc.name, "pid": before[1],
                                                          "status": svc.status})
            for name in set(known) - set(self.collector.services):
                del known[name]
            await self._deliver_events()
            await self._sleep(self.config.service_check_seconds, self._wake_watch)

    def _spool_event(self, event_type: str, data: dict[str, Any]) -> None:
        event_id = str(uuid.uuid4())
        log.warning(f"services.{event_type}", extra={"service": data["service_name"], "status": data["status"]})
        self.spool.put_event(event_id, _encoder.encode({"event_type": event_type, "timestamp": utc_stamp(),
                                                        "data": {k: v for k, v in data.items() if v is not None},
                                                        "event_id": event_id}))

    async def _deliver_events(self) -> None:
        """Spooled events, oldest first; a POST answer deletes at once, a socket send waits for
        its ``event_ack`` (re-sent after 15 s without one; ``event_id`` makes a repeat harmless)."""
        assert self.api is not None
        now = time.monotonic()
        for event_id, body in self.spool.pending_events():
            sent = self._event_sent_at.get(event_id)
            if sent is not None and now - sent < 15:
                continue
            ws = self._ws
            if ws is not None and not ws.closed:
                try:
                    await ws.send_str((b'{"type":"event",' + body[1:]).decode())
                    self._event_sent_at[event_id] = now
                    continue
                except OSError:
                    pass
            try:
                await self.api.request("POST", "/events", body)
            except TransportError as exc:
                if exc.status is not None and not exc.retryable:  # refused for good: never accepted
                    log.error("event.refused", extra={"event_id": event_id, "error": str(exc)[:300]})
                    self.spool.delete_event(event_id)
                    continue
                return  # the server is away: everything stays spooled, in order
            self.spool.delete_event(event_id)

    # -- inventory --------------------------------------------------------------------------
    def _watch_packages(self) -> None:
        """On the collect loop's tick (no timer of its own): wake the inventory once the package
        database changed since the last read and has then stayed unchanged for a while."""
        signature = package_db_signature()
        if signature is None:
            return  # nothing to watch here: the inventory loop re-reads on its own timer
        seen, since = self._packages_seen
        now = time.monotonic()
        if signature != seen:
            self._packages_seen = (signature, now)
        elif signature != self._packages_read and now - since >= PACKAGES_SETTLE_SECONDS:
            self._wake_inventory.set()

    async def _inventory_loop(self) -> None:
        await self._sleep(min(5.0, self.config.metrics_interval_seconds))
        backoff = Backoff(base=5.0, cap=600.0)
        while not self._stop.is_set():
            try:
                await self.send_inventory(force=False)
                backoff.reset()
            except Exception as exc:
                log.warning("inventory.failed", extra={"error": f"{type(exc).__name__}: {exc}"[:300]})
                await self._sleep(backoff.next_delay())
                continue
            # A package database to watch: read again when it changes (``_watch_packages``).
            # None (Windows' registry, an unknown package manager): re-read on a timer.
            watched = package_db_signature() is not None
            await self._sleep(None if watched else self.config.inventory_interval_seconds, self._wake_inventory)

    async def send_inventory(self, *, force: bool) -> str:
        from rts_agent.collect import inventory, inventory_digest

        assert self.api is not None
        # What the package database looked like before reading it: a change during the read is
        # seen as a change afterwards. The agent's version is part of it (a new version may
        # report packages differently).
        signature = package_db_signature()
        signature = None if signature is None else f"{__version__}|{signature}"
        if not force and signature is not None and signature == self.spool.get_state("inventory_signature"):
            self._remember_packages(signature, store=False)
            return "inventory unchanged (package database not modified since the last report)"
        source, items = await asyncio.to_thread(inventory)
        digest = inventory_digest(items)
        if not force and digest == self.spool.get_state("inventory_digest"):
            self._remember_packages(signature)
            return f"inventory unchanged ({len(items)} packages from {source})"
        body = _encoder.encode({"collected_at": utc_stamp(), "source": source, "software": items})
        count = len(items)
        del items
        answer = await self.api.send_inventory(body)
        self.spool.set_state("inventory_digest", digest)
        self._remember_packages(signature)
        self.info["inventory_sent_at"] = utc_stamp()
        self.info["inventory_packages"] = count
        log.info("inventory.sent", extra={"packages": count, "source": source, "answer": answer})
        return f"inventory sent: {count} packages from {source}; server: {msgspec.json.encode(answer).decode()}"

    def _remember_packages(self, signature: str | None, *, store: bool = True) -> None:
        if signature is None:
            return
        if store:
            self.spool.set_state("inventory_signature", signature)
        self._packages_read = signature.split("|", 1)[1]
        if self._packages_seen[0] is None:
            self._packages_seen = (self._packages_read, time.monotonic())

    async def _inventory_command(self, _: Command) -> str:
        return await self.send_inventory(force=True)

    # -- self-update ------------------------------------------------------------------------
    async def _update_command(self, cmd: Command) -> str:
        """Install the requested version; the restart comes once the result is in the spool."""
        from rts_agent import update  # only this command needs pip's machinery

        done = await update.install(self.executor, cmd, server_url=self.config.server_url)
        if done is None:
            return f"already running {update.DIST} {__version__}; nothing to do"
        log.warning("agent.updated", extra={"command_id": cmd.command_id, "outcome": done})
        self.restart_requested = True
        return done

    # -- status -----------------------------------------------------------------------------
    async def _status_loop(self) -> None:
        """Rewrite the status file when what it shows changed, at most every
        ``STATUS_SPACING_SECONDS``: an idle agent writes nothing."""
        while not self._stop.is_set():
            await self._sleep(None, self._status_changed)
            await self._sleep(STATUS_SETTLE_SECONDS)
            if self._stop.is_set():
                return
            self._write_status()
            await self._sleep(STATUS_SPACING_SECONDS - STATUS_SETTLE_SECONDS)

    def _write_status(self) -> None:
        """The runner's own state for ``rts-agent status`` (which reads the spool's figures from
        the spool itself). A convenience view rewritten from memory: no fsync."""
        status = {
            "pid": os.getpid(), "agent_id": self.config.agent_id, "server_url": self.config.server_url,
            "version": __version__, "started_at": self.started_at,
            "metrics_interval_seconds": self.config.metrics_interval_seconds,
            "monitoring_enabled": self.config.monitoring_enabled,
            **self.info,
        }
        if status == self._status_written:
            return
        self._status_written = status
        write_private(self.state_dir / STATUS_NAME,
                      msgspec.json.format(_encoder.encode({**status, "updated_at": utc_stamp()})), durable=False)


__all__ = ["Runner"]
