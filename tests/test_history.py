"""``GET /api/agents/{id}/metrics/history`` and the fleet variant, against a real server."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest

from rts_monitor.auth.principal import Role
from tests import factories
from tests.fix_api import ApiServer


def _rows(dev: UUID, start: datetime, minutes: int, *, cpu0: float = 20.0) -> list[dict[str, Any]]:
    return [{"agent_device_id": dev, "collected_at": start + timedelta(minutes=i), "cpu_percent": cpu0 + (i * 7) % 50,
             "memory_percent": 40.0 + i % 3, "disk_percent": 70.0, "network_rx_bytes": 5000 * i,
             "network_tx_bytes": 100 * i} for i in range(minutes)]


async def _reference(conn: Any, devs: list[UUID], start: datetime, end: datetime, step: str) -> list[dict[str, Any]]:
    cur = await conn.execute(
        f"SELECT date_bin(INTERVAL '{step}', collected_at, TIMESTAMPTZ '2000-01-03 00:00:00+00') AS ts, "
        "avg(cpu_percent) AS cpu, "
        "min(cpu_percent)::float8 AS cpu_min, max(cpu_percent)::float8 AS cpu_max, count(*) AS n, "
        "count(DISTINCT agent_device_id) AS devices FROM agent_metric_values "
        "WHERE agent_device_id = ANY(%s) AND collected_at >= %s AND collected_at < %s GROUP BY 1 ORDER BY 1",
        (devs, start, end))
    return list(await cur.fetchall())


async def settle(api: ApiServer, client: httpx.AsyncClient) -> None:
    """On tsl, rows written below a continuous aggregate's watermark (late, or inserted "in the
    past" after an earlier test of this session's server refreshed everything) show once the
    refresh policy runs (every minute, paused in tests): run that refresh. The project-maintained
    tiers show them at once (metric_ingest_ranges), so there it is not called."""
    health = (await client.get("/health")).json()
    if health["database"]["edition"] == "tsl":
        resp = await client.post("/api/admin/tiers/refresh", headers=api.headers(api.token(Role.admin)), json={})
        assert resp.status_code == 200, resp.text


def _iso(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


def _ts(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@pytest.fixture
async def world(api_conn: Any) -> factories.Tenant:
    return await factories.tenant(api_conn)


async def test_history_follows_the_plan_contract_and_equals_raw(api: ApiServer, client: httpx.AsyncClient,
                                                               api_conn: Any, world: factories.Tenant) -> None:
    dev = world.agent.id
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    start = now - timedelta(hours=4)
    await factories.metric_samples(api_conn, _rows(dev, start, 240))
    headers = api.headers(api.token(Role.customer, business_id=world.business_id))
    resp = await client.get(f"/api/agents/{dev}/metrics/history", headers=headers, params={
        "start": _iso(start), "end": _iso(now), "metric": "cpu_percent,memory_percent,network_rx_rate",
        "interval": "5m", "stats": "avg,min,max"})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["interval"] == "5m" and body["source"] == "agent_metrics_5m"
    points = body["metrics"]
    ref = await _reference(api_conn, [dev], start, now, "5 minutes")
    assert [_ts(p["timestamp"]) for p in points] == [r["ts"] for r in ref]
    for p, r in zip(points, ref, strict=True):
        assert set(p) == {"timestamp", "cpu_percent", "cpu_percent_min", "cpu_percent_max", "memory_percent",
                          "memory_percent_min", "memory_percent_max", "network_rx_rate"}
        assert math.isclose(p["cpu_percent"], r["cpu"], rel_tol=1e-6)
        assert p["cpu_percent_min"] == r["cpu_min"] and p["cpu_percent_max"] == r["cpu_max"]
        assert math.isclose(p["network_rx_rate"], 5000 / 60, rel_tol=1e-9)  # 5,000 bytes a minute
    # Defaults: the last 24 hours at 5 minutes, the plan's three metrics, averages only.
    resp = await client.get(f"/api/agents/{dev}/metrics/history", headers=headers)
    assert resp.status_code == 200
    last = resp.json()["metrics"][-1]
    assert set(last) == {"timestamp", "cpu_percent", "memory_percent", "disk_percent"}
    # The newest minute is there even though no refresh has materialised it.
    newest = now - timedelta(minutes=1)
    assert _ts(last["timestamp"]) == newest.replace(minute=newest.minute - newest.minute % 5)


async def test_real_values_come_back_as_their_shortest_decimal(api: ApiServer, client: httpx.AsyncClient,
                                                               api_conn: Any, world: factories.Tenant) -> None:
    """45.2 stored in a real column is 45.20000076293945 as a double: the API says 45.2, in raw
    minutes and in every tier, for min, max and an average of equal values (averages of real values
    in general come back at real's precision, hence rel_tol=1e-6 against raw doubles above)."""
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)
    rows = [{"agent_device_id": world.agent.id, "collected_at": start + timedelta(minutes=i), "cpu_percent": 45.2,
             "memory_used_gb": 8.3, "load_average_1m": 0.07} for i in range(150)]
    await factories.metric_samples(api_conn, rows)
    await settle(api, client)
    headers = api.headers(api.token(Role.customer, business_id=world.business_id))
    for interval in ("1m", "5m", "1h"):
        resp = await client.get(f"/api/agents/{world.agent.id}/metrics/history", headers=headers, params={
            "start": _iso(start), "end": _iso(start + timedelta(minutes=150)), "interval": interval,
            "metric": "cpu_percent,memory_used_gb,load_average_1m", "stats": "avg,min,max"})
        assert resp.status_code == 200, resp.text
        text = resp.text
        assert "45.2000" not in text and "8.300000" not in text and "0.0700000" not in text, (interval, text[:300])
        for point in resp.json()["metrics"]:
            assert (point["cpu_percent"], point["cpu_percent_min"], point["cpu_percent_max"]) == (45.2, 45.2, 45.2)
            assert point["memory_used_gb"] == 8.3 and point["load_average_1m"] == 0.07


