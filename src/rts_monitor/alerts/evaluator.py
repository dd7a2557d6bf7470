"""Evaluation of alert rules as set-based SQL statements (no per-device Python loops).

``evaluate`` runs one statement of ``queries.sql`` in one transaction: ``evaluate`` for a
periodic cycle (every device, or incrementally only the devices whose inputs changed),
``evaluate_devices`` for the ingest hook (the metric rules of the flushed devices). Metric rules
are judged at every sample time of a device, in order (docs/alerts.md, "Evaluation"); episodes
open (at most one open per pair, guaranteed by a partial unique index) or auto-resolve, rule
counters move, tickets/notifications are enqueued in the outbox and what was judged is recorded,
in the same commit, so a crash leaves either all of it or none of it. ``run_cycle`` wraps it with
a row in ``alert_evaluation_runs`` (when, where, how long, which scope) for operators and the
two-process test.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from psycopg import AsyncConnection

from rts_monitor.alerts.structs import MAX_DURATION_MINUTES
from rts_monitor.core.settings import Settings
from rts_monitor.db import Queries
from rts_monitor.notifications import outbox

log = logging.getLogger(__name__)
Q = Queries.beside(__file__)

ALL_KINDS: tuple[str, ...] = ("metric", "agent_offline", "service_down")
EVAL_LOCK = int.from_bytes(hashlib.sha256(b"rts-alerts:evaluate").digest()[:8], "big", signed=True)
# Per-device locks of the ingest hooks: pg_advisory_xact_lock(class, hashtext(device)).
DEVICE_LOCK_CLASS = int.from_bytes(hashlib.sha256(b"rts-alerts:device").digest()[:4], "big", signed=True)
INSTANCE = f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True)
class Opened:
    history_id: UUID
    rule_id: UUID
    device_id: UUID
    alert_name: str


@dataclass
class CycleResult:
    pairs: int = 0
    outbox: int = 0
    opened: list[Opened] = field(default_factory=list)
    resolved: list[UUID] = field(default_factory=list)

    def opened_by_device(self) -> dict[UUID, list[str]]:
        """Rule names opened per device: what ``alerts_triggered`` answers."""
        out: dict[UUID, list[str]] = {}
        for o in self.opened:
            out.setdefault(o.device_id, []).append(o.alert_name)
        return out


def _params(settings: Settings, devices: Sequence[UUID] | None, kinds: Sequence[str],
            incremental: bool) -> dict[str, Any]:
    return {
        "devices": list(devices) if devices is not None else None,
        "kinds": list(kinds),
        "incremental": incremental and devices is None,
        "stale": timedelta(seconds=settings.alert_data_stale_seconds),
        "slack": timedelta(seconds=settings.alert_window_slack_seconds),
        "max_gap": timedelta(seconds=settings.alert_max_sample_gap_seconds),
        "max_window": timedelta(minutes=MAX_DURATION_MINUTES),
        "hyst_pct": settings.alert_resolve_hysteresis_percent,
    }


async def evaluate(conn: AsyncConnection[Any], settings: Settings, *, devices: Sequence[UUID] | None = None,
                   kinds: Sequence[str] = ALL_KINDS, incremental: bool = False) -> CycleResult:
    """Evaluate the rules of ``kinds`` for all devices, or the metric rules of just ``devices`` (the
    ingest hook), and commit the outcome.

    ``incremental`` (a periodic cycle): metric rules only for the devices whose inputs changed
    since they were last judged, by a hook or a cycle (docs/alerts.md, "Incremental cycles");
    the outcome is the same as judging every device.
    """
    result = CycleResult()
    async with conn.transaction():
        # Cycles exclude each other and the ingest hooks; hooks only share: a hook waits at most
        # one cycle, and the writes of two evaluators never interleave into a deadlock. Two hooks
        # for the same device take turns (lock_devices), so no instant is judged twice.
        if devices is None:
            await conn.execute(Q.begin_full_cycle, {"key": EVAL_LOCK})
        else:
            await conn.execute(Q.begin_device_cycle, {"key": EVAL_LOCK})
            await conn.execute(Q.lock_devices, {"key": DEVICE_LOCK_CLASS, "devices": list(devices)})
        query = Q.evaluate if devices is None else Q.evaluate_devices
        cur = await conn.execute(query, _params(settings, devices, kinds, incremental), prepare=True)
        rows = await cur.fetchall()
    for row in rows:
        if row["what"] == "opened":
            result.opened.append(Opened(row["id"], row["rule_id"], row["device_id"], row["alert_name"]))
        elif row["what"] == "resolved":
            result.resolved.append(row["id"])
        if row["pairs"] is not None:
            result.pairs, result.outbox = int(row["pairs"]), int(row["work"])
    return result


async def run_cycle(conn: AsyncConnection[Any], settings: Settings, *, scope: str = "all",
                    devices: Sequence[UUID] | None = None, kinds: Sequence[str] = ALL_KINDS) -> CycleResult:
    """One recorded cycle: a run row, the evaluation, the optional drill pad, the run row closed.

    ``scope``: ``all`` judges every device, ``incremental`` only those whose inputs changed.
    """
    started = time.perf_counter()
    run_id = await _run_start(conn, scope)
    error: str | None = None
    result = CycleResult()
    try:
        result = await evaluate(conn, settings, devices=devices, kinds=kinds, incremental=scope == "incremental")
        if settings.alert_cycle_pad_ms > 0:
            await asyncio.sleep(settings.alert_cycle_pad_ms / 1000)
        return result
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
        raise
    finally:
        ms = round((time.perf_counter() - started) * 1000, 1)
        await _run_finish(conn, run_id, result, ms, error)
        log.info("alerts.cycle", extra={"scope": scope, "pairs": result.pairs, "opened": len(result.opened),
                                        "resolved": len(result.resolved), "ms": ms, "error": error})


FULL_CYCLE_EVERY = timedelta(hours=1)


async def periodic_scope(conn: AsyncConnection[Any]) -> str:
    """``incremental``, or ``all`` when the last full cycle is older than ``FULL_CYCLE_EVERY``.

    Incremental cycles give the outcome of full ones; the hourly full cycle is a backstop for
    samples written around the ingest path (which sets ``last_metrics_received``), e.g. by SQL.
    """
    cur = await conn.execute(Q.last_full_cycle)
    row = await cur.fetchone()
    last = row["at"] if row else None
    if last is None or last < datetime.now(UTC) - FULL_CYCLE_EVERY:
        return "all"
    return "incremental"


async def _run_start(conn: AsyncConnection[Any], scope: str) -> int:
    async with conn.transaction():
        cur = await conn.execute(Q.run_start, {"instance": INSTANCE, "scope": scope})
        row = await cur.fetchone()
    assert row is not None
    return int(row["id"])


async def _run_finish(conn: AsyncConnection[Any], run_id: int, result: CycleResult, ms: float,
                      error: str | None) -> None:
    async with conn.transaction():
        await conn.execute(Q.run_finish, {"id": run_id, "pairs": result.pairs, "opened": len(result.opened),
                                          "resolved": len(result.resolved), "duration_ms": ms, "error": error})


async def prune(conn: AsyncConnection[Any]) -> None:
    """Drop old cycle records and finished outbox rows (bounded tables, cheap indexed deletes)."""
    async with conn.transaction():
        await conn.execute(Q.prune_runs)
        await outbox.prune(conn)
