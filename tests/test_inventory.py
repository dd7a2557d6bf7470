"""Software inventory: an agent's full report is upserted, what vanished becomes inactive, the
portal reads it back under tenancy rules (real server, real database)."""

from __future__ import annotations

from typing import Any

import httpx

from tests import factories
from tests.fix_api import ApiServer


def pkg(name: str, version: str | None = "1.0", **extra: Any) -> dict[str, Any]:
    return {"name": name, "version": version, **extra}


async def post(client: httpx.AsyncClient, agent: factories.Agent, software: list[dict[str, Any]]) -> httpx.Response:
    return await client.post(f"/api/agents/{agent.id}/inventory", headers=agent.headers,
                             json={"software": software, "source": "dpkg",
                                   "collected_at": "2026-01-01T00:00:00Z"})


async def test_report_upserts_and_marks_missing_software_inactive(
        client: httpx.AsyncClient, api: ApiServer, api_conn: Any) -> None:
    t = await factories.tenant(api_conn)
    first = [pkg("nginx", "1.22", vendor="Debian"), pkg("openssl", "3.0.1"), pkg("clamav", "1.0"),
             pkg("tzdata", None)]
    resp = await post(client, t.agent, first)
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"received": 4, "added": 4, "updated": 0, "deactivated": 0, "active": 4}

    # nginx upgraded, clamav removed, curl installed, openssl and tzdata unchanged.
    second = [pkg("nginx", "1.24", vendor="Debian"), pkg("openssl", "3.0.1"), pkg("curl", "8.0"),
              pkg("tzdata", None)]
    resp = await post(client, t.agent, second)
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"received": 4, "added": 2, "updated": 2, "deactivated": 2, "active": 4}

    token = api.token("customer", business_id=t.business_id)
    resp = await client.get(f"/api/agents/{t.agent.id}/inventory", headers=api.headers(token))
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["reported_at"] is not None
    assert [(s["name"], s["version"]) for s in body["software"]] == [
        ("curl", "8.0"), ("nginx", "1.24"), ("openssl", "3.0.1"), ("tzdata", None)]
    assert all(s["is_active"] for s in body["software"])

    resp = await client.get(f"/api/agents/{t.agent.id}/inventory?include_inactive=true", headers=api.headers(token))
    everything = {(s["name"], s["version"]): s for s in resp.json()["software"]}
    assert everything[("nginx", "1.22")]["is_active"] is False
    assert everything[("clamav", "1.0")]["is_active"] is False
    assert everything[("clamav", "1.0")]["is_security_software"] is True  # recognised by name
    assert everything[("nginx", "1.24")]["vendor"] == "Debian"

    # The agent detail shows what is installed now.
    resp = await client.get(f"/api/agents/{t.agent.id}", headers=api.headers(token))
    assert resp.status_code == 200, resp.text
    assert [(s["name"], s["version"]) for s in resp.json()["software"]] == [
        ("curl", "8.0"), ("nginx", "1.24"), ("openssl", "3.0.1"), ("tzdata", None)]

    # Re-sending the same report changes nothing but last_seen; one row per (name, version).
    resp = await post(client, t.agent, second)
    assert resp.json() == {"received": 4, "added": 0, "updated": 4, "deactivated": 0, "active": 4}
    cur = await api_conn.execute(
        "SELECT count(*) AS n, count(*) FILTER (WHERE is_active) AS active "
        "FROM agent_software_inventory WHERE agent_device_id = %s", (t.agent.id,))
    assert await cur.fetchone() == {"n": 6, "active": 4}

    # A package that comes back is reactivated, not duplicated.
    resp = await post(client, t.agent, [*second, pkg("clamav", "1.0")])
    assert resp.json()["updated"] == 5 and resp.json()["added"] == 0


async def test_bad_reports_name_the_field(client: httpx.AsyncClient, api_conn: Any) -> None:
    t = await factories.tenant(api_conn)
    resp = await post(client, t.agent, [pkg("a"), pkg("")])
    assert resp.status_code == 422, resp.text
    assert resp.json()["field"] == "software[1].name"
    assert resp.json()["message"].startswith("software[1].name")

    resp = await post(client, t.agent, [pkg("a"), pkg("b", "x" * 101)])
    assert resp.status_code == 422 and resp.json()["field"] == "software[1].version"

    resp = await post(client, t.agent, [pkg("a", "1"), pkg("b", "1"), pkg("a", "1")])
    assert resp.status_code == 422
    assert resp.json()["field"] == "software[2]"
    assert "duplicate of software[0]" in resp.json()["message"]

    resp = await post(client, t.agent, [])
    assert resp.status_code == 422 and resp.json()["field"] == "software"

    resp = await post(client, t.agent, [pkg("a", install_date="yesterday")])
    assert resp.status_code == 422 and resp.json()["field"] == "software[0].install_date"

    cur = await api_conn.execute("SELECT count(*) AS n FROM agent_software_inventory WHERE agent_device_id = %s",
                                 (t.agent.id,))
    assert (await cur.fetchone())["n"] == 0


