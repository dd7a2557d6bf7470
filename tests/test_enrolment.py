"""Registration tokens and registration, against the real API and database."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any
from uuid import UUID

import httpx
import pytest

from tests import factories
from tests.fix_api import ApiServer

pytestmark = pytest.mark.asyncio


async def _token(http: httpx.AsyncClient, api: ApiServer, business_id: UUID, **body: Any) -> dict[str, Any]:
    resp = await http.post("/api/agents/registration-tokens", headers=api.headers(api.token("admin")),
                           json={"business_id": str(business_id), **body})
    assert resp.status_code == 201, resp.text
    return resp.json()  # type: ignore[no-any-return]


def _system(token: str, **extra: Any) -> dict[str, Any]:
    return {"token": token, "hostname": "host-1", "os_type": "linux", "agent_version": "1.2.3", **extra}


async def test_token_is_high_entropy_hashed_and_points_install_at_this_server(
    client: httpx.AsyncClient, api: ApiServer, api_conn: Any
) -> None:
    biz = await factories.business(api_conn)
    loc = await factories.location(api_conn, biz)
    body = await _token(client, api, biz, service_location_id=str(loc), device_name="Front desk",
                        expires_in_hours=2)
    token = body["token"]
    assert token.startswith("AGT-") and len(token.replace("-", "")) - 3 >= 40  # 160 bits of hex
    assert body["install_command_linux"] == f"curl -fsSL {api.url}/install.sh | sudo bash -s {token}"
    assert api.url in body["install_command_windows"] and token in body["install_command_windows"]
    assert body["install_command"] == body["install_command_linux"]
    row = await (await api_conn.execute(
        "SELECT *, expires_at - created_at AS ttl FROM agent_registration_tokens WHERE id = %s", (body["id"],)
    )).fetchone()
    assert row["token_hash"] == hashlib.sha256(token.encode()).hexdigest()
    assert token not in {str(v) for v in row.values()}  # only the hash is stored
    assert row["ttl"].total_seconds() == pytest.approx(7200, abs=5)
    assert row["service_location_id"] == loc and row["device_name"] == "Front desk"


async def test_two_tokens_differ(client: httpx.AsyncClient, api: ApiServer, api_conn: Any) -> None:
    biz = await factories.business(api_conn)
    assert (await _token(client, api, biz))["token"] != (await _token(client, api, biz))["token"]


@pytest.mark.parametrize(("body", "field"), [
    ({"expires_in_hours": 0}, "expires_in_hours"),
    ({"expires_in_hours": "soon"}, "expires_in_hours"),
    ({"device_name": ""}, "device_name"),
    ({"service_location_id": "not-a-uuid"}, "service_location_id"),
])
async def test_token_request_validation_names_the_field(
    client: httpx.AsyncClient, api: ApiServer, api_conn: Any, body: dict[str, Any], field: str
) -> None:
    biz = await factories.business(api_conn)
    resp = await client.post("/api/agents/registration-tokens", headers=api.headers(api.token("admin")),
                             json={"business_id": str(biz), **body})
    assert resp.status_code == 422, resp.text
    assert resp.json()["field"] == field and resp.json()["message"].startswith(f"{field}: ")


async def test_token_location_must_belong_to_the_business(
    client: httpx.AsyncClient, api: ApiServer, api_conn: Any
) -> None:
    biz, other = await factories.business(api_conn), await factories.business(api_conn)
    foreign_loc = await factories.location(api_conn, other)
    admin = api.headers(api.token("admin"))
    resp = await client.post("/api/agents/registration-tokens", headers=admin,
                             json={"business_id": str(biz), "service_location_id": str(foreign_loc)})
    assert resp.status_code == 422 and resp.json()["field"] == "service_location_id"
    resp = await client.post("/api/agents/registration-tokens", headers=admin,
                             json={"business_id": "00000000-0000-0000-0000-000000000001"})
    assert resp.status_code == 422 and resp.json()["field"] == "business_id"
    resp = await client.post("/api/agents/registration-tokens", headers=admin, json={})
    assert resp.status_code == 422 and resp.json()["field"] == "business_id"


async def test_register_returns_credential_location_and_config(
    client: httpx.AsyncClient, api: ApiServer, api_conn: Any
) -> None:
    biz = await factories.business(api_conn)
    loc = await factories.location(api_conn, biz)
    tok = await _token(client, api, biz, service_location_id=str(loc), device_name="Till 2")
    resp = await client.post("/api/agents/register", json=_system(
        tok["token"], system_info={"cpu_model": "Ryzen", "total_memory_gb": "16", "ip_address": "10.0.0.9"}))
    assert resp.status_code == 201, resp.text
    body = resp.json()
    assert body["agent_token"].startswith("rtsa_")
    assert body["business_id"] == str(biz) and body["service_location_id"] == str(loc)
    assert body["api_url"] == api.url + "/api"
    assert body["websocket_url"] == api.url.replace("http://", "ws://") + "/ws"
    assert body["config"]["config_version"] == 1
    row = await (await api_conn.execute(
        "SELECT d.*, host(ip_address) AS ip FROM agent_devices d WHERE id = %s", (body["agent_id"],))).fetchone()
    assert row["device_name"] == "Till 2" and row["hostname"] == "host-1" and row["agent_version"] == "1.2.3"
    assert row["cpu_model"] == "Ryzen" and float(row["total_memory_gb"]) == 16 and row["ip"] == "10.0.0.9"
    assert row["agent_token_hash"] == hashlib.sha256(body["agent_token"].encode()).hexdigest()
    assert row["status"] == "online"
    transitions = await (await api_conn.execute(
        "SELECT from_status, to_status, reason FROM agent_status_transitions WHERE agent_device_id = %s",
        (body["agent_id"],))).fetchall()
    assert transitions == [{"from_status": None, "to_status": "online", "reason": "registered"}]
    # The credential works at once, and only for this agent.
    hb = await client.post(f"/api/agents/{body['agent_id']}/heartbeat",
                           headers={"Authorization": f"Bearer {body['agent_token']}"}, json={})
    assert hb.status_code == 200, hb.text


async def test_registered_device_name_defaults_to_hostname(
    client: httpx.AsyncClient, api: ApiServer, api_conn: Any
) -> None:
    biz = await factories.business(api_conn)
    tok = await _token(client, api, biz)
    body = (await client.post("/api/agents/register", json=_system(tok["token"], hostname="NAS-01"))).json()
    row = await (await api_conn.execute(
        "SELECT device_name, service_location_id FROM agent_devices WHERE id = %s", (body["agent_id"],))).fetchone()
    assert row == {"device_name": "NAS-01", "service_location_id": None}


async def test_used_expired_revoked_unknown_tokens_say_which(
    client: httpx.AsyncClient, api: ApiServer, api_conn: Any
) -> None:
    biz = await factories.business(api_conn)
    used, expired, revoked = [await _token(client, api, biz) for _ in range(3)]
    assert (await client.post("/api/agents/register", json=_system(used["token"]))).status_code == 201
    await api_conn.execute(
        "UPDATE agent_registration_tokens SET created_at = now() - interval '2 hours', "
        "expires_at = now() - interval '1 second' WHERE id = %s", (expired["id"],))
    admin = api.headers(api.token("technician"))
    assert (await client.delete(f"/api/agents/registration-tokens/{revoked['id']}", headers=admin)).status_code == 204
    cases = [(used["token"], "used"), (expired["token"], "expired"), (revoked["token"], "revoked"),
             ("AGT-00000000-00000000-00000000-00000000-00000000", "unknown"),
             ("rtsa_not-a-registration-token", "unknown")]
    for token, reason in cases:
        resp = await client.post("/api/agents/register", json=_system(token))
        assert resp.status_code == 401, (reason, resp.text)
        assert resp.json()["message"] == f"registration token {reason}"
        assert resp.json()["reason"] == reason and resp.json()["code"] == "unauthorized"
    # None of the refused attempts created a device.
    count = await (await api_conn.execute(
        "SELECT count(*) AS n FROM agent_devices WHERE business_id = %s", (biz,))).fetchone()
    assert count["n"] == 1


async def test_concurrent_registrations_with_one_token_exactly_one_wins(
    api: ApiServer, api_conn: Any
) -> None:
    biz = await factories.business(api_conn)
    async with api.client() as http:
        tok = await _token(http, api, biz)
    clients = [api.client() for _ in range(8)]
    try:
        # Separate connections, fired together: the single-use gate is the database, not luck.
        results = await asyncio.gather(*[
            c.post("/api/agents/register", json=_system(tok["token"], hostname=f"racer-{i}"))
            for i, c in enumerate(clients)])
    finally:
        for c in clients:
            await c.aclose()
    codes = sorted(r.status_code for r in results)
    assert codes == [201] + [401] * 7, [r.text for r in results]
    assert {r.json()["reason"] for r in results if r.status_code == 401} == {"used"}
    rows = await (await api_conn.execute(
        "SELECT d.id FROM agent_devices d WHERE business_id = %s", (biz,))).fetchall()
    winner = next(r.json() for r in results if r.status_code == 201)
    assert [r["id"] for r in rows] == [UUID(winner["agent_id"])]
    used_by = await (await api_conn.execute(
        "SELECT used_by_agent_id FROM agent_registration_tokens WHERE id = %s", (tok["id"],))).fetchone()
    assert used_by["used_by_agent_id"] == UUID(winner["agent_id"])


@pytest.mark.parametrize(("extra", "field"), [
    ({"ip_address": "999.1.1.1"}, "ip_address"),
    ({"mac_address": "zz:zz:zz:zz:zz:zz"}, "mac_address"),
    ({"total_disk_gb": -1}, "total_disk_gb"),
    ({"system_info": {"total_memory_gb": "lots"}}, "system_info.total_memory_gb"),
    ({"system_info": {"ip_address": "nope"}}, "ip_address"),
    ({"hostname": ""}, "hostname"),
])
async def test_bad_system_info_is_a_field_error_and_does_not_spend_the_token(
    client: httpx.AsyncClient, api: ApiServer, api_conn: Any, extra: dict[str, Any], field: str
) -> None:
    biz = await factories.business(api_conn)
    tok = await _token(client, api, biz)
    resp = await client.post("/api/agents/register", json=_system(tok["token"], **extra))
    assert resp.status_code == 422, resp.text
    assert resp.json()["field"] == field
    assert (await client.post("/api/agents/register", json=_system(tok["token"]))).status_code == 201


async def test_missing_required_register_field(client: httpx.AsyncClient) -> None:
    resp = await client.post("/api/agents/register", json={"token": "AGT-x", "hostname": "h"})
    assert resp.status_code == 422 and resp.json()["field"] == "os_type"
    assert "os_type" in resp.json()["message"]


async def test_list_shows_state_never_the_token_and_filters(
    client: httpx.AsyncClient, api: ApiServer, api_conn: Any
) -> None:
    biz = await factories.business(api_conn)
    active, used, revoked = [await _token(client, api, biz) for _ in range(3)]
    await client.post("/api/agents/register", json=_system(used["token"]))
    staff = api.headers(api.token("technician"))
    await client.delete(f"/api/agents/registration-tokens/{revoked['id']}", headers=staff)
    resp = await client.get(f"/api/agents/registration-tokens?business_id={biz}", headers=staff)
    assert resp.status_code == 200, resp.text
    listed = resp.json()["registration_tokens"]
    states = {t["id"]: t["state"] for t in listed}
    assert states == {active["id"]: "active", used["id"]: "used", revoked["id"]: "revoked"}
    for t in listed:
        assert "token" not in t and t["token_hint"].startswith("AGT-") and len(t["token_hint"]) == 8
    assert active["token"] not in resp.text
    only_active = await client.get(f"/api/agents/registration-tokens?business_id={biz}&state=active",
                                   headers=staff)
    assert [t["id"] for t in only_active.json()["registration_tokens"]] == [active["id"]]
    bad = await client.get("/api/agents/registration-tokens?state=shiny", headers=staff)
    assert bad.status_code == 422 and bad.json()["field"] == "state"


async def test_revoke_used_or_unknown_token_is_404_and_revoke_is_idempotent(
    client: httpx.AsyncClient, api: ApiServer, api_conn: Any
) -> None:
    biz = await factories.business(api_conn)
    used, other = await _token(client, api, biz), await _token(client, api, biz)
    await client.post("/api/agents/register", json=_system(used["token"]))
    staff = api.headers(api.token("admin"))
    assert (await client.delete(f"/api/agents/registration-tokens/{used['id']}", headers=staff)).status_code == 404
    missing = "/api/agents/registration-tokens/00000000-0000-0000-0000-000000000000"
    assert (await client.delete(missing, headers=staff)).status_code == 404
    for _ in range(2):
        assert (await client.delete(f"/api/agents/registration-tokens/{other['id']}", headers=staff)).status_code == 204
