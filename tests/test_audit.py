"""The audit log: staff actions are recorded in the transaction that makes them, readable by staff
with filters, invisible to customers, and never editable (the database refuses it)."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from tests import factories
from tests.fix_api import ApiServer


async def _entries(client: Any, headers: dict[str, str], **params: Any) -> list[dict[str, Any]]:
    resp = await client.get("/api/admin/audit", headers=headers, params=params)
    assert resp.status_code == 200, resp.text
    return list(resp.json()["entries"])


async def test_staff_actions_are_recorded_with_who_what_and_before_after(api: ApiServer, client: Any,
                                                                         api_conn: Any) -> None:
    t = await factories.tenant(api_conn)
    tech = await factories.user(api_conn, None, "technician")
    admin = await factories.user(api_conn, None, "admin")
    th = api.headers(api.token("technician", user_id=tech))
    ah = api.headers(api.token("admin", user_id=admin))

    created = (await client.post("/api/agents/registration-tokens", headers=ah,
                                 json={"business_id": str(t.business_id), "device_name": "till-3"})).json()
    assert (await client.delete(f"/api/agents/registration-tokens/{created['id']}", headers=ah)).status_code == 204
    assert (await client.patch(f"/api/agents/{t.agent.id}", headers=th, json={"disabled": True})).status_code == 200
    cmd = (await client.post(f"/api/agents/{t.agent.id}/commands", headers=th, json={
        "command_type": "run_script", "params": {"interpreter": "bash", "script": "uptime"}})).json()
    assert (await client.post(f"/api/agents/{t.agent.id}/commands/{cmd['id']}/reject", headers=ah,
                              json={"reason": "not today"})).status_code == 200
    assert (await client.post(f"/api/agents/{t.agent.id}/token/revoke", headers=th)).status_code == 204

    mine = await _entries(client, ah, business_id=str(t.business_id))
    actions = [e["action"] for e in reversed(mine)]
    assert actions == ["registration_token.create", "registration_token.revoke", "agent.update", "command.reject",
                       "agent.token_revoked"]
    reject = next(e for e in mine if e["action"] == "command.reject")
    assert reject["actor_user_id"] == str(admin) and reject["actor_role"] == "admin"
    assert reject["object_id"] == cmd["id"] and reject["before"] == {"status": "pending"}
    assert reject["detail"]["reason"] == "not today" and reject["detail"]["command_type"] == "run_script"
    update = next(e for e in mine if e["action"] == "agent.update")
    assert update["before"] == {"status": "online"} and update["after"] == {"disabled": True}
    assert update["actor_user_id"] == str(tech)
    # filters: by action family, by actor, by object; paging
    assert [e["action"] for e in await _entries(client, ah, action="registration_token")] [:2] == [
        "registration_token.revoke", "registration_token.create"]
    assert {e["actor_user_id"] for e in await _entries(client, ah, actor_user_id=str(tech))} == {str(tech)}
    assert [e["action"] for e in await _entries(client, ah, object_type="command", object_id=cmd["id"])] == [
        "command.reject"]
    page = (await client.get("/api/admin/audit", headers=ah, params={"business_id": str(t.business_id),
                                                                     "limit": 2})).json()
    assert len(page["entries"]) == 2 and page["next_before_id"] == page["entries"][-1]["id"]
    rest = await _entries(client, ah, business_id=str(t.business_id), before_id=page["next_before_id"])
    assert [e["id"] for e in page["entries"] + rest] == [e["id"] for e in mine]


async def test_customers_cannot_read_it_and_nobody_can_change_it(api: ApiServer, client: Any,
                                                                 api_conn: Any) -> None:
    t = await factories.tenant(api_conn)
    customer = api.headers(api.token("customer", user_id=t.customer_id, business_id=t.business_id))
    assert (await client.get("/api/admin/audit", headers=customer)).status_code == 403
    await client.post(f"/api/agents/{t.agent.id}/token/revoke", headers=api.headers(api.token("admin")))
    for statement in ("UPDATE audit_log SET action = 'nothing.happened'", "DELETE FROM audit_log",
                      "TRUNCATE audit_log"):
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
            await api_conn.execute(statement)
