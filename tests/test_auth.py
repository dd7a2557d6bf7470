"""Tenant-safe auth: every portal endpoint x every kind of caller, every agent endpoint x every
kind of agent credential, clock skew, asymmetric keys, the token CLI, and the OpenAPI errors."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from rts_monitor.api.app import create_app
from rts_monitor.core.settings import Settings
from tests import factories
from tests.fix_api import ApiServer
from tests.fix_db import TEST_JWT_SECRET


@dataclass
class World:
    api: ApiServer
    conn: Any
    own: factories.Tenant
    other: factories.Tenant


Request = tuple[str, str, dict[str, Any] | None]
Builder = Callable[[World], Awaitable[Request]]


async def _fresh_agent(w: World) -> UUID:
    return (await factories.agent(w.conn, w.own.business_id, w.own.location_id)).id


async def _fresh_registration_token(w: World) -> UUID:
    cur = await w.conn.execute(
        "INSERT INTO agent_registration_tokens (token_hash, token_hint, business_id, expires_at) "
        "VALUES (%s, 'AGT-test', %s, now() + interval '1 hour') RETURNING id", (uuid4().hex, w.own.business_id))
    return (await cur.fetchone())["id"]  # type: ignore[no-any-return]


async def _create_token(w: World) -> Request:
    return "POST", "/api/agents/registration-tokens", {"business_id": str(w.own.business_id)}


async def _list_tokens(w: World) -> Request:
    return "GET", f"/api/agents/registration-tokens?business_id={w.own.business_id}", None


async def _revoke_reg_token(w: World) -> Request:
    return "DELETE", f"/api/agents/registration-tokens/{await _fresh_registration_token(w)}", None


async def _list(w: World) -> Request:
    return "GET", f"/api/agents?business_id={w.own.business_id}", None


async def _detail(w: World) -> Request:
    return "GET", f"/api/agents/{w.own.agent.id}", None


async def _patch(w: World) -> Request:
    return "PATCH", f"/api/agents/{w.own.agent.id}", {"device_name": "renamed"}


async def _delete(w: World) -> Request:
    return "DELETE", f"/api/agents/{await _fresh_agent(w)}", None


async def _revoke_agent(w: World) -> Request:
    return "POST", f"/api/agents/{await _fresh_agent(w)}/token/revoke", None


async def _rotate(w: World) -> Request:
    return "POST", f"/api/agents/{await _fresh_agent(w)}/rotate-token", None


async def _admin_view(w: World) -> Request:
    return "GET", f"/api/admin/agents?business_id={w.own.business_id}", None


# endpoint -> (builder, admin, technician, customer of the owning business, customer of another)
# Staff-only endpoints answer a customer 403 (a role, which confirms nothing about any object);
# objects of another business are 404.
PORTAL_ENDPOINTS: dict[str, tuple[Builder, int, int, int, int]] = {
    "create registration token": (_create_token, 201, 201, 403, 403),
    "list registration tokens": (_list_tokens, 200, 200, 403, 403),
    "revoke registration token": (_revoke_reg_token, 204, 204, 403, 403),
    "list agents": (_list, 200, 200, 200, 404),
    "agent detail": (_detail, 200, 200, 200, 404),
    "patch agent": (_patch, 200, 200, 200, 404),
    "delete agent": (_delete, 204, 204, 403, 404),
    "revoke agent token": (_revoke_agent, 204, 204, 403, 404),
    "rotate agent token": (_rotate, 202, 202, 403, 404),
    "admin view": (_admin_view, 200, 200, 403, 403),
}


def _tampered(token: str) -> str:
    """Same signature, payload edited to claim admin: must fail verification."""
    header, payload, sig = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["role"] = "admin"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    return f"{header}.{forged}.{sig}"


def _callers(w: World) -> dict[str, str | None]:
    api, own = w.api, w.own
    customer = api.token("customer", business_id=own.business_id)
    now = int(time.time())
    return {
        "admin": api.token("admin"),
        "technician": api.token("technician"),
        "customer (owner)": customer,
        "customer (other)": api.token("customer", business_id=w.other.business_id),
        "no token": None,
        "expired": api.token("admin", ttl_seconds=-120),  # beyond the 30 s leeway
        "tampered": _tampered(customer),
        "wrong secret": jwt.encode({"sub": str(uuid4()), "role": "admin", "exp": now + 60},
                                   "not-the-secret-but-as-long-as-one-32", algorithm="HS256"),
        "alg none": jwt.encode({"sub": str(uuid4()), "role": "admin", "exp": now + 60}, None, algorithm="none"),
        "agent token": own.agent.token,
        "registration token": "AGT-00000000-00000000-00000000-00000000-00000000",
    }


@pytest.fixture
async def world(api: ApiServer, api_conn: Any) -> World:
    return World(api, api_conn, await factories.tenant(api_conn), await factories.tenant(api_conn))


@pytest.mark.parametrize("endpoint", list(PORTAL_ENDPOINTS))
async def test_portal_endpoint_matrix(world: World, client: httpx.AsyncClient, endpoint: str) -> None:
    build, *allowed = PORTAL_ENDPOINTS[endpoint]
    expected = dict(zip(["admin", "technician", "customer (owner)", "customer (other)"], allowed, strict=True))
    failures = []
    for caller, token in _callers(world).items():
        method, url, body = await build(world)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        resp = await client.request(method, url, headers=headers, json=body)
        want = expected.get(caller, 401)
        if resp.status_code != want:
            failures.append(f"{caller}: {resp.status_code} (want {want}) {resp.text[:200]}")
        elif want >= 400:
            assert resp.json()["status"] == want and resp.json()["code"] and resp.json()["message"]
    assert not failures, "\n".join(failures)


async def test_another_business_object_is_indistinguishable_from_a_missing_one(
    world: World, client: httpx.AsyncClient
) -> None:
    customer = {"Authorization": f"Bearer {world.api.token('customer', business_id=world.other.business_id)}"}
    theirs = await client.get(f"/api/agents/{world.own.agent.id}", headers=customer)
    missing = await client.get(f"/api/agents/{uuid4()}", headers=customer)
    assert theirs.status_code == missing.status_code == 404
    assert theirs.json() == missing.json()


async def test_clock_skew_within_leeway_is_accepted(world: World, client: httpx.AsyncClient) -> None:
    api = world.api
    just_expired = api.token("admin", ttl_seconds=-10)
    assert (await client.get("/api/agents?limit=1", headers=api.headers(just_expired))).status_code == 200
    now = int(time.time())
    future = jwt.encode({"sub": str(uuid4()), "role": "admin", "exp": now + 600, "nbf": now + 300},
                        TEST_JWT_SECRET, algorithm="HS256")
    resp = await client.get("/api/agents?limit=1", headers=api.headers(future))
    assert resp.status_code == 401 and resp.json()["message"] == "token not yet valid"
    expired = await client.get("/api/agents?limit=1", headers=api.headers(api.token("admin", ttl_seconds=-120)))
    assert expired.json()["message"] == "token expired"


@pytest.mark.parametrize("claims", [
    {"role": "admin"},  # no sub
    {"sub": "not-a-uuid", "role": "admin"},
    {"sub": "00000000-0000-0000-0000-000000000001", "role": "superuser"},
    {"sub": "00000000-0000-0000-0000-000000000001", "role": "customer"},  # customer without business
    {"sub": "00000000-0000-0000-0000-000000000001"},  # no role
])
async def test_bad_claims_are_401(client: httpx.AsyncClient, claims: dict[str, Any]) -> None:
    token = jwt.encode({**claims, "exp": int(time.time()) + 60}, TEST_JWT_SECRET, algorithm="HS256")
    resp = await client.get("/api/agents", headers={"Authorization": f"Bearer {token}"})
    assert resp.status_code == 401, resp.text


# ---------------------------------------------------------------- agent endpoints


AGENT_ENDPOINTS = [("POST", "heartbeat", {}), ("GET", "config", None)]


@pytest.mark.parametrize(("method", "path", "body"), AGENT_ENDPOINTS)
async def test_agent_endpoint_matrix(
    world: World, client: httpx.AsyncClient, method: str, path: str, body: dict[str, Any] | None
) -> None:
    conn, biz = world.conn, world.own.business_id
    right, other = await factories.agent(conn, biz), await factories.agent(conn, biz)
    revoked, deleted = await factories.agent(conn, biz), await factories.agent(conn, biz)
    staff = world.api.headers(world.api.token("admin"))
    assert (await client.post(f"/api/agents/{revoked.id}/token/revoke", headers=staff)).status_code == 204
    assert (await client.delete(f"/api/agents/{deleted.id}", headers=staff)).status_code == 204
    cases = [
        (right.id, right.token, 200),
        (right.id, other.token, 403),  # another agent's token on this agent's path
        (revoked.id, revoked.token, 401),
        (deleted.id, deleted.token, 401),
        (right.id, "AGT-00000000-00000000-00000000-00000000-00000000", 401),  # a registration token
        (right.id, world.api.token("admin"), 401),  # a portal token is not an agent credential
        (right.id, "rtsa_" + "x" * 43, 401),  # well-formed, unknown
        (right.id, None, 401),
    ]
    for agent_id, token, want in cases:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        resp = await client.request(method, f"/api/agents/{agent_id}/{path}", headers=headers, json=body)
        assert resp.status_code == want, (path, token and token[:12], resp.text)


# ---------------------------------------------------------------- asymmetric portal keys


def _keypair(kind: str) -> tuple[Any, str]:
    private: Any = ec.generate_private_key(ec.SECP256R1()) if kind == "ES256" else rsa.generate_private_key(
        public_exponent=65537, key_size=2048)
    public = private.public_key().public_bytes(serialization.Encoding.PEM,
                                              serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    return private, public


@pytest.mark.parametrize("alg", ["ES256", "RS256"])
async def test_asymmetric_portal_tokens(api_factory: Any, tmp_path: Path, alg: str) -> None:
    private, public = _keypair(alg)
    key_file = tmp_path / "portal.pem"
    key_file.write_text(public)
    server: ApiServer = api_factory(env={"RTS_JWT_PUBLIC_KEY": str(key_file)})
    stranger, _ = _keypair(alg)
    claims = {"sub": str(uuid4()), "role": "technician", "exp": int(time.time()) + 60}
    async with server.client() as http:
        ok = await http.get("/api/agents", headers=server.headers(jwt.encode(claims, private, algorithm=alg)))
        assert ok.status_code == 200, ok.text
        bad = await http.get("/api/agents", headers=server.headers(jwt.encode(claims, stranger, algorithm=alg)))
        assert bad.status_code == 401 and bad.json()["message"] == "token signature invalid"
        # The shared HS256 secret keeps working alongside the key.
        assert (await http.get("/api/agents", headers=server.headers(server.token("admin")))).status_code == 200


# ---------------------------------------------------------------- CLI


def _cli(*args: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RTS_JWT_SECRET": TEST_JWT_SECRET, "RTS_STATE_DIR": str(tmp_path)}
    return subprocess.run([sys.executable, "-m", "rts_monitor.cli", "token", "mint", *args],
                          env=env, capture_output=True, text=True, timeout=60, check=False)


async def test_cli_mints_tokens_the_api_accepts(world: World, client: httpx.AsyncClient, tmp_path: Path) -> None:
    user = uuid4()
    out = _cli("--role", "customer", "--business", str(world.own.business_id), "--user", str(user), "--ttl", "2h",
               tmp_path=tmp_path)
    assert out.returncode == 0, out.stderr
    token = out.stdout.strip()
    claims = jwt.decode(token, TEST_JWT_SECRET, algorithms=["HS256"])
    assert claims["sub"] == str(user) and claims["role"] == "customer"
    assert claims["business_id"] == str(world.own.business_id) and claims["exp"] - claims["iat"] == 7200
    resp = await client.get("/api/agents", headers={"Authorization": f"Bearer {token}"})
    assert [a["id"] for a in resp.json()["agents"]] == [str(world.own.agent.id)]
    admin = _cli("--role", "admin", tmp_path=tmp_path)
    assert admin.returncode == 0
    assert (await client.get("/api/admin/agents?limit=1",
                             headers={"Authorization": f"Bearer {admin.stdout.strip()}"})).status_code == 200


@pytest.mark.parametrize("args", [["--role", "customer"], ["--role", "admin", "--ttl", "soon"],
                                  ["--role", "root"], ["--role", "customer", "--business", "acme"]])
def test_cli_refuses_bad_arguments(tmp_path: Path, args: list[str]) -> None:
    out = _cli(*args, tmp_path=tmp_path)
    assert out.returncode == 2 and out.stdout == ""


# ---------------------------------------------------------------- OpenAPI


async def test_openapi_lists_every_route_with_the_error_shape(client: httpx.AsyncClient, tmp_path: Path) -> None:
    schema = (await client.get("/schema/openapi.json")).json()
    app = create_app(Settings.from_env(database_url="postgresql://unused", state_dir=tmp_path))
    missing, undocumented = [], []
    for route in app.routes:
        methods = getattr(route, "methods", set()) - {"OPTIONS", "HEAD"}
        # The console's routes are its pages and their own data (docs/console.md), and /metrics is
        # Prometheus' scrape endpoint in its text format (docs/operations.md): not API operations.
        if route.path.startswith(("/schema", "/console")) or route.path == "/metrics" or not methods:
            continue
        item = schema["paths"].get(route.path_format)
        for method in methods:
            op = (item or {}).get(method.lower())
            if op is None:
                missing.append(f"{method} {route.path_format}")
                continue
            responses = op["responses"]
            if "500" not in responses:
                undocumented.append(f"{method} {route.path_format}: no 500")
            for status in responses:
                if status.startswith(("4", "5")):
                    ref = responses[status]["content"]["application/json"]["schema"].get("$ref", "")
                    # A probe that says "not ready" answers the same report as when ready (what is
                    # not: docs/operations.md), not an error body.
                    probe = route.path_format == "/health/ready" and status == "503" and ref.endswith("/Readiness")
                    if not ref.endswith("/ErrorBody") and not probe:
                        undocumented.append(f"{method} {route.path_format} {status}: {ref or 'inline'}")
    assert not missing, missing
    assert not undocumented, undocumented
    error = schema["components"]["schemas"]["ErrorBody"]
    assert set(error["required"]) == {"status", "code", "message"} and "field" in error["properties"]
    heartbeat = schema["paths"]["/api/agents/{agent_id}/heartbeat"]["post"]["responses"]
    assert {"401", "403", "404", "422", "500"} <= set(heartbeat)
    listing = schema["paths"]["/api/agents"]["get"]["responses"]
    assert {"401", "403", "422"} <= set(listing)


def _agent_routes(tmp_path: Path) -> list[tuple[str, str]]:
    """(method, path) of every HTTP operation, of every concern, that authenticates an agent."""
    from litestar.routes import HTTPRoute

    app = create_app(Settings.from_env(database_url="postgresql://unused", state_dir=tmp_path))
    return sorted(
        (method, route.path)
        for route in app.routes if isinstance(route, HTTPRoute)
        for h in route.route_handlers if "agent" in h.parsed_fn_signature.parameters
        for method in h.http_methods
    )


async def test_every_agent_endpoint_of_every_concern_refuses_foreign_revoked_and_registration_tokens(
    world: World, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    conn, biz = world.conn, world.own.business_id
    right, other, revoked = [await factories.agent(conn, biz) for _ in range(3)]
    staff = world.api.headers(world.api.token("admin"))
    assert (await client.post(f"/api/agents/{revoked.id}/token/revoke", headers=staff)).status_code == 204
    endpoints = _agent_routes(tmp_path)
    assert ("POST", "/api/agents/{agent_id:uuid}/heartbeat") in endpoints
    assert ("GET", "/api/agents/{agent_id:uuid}/config") in endpoints
    failures = []
    for method, template in endpoints:
        for agent_id, token, want in [(right.id, other.token, 403), (revoked.id, revoked.token, 401),
                                      (right.id, "AGT-00000000-00000000-00000000-00000000-00000000", 401),
                                      (right.id, None, 401)]:
            path = template.replace("{agent_id:uuid}", str(agent_id))
            path = re.sub(r"\{[a-z_]+:uuid\}", str(uuid4()), path)
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            resp = await client.request(method, path, headers=headers, json={} if method != "GET" else None)
            if resp.status_code != want:
                failures.append(f"{method} {template} token={token and token[:8]}: {resp.status_code} (want {want})")
    assert not failures, "\n".join(failures)


async def test_every_portal_endpoint_of_every_concern_refuses_bad_portal_credentials(
    world: World, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    from litestar.routes import HTTPRoute

    app = create_app(Settings.from_env(database_url="postgresql://unused", state_dir=tmp_path))
    endpoints = sorted(
        (method, route.path)
        for route in app.routes if isinstance(route, HTTPRoute)
        for h in route.route_handlers if "principal" in h.parsed_fn_signature.parameters
        for method in h.http_methods
    )
    assert ("GET", "/api/agents") in endpoints and ("PATCH", "/api/agents/{agent_id:uuid}") in endpoints
    callers = _callers(world)
    failures = []
    for method, template in endpoints:
        path = re.sub(r"\{[a-z_]+:uuid\}", str(world.own.agent.id), template)
        path = re.sub(r"\{[a-z_]+(:[a-z]+)?\}", "x", path)
        for caller in ("no token", "expired", "tampered", "wrong secret", "alg none", "agent token",
                       "registration token"):
            token = callers[caller]
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            resp = await client.request(method, path, headers=headers, json={} if method != "GET" else None)
            if resp.status_code != 401:
                failures.append(f"{method} {template} {caller}: {resp.status_code}")
    assert not failures, "\n".join(failures)


async def test_revocation_reaches_every_api_process_at_once(
        api_factory: Callable[..., Any], conn: Any) -> None:
    """Agent tokens are cached per process (60 s); revoking through instance A must still shut the
    agent out of instance B immediately (trigger → NOTIFY → B's listener evicts), and so must a
    revocation made by plain SQL outside the API."""
    from tests import factories

    a, b = api_factory(), api_factory()
    t = await factories.tenant(conn)
    other = await factories.agent(conn, t.business_id, t.location_id)
    def sample() -> dict[str, Any]:  # metrics: the path that trusts the cached authentication
        from datetime import UTC, datetime
        return {"metrics": [{"collected_at": datetime.now(UTC).isoformat(), "cpu_percent": 1.0}]}

    async with httpx.AsyncClient(timeout=30) as http:
        for ag in (t.agent, other):  # authenticated, hence cached, on B
            r = await http.post(f"{b.url}/api/agents/{ag.id}/metrics", json=sample(), headers=ag.headers)
            assert r.status_code == 200, r.text
        r = await http.post(f"{a.url}/api/agents/{t.agent.id}/token/revoke", headers=a.headers(a.token("admin")))
        assert r.status_code in (200, 204), r.text
        await conn.execute("UPDATE agent_devices SET soft_delete = true WHERE id = %s", (other.id,))
        for ag in (t.agent, other):
            deadline = time.monotonic() + 2.0
            while True:
                r = await http.post(f"{b.url}/api/agents/{ag.id}/metrics", json=sample(), headers=ag.headers)
                if r.status_code == 401 or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.05)
            assert r.status_code == 401, f"instance B still accepts a revoked agent: {r.status_code}"


# --- agent token rotation (auth/rotation.py) -------------------------------------------------------


async def test_rotation_hands_out_a_new_token_and_the_old_one_works_only_through_the_grace(
        api_factory: Any, conn: Any) -> None:
    grace = 3.0
    server: ApiServer = api_factory(env={"RTS_AGENT_TOKEN_GRACE_SECONDS": str(int(grace))})
    t = await factories.tenant(conn)
    old = t.agent.token
    admin = server.headers(server.token("admin"))
    async with server.client() as c:
        async def beat(token: str) -> httpx.Response:
            return await c.post(f"/api/agents/{t.agent.id}/heartbeat", headers=server.headers(token),
                                json={"status": "online"})

        async def poll(token: str) -> int:
            return (await c.get(f"/api/agents/{t.agent.id}/commands", headers=server.headers(token))).status_code

        assert (await beat(old)).json()["agent_token"] is None  # nothing due
        resp = await c.post(f"/api/agents/{t.agent.id}/rotate-token", headers=admin)
        assert resp.status_code == 202, resp.text
        assert resp.json()["agent_id"] == str(t.agent.id) and resp.json()["grace_seconds"] == grace
        first = (await beat(old)).json()["agent_token"]
        assert first and first.startswith("rtsa_") and first != old
        assert await poll(old) == 200 and await poll(first) == 200  # both, through the grace
        # A request with the old token already on its way when the agent switched does not
        # replace the token the agent has just saved.
        assert (await beat(old)).json()["agent_token"] is None

        # The answer was lost: a third of the grace later the agent still uses the old token, so it
        # gets another new one; the undelivered one is dead (every process forgets it at once).
        await asyncio.sleep(grace / 3 + 0.2)
        second = (await beat(old)).json()["agent_token"]
        assert second and second not in (old, first)
        await _until(lambda: poll(first), 401, "the undelivered token refused")
        assert (await beat(second)).json()["agent_token"] is None  # the acknowledgement
        row = await (await conn.execute("SELECT agent_token_acked_at, agent_token_previous_expires_at FROM "
                                        "agent_devices WHERE id = %s", (t.agent.id,))).fetchone()
        assert row["agent_token_acked_at"] is not None

        # Past the grace the old token is refused, though this process cached it valid a moment ago.
        assert await poll(old) == 200
        await asyncio.sleep(max(0.0, row["agent_token_previous_expires_at"].timestamp() - time.time()) + 0.2)
        assert await poll(old) == 401 and (await beat(old)).status_code == 401
        assert await poll(second) == 200

    cur = await conn.execute("SELECT actor_type, actor_role, action, before, after, detail FROM audit_log "
                             "WHERE object_id = %s ORDER BY id", (str(t.agent.id),))
    entries = await cur.fetchall()
    assert [(e["actor_type"], e["action"]) for e in entries] == [
        ("user", "agent_token.rotate"), ("agent", "agent_token.issue"), ("agent", "agent_token.issue")]
    assert entries[0]["actor_role"] == "admin" and entries[0]["after"]["rotation_requested_at"]
    assert [e["detail"]["reason"] for e in entries[1:]] == ["requested", "redelivery"]
    assert entries[1]["after"]["token_issued_at"] != entries[1]["before"]["token_issued_at"]


async def _until(probe: Callable[[], Awaitable[int]], status: int, what: str, within: float = 5) -> None:
    deadline = time.monotonic() + within
    while (got := await probe()) != status:
        assert time.monotonic() < deadline, f"{what}: still {got}"
        await asyncio.sleep(0.05)


async def test_revoked_agents_cannot_rotate_and_revocation_ends_the_grace(api_factory: Any, conn: Any) -> None:
    server: ApiServer = api_factory(env={"RTS_AGENT_TOKEN_GRACE_SECONDS": "600"})
    t = await factories.tenant(conn)
    admin = server.headers(server.token("admin"))
    async with server.client() as c:
        assert (await c.post(f"/api/agents/{t.agent.id}/rotate-token", headers=admin)).status_code == 202
        new = (await c.post(f"/api/agents/{t.agent.id}/heartbeat", headers=server.headers(t.agent.token),
                            json={})).json()["agent_token"]
        path = f"/api/agents/{t.agent.id}/commands"
        assert (await c.get(path, headers=server.headers(t.agent.token))).status_code == 200  # cached now
        assert (await c.post(f"/api/agents/{t.agent.id}/token/revoke", headers=admin)).status_code == 204
        for token in (t.agent.token, new):  # the old one within its grace too
            assert (await c.get(path, headers=server.headers(token))).status_code == 401
        resp = await c.post(f"/api/agents/{t.agent.id}/rotate-token", headers=admin)
        assert resp.status_code == 409 and "revoked" in resp.json()["message"], resp.text


async def test_the_age_job_marks_old_tokens_for_rotation(conn: Any, settings: Settings) -> None:
    from dataclasses import replace

    from rts_monitor.auth import jobs, rotation
    from rts_monitor.auth.concern import CONCERN

    assert jobs.ROTATE_AGENT_TOKENS in CONCERN.jobs
    t = await factories.tenant(conn)
    fresh = await factories.agent(conn, t.business_id)
    await conn.execute("UPDATE agent_devices SET agent_token_issued_at = now() - interval '28 days' WHERE id = %s",
                       (t.agent.id,))
    monthly = replace(settings, agent_token_max_age_days=30.0)  # due at 27 days: 90% of 30
    assert await rotation.mark_due(conn, settings=monthly) == 1
    assert await rotation.mark_due(conn, settings=monthly) == 0  # already requested
    assert await rotation.mark_due(conn, settings=replace(settings, agent_token_max_age_days=0)) == 0
    rows = await (await conn.execute("SELECT id, agent_token_rotate_requested_at IS NOT NULL AS due FROM "
                                     "agent_devices WHERE id = ANY(%s)", ([t.agent.id, fresh.id],))).fetchall()
    assert {r["id"]: r["due"] for r in rows} == {t.agent.id: True, fresh.id: False}
    entry = await (await conn.execute("SELECT actor_type, action, detail FROM audit_log WHERE object_id = %s",
                                      (str(t.agent.id),))).fetchone()
    assert entry == {"actor_type": "system", "action": "agent_token.rotate",
                     "detail": {"reason": "max_age", "max_age_days": 30.0}}


async def test_concurrent_token_lookups_share_one_statement(conn: Any, settings: Settings) -> None:
    """A reconnect storm's lookups (auth/agents.py): tokens missing the cache at the same moment
    are answered by one statement, each with its own answer (current, rotated-out within its
    grace, revoked, unknown), instead of taking a pooled connection each."""
    from rts_monitor.auth import agents
    from rts_monitor.core.errors import Unauthorized
    from rts_monitor.db import open_pool

    t = await factories.tenant(conn)
    fleet = [await factories.agent(conn, t.business_id) for _ in range(40)]
    rotated, revoked = fleet[0], fleet[1]
    new_token, new_hash = agents.new_token()
    await conn.execute(
        "UPDATE agent_devices SET agent_token_previous_hash = agent_token_hash, agent_token_hash = %s, "
        "agent_token_previous_expires_at = now() + interval '1 hour' WHERE id = %s", (new_hash, rotated.id))
    await conn.execute("UPDATE agent_devices SET agent_token_revoked_at = now() WHERE id = %s", (revoked.id,))
    agents.forget()
    tokens = [a.token for a in fleet] + [new_token, agents.new_token()[0]]
    pool = await open_pool(settings, max_size=4)
    try:
        before = pool.get_stats().get("requests_num", 0)
        answers = await asyncio.gather(*(agents.authenticate(pool, tok) for tok in tokens), return_exceptions=True)
        assert pool.get_stats().get("requests_num", 0) - before == 1  # one connection for all 42
    finally:
        await pool.close()
    by_token = dict(zip(tokens, answers, strict=True))
    first = by_token[rotated.token]
    assert not isinstance(first, BaseException) and (first.agent_id, first.previous_token) == (rotated.id, True)
    current = by_token[new_token]
    assert not isinstance(current, BaseException) and (current.agent_id, current.previous_token) == (rotated.id, False)
    assert isinstance(by_token[revoked.token], Unauthorized) and isinstance(by_token[tokens[-1]], Unauthorized)
    for agent in fleet[2:]:
        got = by_token[agent.token]
        assert not isinstance(got, BaseException) and got.agent_id == agent.id and not got.previous_token
    agents.forget()