async def test_coarse_intervals_use_coarse_tiers_and_stay_exact(api: ApiServer, client: httpx.AsyncClient,
                                                                api_conn: Any, world: factories.Tenant) -> None:
    dev = world.agent.id
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    start = now - timedelta(days=3)
    await factories.metric_samples(api_conn, _rows(dev, start, 3 * 1440))
    admin = api.headers(api.token(Role.admin))
    assert (await client.post("/api/admin/tiers/refresh", headers=admin, json={})).status_code == 200
    headers = api.headers(api.token(Role.technician))
    for interval, source, step in (("1h", "agent_metrics_1h", "1 hour"), ("1d", "agent_metrics_1d", "1 day"),
                                   ("7m", "agent_metrics", "7 minutes"), ("30m", "agent_metrics_5m", "30 minutes")):
        resp = await client.get(f"/api/agents/{dev}/metrics/history", headers=headers, params={
            "start": _iso(start), "end": _iso(now), "metric": "cpu_percent", "interval": interval, "stats": "avg,max"})
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert body["source"] == source
        lo, hi = _ts(body["start"]), _ts(body["end"])
        ref = await _reference(api_conn, [dev], lo, hi, step)
        assert len(body["metrics"]) == len(ref) > 0
        for p, r in zip(body["metrics"], ref, strict=True):
            assert _ts(p["timestamp"]) == r["ts"]
            assert math.isclose(p["cpu_percent"], r["cpu"], rel_tol=1e-6), (interval, p, r)
            assert p["cpu_percent_max"] == r["cpu_max"]


