"""The plan's request examples, verbatim, against a freshly started server.

Registration token → register → heartbeat → list → detail, sending the JSON bodies exactly as
the plan (../shared/seed/000_b697826d30760799.txt) writes them; only the placeholder ids and
tokens are substituted, and the bearer tokens added. Responses must carry every field the
plan's response examples show.
"""

from __future__ import annotations

import json
from typing import Any

import httpx

from tests import factories
from tests.fix_api import ApiServer

# "Registration Flow", step 1 (identical in "API ENDPOINT DETAILS").
TOKEN_REQUEST = """
   {
     "business_id": "uuid-of-client-business",
     "service_location_id": "uuid-of-site",  // optional
     "device_name": "Office Server 1",
     "expires_in_hours": 24
   }
"""
# "Registration Flow", step 3.
REGISTER_FLAT = """
   {
     "token": "AGT-xxxx-xxxx-xxxx",
     "hostname": "OFFICE-SERVER-01",
     "os_type": "windows",
     "os_version": "Windows Server 2022",
     "os_architecture": "x64",
     "ip_address": "192.168.1.100",
     "mac_address": "00:1A:2B:3C:4D:5E",
     "cpu_model": "Intel Xeon E5-2680",
     "total_memory_gb": 32,
     "total_disk_gb": 512
   }
"""
# "API ENDPOINT DETAILS", POST /api/agents/register (its `/* ... */` is an empty object here).
REGISTER_NESTED = """
{
  "token": "AGT-a1b2c3d4-e5f6-7890",
  "hostname": "OFFICE-SERVER-01",
  "os_type": "windows",
  "os_version": "Windows Server 2022",
  "system_info": { }
}
"""
HEARTBEAT = """
{
  "timestamp": "2025-10-09T10:30:00Z",
  "status": "online",
  "agent_version": "1.0.0"
}
"""

TOKEN_RESPONSE_FIELDS = {"token", "expires_at", "install_command_windows", "install_command_linux",
                         "install_command"}
REGISTER_RESPONSE_FIELDS = {"agent_id", "agent_token", "business_id", "service_location_id", "api_url",
                            "websocket_url", "heartbeat_interval_seconds", "metrics_interval_seconds", "config"}
CONFIG_FIELDS = {"heartbeat_interval_seconds", "metrics_interval_seconds", "websocket_url"}
LIST_ITEM_FIELDS = {"id", "device_name", "business", "service_location", "status", "last_heartbeat", "os_type",
                    "cpu_percent", "memory_percent", "disk_percent"}
DETAIL_FIELDS = {"id", "business_id", "service_location_id", "device_name", "os_type", "os_version",
                 "agent_version", "status", "last_heartbeat", "current_metrics", "active_alerts",
                 "monitored_services"}


def _body(text: str, **subs: str) -> dict[str, Any]:
    """The plan's text as JSON: `// comments` dropped, placeholders replaced."""
    lines = [line.split("  //")[0] for line in text.splitlines()]
    text = "\n".join(lines)
    for old, new in subs.items():
        text = text.replace(old, new)
    return json.loads(text)  # type: ignore[no-any-return]


async def test_plan_flow_verbatim(api: ApiServer, api_conn: Any) -> None:
    biz = await factories.business(api_conn, "Acme Corp")
    site = await factories.location(api_conn, biz, "Main Office")
    requester = await factories.user(api_conn, None, "admin")
    admin = api.headers(api.token("admin", user_id=requester))
    async with api.client() as http:
        # 1. registration token (admin), twice: one per register example.
        tokens = []
        for _ in range(2):
            resp = await http.post("/api/agents/registration-tokens", headers=admin,
                                   json=_body(TOKEN_REQUEST, **{"uuid-of-client-business": str(biz),
                                                               "uuid-of-site": str(site)}))
            assert resp.status_code == 201, resp.text
            assert set(resp.json()) >= TOKEN_RESPONSE_FIELDS
            tokens.append(resp.json()["token"])
        assert tokens[0].startswith("AGT-") and api.url in resp.json()["install_command_linux"]

        # 2. register, with the flow example and with the API-details example.
        reg = await http.post("/api/agents/register", json=_body(REGISTER_FLAT, **{"AGT-xxxx-xxxx-xxxx": tokens[0]}))
        assert reg.status_code == 201, reg.text
        registered = reg.json()
        assert set(registered) >= REGISTER_RESPONSE_FIELDS
        assert set(registered["config"]) >= CONFIG_FIELDS
        assert registered["business_id"] == str(biz) and registered["service_location_id"] == str(site)
        assert registered["heartbeat_interval_seconds"] == 300 and registered["metrics_interval_seconds"] == 300
        reg2 = await http.post("/api/agents/register",
                               json=_body(REGISTER_NESTED, **{"AGT-a1b2c3d4-e5f6-7890": tokens[1]}))
        assert reg2.status_code == 201, reg2.text

        agent_id = registered["agent_id"]
        agent_headers = {"Authorization": f"Bearer {registered['agent_token']}"}
        # Two deliverable pending commands, like the plan's heartbeat answer, plus two that are not.
        for approval, approved, status in [(False, False, "pending"), (True, True, "pending"),
                                           (True, False, "pending"), (False, False, "completed")]:
            await api_conn.execute(
                "INSERT INTO agent_commands (agent_device_id, command_type, status, requested_by, "
                "approval_required, approved_at) VALUES (%s, 'restart_service', %s, %s, %s, "
                "CASE WHEN %s THEN now() END)", (agent_id, status, requester, approval, approved))

        # 3. heartbeat with the agent's token.
        hb = await http.post(f"/api/agents/{agent_id}/heartbeat", headers=agent_headers, json=_body(HEARTBEAT))
        assert hb.status_code == 200, hb.text
        assert hb.json()["config_updated"] is False and hb.json()["pending_commands"] == 2

        # 4. list, with the plan's query parameters (a customer of that business).
        customer = api.headers(api.token("customer", business_id=biz))
        listed = await http.get(f"/api/agents?business_id={biz}&status=online,offline&service_location_id={site}",
                                headers=customer)
        assert listed.status_code == 200, listed.text
        items = {a["id"]: a for a in listed.json()["agents"]}
        assert set(items) == {agent_id, reg2.json()["agent_id"]}
        item = items[agent_id]
        assert set(item) >= LIST_ITEM_FIELDS
        assert item["business"] == {"id": str(biz), "business_name": "Acme Corp"}
        assert item["service_location"] == {"id": str(site), "location_name": "Main Office"}
        assert item["device_name"] == "Office Server 1" and item["status"] == "online"
        assert item["os_type"] == "windows"

        # 5. detail.
        detail = await http.get(f"/api/agents/{agent_id}", headers=customer)
        assert detail.status_code == 200, detail.text
        body = detail.json()
        assert set(body) >= DETAIL_FIELDS
        assert body["agent_version"] == "1.0.0" and body["os_version"] == "Windows Server 2022"
        assert body["hostname"] == "OFFICE-SERVER-01" and body["ip_address"] == "192.168.1.100"
        assert body["mac_address"] == "00:1A:2B:3C:4D:5E" and body["total_memory_gb"] == 32


async def test_openapi_documents_the_plan_endpoints(client: httpx.AsyncClient) -> None:
    paths = (await client.get("/schema/openapi.json")).json()["paths"]
    for path in ("/api/agents/registration-tokens", "/api/agents/register", "/api/agents/{agent_id}/heartbeat",
                 "/api/agents", "/api/agents/{agent_id}"):
        assert path in paths, sorted(paths)
