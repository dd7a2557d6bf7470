"""Group commit: samples of concurrent requests are coalesced into one binary COPY per transaction.

Why: one transaction per request caps ingestion at the commit rate (about 4-5k/s here, README),
while a COPY of thousands of rows costs little more than one of ten. Requests wait on a future
that is resolved only after the transaction holding their rows has committed, so an answered
sample is durable.

* A flush starts when ``flush_rows`` rows are queued or the oldest queued request has waited
  ``flush_delay``, whichever comes first, and when one of ``concurrency`` flush slots is free
  (while flushes run, new requests pile up into the next one: that is the coalescing).
* Memory is bounded: rows admitted but not yet committed never exceed ``queue_rows``; beyond that
  ``submit`` raises ``Unavailable`` (503 + Retry-After) instead of queueing.
* Three ways to write a flush, chosen per flush:
  - small (< ``COPY_MIN_ROWS`` rows, typically many one-sample requests): ONE autocommit statement,
    ``INSERT … SELECT FROM unnest(…) ON CONFLICT DO NOTHING RETURNING`` plus every side effect in
    CTEs: one round trip and one commit, where per-flush latency matters more than per-row cost;
  - large: binary COPY straight into the hypertable (~2.4x the rows/s of staging + ON CONFLICT,
    measured by benchmarks/ingest.py), then one side-effect statement, in one transaction;
  - a replay makes the COPY fail with a unique violation; the flush is then redone through a temp
    staging table and ``INSERT … ON CONFLICT DO NOTHING``, which tells which rows were new.
  ``mode="stage"`` always takes the staging path (for comparison).
* After the commit, the concerns' after-ingest hooks (``ctx.after_ingest``) run with the committed ranges; a request
  waits for their names at most ``hook_timeout`` (see ``_after_commit``); a failing hook is logged
  and never fails the ingest. No hooks, no cost.
* ``close()`` stops admitting, flushes everything admitted, then returns (the lifespan runs it
  before the pool closes).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, NamedTuple
from uuid import UUID

import psycopg
from psycopg import errors as pg_errors
from psycopg_pool import AsyncConnectionPool

from rts_monitor.core import metrics
from rts_monitor.core.context import AfterIngest, AppContext
from rts_monitor.core.errors import Unavailable, ValidationFailed
from rts_monitor.db import Queries, connection, ensure_available
from rts_monitor.ingest import validate
from rts_monitor.ingest.copy_format import stream
from rts_monitor.ingest.validate import PreparedBatch, Row

log = logging.getLogger(__name__)
Q = Queries.beside(__file__)
Mode = Literal["copy", "stage"]
# Retried at once: another transaction got in the way. Not the connection: see _write_with_retries.
_RETRYABLE = (pg_errors.DeadlockDetected, pg_errors.SerializationFailure)
_ATTEMPTS = 3
# The database refused a value: some request's data, never a reason to fail the others (_isolate).
_REFUSED = (psycopg.DataError, psycopg.IntegrityError)
# agent_metrics columns the database may name in an error, as the wire calls them.
# The gauges' columns are named after the wire field and its scale (validate.SCALES).
_LOAD_PATHS = {"load_average_1m": "load_average[0]", "load_average_5m": "load_average[1]",
               "load_average_15m": "load_average[2]"}
_WIRE_NAMES = {**{f"{name}_x{scale}": _LOAD_PATHS.get(name, name) for name, scale in validate.SCALES.items()},
               "agent_device_id": "agent", "collected_at": "collected_at"}
# Below this many rows a flush is one autocommit INSERT … SELECT FROM unnest (one round trip);
# from it on, binary COPY (per-row cost ~2.5x lower, but four round trips per flush).
COPY_MIN_ROWS = 256
_SMALL_COLUMNS = ("m_device", "m_at", "m_cpu", "m_mem_gb", "m_mem", "m_disk_gb", "m_disk", "m_la1", "m_la5",
                  "m_la15", "m_uptime", "m_rx", "m_tx")


class Outcome(NamedTuple):
    received: int
    duplicates: int
    alerts: list[str]


@dataclass(slots=True, eq=False)
class _Item:
    batch: PreparedBatch
    future: asyncio.Future[Outcome]
    enqueued: float


@dataclass
class PipelineStats:
    flushes: int = 0
    rows_written: int = 0
    duplicates: int = 0
    fallbacks: int = 0
    rejected: int = 0
    failed_flushes: int = 0
    isolations: int = 0  # flushes the database refused, split to find the request(s) at fault
    refused: int = 0  # requests answered 422 because the database refused their data
    hook_failures: int = 0
    max_flush_rows: int = 0
    requests: int = 0
    flush_seconds: float = 0.0  # summed wall time of the write transactions
    hook_seconds: float = 0.0
    hooks_late: int = 0  # answered before the hook finished (it went on in the background)
    hooks_deferred: int = 0  # all hook runs busy: ranges merged into the backlog
    wait_seconds: float = 0.0  # summed time requests spent queued before their flush began


@dataclass
class _Written:
    """What one flush committed: per item (received, duplicates), per device (first, last, count)."""

    per_item: list[tuple[int, int]]
    ranges: dict[UUID, tuple[datetime, datetime, int]] = field(default_factory=dict)


class IngestPipeline:
    def __init__(self, ctx: AppContext, *, flush_rows: int, flush_delay_ms: float, queue_rows: int,
                 concurrency: int = 4, mode: Mode = "copy", hook_timeout_ms: float = 250,
                 copy_min_rows: int = COPY_MIN_ROWS) -> None:
        self._ctx = ctx
        self._pool: AsyncConnectionPool = ctx.pool
        self.flush_rows = max(1, flush_rows)
        self.flush_delay = max(0.0, flush_delay_ms) / 1000
        self.queue_rows = max(1, queue_rows)
        self.mode: Mode = mode
        self.hook_timeout = hook_timeout_ms / 1000
        self.copy_min_rows = copy_min_rows
        self.stats = PipelineStats()
        self._queue: deque[_Item] = deque()
        self._queued_rows = 0  # waiting for a flush
        self._pending_rows = 0  # admitted and not yet answered (queued + being flushed)
        self._slots = asyncio.Semaphore(max(1, concurrency))
        # hooks run after a flush has released its slot; bound them too (they take pool connections)
        self._hook_limit = max(1, concurrency)
        self._hook_tasks: set[asyncio.Task[None]] = set()
        self._hook_backlog: dict[UUID, tuple[datetime, datetime]] = {}
        self._wakeup = asyncio.Event()
        self._full = asyncio.Event()
        self._closing = False
        self._runner: asyncio.Task[None] | None = None
        self._flushes: set[asyncio.Task[None]] = set()
        self._metrics = metrics.instruments()

    @classmethod
    def from_settings(cls, ctx: AppContext) -> IngestPipeline:
        s = ctx.settings
        mode: Mode = "stage" if s.ingest_mode == "stage" else "copy"
        return cls(ctx, flush_rows=s.ingest_flush_rows, flush_delay_ms=s.ingest_flush_delay_ms,
                   queue_rows=s.ingest_queue_rows, concurrency=s.ingest_flush_concurrency, mode=mode,
                   hook_timeout_ms=s.ingest_hook_timeout_ms)

    @property
    def pending_rows(self) -> int:
        return self._pending_rows

    @property
    def closing(self) -> bool:
        return self._closing

    def start(self) -> None:
        self._runner = asyncio.create_task(self._run(), name="ingest-flusher")

    async def submit(self, batch: PreparedBatch) -> Outcome:
        """Queue a request's rows and wait until they are committed (or the flush failed)."""
        n = len(batch.times)
        ensure_available(self._pool)  # a database known to be down: 503 now, not after a queued wait
        if self._closing:
            self.stats.rejected += 1
            self._metrics.ingest_backpressure.labels("shutting_down").inc()
            raise Unavailable("the server is shutting down; retry shortly", retry_after=1)
        if self._pending_rows and self._pending_rows + n > self.queue_rows:
            self.stats.rejected += 1
            self._metrics.ingest_backpressure.labels("queue_full").inc()
            raise Unavailable(f"ingestion is saturated ({self._pending_rows} rows waiting); retry shortly",
                              retry_after=1)
        loop = asyncio.get_running_loop()
        item = _Item(batch, loop.create_future(), loop.time())
        self._queue.append(item)
        self._queued_rows += n
        self._pending_rows += n
        self._wakeup.set()
        if self._queued_rows >= self.flush_rows:
            self._full.set()
        # A cancelled request (client gone) cancels only its future: the rows stay queued and are
        # written; _finish skips futures that are already done. (No shield: it cost a second
        # future and two callbacks per request.)
        return await item.future

    async def close(self, drain_seconds: float = 60) -> None:
        """Stop admitting, write everything admitted, wait for the last commit."""
        self._closing = True
        self._wakeup.set()
        self._full.set()
        if self._runner is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._runner), drain_seconds)
            except TimeoutError:
                log.error("ingest.drain_timeout", extra={"pending_rows": self._pending_rows})
                self._runner.cancel()
        if self._flushes:
            await asyncio.wait(self._flushes, timeout=drain_seconds)
        # hooks still running (and the backlog they pick up) finish before the pool closes
        deadline = time.monotonic() + drain_seconds
        while self._hook_tasks and time.monotonic() < deadline:
            await asyncio.wait(set(self._hook_tasks), timeout=max(0.0, deadline - time.monotonic()))
        for task in list(self._hook_tasks):
            task.cancel()
        log.info("ingest.drained", extra=dataclasses.asdict(self.stats))

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._queue:
                if self._closing:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            await self._slots.acquire()
            if not self._closing and self._queued_rows < self.flush_rows:
                wait = self._queue[0].enqueued + self.flush_delay - loop.time()
                if wait > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._full.wait(), wait)
            items = self._take()
            task = asyncio.create_task(self._flush(items))
            self._flushes.add(task)
            task.add_done_callback(self._flushes.discard)

    def _take(self) -> list[_Item]:
        items: list[_Item] = []
        rows = 0
        while self._queue and (not items or rows + len(self._queue[0].batch.times) <= self.flush_rows):
            item = self._queue.popleft()
            rows += len(item.batch.times)
            items.append(item)
        self._queued_rows -= rows
        if self._queued_rows < self.flush_rows:
            self._full.clear()
        return items

    async def _flush(self, items: list[_Item]) -> None:
        rows = sum(len(it.batch.times) for it in items)
        started = time.perf_counter()
        now = asyncio.get_running_loop().time()
        self.stats.requests += len(items)
        self.stats.wait_seconds += sum(now - it.enqueued for it in items)
        refused: list[tuple[_Item, ValidationFailed]] = []
        try:
            try:
                committed = [(items, await self._write_with_retries(items))]
            except _REFUSED as exc:
                committed, refused = await self._isolate(items, exc)
        except Exception as exc:
            self.stats.failed_flushes += 1
            self._metrics.ingest_flush_failures.inc()
            self._metrics.ingest_flush_rows.observe(rows)
            self._metrics.ingest_flush_duration.observe(time.perf_counter() - started)
            if isinstance(exc, Unavailable | psycopg.OperationalError):  # the database, not this code
                log.warning("ingest.flush_failed", extra={"rows": rows, "requests": len(items),
                                                          "error": type(exc).__name__, "detail": str(exc)[:200]})
            else:
                log.exception("ingest.flush_failed", extra={"rows": rows, "requests": len(items),
                                                            "error": type(exc).__name__})
            self._finish(items, exc=_unavailable(exc))
            return
        finally:
            self._slots.release()
        for item, problem in refused:
            self._finish([item], exc=problem)
        for group, written in committed:
            self.stats.flushes += 1
            self.stats.rows_written += sum(r for r, _ in written.per_item)
            self.stats.duplicates += sum(d for _, d in written.per_item)
            alerts = await self._after_commit(written.ranges) if self._ctx.after_ingest and written.ranges else {}
            self._finish(group, written=written, alerts=alerts)
        elapsed = time.perf_counter() - started
        self.stats.flush_seconds += elapsed
        self._metrics.ingest_flush_rows.observe(rows)
        self._metrics.ingest_flush_duration.observe(elapsed)
        self.stats.max_flush_rows = max(self.stats.max_flush_rows, rows)
        log.debug("ingest.flush", extra={"rows": rows, "requests": len(items),
                                         "ms": round((time.perf_counter() - started) * 1000, 2)})

    def _finish(self, items: list[_Item], *, written: _Written | None = None,
                alerts: dict[UUID, list[str]] | None = None, exc: BaseException | None = None) -> None:
        for i, item in enumerate(items):
            self._pending_rows -= len(item.batch.times)
            if item.future.done():
                continue
            if exc is not None or written is None:
                item.future.set_exception(exc or Unavailable("metrics could not be stored; retry"))
                continue
            received, dups = written.per_item[i]
            names = (alerts or {}).get(item.batch.device_id, [])
            item.future.set_result(Outcome(received, dups + item.batch.in_request_duplicates, list(names)))

    async def _isolate(self, items: list[_Item], first: Exception
                       ) -> tuple[list[tuple[list[_Item], _Written]], list[tuple[_Item, ValidationFailed]]]:
        """The database refused a value of this flush: find whose, write everyone else's.

        Halves are written on their own; a half that is refused again is split again, until each
        refused request is alone (k bad requests among n cost about 2k·log2(n) writes, only on this
        path). A refused request gets a 422 naming its sample (``_diagnose``); every other request
        is committed and acknowledged as usual. A failure that is not a refusal (the connection)
        fails the requests of that write only, with a 503.
        """
        self.stats.isolations += 1
        log.warning("ingest.flush_refused", extra={"requests": len(items), "error": type(first).__name__,
                                                   "detail": _primary(first)})
        committed: list[tuple[list[_Item], _Written]] = []
        refused: list[tuple[_Item, ValidationFailed]] = []

        async def write(group: list[_Item], known: Exception | None) -> None:
            if known is None:
                try:
                    committed.append((group, await self._write_with_retries(group)))
                    return
                except _REFUSED as exc:
                    known = exc
                except Exception as exc:
                    self._finish(group, exc=_unavailable(exc))
                    return
            if len(group) == 1:
                self.stats.refused += 1
                refused.append((group[0], await self._diagnose(group[0].batch, known)))
                return
            middle = len(group) // 2
            await write(group[:middle], None)
            await write(group[middle:], None)

        await write(list(items), first)
        return committed, refused

    async def _diagnose(self, batch: PreparedBatch, exc: Exception) -> ValidationFailed:
        """Which sample (and, when the database says, which field) of a refused request.

        The request is decoded again from its body and its rows are tried in a transaction that is
        always rolled back: all of them, then the shortest prefix that is still refused (binary
        search); its last row is the culprit. When every row is accepted, what was refused is the
        side effects: the monitored services of the sample they come from.
        """
        reason = f"refused by the database: {_primary(exc)}"
        constraint = getattr(getattr(exc, "diag", None), "constraint_name", None)
        if constraint:
            reason += f" (constraint {constraint})"
        try:
            samples = validate.sample_rows(batch.body, batch.device_id)
            if samples and not await self._rows_refused([row for _, row in samples]):
                index = validate.services_index(batch.body)
                field = f"metrics[{index}].services" if index is not None else "metrics"
                return ValidationFailed(f"{field}: {reason}", field=field)
            lo, hi = 1, len(samples)  # the prefix of length hi is refused
            while lo < hi:
                mid = (lo + hi) // 2
                if await self._rows_refused([row for _, row in samples[:mid]]):
                    hi = mid
                else:
                    lo = mid + 1
            index, _ = samples[hi - 1] if samples else (None, None)
        except Exception as probe_error:  # cannot tell which: name the request
            log.warning("ingest.diagnose_failed", extra={"error": repr(probe_error)})
            index = None
        if index is None:
            return ValidationFailed(f"metrics: {reason}", field="metrics")
        column = getattr(getattr(exc, "diag", None), "column_name", None)
        field = f"metrics[{index}]" + (f".{_WIRE_NAMES.get(column, column)}" if column else "")
        return ValidationFailed(f"{field}: {reason}", field=field)

    async def _rows_refused(self, rows: list[Row]) -> bool:
        async with connection(self._pool, translate_errors=False) as conn:
            try:
                async with conn.transaction(force_rollback=True):
                    await conn.execute(Q.probe_rows, _row_params(rows))
            except _REFUSED:
                return True
        return False

    async def _write_with_retries(self, items: list[_Item]) -> _Written:
        """One write of ``items``; retried only when a concurrent transaction got in the way. A dead
        or unreachable server is not retried here (it would only stack waits on it): the requests
        are answered 503 with Retry-After and the agents send them again."""
        # Lock order (device, first timestamp) keeps concurrent flushes from deadlocking.
        items.sort(key=lambda it: (it.batch.device_id, it.batch.times[0] if it.batch.times else 0))
        for attempt in range(1, _ATTEMPTS + 1):
            try:
                async with connection(self._pool, translate_errors=False) as conn:
                    if self.mode == "copy" and _small(items, self.copy_min_rows):
                        return await self._write_small(conn, items)
                    if self.mode == "copy":
                        try:
                            return await self._write_direct(conn, items)
                        except pg_errors.UniqueViolation:
                            self.stats.fallbacks += 1
                    return await self._write_staged(conn, items)
            except _RETRYABLE as exc:
                if attempt == _ATTEMPTS:
                    raise
                log.warning("ingest.flush_retry", extra={"attempt": attempt, "error": type(exc).__name__})
                await asyncio.sleep(0.05 * attempt)
        raise AssertionError("unreachable")

    async def _write_direct(self, conn: psycopg.AsyncConnection[Any], items: list[_Item]) -> _Written:
        async with conn.transaction():
            await _copy(conn, Q.copy_metrics, items)
            written = _Written([(len(it.batch.times), 0) for it in items])
            for it in items:
                times = it.batch.times
                if times:
                    _extend(written.ranges, it.batch.device_id, times[0], times[-1], len(times))
            await conn.execute(Q.flush_side_effects, _side_effect_params(items, written.ranges))
        return written

    async def _write_staged(self, conn: psycopg.AsyncConnection[Any], items: list[_Item]) -> _Written:
        async with conn.transaction():
            await conn.execute(Q.create_stage)
            await _copy(conn, Q.copy_stage, items)
            cur = await conn.execute(Q.insert_from_stage)
            new: dict[UUID, set[datetime]] = {r["agent_device_id"]: set(r["written"]) for r in await cur.fetchall()}
            written = _attribute(items, new)
            await conn.execute(Q.flush_side_effects, _side_effect_params(items, written.ranges))
        return written

    async def _write_small(self, conn: psycopg.AsyncConnection[Any], items: list[_Item]) -> _Written:
        """One autocommit statement: rows by unnest + ON CONFLICT, and every side effect."""
        params = _side_effect_params(items, {})
        params.update(_row_params([row for it in items for row in it.batch.rows or ()]))
        await conn.set_autocommit(True)
        try:
            cur = conn.cursor()
            await cur.execute(Q.insert_small_flush, params)
            new: dict[UUID, set[datetime]] = {}
            for r in await cur.fetchall():
                new.setdefault(r["agent_device_id"], set()).add(r["collected_at"])
        finally:
            await conn.set_autocommit(False)
        return _attribute(items, new)

    async def _after_commit(self, ranges: dict[UUID, tuple[datetime, datetime, int]]) -> dict[UUID, list[str]]:
        """Run the alert hooks for a committed flush; wait for their answer at most ``hook_timeout``.

        A slow hook is never cancelled (that would abort its query and discard its connection):
        the request is answered without its names while it finishes in the background. At most
        ``concurrency`` hook runs are in flight; beyond that the ranges are merged into a backlog
        that the next free run takes, so no committed range is ever skipped and a slow alert
        evaluator cannot pile up work or hold ingestion back.
        """
        committed = {device: (lo, hi) for device, (lo, hi, _) in ranges.items()}
        if len(self._hook_tasks) >= self._hook_limit:
            self.stats.hooks_deferred += 1
            for device, (lo, hi) in committed.items():
                old = self._hook_backlog.get(device)
                self._hook_backlog[device] = (lo, hi) if old is None else (min(old[0], lo), max(old[1], hi))
            return {}
        merged: dict[UUID, list[str]] = {}
        task = self._start_hooks(committed, merged)
        done, _ = await asyncio.wait({task}, timeout=self.hook_timeout)
        if not done:
            self.stats.hooks_late += 1  # answer with the names of the hooks that did finish
        return {device: list(names) for device, names in merged.items()}

    def _start_hooks(self, committed: dict[UUID, tuple[datetime, datetime]],
                     merged: dict[UUID, list[str]] | None = None) -> asyncio.Task[None]:
        task = asyncio.create_task(self._run_hooks(committed, {} if merged is None else merged), name="ingest-hooks")
        self._hook_tasks.add(task)
        task.add_done_callback(self._hook_done)
        return task

    def _hook_done(self, task: asyncio.Task[None]) -> None:
        self._hook_tasks.discard(task)
        if self._hook_backlog and len(self._hook_tasks) < self._hook_limit:
            backlog, self._hook_backlog = self._hook_backlog, {}
            self._start_hooks(backlog)

    async def _run_hooks(self, committed: dict[UUID, tuple[datetime, datetime]],
                         merged: dict[UUID, list[str]]) -> None:
        """All hooks concurrently; each one's names land in ``merged`` as soon as it returns."""
        started = time.perf_counter()

        async def one(hook: AfterIngest) -> None:
            try:
                result = await hook(self._ctx, committed)
            except Exception as exc:  # a hook must never fail or lose the ingest
                self.stats.hook_failures += 1
                log.warning("ingest.hook_failed", extra={"hook": getattr(hook, "__qualname__", repr(hook)),
                                                         "error": type(exc).__name__, "detail": str(exc)[:200]})
                return
            for device, names in (result or {}).items():
                merged.setdefault(device, []).extend(names)

        await asyncio.gather(*(one(h) for h in self._ctx.after_ingest))
        self.stats.hook_seconds += time.perf_counter() - started


