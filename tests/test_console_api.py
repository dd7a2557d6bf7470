"""The console over HTTP (no browser): sign-in flows, sessions, CSRF, error pages, the bulk
endpoint and the live channel, against real ``rts-monitor serve`` processes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import bcrypt
import httpx
import pytest

from rts_monitor.console import live, sessions
from rts_monitor.core.settings import Settings
from tests import factories
from tests.fix_api import ApiServer, free_port

PASSWORD = "correct horse battery staple"
_HASH = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()  # cost 4: tests, not security


async def portal_user(conn: Any, *, role: str = "customer", business_id: UUID | None = None,
                      active: bool = True, deleted: bool = False, password_hash: str | None = _HASH) -> str:
    email = f"user-{uuid4().hex[:10]}@Example.test"
    await conn.execute(
        "INSERT INTO users (email, role, business_id, password_hash, is_active, soft_delete) "
        "VALUES (%s, %s, %s, %s, %s, %s)", (email, role, business_id, password_hash, active, deleted))
    return email


def csrf_of(html: str) -> str:
    m = re.search(r'<meta name="csrf-token" content="([^"]+)"', html)
    assert m, "page has no CSRF token"
    return m[1]


@contextlib.asynccontextmanager
async def signed_in(api: ApiServer, role: str = "admin", *, business_id: UUID | None = None,
                    user_id: UUID | None = None) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    """A client holding a console session from the portal hand-off, and the session's CSRF token."""
    async with api.client() as client:
        token = api.token(role, business_id=business_id, user_id=user_id)
        r = await client.get("/console/auth", params={"token": token})
        assert r.status_code == 303, r.text
        page = await client.get("/console/")
        assert page.status_code == 200, page.text[:500]
        yield client, csrf_of(page.text)


async def login_form(client: httpx.AsyncClient, next_path: str = "/console/") -> str:
    r = await client.get("/console/login", params={"next": next_path})
    assert r.status_code == 200
    m = re.search(r'name="form_token" value="([^"]+)"', r.text)
    assert m
    return m[1]


async def password_sign_in(client: httpx.AsyncClient, email: str, password: str,
                           next_path: str = "/console/") -> httpx.Response:
    form_token = await login_form(client, next_path)
    return await client.post("/console/login", data={"email": email, "password": password, "next": next_path,
                                                      "form_token": form_token})


# --- hand-off --------------------------------------------------------------------------------------


async def test_handoff_sets_a_lax_httponly_cookie_and_leaves_the_token_out_of_the_address(api: ApiServer) -> None:
    async with api.client() as client:
        token = api.token("admin")
        r = await client.get("/console/auth", params={"token": token, "next": "/console/admin?x=1"})
        assert r.status_code == 303
        assert r.headers["location"] == "/console/admin?x=1"  # the token is not carried on
        assert r.headers["referrer-policy"] == "no-referrer"
        cookie = next(v for k, v in r.headers.multi_items() if k == "set-cookie" and v.startswith(sessions.COOKIE))
        flags = {p.strip().lower() for p in cookie.split(";")}
        assert "httponly" in flags and "samesite=lax" in flags and "path=/" in flags
        assert "secure" not in flags  # plain http here; see test_secure_cookies_follow_https
        assert (await client.get("/console/admin?x=1")).status_code == 200


@pytest.mark.parametrize("next_path", ["https://evil.example/", "//evil.example/x", "/\\evil.example",
                                       "/api/agents", "javascript:alert(1)", "/console/\r\nSet-Cookie: x=1"])
async def test_handoff_never_redirects_off_the_console(api: ApiServer, next_path: str) -> None:
    async with api.client() as client:
        r = await client.get("/console/auth", params={"token": api.token("admin"), "next": next_path})
        assert r.status_code == 303
        assert r.headers["location"] == "/console/"


def test_secure_cookies_follow_https() -> None:
    plain = Settings(public_url="http://monitor.example")
    assert not sessions.is_secure(plain, "http")
    assert sessions.is_secure(plain, "https")
    assert sessions.is_secure(Settings(public_url="https://monitor.example"), "http")  # TLS ends at a proxy


async def test_handoff_refuses_what_the_api_refuses(api: ApiServer) -> None:
    expired = api.token("admin", ttl_seconds=-120)
    async with api.client() as client:
        for token in ["", "not-a-jwt", expired, "rtsa_" + "x" * 40]:
            r = await client.get("/console/auth", params={"token": token})
            assert r.status_code == 401
            assert "sign-in link is not valid" in r.text
            assert sessions.COOKIE not in r.cookies
        assert (await client.get("/console/")).status_code == 303  # still signed out


