"""Production mode, outbound calls a rule author cannot turn against the server, recipients that
belong to the rule's business, and agents' forward compatibility. Real servers, real receivers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest
from aiohttp import web
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from rts_monitor.core.settings import ConfigurationError, Settings
from rts_monitor.notifications import delivery, outbound
from tests import factories
from tests.fix_api import ApiServer
from tests.test_notifications import episode, log_rows, open_episode, pool, receiver  # noqa: F401 (fixtures)

PRODUCTION = {"RTS_ENV": "production", "RTS_JWT_SECRET": "prod-" + "x" * 40, "RTS_WEBHOOK_SECRET": "w" * 40,
              "RTS_PUBLIC_URL": "https://rts.example.test"}


def _serve(tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``rts-monitor serve`` as an operator would start it; it must refuse before listening."""
    full = {k: v for k, v in os.environ.items() if not k.startswith("RTS_")}
    full.update({"RTS_STATE_DIR": str(tmp_path), "RTS_PORT": "1", **env})
    return subprocess.run([sys.executable, "-m", "rts_monitor.cli", "serve", "--no-migrate"], env=full,
                          capture_output=True, text=True, timeout=60)


def test_production_refuses_to_start_without_its_secrets_naming_each(tmp_path: Path, db_url: str) -> None:
    out = _serve(tmp_path, {"DATABASE_URL": db_url})  # RTS_ENV unset: production
    assert out.returncode == 2, out.stderr
    for variable in ("RTS_JWT_SECRET", "RTS_WEBHOOK_SECRET", "RTS_PUBLIC_URL"):
        assert variable in out.stderr
    assert not (tmp_path / "jwt_secret").exists()  # nothing generated behind the operator's back
    out = _serve(tmp_path, {"DATABASE_URL": db_url, **PRODUCTION, "RTS_ALERT_FAULT_INJECT": "ticket_exit"})
    assert out.returncode == 2 and "RTS_ALERT_FAULT_INJECT" in out.stderr and "RTS_ENV=test" in out.stderr


def test_development_generates_secrets_and_production_never_does(tmp_path: Path) -> None:
    dev = Settings(env="development", state_dir=tmp_path)
    assert dev.effective_jwt_secret() == Settings(env="development", state_dir=tmp_path).effective_jwt_secret()
    assert (tmp_path / "jwt_secret").stat().st_mode & 0o777 == 0o600
    with pytest.raises(ConfigurationError, match="RTS_WEBHOOK_SECRET"):
        Settings(env="production", state_dir=tmp_path).effective_webhook_secret()
    with pytest.raises(ConfigurationError, match="RTS_ENV"):
        Settings(env="staging")


async def test_a_production_server_runs_with_its_secrets(api_factory: Any) -> None:
    server: ApiServer = api_factory(env=PRODUCTION)
    async with server.client() as client:
        assert (await client.get("/health")).status_code == 200
        token = server.token("admin")
        resp = await client.get("/api/agents", headers=server.headers(token))
        assert resp.status_code == 200, resp.text


# --- outbound calls ---------------------------------------------------------------------------


@pytest.mark.parametrize(("address", "refused_in_development"), [
    ("127.0.0.1", False), ("10.1.2.3", False), ("192.168.0.9", False), ("172.20.0.1", False),
    ("169.254.169.254", True), ("::1", False), ("fe80::1", False), ("fc00::5", False),
    ("::ffff:127.0.0.1", False), ("100.64.0.1", True), ("224.0.0.1", True), ("0.0.0.0", True),
    ("fd00:ec2::254", True),
])
def test_private_metadata_and_odd_addresses_are_refused_in_production(address: str,
                                                                      refused_in_development: bool) -> None:
    import ipaddress

    ip = ipaddress.ip_address(address)
    assert outbound.refusal(Settings(env="production"), ip) is not None
    assert (outbound.refusal(Settings(env="development"), ip) is not None) is refused_in_development
    assert outbound.refusal(Settings(env="production"), ipaddress.ip_address("93.184.215.14")) is None
    allowed = Settings(env="production", outbound_allow="10.0.0.0/8, hooks.internal")
    assert outbound.refusal(allowed, ipaddress.ip_address("10.1.2.3")) is None
    assert outbound.refusal(allowed, ipaddress.ip_address("192.168.0.9"), "hooks.internal") is None


