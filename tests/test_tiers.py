"""Rollup tiers on every edition: exactness, late rows, retention, controls.

The project-maintained tiers (apache, postgres) are checked against raw aggregation by a property
test; the Community edition's continuous aggregates, policies and compression on the real
TimescaleDB 2.29 build (tsl).
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import math
import os
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg.rows import dict_row

from rts_monitor.core.edition import DESCRIBE_SQL, DatabaseInfo, Edition
from rts_monitor.history import planning
from rts_monitor.history import service as history
from rts_monitor.tiers import maintenance
from rts_monitor.tiers import service as tiers
from rts_monitor.tiers.definitions import COUNTERS, METRICS, TIERS
from tests import factories
from tests.fix_api import ApiServer

T0 = datetime(2026, 1, 5, tzinfo=UTC)  # a Monday midnight: every tier's buckets align on it
SPAN = timedelta(days=2)  # each example's samples lie in [base, base + SPAN)
STEP = timedelta(days=4)  # distance between examples' bases, so each starts past the watermarks
REF_METRICS = ("cpu_percent", "memory_percent", "load_average_1m", "uptime_seconds")
MAINTAINED = pytest.mark.only_editions("apache", "postgres")  # the project refreshes the tiers itself
TSL = pytest.mark.only_editions("tsl")
BUCKET = "date_bin(INTERVAL '{w}', collected_at, TIMESTAMPTZ '2000-01-03 00:00:00+00')"  # = time_bucket


async def edition_of(conn: psycopg.AsyncConnection[Any]) -> Edition:
    row = await (await conn.execute(DESCRIBE_SQL)).fetchone()
    assert row is not None
    return DatabaseInfo.from_row(row).edition


async def refresh(conn: psycopg.AsyncConnection[Any], **kw: Any) -> maintenance.RefreshResult:
    return await maintenance.refresh(conn, edition=await edition_of(conn), **kw)


async def retention(conn: psycopg.AsyncConnection[Any], **kw: Any) -> dict[str, int]:
    return await maintenance.apply_retention(conn, edition=await edition_of(conn), **kw)


def _ref_tier_sql(width: str) -> str:
    """The reference: plain time_bucket aggregation over the raw rows."""
    aggs = ", ".join(
        f"sum({m}::float8) AS {m}_sum, count({m}) AS {m}_count, min({m}) AS {m}_min, max({m}) AS {m}_max"
        for m in METRICS
    )
    return (f"SELECT {BUCKET.format(w=width)} AS bucket, agent_device_id, "
            f"count(*) AS samples, {aggs} FROM agent_metric_values WHERE agent_device_id = ANY(%(devs)s) "
            "GROUP BY 1, 2")


def _close(a: float | None, b: float | None, rel: float = 1e-6) -> bool:
    """Equal as far as a REAL column goes: history answers real columns as the shortest decimal of
    their float4 (7 significant digits), the reference is computed in float8 from the raw rows."""
    if a is None or b is None:
        return a is None and b is None
    return math.isclose(a, b, rel_tol=rel, abs_tol=1e-9)


def _counter_ref(raw: list[dict[str, Any]], width: timedelta,
                 counter: str) -> dict[tuple[Any, datetime], dict[str, Any]]:
    """first/last/increase of a byte counter per (device, bucket), computed in Python."""
    out: dict[tuple[Any, datetime], dict[str, Any]] = {}
    for row in raw:  # ordered by device, time
        v = row[counter]
        if v is None:
            continue
        key = (row["agent_device_id"], T0 + ((row["collected_at"] - T0) // width) * width)
        cur = out.get(key)
        if cur is None:
            out[key] = {"first": v, "first_time": row["collected_at"], "last": v,
                        "last_time": row["collected_at"], "increase": 0}
            continue
        cur["increase"] += v - cur["last"] if v >= cur["last"] else v
        cur["last"], cur["last_time"] = v, row["collected_at"]
    return out


async def _raw(conn: psycopg.AsyncConnection[Any], devs: list[uuid.UUID]) -> list[dict[str, Any]]:
    cur = await conn.execute("SELECT * FROM agent_metric_values WHERE agent_device_id = ANY(%s) "
                             "ORDER BY agent_device_id, collected_at", (devs,))
    return list(await cur.fetchall())


async def check_tiers_exact(conn: psycopg.AsyncConnection[Any], devs: list[uuid.UUID], *, counters: bool = True) -> int:
    """Every materialised bucket of ``devs`` equals time_bucket aggregation over raw; returns rows checked."""
    edition = await edition_of(conn)
    raw = await _raw(conn, devs)
    far = datetime.max.replace(tzinfo=UTC)  # tsl: the caggs were refreshed over everything
    wms = {r["name"]: r["watermark"] if edition != "tsl" else far
           for r in await (await conn.execute("SELECT * FROM rts_tier_levels")).fetchall()}
    checked = 0
    for tier in TIERS:
        ref = {(r["agent_device_id"], r["bucket"]): r
               for r in await (await conn.execute(_ref_tier_sql(tier.width_sql).encode(), {"devs": devs})).fetchall()
               if r["bucket"] < wms[tier.name]}
        got = {(r["agent_device_id"], r["bucket"]): r
               for r in await (await conn.execute(f"SELECT * FROM {tier.name} WHERE agent_device_id = ANY(%s)".encode(),
                                                  (devs,))).fetchall()}
        assert got.keys() == ref.keys(), f"{tier.name}: bucket sets differ"
        refs = {c: _counter_ref(raw, tier.width, c) for c in COUNTERS}
        for key, r in ref.items():
            g = got[key]
            assert g["samples"] == r["samples"], (tier.name, key)
            for m in METRICS:
                assert g[f"{m}_count"] == r[f"{m}_count"], (tier.name, key, m)
                assert g[f"{m}_min"] == r[f"{m}_min"] and g[f"{m}_max"] == r[f"{m}_max"], (tier.name, key, m)
                assert _close(g[f"{m}_sum"], r[f"{m}_sum"]), (tier.name, key, m)
            for c in COUNTERS if counters else ():
                exp = refs[c].get(key)
                for part in ("first", "first_time", "last", "last_time", "increase"):
                    assert g[f"{c}_{part}"] == (exp[part] if exp else None), (tier.name, key, c, part)
            checked += 1
    return checked


async def check_history_exact(conn: psycopg.AsyncConnection[Any], devs: list[uuid.UUID], start: datetime,
                              end: datetime, interval: str) -> None:
    """The history query (tiers + raw tail) equals time_bucket over raw for the same buckets."""
    edition = await edition_of(conn)
    plan = planning.plan(start=start, end=end, now=end, interval=interval,
                         metric=",".join((*REF_METRICS, "network_rx_rate")), stats="avg,min,max")
    rows = await history.query(conn, plan=plan, edition=edition, devices=devs, fleet=len(devs) > 1)
    # min and max are stored values: the API gives each as its column's text (the shortest decimal of a
    # real, history/service.py), and averages at real's precision (compared with rel=1e-6 below)
    avg_cols = ", ".join(f"avg({m}) AS {m}, min({m})::text::float8 AS {m}_min, max({m})::text::float8 AS {m}_max"
                         for m in REF_METRICS)
    ref = await (await conn.execute(
        f"SELECT {BUCKET.format(w=plan.interval_sql)} AS timestamp, {avg_cols} "
        "FROM agent_metric_values WHERE agent_device_id = ANY(%(devs)s) AND collected_at >= %(lo)s "
        "AND collected_at < %(hi)s GROUP BY 1 ORDER BY 1".encode(),
        {"devs": devs, "lo": plan.start, "hi": plan.end})).fetchall()
    assert [r["timestamp"] for r in rows] == [r["timestamp"] for r in ref], interval
    raw = [r for r in await _raw(conn, devs) if plan.start <= r["collected_at"] < plan.end]
    rates: dict[datetime, float] = defaultdict(float)
    prev: dict[Any, dict[str, Any]] = {}  # per device, its last bucket with a counter value
    for (dev, bucket), c in sorted(_counter_ref(raw, plan.interval, "network_rx_bytes").items()):
        p = prev.get(dev)
        step = 0 if p is None else (c["first"] - p["last"] if c["first"] >= p["last"] else c["first"])
        span = (c["last_time"] - (p["last_time"] if p else c["first_time"])).total_seconds()
        if span > 0:
            rates[bucket] += (c["increase"] + step) / span
        prev[dev] = c
    for g, r in zip(rows, ref, strict=True):
        for m in REF_METRICS:
            assert _close(g[m], r[m], rel=1e-6), (interval, g["timestamp"], m, g[m], r[m])
            assert g[f"{m}_min"] == r[f"{m}_min"] and g[f"{m}_max"] == r[f"{m}_max"], (interval, m)
        expected_rate = rates.get(g["timestamp"])
        assert _close(g["network_rx_rate"], expected_rate), (interval, g["timestamp"], g["network_rx_rate"],
                                                              expected_rate)


# ---- the property test -------------------------------------------------------------------------

_value = st.one_of(st.none(), st.floats(0, 100, width=32))
_sample = st.fixed_dictionaries({
    "offset": st.integers(0, int(SPAN.total_seconds()) - 1),
    "cpu_percent": _value,
    "memory_percent": st.floats(0, 100, width=32),
    "load_average_1m": st.one_of(st.none(), st.floats(0, 64, width=32)),
    "uptime_seconds": st.integers(0, 10**9),
    # Independent draws: many drops, i.e. counter resets, inside and across buckets.
    "network_rx_bytes": st.one_of(st.none(), st.integers(0, 10**12)),
})
_series = st.lists(_sample, min_size=1, max_size=200)


@dataclasses.dataclass
class _Counter:
    n: int = 0


_example = _Counter()


@MAINTAINED
@given(
    series=st.lists(_series, min_size=1, max_size=2),
    batch_size=st.integers(1, 40),
    late_fraction=st.floats(0, 0.6),
    dup_count=st.integers(0, 15),
    mid_frac=st.floats(0.1, 0.9),
    seed=st.integers(0, 2**16),
)
@settings(max_examples=int(os.environ.get("RTS_TIERS_EXAMPLES", "50")), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
def test_property_tiers_and_history_equal_raw_aggregation(
    db_url: str, series: list[list[dict[str, Any]]], batch_size: int, late_fraction: float, dup_count: int,
    mid_frac: float, seed: int,
) -> None:
    """Random series arriving in batches, some hours late, some re-sent: after each refresh every
    tier and the history API (tiers + raw tail, device and fleet) equal time_bucket over raw."""
    import random

    rnd = random.Random(seed)
    base = T0 + _example.n * STEP
    _example.n += 1

    async def run() -> None:
        async with await psycopg.AsyncConnection.connect(db_url, autocommit=True, row_factory=dict_row) as conn:
            biz = await factories.business(conn)
            devs = [(await factories.agent(conn, biz)).id for _ in series]
            samples = []
            for dev, s in zip(devs, series, strict=True):
                seen = set()
                for x in s:
                    if x["offset"] in seen:
                        continue
                    seen.add(x["offset"])
                    row = {k: v for k, v in x.items() if k != "offset"}
                    at = base + timedelta(seconds=x["offset"])
                    samples.append({**row, "agent_device_id": dev, "collected_at": at})
            samples.sort(key=lambda r: r["collected_at"])
            batches = [samples[i:i + batch_size] for i in range(0, len(samples), batch_size)]
            mid = base + SPAN * mid_frac
            early = [b for b in batches if b[-1]["collected_at"] < mid]
            late = [b for b in early if rnd.random() < late_fraction]  # held back: arrive after a refresh
            for b in early:
                if b not in late:
                    await factories.metric_samples(conn, b)
            await refresh(conn, now=mid)
            rest = [b for b in batches if b[-1]["collected_at"] >= mid]
            dups = [dict(rnd.choice(samples), cpu_percent=rnd.uniform(0, 100)) for _ in range(dup_count)]
            for b in [*late, *rest, dups]:
                await factories.metric_samples(conn, b)
            # Late rows committed but not refreshed yet: history reads their buckets from raw.
            await check_history_exact(conn, devs, base, base + SPAN, "5m")
            # Part materialised, part raw tail: history must still equal raw for every interval.
            mid2 = mid + (base + SPAN - mid) / 2
            await refresh(conn, now=mid2)
            for interval in ("5m", "1h", "7m"):
                await check_history_exact(conn, devs[:1], base, base + SPAN, interval)
            await refresh(conn, now=base + SPAN + timedelta(days=1))
            assert await check_tiers_exact(conn, devs) > 0
            for interval in ("2m", "15m", "3h", "1d"):
                await check_history_exact(conn, devs, base, base + SPAN, interval)
            assert await (await conn.execute("SELECT count(*) AS n FROM metric_ingest_ranges")).fetchone() == {"n": 0}

    asyncio.run(run())


# ---- late rows, retention ------------------------------------------------------------------------

def _series_rows(dev: uuid.UUID, start: datetime, minutes: int, *, cpu: float = 10.0) -> list[dict[str, Any]]:
    return [{"agent_device_id": dev, "collected_at": start + timedelta(minutes=i), "cpu_percent": cpu + i % 7,
             "memory_percent": 50.0, "network_rx_bytes": 1000 * i, "uptime_seconds": 60 * i}
            for i in range(minutes)]


@MAINTAINED
async def test_late_rows_reaggregate_only_the_affected_buckets(conn: psycopg.AsyncConnection[Any]) -> None:
    biz = await factories.business(conn)
    a, b = (await factories.agent(conn, biz)).id, (await factories.agent(conn, biz)).id
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    start = now - timedelta(hours=6)
    await factories.metric_samples(conn, _series_rows(a, start, 360) + _series_rows(b, start, 360))
    first = await refresh(conn)
    assert first.rows["agent_metrics_5m"] >= 2 * 70
    # An agent flushes a spool of buffered samples 3 hours late, at seconds the server never saw.
    late = [dict(r, collected_at=r["collected_at"] + timedelta(seconds=30), cpu_percent=99.0)
            for r in _series_rows(a, start + timedelta(hours=2), 30)]
    await factories.metric_samples(conn, late)
    second = await refresh(conn)
    assert second.invalidated_ranges == 6  # 30 minutes = exactly six 5-minute buckets of one device
    assert second.rows["agent_metrics_5m"] == 6
    assert second.rows["agent_metrics_1h"] == 1
    assert await check_tiers_exact(conn, [a, b]) > 0
    row = await (await conn.execute(
        "SELECT cpu_percent_max, samples FROM agent_metrics_5m WHERE agent_device_id = %s AND bucket = %s",
        (a, start + timedelta(hours=2)))).fetchone()
    assert row == {"cpu_percent_max": 99.0, "samples": 10}


@MAINTAINED
async def test_separate_late_spans_reaggregate_exactly_their_buckets(conn: psycopg.AsyncConnection[Any]) -> None:
    """Stale buckets are re-read as runs of consecutive buckets per device: two late spans of one
    device hours apart, flushed together, and one of another device rebuild only their own buckets
    (not the ones between), across 5m, 1h and a closed day of 1d."""
    biz = await factories.business(conn)
    a, b = (await factories.agent(conn, biz)).id, (await factories.agent(conn, biz)).id
    start = T0 + timedelta(days=800)  # a Monday midnight
    await factories.metric_samples(conn, _series_rows(a, start, 1440) + _series_rows(b, start, 1440))
    first = await refresh(conn, now=start + timedelta(days=1, hours=1))
    assert first.watermarks["agent_metrics_1d"] == start + timedelta(days=1)
    def late(dev: uuid.UUID, at: timedelta, minutes: int) -> list[dict[str, Any]]:
        return [dict(r, collected_at=r["collected_at"] + timedelta(seconds=20), cpu_percent=97.0)
                for r in _series_rows(dev, start + at, minutes)]

    # Two flushes (one ingest range each) for a, one for b.
    await factories.metric_samples(conn, late(a, timedelta(hours=2), 10))
    await factories.metric_samples(conn, late(a, timedelta(hours=9), 5) + late(b, timedelta(hours=9, minutes=55), 10))
    second = await refresh(conn, now=start + timedelta(days=1, hours=1))
    # a: 2 + 1 buckets in two hours; b: 2 buckets across the 9h/10h boundary, in two hours.
    assert second.invalidated_ranges == 5
    assert second.rows == {"agent_metrics_5m": 5, "agent_metrics_1h": 4, "agent_metrics_1d": 2}
    assert await check_tiers_exact(conn, [a, b]) == 2 * (288 + 24 + 1)


async def _chunks(conn: psycopg.AsyncConnection[Any], table: str) -> int:
    """Chunks (TimescaleDB) or partitions (postgres, once rows waiting in DEFAULT have theirs) with rows."""
    if await edition_of(conn) == "postgres":
        await conn.execute("SELECT rts_partitions_maintain(INTERVAL '0')")
    row = await (await conn.execute(f"SELECT count(DISTINCT tableoid) AS n FROM {table}".encode())).fetchone()
    return int(row["n"])


@MAINTAINED
async def test_retention_drops_whole_chunks_never_unmaterialised_data(conn: psycopg.AsyncConnection[Any]) -> None:
    biz = await factories.business(conn)
    dev = (await factories.agent(conn, biz)).id
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    midnight = now.replace(hour=0, minute=0)  # the samples stay inside one 1-day chunk each
    for days_ago in (40, 35, 3):
        await factories.metric_samples(conn, _series_rows(dev, midnight - timedelta(days=days_ago, hours=-1), 120))
    assert await _chunks(conn, "agent_metrics") == 3
    # Nothing materialised yet: retention must keep every raw chunk even though they are past 30 days.
    assert (await retention(conn)).get("agent_metrics", 0) == 0
    assert await _chunks(conn, "agent_metrics") == 3
    await refresh(conn)
    before = await (await conn.execute("SELECT count(*) AS n, sum(samples) AS s FROM agent_metrics_1h")).fetchone()
    dropped = await retention(conn)
    assert dropped["agent_metrics"] == 2
    assert await _chunks(conn, "agent_metrics") == 1
    # Tiers keep the history the raw chunks held; no row-level DELETE happened anywhere.
    after = await (await conn.execute("SELECT count(*) AS n, sum(samples) AS s FROM agent_metrics_1h")).fetchone()
    assert after == before and after["s"] == 360
    level = await (await conn.execute("SELECT dropped_before FROM rts_tier_levels WHERE name = 'agent_metrics'")
                   ).fetchone()
    assert level["dropped_before"] is not None and level["dropped_before"] <= now - timedelta(days=30)
    # A late row inside the dropped range must not rebuild buckets from partial raw data.
    await factories.metric_samples(conn, _series_rows(dev, midnight - timedelta(days=40, minutes=-61), 1, cpu=50))
    await refresh(conn)
    again = await (await conn.execute("SELECT count(*) AS n, sum(samples) AS s FROM agent_metrics_1h")).fetchone()
    assert again == before


@MAINTAINED
async def test_retention_clamps_to_pending_ingest_ranges(conn: psycopg.AsyncConnection[Any]) -> None:
    biz = await factories.business(conn)
    dev = (await factories.agent(conn, biz)).id
    old = datetime.now(UTC).replace(hour=1, minute=0, second=0, microsecond=0) - timedelta(days=40)
    await factories.metric_samples(conn, _series_rows(dev, old, 60))
    await refresh(conn)
    # A late flush into the old chunk, not yet consumed by a refresh: its chunk must survive.
    await factories.metric_samples(conn, _series_rows(dev, old + timedelta(seconds=30), 5))
    assert (await retention(conn))["agent_metrics"] == 0
    await refresh(conn)
    assert (await retention(conn))["agent_metrics"] == 1


# ---- DBA controls --------------------------------------------------------------------------------

@MAINTAINED
async def test_set_retention_validates_and_compression_says_unavailable(conn: psycopg.AsyncConnection[Any]) -> None:
    from rts_monitor.core.errors import Conflict, NotFound, ValidationFailed

    ed = await edition_of(conn)
    with pytest.raises(Conflict, match="has not materialised"):
        await tiers.set_retention(conn, edition=ed, level="agent_metrics", retention=timedelta(days=1))
    await refresh(conn)
    await tiers.set_retention(conn, edition=ed, level="agent_metrics", retention=timedelta(days=7))
    with pytest.raises(ValidationFailed, match="at least 2:00:00"):
        await tiers.set_retention(conn, edition=ed, level="agent_metrics_5m", retention=timedelta(minutes=30))
    with pytest.raises(NotFound):
        await tiers.set_retention(conn, edition=ed, level="agent_metrics_2m", retention=None)
    await tiers.set_retention(conn, edition=ed, level="agent_metrics_1h", retention=None)
    with pytest.raises(tiers.FeatureUnavailable, match=r"needs .*timescale .*license") as unavailable:
        await tiers.set_compression(conn, edition=ed, after=timedelta(days=7))
    view = await tiers.show(conn, edition=ed)
    by_level = {r["level"]: r for r in view["levels"]}
    assert by_level["agent_metrics"]["retention"] == "7 days, 0:00:00"
    assert by_level["agent_metrics_1h"]["retention"] == "forever"
    assert by_level["agent_metrics"]["compression"] == f"unavailable ({ed})"
    assert view["unavailable"]["compression"] == unavailable.value.message
    assert ("no TimescaleDB" in unavailable.value.message) == (ed == "postgres")
    await tiers.set_chunk_interval(conn, edition=ed, level="agent_metrics", interval=timedelta(hours=6))
    view = await tiers.show(conn, edition=ed)
    assert {r["level"]: r for r in view["levels"]}["agent_metrics"]["chunk_interval"] == "6:00:00"


def test_parse_duration() -> None:
    assert tiers.parse_duration("30 days", field="r") == timedelta(days=30)
    assert tiers.parse_duration("12h", field="r") == timedelta(hours=12)
    assert tiers.parse_duration("none", field="r") is None
    from rts_monitor.core.errors import ValidationFailed

    with pytest.raises(ValidationFailed, match="r: 'soon' is not a positive duration"):
        tiers.parse_duration("soon", field="r")


@MAINTAINED
def test_cli_tiers_show_and_set_compression(db_url: str, server_edition: Edition) -> None:
    env = {**os.environ, "DATABASE_URL": db_url, "RTS_LOG_FORMAT": "text"}
    cli = [sys.executable, "-m", "rts_monitor.cli", "tiers"]
    shown = subprocess.run([*cli, "show"], env=env, capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    for text in ("agent_metrics_5m", "agent_metrics_1d", "chunks", "refresh_lag", f"unavailable ({server_edition})",
                 "unavailable on this edition: compression", f"edition: {server_edition}"):
        assert text in shown.stdout
    comp = subprocess.run([*cli, "set-compression", "7 days"], env=env, capture_output=True, text=True, timeout=60)
    assert comp.returncode == 2 and "timescale (TSL/Community) license" in comp.stderr
    bad = subprocess.run([*cli, "set-retention", "agent_metrics", "1 day"], env=env, capture_output=True,
                         text=True, timeout=60)
    assert bad.returncode == 2 and "has not materialised" in bad.stderr
    ref = subprocess.run([*cli, "refresh"], env=env, capture_output=True, text=True, timeout=60)
    assert ref.returncode == 0 and '"mode": "scheduled pass"' in ref.stdout


# ---- the scheduled job and the admin API on a real server ---------------------------------------------

@MAINTAINED
async def test_scheduler_refreshes_and_admin_api_shows_jobs(api_factory: Any,
                                                            conn: psycopg.AsyncConnection[Any]) -> None:
    server: ApiServer = api_factory(env={"RTS_TIERS_REFRESH_SECONDS": "1"})
    biz = await factories.business(conn)
    dev = (await factories.agent(conn, biz)).id
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    await factories.metric_samples(conn, _series_rows(dev, now - timedelta(hours=2), 100))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        row = await (await conn.execute("SELECT count(*) AS n FROM agent_metrics_5m WHERE agent_device_id = %s",
                                        (dev,))).fetchone()
        if row["n"] >= 20:
            break
        await asyncio.sleep(0.3)
    assert row["n"] >= 20, server.log_tail()
    admin = server.headers(server.token("admin"))
    async with server.client() as c:
        resp = await c.get("/api/admin/tiers", headers=admin)
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert body["edition"] == await edition_of(conn)
        jobs = {j["job"]: j for j in body["jobs"]}
        assert jobs["tiers.refresh"]["runs"] >= 1 and jobs["tiers.refresh"]["failures"] == 0
        assert jobs["tiers.refresh"]["next_run"] != "-"
        assert [lvl["level"] for lvl in body["levels"]] == ["agent_metrics", *(t.name for t in TIERS)]
        customer = server.headers(server.token("customer", business_id=biz))
        assert (await c.get("/api/admin/tiers", headers=customer)).status_code == 403
        resp = await c.put("/api/admin/tiers/compression", headers=admin, json={"compress_after": "7 days"})
        assert resp.status_code == 409 and resp.json()["code"] == "feature_unavailable"
        resp = await c.put("/api/admin/tiers/agent_metrics_1d/retention", headers=admin, json={"retention": "5 years"})
        assert resp.status_code == 200
        assert {r["level"]: r for r in resp.json()["levels"]}["agent_metrics_1d"]["retention"] == "1825 days, 0:00:00"
        resp = await c.put("/api/admin/tiers/agent_metrics_1d/retention", headers=admin, json={"retention": "soon"})
        assert resp.status_code == 422 and resp.json()["field"] == "retention"
        resp = await c.put("/api/admin/tiers/nope/retention", headers=admin, json={"retention": None})
        assert resp.status_code == 404
        resp = await c.post("/api/admin/tiers/refresh", headers=admin,
                            json={"start": (now - timedelta(hours=3)).isoformat(), "end": now.isoformat()})
        assert resp.status_code == 200 and resp.json()["mode"] == "range"
        assert resp.json()["rows"]["agent_metrics_5m"] >= 20
        resp = await c.post("/api/admin/tiers/refresh", headers=admin,
                            json={"start": now.isoformat(), "end": (now - timedelta(hours=1)).isoformat()})
        assert resp.status_code == 422 and resp.json()["field"] == "end"
    assert isinstance(httpx.URL(server.url), httpx.URL)


# ---- the timescale (TSL) edition: the real TimescaleDB 2.29 Community build ------------------------

async def _fill(conn: psycopg.AsyncConnection[Any], devs: list[uuid.UUID], start: datetime, end: datetime) -> None:
    for i, dev in enumerate(devs):
        await conn.execute(
            "INSERT INTO agent_metrics (agent_device_id, collected_at, cpu_percent_x10, memory_percent_x10, "
            "load_average_1m_x100, uptime_seconds, network_rx_bytes, network_tx_bytes) "
            "SELECT %s, t, round(10 * (50 + 40 * sin(extract(epoch FROM t) / 5000.0 + %s))), "
            "round(random() * 1000), round(random() * 400), extract(epoch FROM t)::bigint, "
            "(extract(epoch FROM t - %s) * 1000)::bigint, (extract(epoch FROM t - %s) * 10)::bigint "
            "FROM generate_series(%s::timestamptz, %s::timestamptz, INTERVAL '1 minute') t "
            "WHERE t < %s", (dev, i, start, start, start, end, end))


@TSL
async def test_tsl_caggs_policies_compression_and_history(conn: psycopg.AsyncConnection[Any]) -> None:
    """Hierarchical caggs equal raw aggregation, real-time aggregation shows new rows at once, the
    policies run, and charts stay exact over compressed chunks."""
    from rts_monitor.core.errors import Conflict

    biz = await factories.business(conn)
    devs = [(await factories.agent(conn, biz)).id for _ in range(2)]
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    start = end - timedelta(days=2)
    await _fill(conn, devs, start, end)
    # Up to `end`, as the refresh policies do (they never materialise a bucket still filling).
    out = await tiers.refresh(conn, edition="tsl", start=None, end=end)
    assert out["mode"] == "continuous aggregates"
    assert await check_tiers_exact(conn, devs) > 0
    # Real-time aggregation: rows newer than the last refresh are in the charts at once.
    await factories.metric_samples(conn, _series_rows(devs[0], end, 20))
    for interval in ("5m", "1h", "1d", "7m"):
        await check_history_exact(conn, devs, start, end + timedelta(hours=1), interval)
    view = await tiers.show(conn, edition="tsl")
    by_level = {r["level"]: r for r in view["levels"]}
    assert by_level["agent_metrics"]["kind"] == "hypertable"
    assert {by_level[t.name]["kind"] for t in TIERS} == {"continuous aggregate"}
    assert all(by_level[t.name]["watermark"] != "-" for t in TIERS)
    assert view["unavailable"] == {}
    targets = {(j["job"].split("[")[0], j["target"]) for j in view["jobs"]}
    for t in TIERS:
        assert ("policy_refresh_continuous_aggregate", t.name) in targets
    assert ("policy_compression", "agent_metrics") in targets
    # Retention on raw and every tier kept for a limited time (1d is kept forever by default).
    assert {("policy_retention", name) for name in ("agent_metrics", "agent_metrics_5m", "agent_metrics_1h")
            } <= targets
    # The policies really run on this build: each job once, by hand (the test template pauses them).
    for row in await (await conn.execute(
            "SELECT job_id FROM timescaledb_information.jobs WHERE proc_name LIKE 'policy%'")).fetchall():
        await conn.execute("CALL run_job(%s)", (row["job_id"],))
    with pytest.raises(Conflict, match="inside the refresh window"):
        await tiers.set_retention(conn, edition="tsl", level="agent_metrics", retention=timedelta(days=2))
    await tiers.set_retention(conn, edition="tsl", level="agent_metrics", retention=timedelta(days=60))
    row = await (await conn.execute(
        "SELECT config->>'drop_after' AS d FROM timescaledb_information.jobs "
        "WHERE proc_name = 'policy_retention' AND hypertable_name = 'agent_metrics'")).fetchone()
    assert row is not None and row["d"] in ("60 days", "1440:00:00")
    await tiers.set_retention(conn, edition="tsl", level="agent_metrics_1d", retention=timedelta(days=3650))
    assert ("policy_retention", "agent_metrics_1d") in {
        (j["job"].split("[")[0], j["target"]) for j in (await tiers.show(conn, edition="tsl"))["jobs"]}
    await tiers.set_compression(conn, edition="tsl", after=timedelta(days=1))
    await conn.execute("SELECT compress_chunk(c) FROM show_chunks('agent_metrics', older_than => %s) c",
                       (end - timedelta(days=1),))
    raw = {r["level"]: r for r in (await tiers.show(conn, edition="tsl"))["levels"]}["agent_metrics"]
    assert "x (" in raw["compression"], raw
    # Charts still equal raw aggregation over compressed chunks.
    await check_history_exact(conn, devs, start, end, "1h")
    await check_history_exact(conn, devs, start, end, "7m")


@TSL
async def test_tsl_compression_settings_are_segment_by_device_time_descending(
        conn: psycopg.AsyncConnection[Any]) -> None:
    rows = await (await conn.execute(
        "SELECT segmentby, orderby FROM timescaledb_information.hypertable_compression_settings "
        "WHERE hypertable = 'agent_metrics'::regclass")).fetchall()
    assert rows == [{"segmentby": "agent_device_id", "orderby": "collected_at DESC"}]
    policy = await (await conn.execute(
        "SELECT config->>'compress_after' AS after FROM timescaledb_information.jobs "
        "WHERE proc_name = 'policy_compression' AND hypertable_name = 'agent_metrics'")).fetchone()
    assert policy is not None and policy["after"] in ("7 days", "168:00:00")
    caggs = await (await conn.execute(
        "SELECT view_name, materialized_only FROM timescaledb_information.continuous_aggregates "
        "ORDER BY view_name")).fetchall()
    assert [(c["view_name"], c["materialized_only"]) for c in caggs] == [(t.name, False) for t in
                                                                          sorted(TIERS, key=lambda t: t.name)]


@TSL
async def test_tsl_fresh_database_answers_history_and_tiers_api(api_factory: Any,
                                                              conn: psycopg.AsyncConnection[Any]) -> None:
    """Before any cagg has materialised anything, 2.29 reports a watermark of 4714 BC: charts and the
    DBA view must still answer (they read raw), not fail on a timestamp psycopg cannot load."""
    server: ApiServer = api_factory()
    tenant = await factories.tenant(conn)
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    await factories.metric_samples(conn, _series_rows(tenant.agent.id, now - timedelta(hours=3), 120))
    admin = server.headers(server.token("admin"))
    async with server.client() as c:
        resp = await c.get("/api/admin/tiers", headers=admin)
        assert resp.status_code == 200, resp.text + server.log_tail()
        levels = {r["level"]: r for r in resp.json()["levels"]}
        assert {levels[t.name]["watermark"] for t in TIERS} == {"-"}
        for interval in ("5m", "1h", "1d"):
            resp = await c.get(f"/api/agents/{tenant.agent.id}/metrics/history", headers=admin,
                               params={"start": (now - timedelta(hours=4)).isoformat(), "end": now.isoformat(),
                                       "interval": interval, "metric": "cpu_percent"})
            assert resp.status_code == 200, resp.text + server.log_tail()
            assert sum(1 for p in resp.json()["metrics"] if p["cpu_percent"] is not None) > 0
    await check_history_exact(conn, [tenant.agent.id], now - timedelta(hours=4), now, "1h")


@TSL
async def test_tsl_late_spool_into_compressed_chunks_is_stored_and_replays_are_duplicates(
        api_factory: Any, conn: psycopg.AsyncConnection[Any]) -> None:
    """An agent replays a 3-day-old spool after its chunk was compressed: new samples are stored,
    replayed ones counted as duplicates (never stored twice, never an error), through the COPY
    path (500 samples) and the small-flush path (one sample)."""
    server: ApiServer = api_factory()
    tenant = await factories.tenant(conn)
    dev, headers = tenant.agent.id, tenant.agent.headers
    base = (datetime.now(UTC) - timedelta(days=3)).replace(minute=0, second=0, microsecond=0)
    first = [{"collected_at": (base + timedelta(minutes=i)).isoformat(), "cpu_percent": 10.0,
              "network_rx_bytes": 1000 * i} for i in range(500)]
    async with server.client() as c:
        resp = await c.post(f"/api/agents/{dev}/metrics", headers=headers, json={"metrics": first})
        assert resp.status_code == 200 and resp.json()["received"] == 500, resp.text
        compressed = await (await conn.execute(
            "SELECT count(compress_chunk(c)) AS n FROM show_chunks('agent_metrics', older_than => now() - "
            "INTERVAL '2 days') c")).fetchone()
        assert compressed["n"] >= 1
        # The spool: 250 samples already stored (replayed) and 250 the server never saw (30 s later).
        spool = first[::2] + [dict(s, collected_at=(datetime.fromisoformat(s["collected_at"])
                                                    + timedelta(seconds=30)).isoformat()) for s in first[1::2]]
        resp = await c.post(f"/api/agents/{dev}/metrics", headers=headers, json={"metrics": spool})
        assert resp.status_code == 200, resp.text + server.log_tail()
        assert (resp.json()["received"], resp.json()["duplicates"]) == (250, 250)
        again = await c.post(f"/api/agents/{dev}/metrics", headers=headers, json={"metrics": spool[:1]})
        assert again.status_code == 200 and (again.json()["received"], again.json()["duplicates"]) == (0, 1)
    row = await (await conn.execute("SELECT count(*) AS n, count(DISTINCT collected_at) AS d FROM agent_metrics "
                                    "WHERE agent_device_id = %s", (dev,))).fetchone()
    assert row == {"n": 750, "d": 750}
    chunks = await (await conn.execute(
        "SELECT bool_or(is_compressed) AS any FROM timescaledb_information.chunks "
        "WHERE hypertable_name = 'agent_metrics' AND range_end <= now() - INTERVAL '2 days'")).fetchone()
    assert chunks["any"]  # written into the compressed chunk, not by decompressing it for good


@MAINTAINED
async def test_catch_up_is_bounded_per_pass_and_charts_stay_exact_meanwhile(
        conn: psycopg.AsyncConnection[Any]) -> None:
    biz = await factories.business(conn)
    dev = (await factories.agent(conn, biz)).id
    start = T0 + timedelta(days=400)
    await factories.metric_samples(conn, _series_rows(dev, start, 3 * 1440))
    now = start + timedelta(days=3)
    first = await refresh(conn, now=now, max_span=timedelta(days=1))
    assert first.watermarks["agent_metrics_5m"] == start + timedelta(days=1)
    for interval in ("5m", "1h", "1d"):  # one day from tiers, two from raw
        await check_history_exact(conn, [dev], start, now, interval)
    await refresh(conn, now=now, max_span=timedelta(days=1))
    third = await refresh(conn, now=now, max_span=timedelta(days=1))
    assert third.watermarks == {"agent_metrics_5m": now, "agent_metrics_1h": now, "agent_metrics_1d": now}
    assert await check_tiers_exact(conn, [dev]) == 3 * 288 + 3 * 24 + 3


# ---- the postgres edition: partitions made ahead and on demand ------------------------------------

PG = pytest.mark.only_editions("postgres")


async def _partitions(conn: psycopg.AsyncConnection[Any], level: str = "agent_metrics") -> list[dict[str, Any]]:
    return list(await (await conn.execute(
        "SELECT partition_name, range_start, range_end FROM rts_partitions(%s) WHERE range_start IS NOT NULL "
        "ORDER BY range_start", (level,))).fetchall())


@PG
async def test_postgres_a_sample_for_a_day_without_partition_is_stored_then_gets_its_partition(
        api: ApiServer, api_conn: psycopg.AsyncConnection[Any]) -> None:
    tenant = await factories.tenant(api_conn)
    dev, headers = tenant.agent.id, tenant.agent.headers
    day = (datetime.now(UTC) - timedelta(days=20)).replace(hour=6, minute=0, second=0, microsecond=0)
    assert not [p for p in await _partitions(api_conn) if p["range_start"] <= day < p["range_end"]]
    spool = [{"collected_at": (day + timedelta(minutes=i)).isoformat(), "cpu_percent": 5.0} for i in range(300)]
    async with api.client() as c:
        resp = await c.post(f"/api/agents/{dev}/metrics", headers=headers, json={"metrics": spool})
        assert resp.status_code == 200 and resp.json()["received"] == 300, resp.text
        again = await c.post(f"/api/agents/{dev}/metrics", headers=headers, json={"metrics": spool[:3]})
        assert (again.json()["received"], again.json()["duplicates"]) == (0, 3)
        where = await (await api_conn.execute(
            "SELECT DISTINCT tableoid::regclass::text AS t FROM agent_metrics WHERE agent_device_id = %s",
            (dev,))).fetchall()
        assert where == [{"t": "agent_metrics_default"}]
        await api_conn.execute("SELECT rts_partitions_maintain(INTERVAL '1 day')")
        where = await (await api_conn.execute(
            "SELECT DISTINCT tableoid::regclass::text AS t FROM agent_metrics WHERE agent_device_id = %s",
            (dev,))).fetchall()
        assert where == [{"t": f"agent_metrics_p{day:%Y%m%d}"}]
        # Still one row per key: a replay into the new partition is a duplicate, not a second row.
        again = await c.post(f"/api/agents/{dev}/metrics", headers=headers, json={"metrics": spool})
        assert (again.json()["received"], again.json()["duplicates"]) == (0, 300)
    row = await (await api_conn.execute("SELECT count(*) AS n FROM agent_metrics WHERE agent_device_id = %s",
                                        (dev,))).fetchone()
    assert row["n"] == 300


@PG
async def test_postgres_partitions_ahead_follow_the_width_and_never_overlap(
        conn: psycopg.AsyncConnection[Any]) -> None:
    await conn.execute("SELECT rts_partitions_maintain(INTERVAL '3 days')")
    now = datetime.now(UTC)
    days = await _partitions(conn)
    assert days[0]["range_start"] <= now and days[-1]["range_end"] >= now + timedelta(days=3)
    assert all(p["range_end"] - p["range_start"] == timedelta(days=1) for p in days)
    for level, width in (("agent_metrics_5m", 7), ("agent_metrics_1h", 30), ("agent_metrics_1d", 365)):
        parts = await _partitions(conn, level)
        assert parts and parts[0]["range_start"] <= now and parts[0]["range_end"] - parts[0]["range_start"] \
            <= timedelta(days=width)
    await tiers.set_chunk_interval(conn, edition="postgres", level="agent_metrics", interval=timedelta(hours=6))
    await conn.execute("SELECT rts_partitions_maintain(INTERVAL '5 days')")
    parts = await _partitions(conn)
    assert any(p["range_end"] - p["range_start"] == timedelta(hours=6) for p in parts)
    assert all(a["range_end"] <= b["range_start"] for a, b in itertools.pairwise(parts))
    assert parts[-1]["range_end"] >= now + timedelta(days=5)
    view = await tiers.show(conn, edition="postgres")
    raw = {r["level"]: r for r in view["levels"]}["agent_metrics"]
    assert raw["kind"] == "partitioned table" and raw["chunks"] == len(parts) and raw["chunk_interval"] == "6:00:00"


@PG
async def test_postgres_partitions_job_runs_and_no_timescaledb_function_exists(
        api_factory: Any, conn: psycopg.AsyncConnection[Any]) -> None:
    server: ApiServer = api_factory(env={"RTS_PARTITIONS_JOB_SECONDS": "1", "RTS_PARTITIONS_AHEAD_DAYS": "10"})
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        parts = await _partitions(conn)
        if parts and parts[-1]["range_end"] >= datetime.now(UTC) + timedelta(days=10):
            break
        await asyncio.sleep(0.3)
    else:
        pytest.fail("the partitions job made no partitions:\n" + server.log_tail())
    async with server.client() as c:
        body = (await c.get("/api/admin/tiers", headers=server.headers(server.token("admin")))).json()
    assert body["edition"] == "postgres"
    jobs = {j["job"]: j for j in body["jobs"]}
    assert jobs["tiers.partitions"]["runs"] >= 1 and jobs["tiers.partitions"]["failures"] == 0
    assert "no TimescaleDB" in body["unavailable"]["compression"]
    row = await (await conn.execute(
        "SELECT count(*) AS n FROM pg_proc WHERE proname IN ('time_bucket', 'create_hypertable', 'first')"
    )).fetchone()
    assert row["n"] == 0  # nothing of TimescaleDB is there to be called


@TSL
async def test_tsl_background_worker_runs_the_policies_without_error(conn: psycopg.AsyncConnection[Any]) -> None:
    """The policies as TimescaleDB's scheduler runs them (not run_job from a session): every one
    finishes as a success with no job error. PostgreSQL 17.12 made the release's job runner fail
    every job after its work (tslbuild.PATCHES), which run_job by hand does not show."""
    biz = await factories.business(conn)
    devs = [(await factories.agent(conn, biz)).id for _ in range(2)]
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    await _fill(conn, devs, end - timedelta(hours=6), end)
    jobs = [r["job_id"] for r in await (await conn.execute(
        "SELECT job_id FROM timescaledb_information.jobs WHERE proc_name LIKE 'policy%%' AND job_id >= 1000"
    )).fetchall()]  # our policies (below 1000: TimescaleDB's own telemetry and history jobs)
    assert len(jobs) >= 4
    since = (await (await conn.execute("SELECT now() AS t")).fetchone() or {})["t"]
    for job in jobs:  # the test template pauses them; the scheduler picks them up within a second or so
        await conn.execute("SELECT alter_job(%s, scheduled => true, next_start => now())", (job,))
    deadline = time.monotonic() + 90
    while True:
        stats = {r["job_id"]: r for r in await (await conn.execute(
            "SELECT job_id, last_run_status FROM timescaledb_information.job_stats "
            "WHERE job_id = ANY(%s) AND last_run_started_at >= %s AND job_status <> 'Running'",
            (jobs, since))).fetchall()}
        if all(stats.get(j) and stats[j]["last_run_status"] for j in jobs):
            break
        assert time.monotonic() < deadline, f"the scheduler ran {stats} of {jobs} in 90 s"
        await asyncio.sleep(0.5)
    for job in jobs:
        await conn.execute("SELECT alter_job(%s, scheduled => false)", (job,))
    errors = await (await conn.execute(
        "SELECT job_id, err_message FROM timescaledb_information.job_errors "
        "WHERE job_id = ANY(%s) AND finish_time >= %s", (jobs, since))).fetchall()
    assert not errors, errors
    assert {stats[j]["last_run_status"] for j in jobs} == {"Success"}, stats
