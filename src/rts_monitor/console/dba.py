"""The DBA pages' data: the tiers as ``GET /api/admin/tiers`` shows them (``tiers.service.show``),
with row counts, job durations and errors, and the ingest and alert-evaluation charts.

Changes (retention, compression) go through the existing ``/api/admin/tiers`` endpoints from the
page's script; the only thing computed here for them is what a retention would drop, for the
confirmation, counted with the query the retention itself uses (rows older than now - retention).
"""

from __future__ import annotations

import contextlib
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from rts_monitor.core.context import AppContext
from rts_monitor.core.errors import ValidationFailed
from rts_monitor.db import Conn, Queries
from rts_monitor.db.rows import fetch_all, fetch_one
from rts_monitor.tiers import service as tiers
from rts_monitor.tiers.definitions import RAW
from rts_monitor.tiers.maintenance import tier_or_raw

Q = Queries.beside(__file__)
# Below this estimate the rows are counted exactly (well under a second); above, the estimate is shown.
EXACT_COUNT_BELOW = 1_000_000
_JOB_ID = re.compile(r"\[(\d+)\]$")


async def _optional(conn: Conn, query: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """A catalogue view this server's TimescaleDB may not have (or not let us read): nothing."""
    try:
        async with conn.transaction():
            return await fetch_all(conn, query, params or {})
    except psycopg.Error:
        return []


async def _table_of(conn: Conn, edition: str, level: str) -> str:
    if edition == "tsl" and level != RAW:
        rows = await _optional(conn, Q.cagg_table, {"name": level})
        if rows:
            return str(rows[0]["name"])
    return level


async def _rows(conn: Conn, edition: str, level: str) -> tuple[int, bool]:
    """(rows, exact) of one level."""
    table = await _table_of(conn, edition, level)
    row = await fetch_one(conn, Q.relation_estimate, {"name": table})
    estimate = int(row["estimate"]) if row else 0
    if estimate < EXACT_COUNT_BELOW:
        with contextlib.suppress(psycopg.Error):
            async with conn.transaction():
                found = await fetch_one(conn, Q.level_rows, {"level": level, "before": "infinity"})
                return int(found["n"] or 0) if found else 0, True
    return estimate, False


def duration_text(value: timedelta | None) -> str:
    """A duration as the retention field takes it back (``180 days``, ``12 hours``), never
    Python's ``180 days, 0:00:00``; empty for none (keep forever)."""
    if value is None:
        return ""
    seconds = int(value.total_seconds())
    for unit, size in (("days", 86400), ("hours", 3600), ("minutes", 60)):
        if seconds % size == 0:
            return f"{seconds // size} {unit}"
    return f"{seconds} seconds"


async def overview(conn: Conn, *, ctx: AppContext) -> dict[str, Any]:
    view = await tiers.show(conn, edition=ctx.edition)
    settings = {r["name"]: r for r in await fetch_all(conn, Q.tier_settings, {})}
    for level in view["levels"]:
        level["rows"], level["rows_exact"] = await _rows(conn, ctx.edition, level["level"])
        stored = settings.get(level["level"], {})
        level["retention_text"] = duration_text(stored.get("retention"))
        level["compress_after_text"] = duration_text(stored.get("compress_after"))
    durations: dict[str, float] = {}
    errors: dict[str, str] = {}
    if ctx.edition == "tsl":
        for r in await _optional(conn, Q.tsl_job_durations):
            durations[str(r["job_id"])] = float(r["duration_ms"] or 0)
        for r in await _optional(conn, Q.tsl_job_errors):
            errors[str(r["job_id"])] = str(r["err_message"] or "")
    else:
        for r in await _optional(conn, Q.apache_job_durations):
            durations[str(r["name"])] = float(r["duration_ms"] or 0)
    for job in view["jobs"]:
        match = _JOB_ID.search(job["job"])
        key = match.group(1) if match else job["job"]
        job["duration_ms"] = durations.get(key)
        if job.get("last_error", "-") == "-" and key in errors:
            job["last_error"] = errors[key][:200]
    last = await fetch_one(conn, Q.last_evaluation, {})
    return {**view, "evaluation": last}


async def charts(conn: Conn) -> dict[str, Any]:
    ingest = await fetch_all(conn, Q.ingest_rate, {})
    runs = await fetch_all(conn, Q.evaluation_runs, {})
    return {"ingest": {"t": [r["t"] for r in ingest], "rows_per_s": [float(r["rows_per_s"]) for r in ingest]},
            "evaluation": {"t": [r["t"] for r in runs], "duration_ms": [r["duration_ms"] for r in runs],
                           "pairs": [r["pairs"] for r in runs]}}


async def retention_preview(conn: Conn, *, ctx: AppContext, level: str, retention: str | None) -> dict[str, Any]:
    """What setting ``retention`` on ``level`` would drop: the rows older than now - retention."""
    tier_or_raw(level)
    span: timedelta | None = tiers.parse_duration(retention, field="retention")
    if span is None:
        return {"level": level, "retention": None, "rows": 0, "cutoff": None, "oldest": None}
    if span <= timedelta(0):
        raise ValidationFailed("retention: must be positive", field="retention")
    cutoff = datetime.now(UTC) - span
    row = await fetch_one(conn, Q.level_rows, {"level": level, "before": cutoff})
    assert row is not None
    return {"level": level, "retention": duration_text(span), "rows": int(row["n"] or 0), "cutoff": cutoff,
            "oldest": row["oldest"]}