# --- e-mail and password -----------------------------------------------------------------------------


async def test_password_sign_in_and_one_answer_for_every_refusal(api: ApiServer, api_conn: Any) -> None:
    biz = await factories.business(api_conn)
    good = await portal_user(api_conn, business_id=biz)
    inactive = await portal_user(api_conn, business_id=biz, active=False)
    deleted = await portal_user(api_conn, business_id=biz, deleted=True)
    no_password = await portal_user(api_conn, business_id=biz, password_hash=None)
    no_business = await portal_user(api_conn, business_id=None)  # a customer needs one
    async with api.client() as client:
        bodies = set()
        for email, password in [(good, "wrong"), ("nobody@example.test", PASSWORD), (inactive, PASSWORD),
                                (deleted, PASSWORD), (no_password, PASSWORD), (no_business, PASSWORD)]:
            r = await password_sign_in(client, email, password)
            assert r.status_code == 401, (email, r.status_code)
            bodies.add(re.search(r'<p class="error"[^>]*>([^<]+)</p>', r.text)[1])  # type: ignore[index]
        assert bodies == {"E-mail or password is not right."}
        r = await password_sign_in(client, good.upper(), PASSWORD, "/console/admin")  # e-mail case does not matter
        assert r.status_code == 303 and r.headers["location"] == "/console/admin"
        fleet = await client.get("/console/")
        assert fleet.status_code == 200 and "Customer" in fleet.text


async def test_failed_sign_ins_are_limited_per_account(api: ApiServer, api_conn: Any) -> None:
    email = await portal_user(api_conn, role="admin")
    limit = api.settings.console_sign_in_max_per_account
    async with api.client() as client:
        for _ in range(limit):
            assert (await password_sign_in(client, email, "wrong")).status_code == 401
        r = await password_sign_in(client, email, PASSWORD)  # even the right password waits now
        assert r.status_code == 429
        assert "Too many failed sign-ins" in r.text
        assert 0 < int(r.headers["retry-after"]) <= api.settings.console_sign_in_window_minutes * 60
    await api_conn.execute("UPDATE console_sign_in_attempts SET at = at - interval '1 hour'")
    async with api.client() as client:
        assert (await password_sign_in(client, email, PASSWORD)).status_code == 303


async def test_failed_sign_ins_are_limited_per_address(api_factory: Any, conn: Any) -> None:
    server = api_factory(env={"RTS_CONSOLE_SIGN_IN_MAX_PER_ADDRESS": "3"})
    emails = [await portal_user(conn, role="admin") for _ in range(4)]
    async with server.client() as client:
        for email in emails[:3]:  # different accounts, one address
            assert (await password_sign_in(client, email, "wrong")).status_code == 401
        assert (await password_sign_in(client, emails[3], PASSWORD)).status_code == 429


async def test_the_sign_in_form_needs_its_own_token(api: ApiServer, api_conn: Any) -> None:
    email = await portal_user(api_conn, role="admin")
    async with api.client() as client:
        r = await client.post("/console/login", data={"email": email, "password": PASSWORD})
        assert r.status_code == 403 and "form had expired" in r.text
        await login_form(client)
        r = await client.post("/console/login", data={"email": email, "password": PASSWORD, "form_token": "forged"})
        assert r.status_code == 403


# --- sessions ---------------------------------------------------------------------------------------