async def test_tenancy_and_agent_identity(client: httpx.AsyncClient, api: ApiServer, api_conn: Any) -> None:
    mine, other = await factories.tenant(api_conn), await factories.tenant(api_conn)
    assert (await post(client, mine.agent, [pkg("nginx")])).status_code == 200

    # An agent cannot report for another agent.
    resp = await client.post(f"/api/agents/{other.agent.id}/inventory", headers=mine.agent.headers,
                             json={"software": [pkg("evil")]})
    assert resp.status_code == 403
    # No token: refused.
    resp = await client.post(f"/api/agents/{mine.agent.id}/inventory", json={"software": [pkg("x")]})
    assert resp.status_code == 401

    other_customer = api.token("customer", business_id=other.business_id)
    resp = await client.get(f"/api/agents/{mine.agent.id}/inventory", headers=api.headers(other_customer))
    assert resp.status_code == 404
    staff = api.token("technician")
    resp = await client.get(f"/api/agents/{mine.agent.id}/inventory", headers=api.headers(staff))
    assert resp.status_code == 200 and [s["name"] for s in resp.json()["software"]] == ["nginx"]
    # An agent token is not a portal credential.
    resp = await client.get(f"/api/agents/{mine.agent.id}/inventory", headers=mine.agent.headers)
    assert resp.status_code == 401


async def _report(client: httpx.AsyncClient, agent: factories.Agent, source: str | None,
                  software: list[dict[str, Any]]) -> None:
    resp = await client.post(f"/api/agents/{agent.id}/inventory", headers=agent.headers,
                             json={"software": software, "source": source})
    assert resp.status_code == 200, resp.text


async def test_fleet_software_search_orders_versions_like_each_package_manager(
        client: httpx.AsyncClient, api: ApiServer, api_conn: Any) -> None:
    t, other = await factories.tenant(api_conn), await factories.tenant(api_conn)
    old_deb = t.agent
    await api_conn.execute("UPDATE agent_devices SET device_name = 'old-deb' WHERE id = %s", (old_deb.id,))
    new_deb = await factories.agent(api_conn, t.business_id, name="new-deb")
    rpm = await factories.agent(api_conn, t.business_id, name="rpm-box")
    epoch = await factories.agent(api_conn, t.business_id, name="epoch-box")
    await _report(client, old_deb, "dpkg", [pkg("libssl3", "3.0.11-1~deb12u2"), pkg("nginx", "1.22.1-9")])
    await _report(client, new_deb, "dpkg", [pkg("libssl3", "3.0.13-1~deb12u1")])
    # rpm: 3.0.7-27 < 3.0.7-28 although "27" and "28" are compared as numbers; 3.0.13~rc1 < 3.0.13
    await _report(client, rpm, "rpm", [pkg("LibSSL3", "3.0.7-27.el9")])
    await _report(client, epoch, "dpkg", [pkg("libssl3", "1:3.0.1-1")])  # an epoch beats any upstream
    await _report(client, other.agent, "dpkg", [pkg("libssl3", "3.0.2-0ubuntu1")])
    staff = api.headers(api.token("admin"))
    scope = {"business_id": str(t.business_id)}

    async def names(**params: Any) -> set[str]:
        resp = await client.get("/api/software", headers=staff, params={**scope, **params})
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert body["devices"] == len({h["agent_id"] for h in body["hits"]}) and body["truncated"] is False
        return {h["device_name"] for h in body["hits"]}

    everyone = {"old-deb", "new-deb", "rpm-box", "epoch-box"}
    assert await names(name="libssl3") == everyone  # case-insensitive
    assert await names(name="libssl3", version_lt="3.0.13") == {"old-deb", "rpm-box"}
    assert await names(name="libssl3", version_gte="3.0.13") == {"new-deb", "epoch-box"}
    assert await names(name="libssl3", version_gte="3.0.12", version_lt="3.0.14") == {"new-deb"}
    assert await names(name="libssl*", version_lt="3.0.13~") == {"old-deb", "rpm-box"}
    assert await names(name="ngin_") == set()  # "_" is a literal, only "*" is a wildcard
    hit = (await client.get("/api/software", headers=staff, params={**scope, "name": "nginx"})).json()["hits"][0]
    assert hit["version_scheme"] == "deb" and hit["version"] == "1.22.1-9"
    resp = await client.get("/api/software", headers=staff, params={"name": "libssl3", "version_lt": "~~~"})
    assert resp.status_code == 422 and resp.json()["field"] == "version_lt"
    # a customer sees their own business only, and another's id is a 404
    customer = api.headers(api.token("customer", user_id=other.customer_id, business_id=other.business_id))
    mine = (await client.get("/api/software", headers=customer, params={"name": "libssl3"})).json()
    assert {h["agent_id"] for h in mine["hits"]} == {str(other.agent.id)}
    resp = await client.get("/api/software", headers=customer, params={**scope, "name": "libssl3"})
    assert resp.status_code == 404


async def test_outdated_agents_are_those_older_than_the_served_agent(
        client: httpx.AsyncClient, api: ApiServer, api_conn: Any) -> None:
    t = await factories.tenant(api_conn)
    current = (await client.get("/agent/package")).json()["version"]
    fresh = await factories.agent(api_conn, t.business_id, name="fresh")
    await api_conn.execute("UPDATE agent_devices SET agent_version = %s WHERE id = %s", (current, fresh.id))
    await api_conn.execute("UPDATE agent_devices SET agent_version = '0.0.9' WHERE id = %s", (t.agent.id,))
    resp = await client.get("/api/software/outdated-agents", headers=api.headers(api.token("admin")),
                            params={"business_id": str(t.business_id)})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["served_version"] == current
    assert [a["agent_id"] for a in body["agents"]] == [str(t.agent.id)]