def _attribute(items: list[_Item], new: dict[UUID, set[datetime]]) -> _Written:
    """Per request, how many of its rows were new: a key sent twice counts for the first sender."""
    written = _Written([])
    for it in items:
        fresh = new.get(it.batch.device_id, set())
        received = 0
        for t in it.batch.times:
            if t in fresh:
                fresh.discard(t)
                received += 1
                _extend(written.ranges, it.batch.device_id, t, t, 1)
        written.per_item.append((received, len(it.batch.times) - received))
    return written


def _row_params(rows: list[Row]) -> dict[str, list[Any]]:
    """The rows as one array per column (the unnest statements' parameters)."""
    columns = zip(*rows, strict=True) if rows else ([] for _ in _SMALL_COLUMNS)
    return dict(zip(_SMALL_COLUMNS, (list(c) for c in columns), strict=True))


def _unavailable(exc: BaseException) -> Unavailable:
    if isinstance(exc, Unavailable):
        return exc
    return Unavailable("metrics could not be stored right now; retry", retry_after=2)


def _primary(exc: BaseException) -> str:
    diag = getattr(exc, "diag", None)
    text = (getattr(diag, "message_primary", None) or str(exc)).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


def _small(items: list[_Item], copy_min_rows: int) -> bool:
    """A flush of fewer than ``copy_min_rows`` rows, all still held as tuples, binds arrays."""
    return sum(len(it.batch.times) for it in items) < copy_min_rows and all(it.batch.rows is not None for it in items)