async def test_idle_and_absolute_expiry_and_sign_out_end_the_session(api: ApiServer, api_conn: Any) -> None:
    user_id = uuid4()
    async with signed_in(api, "admin", user_id=user_id) as (client, csrf):
        await api_conn.execute("UPDATE console_sessions SET last_seen_at = now() - interval '2 hours' "
                               "WHERE user_id = %s", (user_id,))
        r = await client.get("/console/agents/" + str(uuid4()))
        assert r.status_code == 303
        assert r.headers["location"].startswith("/console/login?next=%2Fconsole%2Fagents%2F")
        assert r.headers["location"].endswith("&expired=1")
        scripted = await client.get("/console/data/session", headers={"X-Requested-With": "rts-console"})
        assert scripted.status_code == 401 and "sign_in" in scripted.json()
    async with signed_in(api, "admin", user_id=user_id) as (client, csrf):
        await api_conn.execute("UPDATE console_sessions SET expires_at = now() - interval '1 second' "
                               "WHERE user_id = %s AND ended_at IS NULL", (user_id,))
        assert (await client.get("/console/")).status_code == 303
    async with signed_in(api, "admin", user_id=user_id) as (client, csrf):
        refused = await client.post("/console/logout")  # no CSRF token: refused, still signed in
        assert refused.status_code == 403
        assert (await client.get("/console/")).status_code == 200
        old_cookie = client.cookies[sessions.COOKIE]
        r = await client.post("/console/logout", data={"csrf_token": csrf})
        assert r.status_code == 303 and r.headers["location"] == "/console/login?signed_out=1"
        async with api.client(cookies={sessions.COOKIE: old_cookie}) as replay:  # a copied cookie is dead too
            assert (await replay.get("/console/")).status_code == 303
        cur = await api_conn.execute("SELECT ended_at FROM console_sessions WHERE user_id = %s "
                                     "ORDER BY created_at DESC LIMIT 1", (user_id,))
        assert (await cur.fetchone())["ended_at"] is not None
        assert (await client.get("/console/")).status_code == 303


async def test_a_deactivated_portal_user_loses_the_session(api: ApiServer, api_conn: Any) -> None:
    email = await portal_user(api_conn, role="admin")
    async with api.client() as client:
        assert (await password_sign_in(client, email, PASSWORD)).status_code == 303
        assert (await client.get("/console/")).status_code == 200
        await api_conn.execute("UPDATE users SET is_active = false WHERE email = %s", (email,))
        assert (await client.get("/console/")).status_code == 303


# --- the API with the console's cookie -------------------------------------------------------------------


async def test_api_calls_with_the_cookie_need_the_csrf_token_to_change_anything(api: ApiServer,
                                                                               api_conn: Any) -> None:
    t = await factories.tenant(api_conn)
    body = {"action": "pause_monitoring", "agent_ids": [str(t.agent.id)]}
    async with signed_in(api, "admin") as (client, csrf):
        assert (await client.get(f"/api/agents/{t.agent.id}")).status_code == 200  # reads need no token
        r = await client.post("/api/agents/bulk", json=body)
        assert r.status_code == 403 and "CSRF" in r.json()["message"]
        r = await client.post("/api/agents/bulk", json=body, headers={"X-CSRF-Token": "wrong"})
        assert r.status_code == 403
        r = await client.post("/api/agents/bulk", json=body,
                              headers={"X-CSRF-Token": csrf, "Origin": "https://evil.example"})
        assert r.status_code == 403 and "cross-site" in r.json()["message"]
        cur = await api_conn.execute("SELECT monitoring_enabled FROM agent_devices WHERE id = %s", (t.agent.id,))
        assert (await cur.fetchone())["monitoring_enabled"] is True  # nothing refused changed anything
        r = await client.post("/api/agents/bulk", json=body, headers={"X-CSRF-Token": csrf, "Origin": api.url})
        assert r.status_code == 200 and r.json()["succeeded"] == 1


async def test_a_customer_cookie_sees_what_its_jwt_sees(api: ApiServer, api_conn: Any) -> None:
    mine, other = await factories.tenant(api_conn), await factories.tenant(api_conn)
    async with signed_in(api, "customer", business_id=mine.business_id) as (client, _):
        assert (await client.get(f"/api/agents/{mine.agent.id}")).status_code == 200
        assert (await client.get(f"/api/agents/{other.agent.id}")).status_code == 404
        history = await client.get(f"/api/agents/{other.agent.id}/metrics/history")
        assert history.status_code == 404


# --- pages and errors ---------------------------------------------------------------------------------


async def test_pages_carry_a_csp_without_inline_script(api: ApiServer) -> None:
    async with signed_in(api, "admin") as (client, _):
        r = await client.get("/console/")
        csp = r.headers["content-security-policy"]
        directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
        assert directives["script-src"] == "'self'" and "unsafe-inline" not in csp and "unsafe-eval" not in csp
        assert directives["frame-ancestors"] == api.settings.console_frame_ancestors
        assert r.headers["x-content-type-options"] == "nosniff"
        assert not re.search(r"<[^>]+\son[a-z]+=", r.text)
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", r.text)


