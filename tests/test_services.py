"""Monitored services chosen in the portal: per device, business-wide defaults per OS, the agent
config that carries them, staff-only writes, tenancy and bad input."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests import factories
from tests.fix_api import ApiServer


def h(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _config(client: httpx.AsyncClient, agent: factories.Agent) -> dict[str, Any]:
    resp = await client.get(f"/api/agents/{agent.id}/config", headers=agent.headers)
    assert resp.status_code == 200, resp.text
    return resp.json()  # type: ignore[no-any-return]


async def _heartbeat(client: httpx.AsyncClient, agent: factories.Agent) -> dict[str, Any]:
    resp = await client.post(f"/api/agents/{agent.id}/heartbeat", json={"status": "online"}, headers=agent.headers)
    assert resp.status_code == 200, resp.text
    return resp.json()  # type: ignore[no-any-return]


async def test_device_and_business_choices_reach_the_agent_config(
        client: httpx.AsyncClient, api: ApiServer, api_conn: Any) -> None:
    tenant = await factories.tenant(api_conn)
    windows = await factories.agent(api_conn, tenant.business_id, tenant.location_id)
    await api_conn.execute("UPDATE agent_devices SET os_type = 'windows' WHERE id = %s", (windows.id,))
    tech = api.token("technician", user_id=await factories.user(api_conn, None, "technician"))
    agent = tenant.agent
    await _config(client, agent)  # delivered: config_updated is false from here
    assert (await _heartbeat(client, agent))["config_updated"] is False

    resp = await client.put(f"/api/businesses/{tenant.business_id}/monitored-services", headers=h(tech), json={
        "services": [{"service_name": "nginx", "os_type": "Linux", "auto_restart": True},
                     {"service_name": "postgresql", "os_type": "linux"},
                     {"service_name": "sshd"}]})
    assert resp.status_code == 200, resp.text
    assert {(s["service_name"], s["os_type"]) for s in resp.json()["services"]} == {
        ("nginx", "linux"), ("postgresql", "linux"), ("sshd", None)}
    assert (await _heartbeat(client, agent))["config_updated"] is True
    config = await _config(client, agent)
    assert config["monitored_services"] == [
        {"service_name": "nginx", "should_be_running": True, "auto_restart": True},
        {"service_name": "postgresql", "should_be_running": True, "auto_restart": False},
        {"service_name": "sshd", "should_be_running": True, "auto_restart": False}]
    assert (await _heartbeat(client, agent))["config_updated"] is False
    # The Windows server gets only the every-OS default.
    assert [s["service_name"] for s in (await _config(client, windows))["monitored_services"]] == ["sshd"]

    # A device's own entry wins over the default (postgresql silenced here) and adds its own.
    resp = await client.put(f"/api/agents/{agent.id}/monitored-services", headers=h(tech), json={
        "services": [{"service_name": "postgresql", "should_be_running": False},
                     {"service_name": "redis-server", "auto_restart": True}]})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert [s["service_name"] for s in body["services"]] == ["postgresql", "redis-server"]
    effective = {s["service_name"]: (s["should_be_running"], s["auto_restart"]) for s in body["effective"]}
    assert effective == {"nginx": (True, True), "postgresql": (False, False), "redis-server": (True, True),
                         "sshd": (True, False)}
    # The service_down rule reads the same rows.
    cur = await api_conn.execute(
        "SELECT service_name, should_be_running FROM agent_monitored_services WHERE agent_device_id = %s "
        "AND configured ORDER BY service_name", (agent.id,))
    assert [(r["service_name"], r["should_be_running"]) for r in await cur.fetchall()] == [
        ("nginx", True), ("postgresql", False), ("redis-server", True), ("sshd", True)]
    assert (await _heartbeat(client, agent))["config_updated"] is True

    # Clearing the defaults leaves the device's own entries; the same list again changes nothing.
    resp = await client.put(f"/api/businesses/{tenant.business_id}/monitored-services", headers=h(tech),
                            json={"services": []})
    assert resp.status_code == 200
    await _config(client, agent)
    resp = await client.put(f"/api/agents/{agent.id}/monitored-services", headers=h(tech), json={
        "services": [{"service_name": "postgresql", "should_be_running": False},
                     {"service_name": "redis-server", "auto_restart": True}]})
    assert [s["service_name"] for s in resp.json()["effective"]] == ["postgresql", "redis-server"]
    assert (await _heartbeat(client, agent))["config_updated"] is False
    cur = await api_conn.execute("SELECT count(*) AS n FROM audit_log WHERE action LIKE 'monitored_services.%%' "
                                 "AND business_id = %s", (tenant.business_id,))
    assert (await cur.fetchone())["n"] == 4


async def test_registration_carries_the_business_defaults(client: httpx.AsyncClient, api: ApiServer,
                                                          api_conn: Any) -> None:
    tenant = await factories.tenant(api_conn)
    admin = api.token("admin", user_id=await factories.user(api_conn, None, "admin"))
    resp = await client.put(f"/api/businesses/{tenant.business_id}/monitored-services", headers=h(admin),
                            json={"services": [{"service_name": "nginx", "os_type": "linux"}]})
    assert resp.status_code == 200, resp.text
    resp = await client.post("/api/agents/registration-tokens", headers=h(admin),
                             json={"business_id": str(tenant.business_id)})
    assert resp.status_code == 201, resp.text
    token = resp.json()["token"]
    resp = await client.post("/api/agents/register", json={"token": token, "hostname": "web-9", "os_type": "linux"})
    assert resp.status_code == 201, resp.text
    answer = resp.json()
    assert answer["config"]["monitored_services"] == [
        {"service_name": "nginx", "should_be_running": True, "auto_restart": False}]
    hb = await client.post(f"/api/agents/{answer['agent_id']}/heartbeat", json={"status": "online"},
                           headers=h(answer["agent_token"]))
    assert hb.json()["config_updated"] is False


@pytest.mark.parametrize(("body", "field"), [
    ({"services": [{"service_name": "nginx; rm -rf /"}]}, "services[0].service_name"),
    ({"services": [{"service_name": "-nginx"}]}, "services[0].service_name"),
    ({"services": [{"service_name": ""}]}, "services[0].service_name"),
    ({"services": [{"service_name": "nginx"}, {"service_name": "nginx"}]}, "services[1].service_name"),
    ({"services": [{"service_name": "nginx", "auto_restart": "yes"}]}, "services[0].auto_restart"),
    ({"services": [{"service_name": "nginx", "restart": True}]}, "services[0].restart"),
])
async def test_bad_choices_are_422_naming_the_field(client: httpx.AsyncClient, api: ApiServer, api_conn: Any,
                                                    body: dict[str, Any], field: str) -> None:
    tenant = await factories.tenant(api_conn)
    tech = api.token("technician", user_id=await factories.user(api_conn, None, "technician"))
    resp = await client.put(f"/api/agents/{tenant.agent.id}/monitored-services", headers=h(tech), json=body)
    assert resp.status_code == 422, resp.text
    assert resp.json()["field"] == field


async def test_customers_read_their_own_and_staff_write(client: httpx.AsyncClient, api: ApiServer,
                                                        api_conn: Any) -> None:
    tenant = await factories.tenant(api_conn)
    other = await factories.tenant(api_conn)
    customer = api.token("customer", user_id=tenant.customer_id, business_id=tenant.business_id)
    body = {"services": [{"service_name": "nginx"}]}
    mine = await client.get(f"/api/agents/{tenant.agent.id}/monitored-services", headers=h(customer))
    assert mine.status_code == 200
    assert (await client.put(f"/api/agents/{tenant.agent.id}/monitored-services", headers=h(customer),
                             json=body)).status_code == 403
    assert (await client.put(f"/api/businesses/{tenant.business_id}/monitored-services", headers=h(customer),
                             json=body)).status_code == 403
    theirs = await client.get(f"/api/agents/{other.agent.id}/monitored-services", headers=h(customer))
    assert theirs.status_code == 404
    assert (await client.get(f"/api/businesses/{other.business_id}/monitored-services",
                             headers=h(customer))).status_code == 404
