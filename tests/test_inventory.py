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