async def test_bad_addresses_get_pages_that_say_what_is_wrong(api: ApiServer, api_conn: Any) -> None:
    other = await factories.tenant(api_conn)
    mine = await factories.business(api_conn)
    async with signed_in(api, "customer", business_id=mine) as (client, _):
        for path in ["/console/agents/not-an-id", f"/console/agents/{uuid4()}", f"/console/agents/{other.agent.id}",
                     "/console/no/such/page"]:
            r = await client.get(path)
            assert r.status_code == 404, path
            assert "text/html" in r.headers["content-type"] and "Back to the fleet" in r.text
        r = await client.get("/console/", params={"page": "abc"})
        assert r.status_code == 422 and "<code>page</code>" in r.text
        r = await client.get("/console/", params={"business": str(other.business_id)})
        assert r.status_code == 404  # another business's filter, as on the API
        r = await client.get("/console/businesses")
        assert r.status_code == 403
        r = await client.get("/console/admin")  # the DBA pages: not even confirmed to a customer
        assert r.status_code == 404
        r = await client.get("/console/data/counts", params={"status": "purple"})
        assert r.status_code == 422 and r.json()["field"] == "status"


async def test_assets_are_served_with_types_and_cached_for_good(api: ApiServer) -> None:
    async with signed_in(api, "admin") as (client, _):
        page = (await client.get("/console/")).text
        js = re.search(r'src="(/console/static/console-[^"]+\.js)"', page)[1]  # type: ignore[index]
        css = re.search(r'href="(/console/static/style-[^"]+\.css)"', page)[1]  # type: ignore[index]
    async with api.client() as anonymous:  # assets need no session
        r = await anonymous.get(js)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/javascript")
        assert "immutable" in r.headers["cache-control"]
        assert (await anonymous.get(css)).headers["content-type"].startswith("text/css")
        assert (await anonymous.get("/console/static/manifest.jsonx")).status_code == 404
        assert (await anonymous.get("/console/static/..%2F..%2Fpyproject.toml")).status_code == 404


# --- bulk -------------------------------------------------------------------------------------------


async def test_bulk_actions_answer_per_device(api: ApiServer, api_conn: Any, client: httpx.AsyncClient) -> None:
    t = await factories.tenant(api_conn)
    second = await factories.agent(api_conn, t.business_id, t.location_id)
    admin = api.headers(api.token("admin"))
    unknown = uuid4()
    ids = [str(t.agent.id), str(second.id), str(unknown)]
    r = await client.post("/api/agents/bulk", headers=admin, json={"action": "pause_monitoring", "agent_ids": ids})
    assert r.status_code == 200
    body = r.json()
    assert (body["requested"], body["succeeded"], body["failed"]) == (3, 2, 1)
    by_id = {x["agent_id"]: x for x in body["results"]}
    assert by_id[str(t.agent.id)] == {"agent_id": str(t.agent.id), "ok": True, "outcome": "updated"}
    assert by_id[str(unknown)]["error"]["code"] == "not_found"
    again = await client.post("/api/agents/bulk", headers=admin, json={"action": "pause_monitoring",
                                                                      "agent_ids": ids[:1]})
    assert again.json()["results"][0]["outcome"] == "unchanged"
    # intervals: the agent's config says them and its next heartbeat learns of the change
    r = await client.post("/api/agents/bulk", headers=admin, json={
        "action": "set_intervals", "agent_ids": ids[:1], "metrics_interval_seconds": 60,
        "heartbeat_interval_seconds": 30})
    assert r.json()["succeeded"] == 1
    hb = await client.post(f"/api/agents/{t.agent.id}/heartbeat", headers=t.agent.headers, json={})
    assert hb.json()["config_updated"] is True
    config = (await client.get(f"/api/agents/{t.agent.id}/config", headers=t.agent.headers)).json()
    assert (config["metrics_interval_seconds"], config["heartbeat_interval_seconds"]) == (60, 30)
    assert config["monitoring_enabled"] is False
    # delete: the agent is cut off at once
    r = await client.post("/api/agents/bulk", headers=admin, json={"action": "delete", "agent_ids": ids[:2]})
    assert [x["outcome"] for x in r.json()["results"]] == ["deleted", "deleted"]
    assert (await client.post(f"/api/agents/{second.id}/heartbeat", headers=second.headers, json={})).status_code == 401
    assert (await client.get(f"/api/agents/{second.id}", headers=admin)).status_code == 404