async def test_webhooks_reach_a_local_receiver_in_development_and_never_in_production(
        conn: psycopg.AsyncConnection[Any], settings: Settings, pool: AsyncConnectionPool,  # noqa: F811
        receiver: Any) -> None:  # noqa: F811
    rec = await receiver([200])
    dev = settings.with_(env="development", webhook_secret="s" * 32)
    _, hid = await open_episode(conn, dev, notification_channels=Jsonb(["webhook"]), webhook_url=rec.url)
    assert await delivery.drain(pool, dev) == 1
    assert len(rec.calls) == 1 and (await episode(conn, hid))["notification_sent"] is True

    # The same receiver by name (localhost resolves to loopback) and by address, in production:
    # nothing reaches it, and the row fails at once (retrying cannot help).
    prod = settings.with_(env="production", webhook_secret="s" * 32, public_url="https://rts.example.test")
    port = rec.url.rsplit(":", 1)[1].split("/")[0]
    for url in (f"https://localhost:{port}/hook", f"https://127.0.0.1:{port}/hook", rec.url):
        _, hid = await open_episode(conn, prod, notification_channels=Jsonb(["webhook"]), webhook_url=url)
        assert await delivery.drain(pool, prod) == 1
        (row,) = await log_rows(conn, hid)
        assert row["ok"] is False and "destination refused" in row["error"], (url, row["error"])
        cur = await conn.execute("SELECT status, attempts FROM alert_outbox WHERE alert_history_id = %s", (hid,))
        assert await cur.fetchall() == [{"status": "failed", "attempts": 1}]
    assert len(rec.calls) == 1


async def test_webhook_redirects_are_not_followed(conn: psycopg.AsyncConnection[Any], settings: Settings,
                                                  pool: AsyncConnectionPool) -> None:  # noqa: F811
    hits: list[str] = []

    async def redirect(request: web.Request) -> web.Response:
        hits.append(request.path)
        if request.path == "/hook":
            raise web.HTTPFound("/elsewhere")
        return web.Response(text="should never be reached")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", redirect)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        dev = settings.with_(env="development", webhook_secret="s" * 32)
        url = f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
        _, hid = await open_episode(conn, dev, notification_channels=Jsonb(["webhook"]), webhook_url=url)
        assert await delivery.drain(pool, dev) == 1
        (row,) = await log_rows(conn, hid)
        assert row["status_code"] == 302 and "redirects are not followed" in row["error"]
        assert hits == ["/hook"]
    finally:
        await runner.cleanup()


async def test_rule_webhook_urls_are_checked_when_saved_in_production(api_factory: Any) -> None:
    server: ApiServer = api_factory(env=PRODUCTION)
    async with server.client() as client, await psycopg.AsyncConnection.connect(
            server.db_url, autocommit=True, row_factory=dict_row) as db:
        t = await factories.tenant(db)
        headers = server.headers(server.token("admin"))
        base = {"alert_name": "cpu", "severity": "warning", "business_id": str(t.business_id),
                "conditions": {"metric": "cpu_percent", "operator": ">", "threshold": 90},
                "notification_channels": ["webhook"]}
        for url, why in (("http://hooks.example.test/x", "https"), ("https://169.254.169.254/latest", "metadata"),
                         ("https://10.0.0.8/hook", "private"), ("https://user:pw@hooks.example.test/", "credentials")):
            resp = await client.post("/api/alerts/rules", headers=headers, json={**base, "webhook_url": url})
            assert resp.status_code == 422 and resp.json()["field"] == "webhook_url", (url, resp.text)
            assert why in resp.json()["message"], (url, resp.text)
        resp = await client.post("/api/alerts/rules", headers=headers,
                                 json={**base, "webhook_url": "https://hooks.example.test/x"})
        assert resp.status_code == 201, resp.text


# --- recipients -------------------------------------------------------------------------------


async def test_user_recipients_must_be_active_users_of_the_business_or_staff(
        api: ApiServer, client: Any, api_conn: Any) -> None:
    mine, theirs = await factories.tenant(api_conn), await factories.tenant(api_conn)
    colleague = await factories.user(api_conn, mine.business_id, "customer")
    stranger = await factories.user(api_conn, theirs.business_id, "customer")
    staff = await factories.user(api_conn, None, "technician")
    gone = await factories.user(api_conn, mine.business_id, "customer")
    await api_conn.execute("UPDATE users SET is_active = false WHERE id = %s", (gone,))
    headers = api.headers(api.token("admin"))
    base = {"alert_name": "cpu", "severity": "warning", "business_id": str(mine.business_id),
            "conditions": {"metric": "cpu_percent", "operator": ">", "threshold": 90},
            "notification_channels": ["email"]}
    for recipients, bad in (([str(colleague), str(stranger)], 1), ([str(gone)], 0)):
        resp = await client.post("/api/alerts/rules", headers=headers,
                                 json={**base, "notification_recipients": recipients})
        assert resp.status_code == 422, resp.text
        assert resp.json()["field"] == f"notification_recipients[{bad}]"
    resp = await client.post("/api/alerts/rules", headers=headers, json={
        **base, "notification_recipients": [str(colleague), str(staff), "oncall@msp.test"]})
    assert resp.status_code == 201, resp.text
    rule_id = resp.json()["id"]
    resp = await client.patch(f"/api/alerts/rules/{rule_id}", headers=headers,
                              json={"notification_recipients": [str(stranger)]})
    assert resp.status_code == 422 and resp.json()["field"] == "notification_recipients[0]"