def _extend(ranges: dict[UUID, tuple[datetime, datetime, int]], device: UUID, lo: datetime, hi: datetime,
            n: int) -> None:
    cur = ranges.get(device)
    ranges[device] = (lo, hi, n) if cur is None else (min(cur[0], lo), max(cur[1], hi), cur[2] + n)


async def _copy(conn: psycopg.AsyncConnection[Any], statement: str, items: list[_Item]) -> None:
    """One write of every request's pre-encoded rows (copy_format: no per-row calls here)."""
    async with conn.cursor().copy(statement) as cp:
        await cp.write(stream(it.batch.copy_data for it in items))


def _side_effect_params(items: list[_Item], ranges: dict[UUID, tuple[datetime, datetime, int]]) -> dict[str, Any]:
    """Arrays for ``flush_side_effects``: ranges written, devices seen, newest services per device."""
    devices = sorted({it.batch.device_id for it in items})
    newest: dict[UUID, PreparedBatch] = {}
    for it in items:
        b = it.batch
        if b.services_at is not None and (b.device_id not in newest or b.services_at > newest[b.device_id].services_at):  # type: ignore[operator]
            newest[b.device_id] = b
    s_cols: list[list[Any]] = [[], [], [], [], [], [], []]
    for device, b in newest.items():
        for svc in b.services:
            for col, value in zip(s_cols, (device, svc.name, svc.display_name, svc.type, svc.status, svc.pid,
                                           b.services_at), strict=True):
                col.append(value)
    r_devices = sorted(ranges)
    return {
        "r_device": r_devices,
        "r_start": [ranges[d][0] for d in r_devices],
        "r_end": [ranges[d][1] for d in r_devices],
        "r_count": [ranges[d][2] for d in r_devices],
        "devices": devices,
        "s_device": s_cols[0], "s_name": s_cols[1], "s_display": s_cols[2], "s_type": s_cols[3],
        "s_status": s_cols[4], "s_pid": s_cols[5], "s_at": s_cols[6],
    }


@contextlib.asynccontextmanager
async def component(ctx: AppContext) -> AsyncIterator[None]:
    """Lifespan component: the pipeline runs while the app does and drains before the pool closes."""
    pipeline = IngestPipeline.from_settings(ctx)
    pipeline.start()
    ctx.services["ingest"] = pipeline
    try:
        yield
    finally:
        await pipeline.close()
        ctx.services.pop("ingest", None)
