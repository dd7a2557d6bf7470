"""Heartbeat, presence, and the fleet views against the real API and database."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import httpx
import psycopg
import pytest
from psycopg.rows import dict_row

from rts_monitor.devices import service
from tests import factories
from tests.fix_api import ApiServer

pytestmark = pytest.mark.asyncio


async def _transitions(conn: Any, agent_id: UUID) -> list[tuple[str | None, str]]:
    rows = await (await conn.execute(
        "SELECT from_status, to_status FROM agent_status_transitions WHERE agent_device_id = %s ORDER BY id",
        (agent_id,))).fetchall()
    return [(r["from_status"], r["to_status"]) for r in rows]


async def _metric(conn: Any, agent_id: UUID, at: datetime, cpu: float, **more: Any) -> None:
    cols = {"agent_device_id": agent_id, "collected_at": at, "cpu_percent": cpu, "memory_percent": round(cpu / 2, 1),
            "disk_percent": 50.0, **more}
    await conn.execute(
        f"INSERT INTO agent_metrics ({', '.join(factories.stored_column(c) for c in cols)}) "
        f"VALUES ({', '.join(['%s'] * len(cols))})",
        tuple(factories.stored_value(c, v) for c, v in cols.items()))


# ---------------------------------------------------------------- heartbeat


async def test_heartbeat_updates_presence_version_and_records_transition(
    client: httpx.AsyncClient, api_conn: Any
) -> None:
    biz = await factories.business(api_conn)
    ag = await factories.agent(api_conn, biz, status="offline")
    resp = await client.post(f"/api/agents/{ag.id}/heartbeat", headers=ag.headers,
                             json={"timestamp": "2025-10-09T10:30:00Z", "status": "online", "agent_version": "2.0.0"})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["config_updated"] is False and body["pending_commands"] == 0 and body["status"] == "online"
    row = await (await api_conn.execute(
        "SELECT status, agent_version, agent_last_updated, now() - last_heartbeat AS age FROM agent_devices "
        "WHERE id = %s", (ag.id,))).fetchone()
    # Server time, not the agent's (2025) clock.
    assert row["status"] == "online" and row["agent_version"] == "2.0.0" and row["age"] < timedelta(seconds=5)
    assert row["agent_last_updated"] is not None
    assert await _transitions(api_conn, ag.id) == [("offline", "online")]
    # A second heartbeat changes nothing: no duplicate transition.
    await client.post(f"/api/agents/{ag.id}/heartbeat", headers=ag.headers, json={"status": "online"})
    assert await _transitions(api_conn, ag.id) == [("offline", "online")]
    # The agent may report an error state, and that is a transition too.
    await client.post(f"/api/agents/{ag.id}/heartbeat", headers=ag.headers, json={"status": "error"})
    assert await _transitions(api_conn, ag.id) == [("offline", "online"), ("online", "error")]


@pytest.mark.parametrize(("body", "field"), [
    ({"status": "disabled"}, "status"),
    ({"timestamp": "yesterday"}, "timestamp"),
    ({"agent_version": ""}, "agent_version"),
    ({"config_version": "x"}, "config_version"),
])
async def test_heartbeat_validation_names_the_field(
    client: httpx.AsyncClient, api_conn: Any, body: dict[str, Any], field: str
) -> None:
    ag = await factories.agent(api_conn, await factories.business(api_conn))
    resp = await client.post(f"/api/agents/{ag.id}/heartbeat", headers=ag.headers, json=body)
    assert resp.status_code == 422, resp.text
    assert resp.json()["field"] == field


async def test_pending_commands_counts_only_deliverable_pending(client: httpx.AsyncClient, api_conn: Any) -> None:
    biz = await factories.business(api_conn)
    ag, other = await factories.agent(api_conn, biz), await factories.agent(api_conn, biz)
    user = await factories.user(api_conn, None, "admin")
    rows = [(ag.id, "pending", False, False), (ag.id, "pending", True, True), (ag.id, "pending", True, False),
            (ag.id, "sent", False, False), (ag.id, "cancelled", False, False), (other.id, "pending", False, False)]
    for agent_id, status, approval, approved in rows:
        await api_conn.execute(
            "INSERT INTO agent_commands (agent_device_id, command_type, status, requested_by, approval_required, "
            "approved_at) VALUES (%s, 'x', %s, %s, %s, CASE WHEN %s THEN now() END)",
            (agent_id, status, user, approval, approved))
    resp = await client.post(f"/api/agents/{ag.id}/heartbeat", headers=ag.headers, json={})
    assert resp.json()["pending_commands"] == 2


async def test_config_updated_after_flag_change_until_the_agent_has_it(
    client: httpx.AsyncClient, api: ApiServer, api_conn: Any
) -> None:
    ag = await factories.agent(api_conn, await factories.business(api_conn))
    hb = f"/api/agents/{ag.id}/heartbeat"
    assert (await client.post(hb, headers=ag.headers, json={})).json()["config_updated"] is False
    staff = api.headers(api.token("technician"))
    # A rename is not agent config; a flag is.
    await client.patch(f"/api/agents/{ag.id}", headers=staff, json={"device_name": "renamed"})
    assert (await client.post(hb, headers=ag.headers, json={})).json()["config_updated"] is False
    await client.patch(f"/api/agents/{ag.id}", headers=staff, json={"auto_remediation_enabled": True})
    answer = (await client.post(hb, headers=ag.headers, json={})).json()
    assert answer["config_updated"] is True and answer["config_version"] == 2
    config = await client.get(f"/api/agents/{ag.id}/config", headers=ag.headers)
    assert config.status_code == 200 and config.json()["auto_remediation_enabled"] is True
    assert config.json()["config_version"] == 2
    assert (await client.post(hb, headers=ag.headers, json={})).json()["config_updated"] is False
    # An agent may also state the version it runs: an old one means "fetch again".
    assert (await client.post(hb, headers=ag.headers, json={"config_version": 1})).json()["config_updated"] is True
    assert (await client.post(hb, headers=ag.headers, json={"config_version": 2})).json()["config_updated"] is False


# ---------------------------------------------------------------- presence


async def test_mark_offline_only_stale_enabled_agents_and_records_transitions(conn: Any) -> None:
    biz = await factories.business(conn)
    stale_online = await factories.agent(conn, biz, status="online")
    stale_error = await factories.agent(conn, biz, status="error")
    stale_disabled = await factories.agent(conn, biz, status="disabled")
    fresh = await factories.agent(conn, biz, status="online")
    metrics_only = await factories.agent(conn, biz, status="online")
    old = datetime.now(UTC) - timedelta(minutes=20)
    for a in (stale_online, stale_error, stale_disabled, metrics_only):
        await conn.execute("UPDATE agent_devices SET last_heartbeat = %s, status_changed_at = %s WHERE id = %s",
                           (old, old, a.id))
    await conn.execute("UPDATE agent_devices SET last_metrics_received = now() WHERE id = %s", (metrics_only.id,))
    await conn.execute("UPDATE agent_devices SET last_heartbeat = now() WHERE id = %s", (fresh.id,))
    marked = await service.mark_offline(conn, threshold_seconds=900)
    assert set(marked) == {stale_online.id, stale_error.id}
    assert await _transitions(conn, stale_online.id) == [("online", "offline")]
    assert await _transitions(conn, stale_error.id) == [("error", "offline")]
    statuses = {r["id"]: r["status"] for r in await (await conn.execute(
        "SELECT id, status FROM agent_devices WHERE business_id = %s", (biz,))).fetchall()}
    assert statuses[stale_disabled.id] == "disabled" and statuses[fresh.id] == "online"
    assert statuses[metrics_only.id] == "online"
    assert await service.mark_offline(conn, threshold_seconds=900) == []  # idempotent


async def test_presence_job_marks_offline_and_heartbeat_brings_back(
    api_factory: Any, db_url: str
) -> None:
    """End to end: a server with 1 s heartbeats, offline after 2 missed, presence every second."""
    server: ApiServer = api_factory(env={"RTS_HEARTBEAT_INTERVAL_SECONDS": "1", "RTS_OFFLINE_AFTER_INTERVALS": "2",
                                         "RTS_PRESENCE_JOB_SECONDS": "1"})
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True, row_factory=dict_row) as conn:
        biz = await factories.business(conn)
        ag = await factories.agent(conn, biz, status="offline")
        disabled = await factories.agent(conn, biz, status="disabled")
        async with server.client() as http:
            assert (await http.post(f"/api/agents/{ag.id}/heartbeat", headers=ag.headers, json={})).status_code == 200
            deadline = time.monotonic() + 15
            status = "online"
            while status != "offline" and time.monotonic() < deadline:
                await asyncio.sleep(0.5)
                row = await (await conn.execute("SELECT status FROM agent_devices WHERE id = %s", (ag.id,))).fetchone()
                status = row["status"]
            assert status == "offline", server.log_tail()
            resp = await http.post(f"/api/agents/{ag.id}/heartbeat", headers=ag.headers, json={})
            assert resp.json()["status"] == "online"
        assert await _transitions(conn, ag.id) == [("offline", "online"), ("online", "offline"), ("offline", "online")]
        reasons = await (await conn.execute(
            "SELECT reason, changed_at FROM agent_status_transitions WHERE agent_device_id = %s ORDER BY id",
            (ag.id,))).fetchall()
        assert reasons[1]["reason"] == "no heartbeat for 2s"
        assert reasons[0]["changed_at"] < reasons[1]["changed_at"] < reasons[2]["changed_at"]
        row = await (await conn.execute("SELECT status FROM agent_devices WHERE id = %s", (disabled.id,))).fetchone()
        assert row["status"] == "disabled" and await _transitions(conn, disabled.id) == []


async def test_disabled_agent_heartbeats_but_stays_disabled(
    client: httpx.AsyncClient, api: ApiServer, api_conn: Any
) -> None:
    ag = await factories.agent(api_conn, await factories.business(api_conn))
    staff = api.headers(api.token("admin"))
    assert (await client.patch(f"/api/agents/{ag.id}", headers=staff, json={"disabled": True})).json()["status"] \
        == "disabled"
    hb = await client.post(f"/api/agents/{ag.id}/heartbeat", headers=ag.headers, json={"status": "online"})
    assert hb.status_code == 200 and hb.json()["status"] == "disabled"
    enabled = await client.patch(f"/api/agents/{ag.id}", headers=staff, json={"disabled": False})
    assert enabled.json()["status"] == "offline"
    hb = await client.post(f"/api/agents/{ag.id}/heartbeat", headers=ag.headers, json={"status": "online"})
    assert hb.json()["status"] == "online"
    assert await _transitions(api_conn, ag.id) == [("online", "disabled"), ("disabled", "offline"),
                                                   ("offline", "online")]


# ---------------------------------------------------------------- list


async def test_list_filters_search_and_latest_metrics(
    client: httpx.AsyncClient, api: ApiServer, api_conn: Any
) -> None:
    biz = await factories.business(api_conn)
    loc_a, loc_b = await factories.location(api_conn, biz, "A"), await factories.location(api_conn, biz, "B")
    web = await factories.agent(api_conn, biz, loc_a, name="web-01", status="online")
    db = await factories.agent(api_conn, biz, loc_b, name="db-01", status="offline")
    await factories.agent(api_conn, biz, loc_b, name="edge_%", status="error")
    now = datetime.now(UTC)
    await _metric(api_conn, web.id, now - timedelta(days=2), 10.0)  # older chunk
    await _metric(api_conn, web.id, now - timedelta(minutes=1), 42.5)
    await _metric(api_conn, db.id, now - timedelta(days=30), 99.0)  # beyond the lookback: not "current"
    admin = api.headers(api.token("admin"))

    async def names(query: str) -> list[str]:
        resp = await client.get(f"/api/agents?business_id={biz}&{query}", headers=admin)
        assert resp.status_code == 200, resp.text
        return [a["device_name"] for a in resp.json()["agents"]]

    assert await names("") == ["db-01", "edge_%", "web-01"]
    assert await names("status=online,offline") == ["db-01", "web-01"]
    assert await names("status=online&status=error") == ["edge_%", "web-01"]
    assert await names(f"service_location_id={loc_b}") == ["db-01", "edge_%"]
    assert await names("q=WEB") == ["web-01"]
    assert await names("q=_%") == ["edge_%"]  # LIKE wildcards are literal
    assert await names("sort=-device_name") == ["web-01", "edge_%", "db-01"]
    assert await names("sort=status") == ["edge_%", "db-01", "web-01"]
    resp = await client.get(f"/api/agents?business_id={biz}&q=web", headers=admin)
    item = resp.json()["agents"][0]
    assert item["cpu_percent"] == 42.5 and item["memory_percent"] == 21.2 and item["disk_percent"] == 50.0
    assert item["service_location"]["location_name"] == "A"
    stale = (await client.get(f"/api/agents?business_id={biz}&q=db-01", headers=admin)).json()["agents"][0]
    assert stale["cpu_percent"] is None and stale["metrics_collected_at"] is None


async def test_cursor_pagination_visits_every_agent_once_in_order(
    client: httpx.AsyncClient, api: ApiServer, api_conn: Any
) -> None:
    biz = await factories.business(api_conn)
    ids = []
    for i in range(7):
        ag = await factories.agent(api_conn, biz, name=f"n{i % 3}")  # duplicate names: id breaks ties
        ids.append(ag.id)
        if i % 2:
            await api_conn.execute("UPDATE agent_devices SET last_heartbeat = now() - %s * interval '1 minute' "
                                   "WHERE id = %s", (i, ag.id))
    admin = api.headers(api.token("admin"))
    for sort in ("device_name", "-device_name", "last_heartbeat", "-last_heartbeat", "hostname"):
        seen: list[dict[str, Any]] = []
        cursor = None
        for _ in range(10):
            url = f"/api/agents?business_id={biz}&limit=3&sort={sort}" + (f"&cursor={cursor}" if cursor else "")
            page = (await client.get(url, headers=admin)).json()
            seen += page["agents"]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert sorted(a["id"] for a in seen) == sorted(str(i) for i in ids), sort
        everything = (await client.get(f"/api/agents?business_id={biz}&limit=100&sort={sort}", headers=admin)).json()
        assert [a["id"] for a in seen] == [a["id"] for a in everything["agents"]], sort
        assert everything["next_cursor"] is None


@pytest.mark.parametrize(("query", "field"), [
    ("status=online,sleeping", "status[1]"),
    ("sort=cpu", "sort"),
    ("cursor=garbage!", "cursor"),
    ("limit=0", "limit"),
    ("business_id=nope", "business_id"),
])
async def test_list_bad_parameters_name_the_field(
    client: httpx.AsyncClient, api: ApiServer, query: str, field: str
) -> None:
    resp = await client.get(f"/api/agents?{query}", headers=api.headers(api.token("admin")))
    assert resp.status_code == 422, resp.text
    assert resp.json()["field"] == field


async def test_cursor_of_another_sort_is_refused(client: httpx.AsyncClient, api: ApiServer, api_conn: Any) -> None:
    biz = await factories.business(api_conn)
    for _ in range(3):
        await factories.agent(api_conn, biz)
    admin = api.headers(api.token("admin"))
    page = (await client.get(f"/api/agents?business_id={biz}&limit=1", headers=admin)).json()
    resp = await client.get(f"/api/agents?business_id={biz}&sort=status&cursor={page['next_cursor']}", headers=admin)
    assert resp.status_code == 422 and resp.json()["field"] == "cursor"


async def test_customer_list_is_scoped_to_its_business(
    client: httpx.AsyncClient, api: ApiServer, api_conn: Any
) -> None:
    mine, theirs = await factories.tenant(api_conn), await factories.tenant(api_conn)
    customer = api.headers(api.token("customer", business_id=mine.business_id))
    resp = await client.get("/api/agents", headers=customer)
    assert [a["id"] for a in resp.json()["agents"]] == [str(mine.agent.id)]
    resp = await client.get(f"/api/agents?business_id={theirs.business_id}", headers=customer)
    assert resp.status_code == 404
    resp = await client.get(f"/api/agents?service_location_id={theirs.location_id}", headers=customer)
    assert resp.status_code == 200 and resp.json()["agents"] == []


# ---------------------------------------------------------------- detail, patch, delete


async def test_detail_has_current_metrics_alerts_and_services(
    client: httpx.AsyncClient, api: ApiServer, api_conn: Any
) -> None:
    t = await factories.tenant(api_conn)
    now = datetime.now(UTC)
    await _metric(api_conn, t.agent.id, now - timedelta(hours=30), 5.0)
    await _metric(api_conn, t.agent.id, now - timedelta(seconds=30), 45.2, memory_used_gb=8.5, disk_used_gb=450.0,
                  load_average_1m=1.5, load_average_5m=1.3, load_average_15m=1.2, uptime_seconds=345600)
    for status in ("active", "acknowledged", "resolved"):  # open = active or acknowledged
        rule = (await (await api_conn.execute(
            "INSERT INTO agent_alerts (alert_name, alert_type, severity, business_id, agent_device_id, conditions) "
            "VALUES ('cpu', 'cpu_high', 'warning', %s, %s, '{}') RETURNING id", (t.business_id, t.agent.id))
        ).fetchone())
        await api_conn.execute(
            "INSERT INTO agent_alert_history (agent_alert_id, agent_device_id, severity, alert_message, status) "
            "VALUES (%s, %s, 'warning', 'hot', %s)", (rule["id"], t.agent.id, status))
    for name in ("postgresql", "nginx"):
        await api_conn.execute("INSERT INTO agent_monitored_services (agent_device_id, service_name, status) "
                               "VALUES (%s, %s, 'running')", (t.agent.id, name))
    resp = await client.get(f"/api/agents/{t.agent.id}", headers=api.headers(api.token("customer",
                                                                                        business_id=t.business_id)))
    assert resp.status_code == 200, resp.text
    body = resp.json()
    m = body["current_metrics"]
    assert m["cpu_percent"] == 45.2 and m["memory_used_gb"] == 8.5 and m["disk_used_gb"] == 450.0
    assert m["load_average"] == [1.5, 1.3, 1.2] and m["uptime_seconds"] == 345600
    assert body["active_alerts"] == 2
    assert [(s["name"], s["status"]) for s in body["monitored_services"]] == [("nginx", "running"),
                                                                               ("postgresql", "running")]


async def test_patch_rename_relocate_flags_and_rules(
    client: httpx.AsyncClient, api: ApiServer, api_conn: Any
) -> None:
    t = await factories.tenant(api_conn)
    other_loc = await factories.location(api_conn, t.business_id, "Warehouse")
    foreign = await factories.tenant(api_conn)
    customer = api.headers(api.token("customer", business_id=t.business_id))
    url = f"/api/agents/{t.agent.id}"
    resp = await client.patch(url, headers=customer,
                              json={"device_name": "Front", "service_location_id": str(other_loc)})
    assert resp.status_code == 200, resp.text
    assert resp.json()["device_name"] == "Front" and resp.json()["service_location"]["location_name"] == "Warehouse"
    resp = await client.patch(url, headers=customer, json={"alerts_enabled": False})
    assert resp.status_code == 403 and "alerts_enabled" in resp.json()["message"]
    resp = await client.patch(url, headers=customer, json={"service_location_id": str(foreign.location_id)})
    assert resp.status_code == 422 and resp.json()["field"] == "service_location_id"
    resp = await client.patch(url, headers=customer, json={"device_name": ""})
    assert resp.status_code == 422 and resp.json()["field"] == "device_name"
    staff = api.headers(api.token("technician"))
    resp = await client.patch(url, headers=staff, json={"monitoring_enabled": False, "alerts_enabled": False,
                                                        "service_location_id": None})
    body = resp.json()
    assert body["monitoring_enabled"] is False and body["alerts_enabled"] is False
    assert body["service_location_id"] is None and body["device_name"] == "Front"
    assert body["auto_remediation_enabled"] is False and body["config_version"] == 2


async def test_delete_is_soft_and_kills_the_token(client: httpx.AsyncClient, api: ApiServer, api_conn: Any) -> None:
    t = await factories.tenant(api_conn)
    assert (await client.post(f"/api/agents/{t.agent.id}/heartbeat", headers=t.agent.headers, json={})).status_code \
        == 200  # warms the auth cache: delete must evict it
    customer = api.headers(api.token("customer", business_id=t.business_id))
    assert (await client.delete(f"/api/agents/{t.agent.id}", headers=customer)).status_code == 403
    staff = api.headers(api.token("admin"))
    assert (await client.delete(f"/api/agents/{t.agent.id}", headers=staff)).status_code == 204
    for method, path in (("POST", "heartbeat"), ("GET", "config")):
        resp = await client.request(method, f"/api/agents/{t.agent.id}/{path}", headers=t.agent.headers,
                                    json={} if method == "POST" else None)
        assert resp.status_code == 401, (path, resp.text)
    assert (await client.get(f"/api/agents/{t.agent.id}", headers=staff)).status_code == 404
    assert (await client.get(f"/api/agents?business_id={t.business_id}", headers=staff)).json()["agents"] == []
    row = await (await api_conn.execute(
        "SELECT soft_delete, agent_token_hash, agent_token_revoked_at FROM agent_devices WHERE id = %s",
        (t.agent.id,))).fetchone()
    assert row["soft_delete"] is True and row["agent_token_hash"] is None and row["agent_token_revoked_at"]
    assert (await client.delete(f"/api/agents/{t.agent.id}", headers=staff)).status_code == 404


async def test_revoke_token_keeps_the_agent_but_refuses_it(
    client: httpx.AsyncClient, api: ApiServer, api_conn: Any
) -> None:
    t = await factories.tenant(api_conn)
    await client.post(f"/api/agents/{t.agent.id}/heartbeat", headers=t.agent.headers, json={})
    staff = api.headers(api.token("technician"))
    assert (await client.post(f"/api/agents/{t.agent.id}/token/revoke", headers=staff)).status_code == 204
    assert (await client.post(f"/api/agents/{t.agent.id}/heartbeat", headers=t.agent.headers, json={})).status_code \
        == 401
    assert (await client.get(f"/api/agents/{t.agent.id}", headers=staff)).status_code == 200


# ---------------------------------------------------------------- admin view


async def test_admin_view_groups_by_business_and_location(
    client: httpx.AsyncClient, api: ApiServer, api_conn: Any
) -> None:
    a, b = await factories.tenant(api_conn), await factories.tenant(api_conn)
    await factories.agent(api_conn, a.business_id, None, name="loose", status="offline")
    await factories.agent(api_conn, a.business_id, a.location_id, name="second", status="error")
    staff = api.headers(api.token("technician"))
    for business, expected in ((a, 3), (b, 1)):
        resp = await client.get(f"/api/admin/agents?business_id={business.business_id}", headers=staff)
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert body["counts"]["total"] == expected and len(body["businesses"]) == 1
    body = (await client.get(f"/api/admin/agents?business_id={a.business_id}", headers=staff)).json()
    group = body["businesses"][0]
    assert group["counts"] == {"total": 3, "online": 1, "offline": 1, "error": 1, "disabled": 0}
    located, unlocated = group["locations"]
    assert located["service_location"]["id"] == str(a.location_id) and located["counts"]["total"] == 2
    assert unlocated["service_location"] is None and [x["device_name"] for x in unlocated["agents"]] == ["loose"]
    filtered = (await client.get(f"/api/admin/agents?business_id={a.business_id}&status=error", headers=staff)).json()
    assert filtered["counts"]["total"] == 1
    both = (await client.get("/api/admin/agents", headers=staff)).json()
    ids = {g["business"]["id"] for g in both["businesses"]}
    assert {str(a.business_id), str(b.business_id)} <= ids
