"""The audit log: staff actions are recorded in the transaction that makes them, readable by staff
with filters, invisible to customers, and never editable (the database refuses it)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
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


async def test_rules_maintenance_tiers_and_token_rotation_are_recorded_before_and_after(
        api_factory: Any, conn: Any) -> None:
    server: ApiServer = api_factory()  # its own database: tier settings are changed here
    t = await factories.tenant(conn)
    tech = await factories.user(conn, None, "technician")
    admin_id = await factories.user(conn, None, "admin")
    th = server.headers(server.token("technician", user_id=tech))
    ah = server.headers(server.token("admin", user_id=admin_id))
    start = datetime.now(UTC) + timedelta(hours=1)
    async with server.client() as c:
        rule = (await c.post("/api/alerts/rules", headers=th, json={
            "alert_name": "cpu_high", "severity": "warning", "business_id": str(t.business_id),
            "conditions": {"metric": "cpu_percent", "operator": ">", "threshold": 90, "duration_minutes": 10}})).json()
        rule_path = f"/api/alerts/rules/{rule['id']}"
        resp = await c.patch(rule_path, headers=th, json={"severity": "critical"})
        assert resp.status_code == 200, resp.text
        assert (await c.post(rule_path + "/disable", headers=th)).status_code == 200
        assert (await c.post(rule_path + "/enable", headers=th)).status_code == 200
        assert (await c.delete(rule_path, headers=th)).status_code == 204
        # A refused change leaves no entry: the entry is written in the change's transaction.
        resp = await c.patch(rule_path, headers=th, json={"severity": "critical"})
        assert resp.status_code == 404

        window = (await c.post("/api/alerts/maintenance", headers=th, json={
            "business_id": str(t.business_id), "starts_at": start.isoformat(),
            "ends_at": (start + timedelta(hours=2)).isoformat(), "reason": "patching"})).json()
        window_path = f"/api/alerts/maintenance/{window['id']}"
        resp = await c.patch(window_path, headers=th, json={"reason": "patching, and a reboot"})
        assert resp.status_code == 200, resp.text
        assert (await c.delete(window_path, headers=th)).status_code == 204

        assert (await c.post(f"/api/agents/{t.agent.id}/rotate-token", headers=th)).status_code == 202

        resp = await c.put("/api/admin/tiers/agent_metrics_1d/retention", headers=ah, json={"retention": "5 years"})
        assert resp.status_code == 200, resp.text
        compression = await c.put("/api/admin/tiers/compression", headers=ah, json={"compress_after": "14 days"})
        assert compression.status_code in (200, 409), compression.text  # 409: not the timescale license

        mine = await _entries(c, ah, business_id=str(t.business_id))
        assert [e["action"] for e in reversed(mine)] == [
            "alert_rule.create", "alert_rule.update", "alert_rule.disable", "alert_rule.enable", "alert_rule.delete",
            "maintenance_window.create", "maintenance_window.update", "maintenance_window.delete",
            "agent_token.rotate"]
        assert all(e["actor_user_id"] == str(tech) and e["actor_role"] == "technician" for e in mine)
        by = {e["action"]: e for e in mine}
        assert by["alert_rule.create"]["before"] is None and by["alert_rule.create"]["after"]["id"] == rule["id"]
        update = by["alert_rule.update"]
        assert (update["before"]["severity"], update["after"]["severity"]) == ("warning", "critical")
        assert (by["alert_rule.disable"]["before"]["is_active"], by["alert_rule.disable"]["after"]["is_active"]) == (
            True, False)
        assert by["alert_rule.enable"]["after"]["is_active"] is True
        assert by["alert_rule.delete"]["before"]["alert_name"] == "cpu_high"
        assert by["alert_rule.delete"]["after"] is None
        assert {e["object_id"] for e in mine if e["object_type"] == "alert_rule"} == {rule["id"]}
        assert by["maintenance_window.create"]["after"]["reason"] == "patching"
        assert by["maintenance_window.update"]["before"]["reason"] == "patching"
        assert by["maintenance_window.update"]["after"]["reason"] == "patching, and a reboot"
        assert by["maintenance_window.delete"]["before"]["id"] == window["id"]
        assert by["maintenance_window.delete"]["after"] is None
        rotate = by["agent_token.rotate"]
        assert rotate["object_id"] == str(t.agent.id) and rotate["after"]["rotation_requested_at"]

        tiers = await _entries(c, ah, object_type="tier")
        retention = next(e for e in tiers if e["action"] == "tier.retention")
        assert retention["actor_user_id"] == str(admin_id) and retention["object_id"] == "agent_metrics_1d"
        assert retention["before"]["retention"] != retention["after"]["retention"] == "1825 days, 0:00:00"
        changed = [e for e in tiers if e["action"] == "tier.compression"]
        if compression.status_code == 200:
            assert changed[0]["after"] == {"level": "agent_metrics", "compress_after": "14 days, 0:00:00"}
            assert changed[0]["before"]["compress_after"] != "14 days, 0:00:00"
        else:
            assert changed == []  # refused: nothing was changed, nothing recorded