async def test_late_rows_through_the_ingest_api_show_before_the_next_refresh(
        api: ApiServer, client: httpx.AsyncClient, api_conn: Any, world: factories.Tenant) -> None:
    dev = world.agent.id
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    on_time = [{"collected_at": _iso(now - timedelta(minutes=m)), "cpu_percent": 10.0,
                "network_rx_bytes": 1000 * (300 - m)} for m in range(1, 300, 2)]
    resp = await client.post(f"/api/agents/{dev}/metrics", headers=world.agent.headers, json={"metrics": on_time})
    assert resp.status_code == 200, resp.text
    admin = api.headers(api.token(Role.admin))
    assert (await client.post("/api/admin/tiers/refresh", headers=admin, json={})).status_code == 200
    # The agent was offline and replays its spool: odd minutes 3 to 5 hours ago, cpu 90.
    late = [{"collected_at": _iso(now - timedelta(minutes=m)), "cpu_percent": 90.0,
             "network_rx_bytes": 1000 * (300 - m)} for m in range(180, 300, 2)]
    late = [dict(x, collected_at=_iso(_ts(x["collected_at"]) - timedelta(seconds=30))) for x in late]
    resp = await client.post(f"/api/agents/{dev}/metrics", headers=world.agent.headers, json={"metrics": late})
    assert resp.status_code == 200 and resp.json()["received"] == len(late)
    await settle(api, client)
    headers = api.headers(api.token(Role.customer, business_id=world.business_id))
    start, end = now - timedelta(hours=6), now
    resp = await client.get(f"/api/agents/{dev}/metrics/history", headers=headers, params={
        "start": _iso(start), "end": _iso(end), "metric": "cpu_percent", "interval": "1h", "stats": "avg,max"})
    assert resp.status_code == 200
    ref = await _reference(api_conn, [dev], start, end, "1 hour")
    got = resp.json()["metrics"]
    assert [(_ts(p["timestamp"]), p["cpu_percent_max"]) for p in got] == [(r["ts"], r["cpu_max"]) for r in ref]
    assert any(p["cpu_percent_max"] == 90.0 for p in got)
    for p, r in zip(got, ref, strict=True):
        assert math.isclose(p["cpu_percent"], r["cpu"], rel_tol=1e-6)


async def test_tenancy_and_auth(api: ApiServer, client: httpx.AsyncClient, api_conn: Any,
                                world: factories.Tenant) -> None:
    other = await factories.tenant(api_conn)
    url = f"/api/agents/{world.agent.id}/metrics/history"
    stranger = api.headers(api.token(Role.customer, business_id=other.business_id))
    resp = await client.get(url, headers=stranger)
    assert resp.status_code == 404 and resp.json()["code"] == "not_found"
    own = api.headers(api.token(Role.customer, business_id=world.business_id))
    assert (await client.get(url, headers=own)).status_code == 200
    assert (await client.get(f"/api/agents/{uuid4()}/metrics/history", headers=own)).status_code == 404
    assert (await client.get(url)).status_code == 401
    assert (await client.get(url, headers=world.agent.headers)).status_code == 401
    fleet = "/api/fleet/metrics/history"
    resp = await client.get(fleet, headers=stranger, params={"business_id": str(world.business_id)})
    assert resp.status_code == 404
    assert (await client.get(fleet, headers=stranger,
                             params={"service_location_id": str(world.location_id)})).status_code == 404
    staff = api.headers(api.token(Role.admin))
    resp = await client.get(fleet, headers=staff)
    assert resp.status_code == 422 and resp.json()["field"] == "business_id"


@pytest.mark.parametrize(("params", "field", "text"), [
    ({"interval": "5x"}, "interval", "not a number followed by"),
    ({"interval": "5s"}, "interval", "outside 10s..1d"),
    ({"interval": "2d"}, "interval", "outside 10s..1d"),
    ({"metric": "cpu_percent,gpu_percent"}, "metric", "unknown metric 'gpu_percent'"),
    ({"stats": "median"}, "stats", "unknown statistic"),
    ({"start": "2025-10-09T10:00:00Z", "end": "2025-10-09T09:00:00Z"}, "end", "must be after start"),
    ({"start": "yesterday"}, "start", "not an ISO 8601 time"),
    ({"start": "2025-10-09T10:00:00"}, "start", "needs a time zone"),
    ({"start": "2025-01-01T00:00:00Z", "end": "2025-03-01T00:00:00Z", "interval": "10m"}, "interval",
     "at most 2000"),
])
async def test_bad_queries_get_a_422_naming_the_field(api: ApiServer, client: httpx.AsyncClient,
                                                      world: factories.Tenant, params: dict[str, str], field: str,
                                                      text: str) -> None:
    headers = api.headers(api.token(Role.customer, business_id=world.business_id))
    for url in (f"/api/agents/{world.agent.id}/metrics/history", "/api/fleet/metrics/history"):
        resp = await client.get(url, headers=headers, params=params)
        assert resp.status_code == 422, resp.text
        body = resp.json()
        assert body["field"] == field and text in body["message"] and body["message"].startswith(field)