# --- deployment -------------------------------------------------------------------------------


def _role(service: dict[str, Any]) -> tuple[str, bool] | None:
    """(role, runs the jobs) of a compose service running rts-monitor, from its command."""
    command = service.get("command") or []
    if "rts-monitor" not in command:
        return None
    if "scheduler" in command:
        return "scheduler", True
    if "serve" in command:
        enabled = str((service.get("environment") or {}).get("RTS_SCHEDULER_ENABLED", "true")).lower()
        return "api", enabled not in ("false", "0", "no", "off")
    return "migrate", False


def test_compose_gives_every_process_what_its_role_needs() -> None:
    """Parsed from docker/compose.yaml as Compose resolves anchors and merge keys."""
    import yaml

    from rts_monitor.core.settings import variables_for

    compose = yaml.safe_load((Path(__file__).parents[1] / "docker" / "compose.yaml").read_text())
    roles = {}
    for name, service in compose["services"].items():
        role = _role(service)
        if role is None:
            continue
        roles[name] = role
        env = service.get("environment") or {}
        missing = [v for v in variables_for(role[0], runs_jobs=role[1]) if v not in env]
        assert not missing, f"service {name} ({role[0]}) lacks {missing}"
        if role[0] != "migrate":
            assert env["RTS_ENV"] == "production", name
    assert {r for r, _ in roles.values()} == {"migrate", "api", "scheduler"}
    assert any(jobs for _, jobs in roles.values()), "some process must run the scheduled jobs"


# --- rate limits on failed credentials ----------------------------------------------------------


async def test_failed_registrations_and_agent_tokens_are_rate_limited(api_factory: Any, conn: Any) -> None:
    server: ApiServer = api_factory(env={"RTS_AUTH_FAILURES_PER_ADDRESS": "4", "RTS_AUTH_FAILURES_PER_TOKEN": "2"})
    t = await factories.tenant(conn)
    good = {"hostname": "h", "os_type": "linux"}
    async with server.client() as client:
        # an agent at work: this process knows its token
        assert (await client.post(f"/api/agents/{t.agent.id}/heartbeat", headers=t.agent.headers,
                                  json={})).status_code == 200
        # one token prefix tried twice: that prefix is blocked, another is not (yet)
        for _ in range(2):
            resp = await client.post("/api/agents/register", json={**good, "token": "AGT-aaaaaaaa-0000"})
            assert resp.status_code == 401
        resp = await client.post("/api/agents/register", json={**good, "token": "AGT-aaaaaaaa-1111"})
        assert resp.status_code == 429 and int(resp.headers["Retry-After"]) >= 1
        assert resp.json()["code"] == "too_many_requests"
        resp = await client.post("/api/agents/register", json={**good, "token": "AGT-bbbbbbbb-0000"})
        assert resp.status_code == 401  # the third failure from this address
        # the address reaches its limit: a real token from it is refused too, until the window passes
        resp = await client.post("/api/agents/register", json={**good, "token": "AGT-cccccccc-0000"})
        assert resp.status_code == 401
        admin = server.headers(server.token("admin"))
        real = (await client.post("/api/agents/registration-tokens", headers=admin,
                                  json={"business_id": str(t.business_id)})).json()["token"]
        resp = await client.post("/api/agents/register", json={**good, "token": real})
        assert resp.status_code == 429, resp.text
        # agent tokens: an agent whose token this process knows keeps working from a blocked address
        # (behind one NAT with a misbehaving machine); an unknown token is refused before any lookup
        assert (await client.post(f"/api/agents/{t.agent.id}/heartbeat", headers=t.agent.headers,
                                  json={})).status_code == 200
        bogus = {"Authorization": "Bearer rtsa_" + "x" * 43}
        assert (await client.post(f"/api/agents/{t.agent.id}/heartbeat", headers=bogus, json={})).status_code == 429
        assert (await client.post(f"/api/agents/{t.agent.id}/heartbeat", headers=t.agent.headers,
                                  json={})).status_code == 200
    cur = await conn.execute("SELECT count(*) AS n FROM auth_failures WHERE key LIKE 'addr:%%'")
    assert (await cur.fetchone())["n"] == 4  # blocked attempts are refused before they are counted
