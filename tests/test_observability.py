"""The backend watching itself (docs/operations.md): /metrics after a known workload, readiness
during a database outage and a graceful shutdown, request ids from the header to the 5xx body
and the log line, ``rts-monitor doctor``'s verdicts, and the Grafana dashboard against /metrics."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from rts_monitor import cli, wiring
from rts_monitor.core.settings import Settings
from rts_monitor.devtools import localdb
from tests import factories
from tests.fix_api import ApiServer, free_port

TOKEN = "metrics-test-token"
INGEST_ROUTE = "/api/agents/{agent_id}/metrics"
DASHBOARD = Path(__file__).resolve().parents[1] / "docker" / "grafana" / "rts-monitor.json"
UUIDISH = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-")


def _samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def _value(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def _body(base: datetime, n: int, cpu: float = 10.0) -> dict[str, Any]:
    return {"metrics": [{"collected_at": (base + timedelta(seconds=k)).isoformat(), "cpu_percent": cpu + k,
                         "memory_percent": 50.0} for k in range(n)]}


async def _scrape(http: httpx.AsyncClient) -> str:
    resp = await http.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("text/plain")
    return resp.text


async def test_metrics_after_a_known_workload(api_factory: Callable[..., ApiServer], conn: Any) -> None:
    # two workers: the counts of both are merged (multi-process mode), whichever one is scraped
    server = api_factory(env={"RTS_METRICS_TOKEN": TOKEN, "RTS_METRICS_SAMPLE_SECONDS": "0.2"}, workers=2)
    biz = await factories.business(conn)
    agent = await factories.agent(conn, biz)
    base = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    path = f"/api/agents/{agent.id}/metrics"
    # a connection per request, so the kernel spreads them over both workers
    async with server.client(limits=httpx.Limits(max_keepalive_connections=0)) as http:
        # /health answered as soon as one worker was up: wait until both sample their pool
        pool_max = 0.0
        for _ in range(150):
            pool_max = _value(_samples(await _scrape(http)), "rts_db_pool_max_connections")
            if pool_max == 2 * server.settings.db_pool_max:
                break
            await asyncio.sleep(0.2)
        assert pool_max == 2 * server.settings.db_pool_max
        scrapes = _value(_samples(await _scrape(http)), "rts_http_requests_total", route="/metrics", method="GET",
                         status="200")
        accepted = []
        for i in range(4):  # 4 requests x 3 new samples
            resp = await http.post(path, json=_body(base + timedelta(minutes=i), 3), headers=agent.headers)
            assert resp.status_code == 200, resp.text
            accepted.append(resp.json())
        # the first request again: 3 duplicates, nothing new
        resp = await http.post(path, json=_body(base, 3), headers=agent.headers)
        assert resp.json() == {"received": 0, "duplicates": 3, "alerts_triggered": []}
        # one invalid sample (422) and one body that is not JSON (400)
        assert (await http.post(path, json=_body(base, 1, cpu=500.0), headers=agent.headers)).status_code == 422
        bad = await http.post(path, content=b"{not json", headers={**agent.headers, "content-type": "application/json"})
        assert bad.status_code == 400
        assert [a["received"] for a in accepted] == [3, 3, 3, 3]

        assert (await http.get("/metrics")).status_code == 401
        assert (await http.get("/metrics", headers={"Authorization": "Bearer wrong"})).status_code == 401
        # The queue gauge is sampled (every 0.2 s here), not read at the scrape: a worker's last tick
        # may still have seen the last batch in flight (a loaded machine delays its ticks).
        for _ in range(50):
            if _value(_samples(await _scrape(http)), "rts_ingest_queue_rows") == 0:
                break
            await asyncio.sleep(0.1)
        # every worker has answered at least one scrape-worthy request; scrape a few times to hit both
        texts = [await _scrape(http) for _ in range(4)]
    # any worker's answer has every worker's counts
    for text in texts:
        s = _samples(text)
        assert _value(s, "rts_ingest_samples_received_total") == 12
        assert _value(s, "rts_ingest_samples_duplicate_total") == 3
        assert _value(s, "rts_ingest_requests_rejected_total", reason="invalid") == 1
        assert _value(s, "rts_ingest_requests_rejected_total", reason="malformed") == 1
        assert _value(s, "rts_ingest_requests_rejected_total", reason="unavailable") == 0
        assert _value(s, "rts_http_requests_total", route=INGEST_ROUTE, method="POST", status="200") == 5, \
            sorted(dict(k[1])["route"] for k in s if k[0] == "rts_http_requests_total")
        assert _value(s, "rts_http_requests_total", route=INGEST_ROUTE, method="POST", status="422") == 1
        assert _value(s, "rts_http_requests_total", route=INGEST_ROUTE, method="POST", status="400") == 1
        assert _value(s, "rts_http_request_duration_seconds_count", route=INGEST_ROUTE, method="POST") == 7
        assert _value(s, "rts_http_request_duration_seconds_bucket", route=INGEST_ROUTE, method="POST",
                      le="+Inf") == 7
        # five accepted requests of 3 rows went through flushes: 15 rows in all, however coalesced
        assert _value(s, "rts_ingest_flush_rows_sum") == 15
        flushes = _value(s, "rts_ingest_flush_rows_count")
        assert 1 <= flushes <= 5
        assert _value(s, "rts_ingest_flush_duration_seconds_count") == flushes
        assert _value(s, "rts_ingest_backpressure_total", cause="queue_full") == 0
        assert _value(s, "rts_http_requests_total", route="/metrics", method="GET", status="401") == 2
        assert _value(s, "rts_http_requests_total", route="/metrics", method="GET", status="200") >= scrapes + 1
        # gauges: summed over the two live workers, or their minimum
        assert _value(s, "rts_db_pool_max_connections") == 2 * server.settings.db_pool_max
        assert _value(s, "rts_db_up") == 1 and _value(s, "rts_ready") == 1
        assert _value(s, "rts_ingest_queue_rows") == 0
    # bounded labels: no id of anything ever becomes a label value
    for (_, labels) in _samples(texts[-1]):
        for key, value in labels:
            assert not UUIDISH.search(value), (key, value)
            assert str(agent.id) not in value


async def test_metrics_are_not_public_by_default(api_factory: Callable[..., ApiServer]) -> None:
    bind = free_port()
    server = api_factory()
    separate = api_factory(env={"RTS_METRICS_BIND": f"127.0.0.1:{bind}"})
    async with server.client() as http:
        assert (await http.get("/metrics")).status_code == 404
        assert (await http.get("/metrics", headers={"Authorization": "Bearer anything"})).status_code == 404
    async with separate.client() as http:
        assert (await http.get("/health/ready")).status_code == 200
        # the separate listener needs no token; the API port still has no /metrics
        assert (await http.get("/metrics")).status_code == 404
        scraped = await http.get(f"http://127.0.0.1:{bind}/metrics")
    assert scraped.status_code == 200
    s = _samples(scraped.text)
    assert _value(s, "rts_http_requests_total", route="/health/ready", method="GET", status="200") == 1


async def test_dashboard_queries_name_metrics_the_app_exposes(api_factory: Callable[..., ApiServer],
                                                               conn: Any) -> None:
    server = api_factory(env={"RTS_METRICS_TOKEN": TOKEN, "RTS_METRICS_SAMPLE_SECONDS": "0.2",
                              "RTS_PRESENCE_JOB_SECONDS": "1"})
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", ())]
    assert len(exprs) >= 15
    async with server.client() as http:
        assert (await http.get("/health/ready")).status_code == 200  # an HTTP series exists
        await asyncio.sleep(0.5)  # one sample of the gauges
        families = {f.name for f in text_string_to_metric_families(await _scrape(http))}
        text = await _scrape(http)
    exposed = {s.name for f in text_string_to_metric_families(text) for s in f.samples} | families
    for expr in exprs:
        names = re.findall(r"\brts_[a-z0-9_]+", expr)
        assert names, expr
        for name in names:
            assert name in exposed, f"{name} (in {expr!r}) is not exposed by /metrics"
    # the scheduler registered every job and records runs (doctor reads these), and counts them
    rows = {r["name"]: r for r in await (await conn.execute("SELECT * FROM rts_job_runs")).fetchall()}
    assert set(rows) == {job.name for job in wiring.jobs()}
    for _ in range(100):
        row = await (await conn.execute("SELECT * FROM rts_job_runs WHERE name = 'devices.presence'")).fetchone()
        if row["runs"] >= 2:
            break
        await asyncio.sleep(0.1)
    assert row["runs"] >= 2 and row["last_success_at"] is not None and row["failures"] == 0
    async with server.client() as http:
        s = _samples(await _scrape(http))
    assert _value(s, "rts_job_runs_total", job="devices.presence", outcome="success") >= 2
    assert _value(s, "rts_job_duration_seconds_count", job="devices.presence") >= 2
    assert _value(s, "rts_job_last_success_timestamp_seconds", job="devices.presence") > time.time() - 60


async def test_request_id_in_header_5xx_body_and_log_line(api_factory: Callable[..., ApiServer], conn: Any) -> None:
    server = api_factory()
    admin = server.headers(server.token("admin", user_id=await factories.user(conn, None, "admin")))
    async with server.client() as http:
        ok = await http.get("/api/admin/audit", headers={**admin, "X-Request-ID": "lb-4f2a.77"})
        assert ok.status_code == 200 and ok.headers["x-request-id"] == "lb-4f2a.77"
        # not sane (a space and a quote: it could forge log fields): replaced by a generated one
        forged = await http.get("/health/live", headers={"X-Request-ID": 'x" level=error'})
        assert re.fullmatch(r"[0-9a-f]{32}", forged.headers["x-request-id"])
        assert re.fullmatch(r"[0-9a-f]{32}", (await http.get("/health/live")).headers["x-request-id"])
        too_long = await http.get("/health/live", headers={"X-Request-ID": "a" * 129})
        assert too_long.headers["x-request-id"] != "a" * 129
        # the schema broken under the running process: the next read of it is a 500 (a bug, not a
        # refused value; db/errors.py leaves it untranslated)
        await conn.execute("ALTER TABLE audit_log RENAME TO audit_log_gone")
        resp = await http.get("/api/admin/audit", headers={**admin, "X-Request-ID": "user-report-0042"})
    assert resp.status_code == 500
    assert resp.json() == {"status": 500, "code": "internal_error", "message": "internal server error",
                           "request_id": "user-report-0042"}
    assert resp.headers["x-request-id"] == "user-report-0042"
    await asyncio.sleep(0.2)
    lines = [json.loads(line) for line in server.log_path.read_text().splitlines() if line.startswith("{")]
    mine = [line for line in lines if line.get("request_id") == "user-report-0042"]
    failed = [line for line in mine if line["event"] == "request.failed"]
    assert failed and "UndefinedTable" in failed[0]["exc"]
    assert failed[0]["user_id"]  # the credential was checked before the failure
    access = [line for line in mine if line["event"] == "http.request"]
    assert len(access) == 1
    assert access[0]["status"] == 500 and access[0]["route"] == "/api/admin/audit"
    assert access[0]["method"] == "GET" and access[0]["duration_ms"] > 0
    for line in lines:
        assert {"time", "level", "event"} <= set(line)


async def _ready(http: httpx.AsyncClient) -> tuple[int, dict[str, Any]]:
    try:
        resp = await http.get("/health/ready", timeout=2)
    except httpx.HTTPError as exc:
        return 0, {"error": type(exc).__name__}
    return resp.status_code, resp.json()


async def _poll_ready(http: httpx.AsyncClient, want: int, *, within: float) -> tuple[int, dict[str, Any]]:
    deadline = time.monotonic() + within
    for _ in range(int(within / 0.1)):
        status, body = await _ready(http)
        if status == want or time.monotonic() > deadline:
            return status, body
        await asyncio.sleep(0.1)
    return await _ready(http)


async def test_ready_goes_false_first_on_sigterm(api_factory: Callable[..., ApiServer]) -> None:
    server = api_factory(env={"RTS_SHUTDOWN_GRACE_SECONDS": "1.5"})
    async with server.client() as http:
        assert (await _ready(http))[0] == 200
        os.killpg(server.proc.pid, signal.SIGTERM)
        seen: list[tuple[float, int, bool | None]] = []
        started = time.monotonic()
        while time.monotonic() - started < 20:
            status, body = await _ready(http)
            live = None
            if status:
                try:
                    live = (await http.get("/health/live", timeout=2)).status_code == 200
                except httpx.HTTPError:
                    live = False
            seen.append((time.monotonic() - started, status, live))
            if status == 0:
                break
            if status == 503:
                assert body["ready"] is False and body["checks"]["shutdown"]["ok"] is False
            await asyncio.sleep(0.1)
    statuses = [s for _, s, _ in seen]
    # not ready at once, still serving (live) during the grace period, then the listener closes
    assert statuses[0] == 503, seen
    assert statuses[-1] == 0, seen
    draining = [t for t, s, live in seen if s == 503 and live]
    assert draining and draining[-1] >= 1.0, seen
    server.proc.wait(timeout=30)
    log = server.log_path.read_text()
    assert log.index('"event": "api.draining"') < log.index('"event": "api.stopped"')


@pytest.mark.skipif(bool(os.environ.get("DATABASE_URL")),
                    reason="stops and starts this checkout's own local server (rts-monitor db up)")
async def test_ready_flips_during_a_database_outage(api_factory: Callable[..., ApiServer]) -> None:
    server = api_factory()
    settings = Settings.from_env()
    async with server.client() as http:
        status, body = await _ready(http)
        assert status == 200 and body["ready"] is True
        assert set(body["checks"]) == {"shutdown", "pool", "database", "migrations"}
        try:
            await asyncio.to_thread(localdb.stop_server, settings, mode="fast")
            status, body = await _poll_ready(http, 503, within=10)
            assert status == 503, body
            assert body["checks"]["database"]["ok"] is False and body["checks"]["shutdown"]["ok"] is True
            assert (await http.get("/health/live")).status_code == 200  # alive: no restart for an outage
        finally:
            await asyncio.to_thread(localdb.start_server, settings)
        assert (await _poll_ready(http, 200, within=15))[0] == 200


# --- rts-monitor doctor ---------------------------------------------------------------------------

_GOOD = {
    "RTS_ENV": "production", "RTS_JWT_SECRET": "j" * 40, "RTS_WEBHOOK_SECRET": "w" * 40,
    "RTS_PUBLIC_URL": "https://monitor.example.com", "RTS_METRICS_TOKEN": TOKEN,
}


async def _jobs_ran(conn: Any, *, ago_seconds: float = 5, failures: int = 0) -> None:
    for job in wiring.jobs():
        await conn.execute(
            """INSERT INTO rts_job_runs (name, interval_seconds, registered_at, last_started_at, last_success_at, runs,
                                         consecutive_failures, failures, last_error)
               VALUES (%s, 60, now() - interval '1 day', now() - make_interval(secs => %s),
                       now() - make_interval(secs => %s), 10, %s, %s, CASE WHEN %s > 0 THEN 'RuntimeError: boom' END)
               ON CONFLICT (name) DO UPDATE SET last_started_at = excluded.last_started_at,
                   registered_at = excluded.registered_at,
                   last_success_at = excluded.last_success_at, consecutive_failures = excluded.consecutive_failures,
                   failures = excluded.failures, last_error = excluded.last_error""",
            (job.name, ago_seconds, ago_seconds, failures, failures, failures))


def _doctor(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], db_url: str,
            env: dict[str, str], *, unset: tuple[str, ...] = ()) -> tuple[int, list[dict[str, Any]]]:
    for name in ("RTS_ENV", "RTS_JWT_SECRET", "RTS_WEBHOOK_SECRET", "RTS_PUBLIC_URL", "RTS_METRICS_TOKEN",
                 "RTS_SMTP_HOST", *unset):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DATABASE_URL", db_url)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    capsys.readouterr()
    code = cli.main(["doctor", "--all", "--json"])
    return code, json.loads(capsys.readouterr().out)


async def test_doctor_passes_a_good_deployment(conn: Any, db_url: str, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    await _jobs_ran(conn)
    code, rows = await asyncio.to_thread(_doctor, monkeypatch, capsys, db_url, _GOOD)
    assert [r for r in rows if r["status"] == "fail"] == []
    assert code == 0
    checks = {(r["area"], r["check"]) for r in rows}
    assert {("database", "migrations"), ("database", "clock skew"), ("database", "TimeZone"),
            ("database", "edition"), ("config", "secrets")} <= checks
    assert {("jobs", job.name) for job in wiring.jobs()} <= checks
    # a scheduler that just started: its jobs waiting for their first tick are fine
    await conn.execute("UPDATE rts_job_runs SET registered_at = now(), interval_seconds = 3600")
    code, rows = await asyncio.to_thread(_doctor, monkeypatch, capsys, db_url, _GOOD)
    assert code == 0, [r for r in rows if r["status"] == "fail"]
    assert all("first run due" in r["found"] for r in rows if r["area"] == "jobs")


async def test_doctor_fails_a_broken_deployment(conn: Any, db_url: str, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    await _jobs_ran(conn, ago_seconds=3600)  # every job stopped running an hour ago
    await conn.execute("UPDATE rts_job_runs SET consecutive_failures = 5, last_error = 'RuntimeError: boom' "
                       "WHERE name = 'alerts.evaluate'")
    await conn.execute("DELETE FROM rts_job_runs WHERE name = 'console.cleanup'")  # no scheduler ever ran it
    biz = await factories.business(conn)
    await conn.execute(
        "INSERT INTO agent_alerts (business_id, alert_name, alert_type, severity, conditions, notification_channels, "
        "notification_recipients, is_active) VALUES (%s, 'cpu', 'metric', 'warning', %s, %s, %s, true)",
        (biz, json.dumps({"metric": "cpu_percent", "operator": ">", "threshold": 90}), json.dumps(["email", "sms"]),
         json.dumps(["ops@example.com"])))
    env = {k: v for k, v in _GOOD.items() if k != "RTS_WEBHOOK_SECRET"}
    code, rows = await asyncio.to_thread(_doctor, monkeypatch, capsys, db_url, env)
    assert code == 1
    failing = {r["check"]: r for r in rows if r["status"] == "fail"}
    assert "RTS_WEBHOOK_SECRET" in failing and "set RTS_WEBHOOK_SECRET" in failing["RTS_WEBHOOK_SECRET"]["fix"]
    assert "RTS_SMTP_HOST" in failing  # an e-mail rule and no SMTP server
    assert "RTS_SMS_FROM" in failing["RTS_SMS_*"]["found"]  # and it texts, without SMS credentials
    assert "alerts.evaluate" in failing and "5 times in a row" in failing["alerts.evaluate"]["found"]
    assert failing["console.cleanup"]["found"] == "no scheduler has ever run it"
    assert re.match(r"last ran 36\d\d s ago \(every 60 s\)", failing["devices.presence"]["found"])
    assert sum(r["area"] == "jobs" and r["status"] == "fail" for r in rows) == len(wiring.jobs())
