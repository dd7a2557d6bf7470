"""The availability report against hand-computed figures: transitions before and inside the period,
a device enrolled mid-period, one never heard from, disabled time, maintenance windows at the
period's edge, an outage still going at the end; alert statistics; CSV; tenancy."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import pytest
from psycopg.types.json import Jsonb

from tests import factories
from tests.fix_api import ApiServer

P0 = datetime(2026, 10, 1, tzinfo=UTC)
P1 = P0 + timedelta(days=1)


def at(hours: float) -> datetime:
    return P0 + timedelta(hours=hours)


async def transitions(conn: Any, device: UUID, steps: list[tuple[datetime, str]]) -> None:
    prev = None
    for when, status in steps:
        await conn.execute("INSERT INTO agent_status_transitions (agent_device_id, changed_at, from_status, to_status, "
                           "reason) VALUES (%s, %s, %s, %s, 'test')", (device, when, prev, status))
        prev = status


@pytest.fixture
async def world(api_conn: Any) -> dict[str, Any]:
    biz = await factories.business(api_conn, "Availability Co")
    l1, l2 = await factories.location(api_conn, biz, "HQ"), await factories.location(api_conn, biz, "Branch")
    a = await factories.agent(api_conn, biz, l1, name="a-server")
    b = await factories.agent(api_conn, biz, l2, name="b-laptop")
    c = await factories.agent(api_conn, biz, l1, name="c-never")
    # A: online since before the period; a 1 h outage; maintenance 05-06; disabled 10-12, back
    # offline 12:00-12:30; offline again from 23:00 to past the end, half of it in maintenance.
    await transitions(api_conn, a.id, [(at(-1), "online"), (at(2), "offline"), (at(3), "online"),
                                       (at(10), "disabled"), (at(12), "offline"), (at(12.5), "online"),
                                       (at(23), "offline")])
    # B: enrolled at noon; 10 min offline, 10 min in error (reachable: up), then online.
    await transitions(api_conn, b.id, [(at(12), "online"), (at(18), "offline"), (at(18 + 1 / 6), "error"),
                                       (at(18 + 2 / 6), "online")])
    for start, end, loc in ((at(5), at(6), l1), (at(23.5), at(25), l1), (at(7), at(8), l2),
                            (at(-30), at(-29), None)):
        await api_conn.execute("INSERT INTO alert_maintenance_windows (business_id, service_location_id, starts_at, "
                               "ends_at) VALUES (%s, %s, %s, %s)", (biz, loc, start, end))
    # B's location has a window 07-08, before B was enrolled: it changes nothing.
    return {"biz": biz, "l1": l1, "l2": l2, "a": a.id, "b": b.id, "c": c.id, "conn": api_conn}


def figures(x: dict[str, Any]) -> tuple[Any, ...]:
    return (x["measured_seconds"], x["down_seconds"], x["excluded_seconds"], x["outages"],
            x["longest_outage_seconds"], x["mean_time_to_recovery_seconds"])


async def test_availability_equals_the_hand_computed_figures(api: ApiServer, client: Any,
                                                             world: dict[str, Any]) -> None:
    headers = api.headers(api.token("admin"))
    resp = await client.get("/api/reports/availability", headers=headers, params={
        "business_id": str(world["biz"]), "from": P0.isoformat(), "to": P1.isoformat()})
    assert resp.status_code == 200, resp.text
    (biz,) = resp.json()["businesses"]
    locs = {loc["location_name"]: loc for loc in biz["locations"]}
    devs = {d["device_name"]: d for loc in biz["locations"] for d in loc["devices"]}
    # A: measured 24 h - 2 h disabled - 1.5 h maintenance; down 1 h + 0.5 h + 0.5 h (the rest of
    # the last outage is maintenance); three outages, two recovered (1 h and 0.5 h).
    a = devs["a-server"]
    assert figures(a) == (73800.0, 7200.0, 12600.0, 3, 3600.0, 2700.0)
    assert (a["disabled_seconds"], a["maintenance_seconds"]) == (7200.0, 5400.0)
    assert a["uptime_percent"] == pytest.approx(100 * (1 - 7200 / 73800), abs=1e-4)
    # B: measured from noon; 10 min down, 10 min in error counted as up.
    b = devs["b-laptop"]
    assert figures(b) == (43200.0, 600.0, 0.0, 1, 600.0, 600.0) and b["error_seconds"] == 600.0
    assert b["uptime_percent"] == pytest.approx(100 * (1 - 600 / 43200), abs=1e-4)
    # C never reported: nothing measured, no uptime claimed either way.
    c = devs["c-never"]
    assert figures(c) == (0.0, 0.0, 0.0, 0, 0.0, None) and c["uptime_percent"] is None
    # Roll-ups are time-weighted.
    assert figures(locs["HQ"]) == (73800.0, 7200.0, 12600.0, 3, 3600.0, 2700.0)
    assert biz["measured_seconds"] == 117000.0 and biz["down_seconds"] == 7800.0
    assert biz["uptime_percent"] == pytest.approx(100 * (1 - 7800 / 117000), abs=1e-4)
    assert biz["mean_time_to_recovery_seconds"] == pytest.approx((3600 + 1800 + 600) / 3)
    assert "maintenance" in resp.json()["method"]


async def test_alert_statistics_csv_and_tenancy(api: ApiServer, client: Any, world: dict[str, Any]) -> None:
    conn = world["conn"]
    cur = await conn.execute(
        "INSERT INTO agent_alerts (business_id, alert_name, alert_type, severity, conditions) VALUES "
        "(%s, 'cpu', 'cpu', 'critical', %s) RETURNING id",
        (world["biz"], Jsonb({"metric": "cpu_percent", "operator": ">", "threshold": 90})))
    rule = (await cur.fetchone())["id"]
    sr = await conn.execute("INSERT INTO service_requests (business_id, title) VALUES (%s, 't') RETURNING id",
                            (world["biz"],))
    ticket = (await sr.fetchone())["id"]
    for triggered, ack, resolved, sr_id in ((at(2), at(2) + timedelta(minutes=10), at(3), ticket),
                                            (at(20), None, at(20.5), None),
                                            (at(-5), at(-4), at(-3), None)):  # before the period
        await conn.execute(
            "INSERT INTO agent_alert_history (agent_alert_id, agent_device_id, business_id, severity, alert_message, "
            "triggered_at, acknowledged_at, resolved_at, status, service_request_created) "
            "VALUES (%s, %s, %s, 'critical', 'x', %s, %s, %s, 'resolved', %s)",
            (rule, world["a"], world["biz"], triggered, ack, resolved, sr_id))
    headers = api.headers(api.token("admin"))
    params = {"business_id": str(world["biz"]), "from": P0.isoformat(), "to": P1.isoformat()}
    resp = await client.get("/api/reports/availability", headers=headers, params=params)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    (stats,) = body["businesses"][0]["alerts"]
    assert stats == {"severity": "critical", "episodes": 2, "mean_time_to_acknowledge_seconds": 600.0,
                     "mean_time_to_resolve_seconds": (3600 + 1800) / 2, "tickets": 1}

    resp = await client.get("/api/reports/availability", headers=headers, params={**params, "format": "csv"})
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/csv")
    assert "attachment" in resp.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(resp.text)))
    assert [r["level"] for r in rows].count("device") == 3
    business_row = next(r for r in rows if r["level"] == "business")
    assert float(business_row["down_seconds"]) == 7800.0 and business_row["alert_episodes"] == "2"
    assert business_row["tickets"] == "1"

    # A customer of another business: their own report is empty of this one; this one is a 404.
    other = await factories.tenant(conn)
    customer = api.headers(api.token("customer", user_id=other.customer_id, business_id=other.business_id))
    resp = await client.get("/api/reports/availability", headers=customer, params=params)
    assert resp.status_code == 404 and resp.json()["field"] == "business_id"
    resp = await client.get("/api/reports/availability", headers=customer,
                            params={"agent_id": str(world["a"]), "from": P0.isoformat(), "to": P1.isoformat()})
    assert resp.status_code == 404
    mine = (await client.get("/api/reports/availability", headers=customer,
                             params={"from": P0.isoformat(), "to": P1.isoformat()})).json()
    assert [b["business_id"] for b in mine["businesses"]] == [str(other.business_id)]
    bad = await client.get("/api/reports/availability", headers=headers,
                           params={"from": P1.isoformat(), "to": P0.isoformat()})
    assert bad.status_code == 422 and bad.json()["field"] == "to"