async def test_fleet_history_aggregates_a_business_or_a_location(api: ApiServer, client: httpx.AsyncClient,
                                                                 api_conn: Any, world: factories.Tenant) -> None:
    second_site = await factories.location(api_conn, world.business_id)
    b = await factories.agent(api_conn, world.business_id, world.location_id)
    c = await factories.agent(api_conn, world.business_id, second_site)
    deleted = await factories.agent(api_conn, world.business_id, world.location_id)
    await api_conn.execute("UPDATE agent_devices SET soft_delete = true WHERE id = %s", (deleted.id,))
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    start = now - timedelta(hours=2)
    for i, dev in enumerate((world.agent.id, b.id, c.id, deleted.id)):
        await factories.metric_samples(api_conn, _rows(dev, start, 120, cpu0=10.0 * i))
    await settle(api, client)
    headers = api.headers(api.token(Role.customer, business_id=world.business_id))
    params = {"start": _iso(start), "end": _iso(now), "metric": "cpu_percent,network_rx_rate",
              "interval": "15m", "stats": "avg,min,max"}
    resp = await client.get("/api/fleet/metrics/history", headers=headers, params=params)  # own business
    assert resp.status_code == 200, resp.text
    live = [world.agent.id, b.id, c.id]
    ref = await _reference(api_conn, live, start, now, "15 minutes")
    got = resp.json()["metrics"]
    assert len(got) == len(ref) == 8
    for p, r in zip(got, ref, strict=True):
        assert p["devices"] == 3
        assert math.isclose(p["cpu_percent"], r["cpu"], rel_tol=1e-6)
        assert p["cpu_percent_min"] == r["cpu_min"] and p["cpu_percent_max"] == r["cpu_max"]
        assert math.isclose(p["network_rx_rate"], 3 * 5000 / 60, rel_tol=1e-9)  # summed over devices
    resp = await client.get("/api/fleet/metrics/history", headers=headers,
                            params={**params, "service_location_id": str(world.location_id)})
    assert resp.status_code == 200
    ref = await _reference(api_conn, [world.agent.id, b.id], start, now, "15 minutes")
    for p, r in zip(resp.json()["metrics"], ref, strict=True):
        assert p["devices"] == 2 and math.isclose(p["cpu_percent"], r["cpu"], rel_tol=1e-6)


async def test_rates_with_one_sample_per_bucket_and_a_counter_reset(api: ApiServer, client: httpx.AsyncClient,
                                                                     api_conn: Any, world: factories.Tenant) -> None:
    """Agents on the plan's 5-minute interval: each 5m bucket holds one sample, so the rate comes
    from the previous sample; a counter reset (reboot) counts the new value from 0."""
    dev = world.agent.id
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    start = now - timedelta(hours=1)
    values = [3000 * i for i in range(6)] + [600 + 3000 * i for i in range(6)]  # reboot after the 6th
    await factories.metric_samples(api_conn, [
        {"agent_device_id": dev, "collected_at": start + timedelta(minutes=5 * i, seconds=30), "network_rx_bytes": v}
        for i, v in enumerate(values)])
    await settle(api, client)
    headers = api.headers(api.token(Role.customer, business_id=world.business_id))
    resp = await client.get(f"/api/agents/{dev}/metrics/history", headers=headers, params={
        "start": _iso(start), "end": _iso(now), "metric": "network_rx_rate", "interval": "5m"})
    assert resp.status_code == 200
    rates = [p["network_rx_rate"] for p in resp.json()["metrics"]]
    assert rates == [None, 10.0, 10.0, 10.0, 10.0, 10.0, 2.0, 10.0, 10.0, 10.0, 10.0, 10.0]