@pytest.mark.parametrize(("body", "status", "field"), [
    ({"action": "pause_monitoring", "agent_ids": []}, 422, "agent_ids"),
    ({"action": "explode", "agent_ids": ["00000000-0000-0000-0000-000000000001"]}, 422, "action"),
    ({"action": "set_intervals", "agent_ids": ["00000000-0000-0000-0000-000000000001"],
      "metrics_interval_seconds": 5}, 422, "metrics_interval_seconds"),
    ({"action": "set_intervals", "agent_ids": ["00000000-0000-0000-0000-000000000001"],
      "heartbeat_interval_seconds": 86400}, 422, "heartbeat_interval_seconds"),
    ({"action": "delete", "agent_ids": ["00000000-0000-0000-0000-000000000001"],
      "metrics_interval_seconds": 60}, 422, "metrics_interval_seconds"),
    ({"action": "delete", "agent_ids": ["nope"]}, 422, "agent_ids[0]"),
])
async def test_bulk_refuses_bad_bodies_naming_the_field(api: ApiServer, client: httpx.AsyncClient,
                                                       body: dict[str, Any], status: int, field: str) -> None:
    r = await client.post("/api/agents/bulk", headers=api.headers(api.token("admin")), json=body)
    assert r.status_code == status, r.text
    assert r.json()["field"] == field


async def test_bulk_is_for_staff(api: ApiServer, api_conn: Any, client: httpx.AsyncClient) -> None:
    t = await factories.tenant(api_conn)
    customer = api.headers(api.token("customer", business_id=t.business_id))
    r = await client.post("/api/agents/bulk", headers=customer,
                          json={"action": "delete", "agent_ids": [str(t.agent.id)]})
    assert r.status_code == 403
    assert (await client.get(f"/api/agents/{t.agent.id}", headers=customer)).status_code == 200


# --- the live channel ------------------------------------------------------------------------------------


async def _events(response: httpx.Response) -> AsyncIterator[tuple[str, Any]]:
    event = None
    async for line in response.aiter_lines():
        if line.startswith("event:"):
            event = line.split(":", 1)[1].strip()
        elif line.startswith("data:") and event:
            yield event, json.loads(line.split(":", 1)[1])
            event = None


async def _next_change(stream: AsyncIterator[tuple[str, Any]], kind: str, seconds: float = 10.0) -> dict[str, Any]:
    async def find() -> dict[str, Any]:
        async for event, data in stream:
            if event == "changes":
                for change in data:
                    if change["kind"] == kind:
                        return dict(change)
        raise AssertionError("stream ended")
    return await asyncio.wait_for(find(), seconds)


def sample(at: datetime, **values: Any) -> dict[str, Any]:
    return {"collected_at": at.isoformat(), "cpu_percent": 12.5, "memory_percent": 40.0, "disk_percent": 50.0,
            "memory_used_gb": 4.0, "disk_used_gb": 100.0, "load_average": [0.5, 0.4, 0.3],
            "uptime_seconds": 1000, "network_rx_bytes": 1_000_000, "network_tx_bytes": 2_000_000, **values}


async def test_samples_status_and_alerts_reach_pages_on_another_instance(api: ApiServer, api_conn: Any,
                                                                        api_factory: Any) -> None:
    """Ingest on one API process, the page's stream on another: NOTIFY carries it across."""
    t = await factories.tenant(api_conn)
    other = await factories.tenant(api_conn)
    second = api_factory(db=api.db_url)
    async with signed_in(second, "customer", business_id=t.business_id) as (browser, _):
        ids = f"{t.agent.id},{other.agent.id}"  # the foreign id is silently dropped
        async with browser.stream("GET", "/console/live", params={"agents": ids, "fleet_page": "1"}) as r:
            assert r.headers["content-type"].startswith("text/event-stream")
            stream = _events(r)
            assert (await anext(stream))[0] == "hello"
            async with api.client() as agent_client:
                now = datetime.now(UTC).replace(microsecond=0)
                await agent_client.post(f"/api/agents/{t.agent.id}/metrics", headers=t.agent.headers,
                                        json={"metrics": [sample(now - timedelta(minutes=1)),
                                                          sample(now, cpu_percent=77.5, network_rx_bytes=1_600_000)]})
                got = await _next_change(stream, "sample")
                assert got["agent"] == str(t.agent.id) and got["cpu_percent"] == 77.5
                assert got["at"] == now.isoformat()
                assert got["network_rx_rate"] == pytest.approx(600_000 / 60)  # from the two counters
                # the other business's agent changes: never sent to this customer
                await agent_client.post(f"/api/agents/{other.agent.id}/metrics", headers=other.agent.headers,
                                        json={"metrics": [sample(now, cpu_percent=1.0)]})
                await api_conn.execute("UPDATE agent_devices SET status = 'offline' WHERE id = %s", (t.agent.id,))
                await agent_client.post(f"/api/agents/{t.agent.id}/heartbeat", headers=t.agent.headers, json={})
                status = await _next_change(stream, "status")
                assert (status["agent"], status["to"]) == (str(t.agent.id), "online")
                rule = await api_conn.execute(
                    "INSERT INTO agent_alerts (alert_name, alert_type, severity, business_id, conditions) "
                    "VALUES ('x', 'cpu_high', 'critical', %s, '{}') RETURNING id", (t.business_id,))
                rule_id = (await rule.fetchone())["id"]
                await api_conn.execute(
                    "INSERT INTO agent_alert_history (agent_alert_id, agent_device_id, business_id, severity, "
                    "alert_message) VALUES (%s, %s, %s, 'critical', 'hot')", (rule_id, t.agent.id, t.business_id))
                alert = await _next_change(stream, "alert")
                assert alert["agent"] == str(t.agent.id) and alert["opened"] is True


