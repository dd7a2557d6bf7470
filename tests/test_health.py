"""The API process starts against the real database and reports what it is."""

from __future__ import annotations

import httpx
import psycopg

from rts_monitor.core.edition import Edition
from tests.fix_api import ApiServer


async def test_health_reports_database_edition_and_version(client: httpx.AsyncClient, server_edition: Edition,
                                                          server_url: str) -> None:
    with psycopg.connect(server_url) as conn:  # the server under test: PostgreSQL 17, or 15/16 (./dev test)
        row = conn.execute("SELECT current_setting('server_version')").fetchone()
    assert row is not None
    resp = await client.get("/health")
    assert resp.status_code == 200
    body = resp.json()
    assert body["status"] == "ok"
    assert body["database"]["ok"] is True
    assert body["database"]["edition"] == server_edition
    assert body["database"]["timescaledb"].startswith("2.") == (server_edition != "postgres")
    assert body["database"]["postgres"] == row[0]
    assert body["database"]["postgres"].startswith(("15.", "16.", "17."))
    assert body["down"] == []
    assert {name: dep["ok"] for name, dep in body["dependencies"].items()} == {
        "database": True, "ingest": True, "command_listener": True}


async def test_unknown_route_uses_the_error_shape(client: httpx.AsyncClient) -> None:
    resp = await client.get("/api/no-such-thing")
    assert resp.status_code == 404
    assert resp.json() == {"status": 404, "code": "not_found", "message": resp.json()["message"]}


async def test_openapi_schema_is_served(client: httpx.AsyncClient) -> None:
    resp = await client.get("/schema/openapi.json")
    assert resp.status_code == 200
    assert "/health" in resp.json()["paths"]


def test_graceful_stop_exits_cleanly(api_factory: object) -> None:
    server: ApiServer = api_factory()  # type: ignore[operator]
    assert httpx.get(server.url + "/health").status_code == 200
    # uvicorn re-raises the SIGTERM it handled once shutdown is complete: -15 is a clean exit.
    assert server.stop() in (0, -15)
    assert '"event": "api.stopped"' in server.log_path.read_text()