async def test_pages_are_told_to_resync_when_the_listener_reconnects(api_factory: Any, conn: Any) -> None:
    server = api_factory()
    biz = await factories.business(conn)
    async with (signed_in(server, "customer", business_id=biz) as (client, _),
                client.stream("GET", "/console/live", params={"fleet_page": "1"}) as r):
        stream = _events(r)
        assert (await anext(stream))[0] == "hello"
        await conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                           "WHERE application_name = 'rts-monitor:console-listen' AND datname = current_database()")
        got = await _next_change(stream, "resync", seconds=15)
        assert got["reason"] == "listener reconnected"


async def test_the_stream_ends_with_the_session(api: ApiServer, api_conn: Any) -> None:
    user_id = uuid4()
    async with signed_in(api, "admin", user_id=user_id) as (client, _):
        await api_conn.execute("UPDATE console_sessions SET expires_at = now() + interval '2 seconds' "
                               "WHERE user_id = %s", (user_id,))
        async with client.stream("GET", "/console/live") as r:
            seen = [event async for event, _ in _events(r)]
        assert seen == ["hello", "expired"]
        assert (await client.get("/console/live")).status_code == 401


async def test_signing_out_ends_open_streams_of_that_session(api: ApiServer) -> None:
    async with signed_in(api, "admin") as (client, csrf), client.stream("GET", "/console/live") as r:
        stream = _events(r)
        assert (await anext(stream))[0] == "hello"
        async with api.client(cookies={sessions.COOKIE: client.cookies[sessions.COOKIE]}) as other_tab:
            assert (await other_tab.post("/console/logout", data={"csrf_token": csrf})).status_code == 303
        event, _ = await asyncio.wait_for(anext(stream), live.KEEPALIVE_SECONDS + 10)
        assert event == "expired"


def test_the_demo_prints_sign_in_links_that_work(db_url: str, tmp_path: Path) -> None:
    """`./dev run` (rts-monitor demo) prints one-click console links for an MSP admin and a customer."""
    port = free_port()
    env = {**os.environ, "DATABASE_URL": db_url, "RTS_STATE_DIR": str(tmp_path / "state")}
    env.pop("RTS_JWT_SECRET", None)
    proc = subprocess.Popen([sys.executable, "-m", "rts_monitor.cli", "demo", "--port", str(port), "--fleet", "2",
                             "--duration", "60", "--no-agent", "--backfill-hours", "0"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        links: dict[str, str] = {}
        assert proc.stdout is not None
        for line in proc.stdout:
            m = re.match(r"\s+(MSP admin|customer)\s+(http://\S+/console/auth\?token=\S+)", line)
            if m:
                links[m[1]] = m[2]
            if len(links) == 2:
                break
        assert set(links) == {"MSP admin", "customer"}, "the demo printed no sign-in links"
        for who, link in links.items():
            with httpx.Client(follow_redirects=True, timeout=30) as browser:
                page = browser.get(link)
                assert page.status_code == 200 and str(page.url) == f"http://127.0.0.1:{port}/console/", who
                assert "Demo: Acme Dental Group" in page.text
                assert ("Demo: Bayside Logistics" in page.text) == (who == "MSP admin")  # a customer: its own only
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)
