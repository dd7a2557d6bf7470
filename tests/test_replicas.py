"""Read replicas (db/reads.py) against a real streaming standby (tests/fix_replica.py): reads go to
it, a caller's read after its own write does not, a standby that lags or dies is bypassed without
a failed request and used again when it is back."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any
from uuid import uuid4

import httpx
import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from rts_monitor import cli
from tests import factories
from tests.fix_api import ApiServer
from tests.fix_db import with_dbname
from tests.fix_replica import kill_standby, restart_standby, standby_sql

TOKEN = "replica-metrics-token"


def test_db_up_replica_made_a_streaming_standby_of_the_same_server(standby_url: str, server_url: str) -> None:
    same = ("SELECT current_setting('server_version') AS v, current_setting('shared_preload_libraries') AS libs, "
            "(SELECT system_identifier FROM pg_control_system()) AS cluster")
    with psycopg.connect(with_dbname(standby_url, "postgres")) as s, \
            psycopg.connect(with_dbname(server_url, "postgres")) as p:
        assert s.execute("SELECT pg_is_in_recovery()").fetchone() == (True,)
        assert s.execute("SELECT status FROM pg_stat_wal_receiver").fetchone() == ("streaming",)
        assert s.execute(same).fetchone() == p.execute(same).fetchone()
    status = subprocess.run([sys.executable, "-m", "rts_monitor.cli", "db", "status"], capture_output=True,
                            text=True, timeout=60, env=dict(os.environ))
    port = standby_url.split("@", 1)[1].split("/", 1)[0].rsplit(":", 1)[1]
    assert any(line.split()[:2] == ["replica", "running"] and line.endswith(f":{port}")
               for line in status.stdout.splitlines()), status.stdout


def _server(api_factory: Callable[..., ApiServer], db_url: str, standby_url: str, *, max_lag: float) -> ApiServer:
    dbname = db_url.rsplit("/", 1)[1]
    return api_factory(env={"RTS_DATABASE_READ_URL": with_dbname(standby_url, dbname),
                            "RTS_READ_MAX_LAG_SECONDS": str(max_lag), "RTS_READ_CHECK_SECONDS": "0.2",
                            "RTS_METRICS_TOKEN": TOKEN, "RTS_METRICS_SAMPLE_SECONDS": "0.2"})


async def _replica(http: httpx.AsyncClient) -> dict[str, Any]:
    resp = await http.get("/health")
    assert resp.status_code == 200, resp.text
    replica: dict[str, Any] = resp.json()["replica"]
    return replica


async def _wait_state(http: httpx.AsyncClient, state: str, within: float = 20) -> dict[str, Any]:
    deadline = time.monotonic() + within
    while True:
        replica = await _replica(http)
        if replica["state"] == state or time.monotonic() > deadline:
            assert replica["state"] == state, replica
            return replica
        await asyncio.sleep(0.1)


async def _counters(http: httpx.AsyncClient) -> dict[str, float]:
    resp = await http.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert resp.status_code == 200
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(resp.text):
        for s in family.samples:
            if s.name == "rts_db_replica_reads_total":
                out["replica"] = s.value
            elif s.name == "rts_db_replica_bypassed_reads_total":
                out[s.labels["reason"]] = s.value
            elif s.name in ("rts_db_replica_pool_connections", "rts_db_pool_connections"):
                out[s.name] = s.value
    return out


async def test_reads_are_served_by_the_standby_and_a_callers_own_write_by_the_primary(
        api_factory: Callable[..., ApiServer], db_url: str, standby_url: str, conn: Any) -> None:
    t = await factories.tenant(conn)
    server = _server(api_factory, db_url, standby_url, max_lag=60)
    writer = server.headers(server.token("admin", user_id=uuid4()))
    reader = server.headers(server.token("admin", user_id=uuid4()))
    agent = f"/api/agents/{t.agent.id}"
    async with server.client() as http:
        replica = await _wait_state(http, "in_use")
        assert replica["lag_seconds"] is not None and replica["lag_seconds"] < 60
        before = await _counters(http)
        for path in (agent, f"/api/agents?business_id={t.business_id}", f"{agent}/metrics/history",
                     f"/api/fleet/metrics/history?business_id={t.business_id}",
                     f"/api/reports/availability?business_id={t.business_id}"):
            assert (await http.get(path, headers=reader)).status_code == 200, path
        assert (await _counters(http))["replica"] - before.get("replica", 0) == 5
        # the standby's pool has its own gauges beside the primary's (sampled every 0.2 s here)
        deadline = time.monotonic() + 10
        while (await _counters(http)).get("rts_db_replica_pool_connections", 0) < 1:
            assert time.monotonic() < deadline, await _counters(http)
            await asyncio.sleep(0.1)
        assert (await _counters(http))["rts_db_pool_connections"] >= 1
        old = (await http.get(agent, headers=reader)).json()["device_name"]

        # With replay paused the standby is frozen (and, under the 60 s bound, still in use): a
        # read that sees a change made after the pause was served by the primary, one that does
        # not by the standby.
        standby_sql(standby_url, "SELECT pg_wal_replay_pause()")
        try:
            async with server.client() as writing:  # its own cookie jar: the reader's stays empty
                patched = await writing.patch(agent, json={"device_name": "renamed-after-pause"}, headers=writer)
                assert patched.status_code == 200, patched.text
                for _ in range(3):  # the writer reads its own write, at once and again
                    assert (await writing.get(agent, headers=writer)).json()["device_name"] == "renamed-after-pause"
                    listed = (await writing.get(f"/api/agents?business_id={t.business_id}", headers=writer)).json()
                    assert [a["device_name"] for a in listed["agents"]] == ["renamed-after-pause"]
            # by its credential alone (this process remembers it) ...
            assert (await http.get(agent, headers=writer)).json()["device_name"] == "renamed-after-pause"
            # ... or by the cookie alone (what another API process would go by)
            cookie = patched.cookies.get("rts_wrote")
            assert cookie is not None
            async with server.client(cookies={"rts_wrote": cookie}) as other:
                fresh = server.headers(server.token("admin", user_id=uuid4()))
                assert (await other.get(agent, headers=fresh)).json()["device_name"] == "renamed-after-pause"
            # anyone else reads the frozen standby
            assert (await http.get(agent, headers=reader)).json()["device_name"] == old
            assert (await _replica(http))["state"] == "in_use"
            assert (await _counters(http))["own_write"] >= 8
        finally:
            standby_sql(standby_url, "SELECT pg_wal_replay_resume()")
        deadline = time.monotonic() + 10
        while (await http.get(agent, headers=reader)).json()["device_name"] == old:
            assert time.monotonic() < deadline, "the standby never replayed the rename"
            await asyncio.sleep(0.1)


async def test_a_standby_further_behind_than_the_bound_is_bypassed_until_it_catches_up(
        api_factory: Callable[..., ApiServer], db_url: str, standby_url: str, conn: Any) -> None:
    t = await factories.tenant(conn)
    server = _server(api_factory, db_url, standby_url, max_lag=1)
    reader = server.headers(server.token("admin", user_id=uuid4()))
    agent = f"/api/agents/{t.agent.id}"
    async with server.client() as http:
        await _wait_state(http, "in_use")
        standby_sql(standby_url, "SELECT pg_wal_replay_pause()")
        try:
            # another client's write the paused standby cannot replay
            await conn.execute("UPDATE agent_devices SET device_name = 'written-by-someone-else' WHERE id = %s",
                               (t.agent.id,))
            replica = await _wait_state(http, "bypassed", within=10)
            assert replica["reason"] == "lag" and replica["lag_seconds"] > 1, replica
            # reads go on, from the primary, fresh
            assert (await http.get(agent, headers=reader)).json()["device_name"] == "written-by-someone-else"
            assert (await _counters(http))["lag"] >= 1
        finally:
            standby_sql(standby_url, "SELECT pg_wal_replay_resume()")
        replica = await _wait_state(http, "in_use", within=10)
        assert replica["lag_seconds"] < 1
        before = (await _counters(http))["replica"]
        assert (await http.get(agent, headers=reader)).json()["device_name"] == "written-by-someone-else"
        assert (await _counters(http))["replica"] == before + 1


async def test_killing_the_standby_under_load_fails_no_request_and_it_is_used_again(
        api_factory: Callable[..., ApiServer], db_url: str, standby_url: str, conn: Any) -> None:
    t = await factories.tenant(conn)
    server = _server(api_factory, db_url, standby_url, max_lag=5)
    readers = [server.headers(server.token("admin", user_id=uuid4())) for _ in range(6)]
    paths = [f"/api/agents/{t.agent.id}", f"/api/agents?business_id={t.business_id}",
             f"/api/agents/{t.agent.id}/metrics/history",
             f"/api/fleet/metrics/history?business_id={t.business_id}"]
    statuses: list[int] = []
    failures: list[str] = []
    stop = asyncio.Event()

    async def load(http: httpx.AsyncClient, headers: dict[str, str]) -> None:
        i = 0
        while not stop.is_set():
            resp = await http.get(paths[i % len(paths)], headers=headers)
            statuses.append(resp.status_code)
            if resp.status_code != 200:
                failures.append(f"{paths[i % len(paths)]}: {resp.status_code} {resp.text[:200]}")
            i += 1

    async with server.client() as http:
        await _wait_state(http, "in_use")
        before = await _counters(http)
        workers = [asyncio.create_task(load(http, h)) for h in readers]
        await asyncio.sleep(1.5)
        served_before_kill = (await _counters(http))["replica"] - before.get("replica", 0)
        at_kill = len(statuses)
        await asyncio.to_thread(kill_standby)
        await asyncio.sleep(2.0)
        stop.set()
        await asyncio.gather(*workers)
        assert failures == [], failures[:5]
        assert len(statuses) - at_kill > 20, "the load stopped at the kill"
        assert served_before_kill > 20
        replica = await _replica(http)
        assert replica["state"] == "bypassed" and replica["reason"] == "down", replica
        after_kill = await _counters(http)
        assert after_kill["down"] + after_kill["failed"] > 20
        assert "db.replica_bypassed" in server.log_path.read_text()

        await asyncio.to_thread(restart_standby)
        await _wait_state(http, "in_use", within=30)
        served = (await _counters(http))["replica"]
        for path in paths:
            assert (await http.get(path, headers=readers[0])).status_code == 200
        assert (await _counters(http))["replica"] == served + len(paths)
    assert "db.replica_in_use" in server.log_path.read_text()


def _doctor_standby(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], db_url: str,
                    read_url: str) -> tuple[int, dict[str, dict[str, Any]]]:
    """``rts-monitor doctor``'s standby rows (by check) with RTS_DATABASE_READ_URL=read_url."""
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("RTS_DATABASE_READ_URL", read_url)
    capsys.readouterr()
    code = cli.main(["doctor", "--all", "--json"])
    rows = json.loads(capsys.readouterr().out)
    return code, {r["check"]: r for r in rows if r["area"] == "standby"}


async def test_doctor_checks_that_the_read_url_is_a_replaying_standby_of_this_database(
        db_url: str, standby_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    dbname = db_url.rsplit("/", 1)[1]
    read_url = with_dbname(standby_url, dbname)
    deadline = time.monotonic() + 20  # this test's database was created a moment ago: replayed yet?
    while True:
        try:
            await (await psycopg.AsyncConnection.connect(read_url, connect_timeout=5)).close()
            break
        except psycopg.OperationalError:
            assert time.monotonic() < deadline, "the standby never replayed this test's database"
            await asyncio.sleep(0.2)
    _, good = await asyncio.to_thread(_doctor_standby, monkeypatch, capsys, db_url, read_url)
    assert {check: row["status"] for check, row in good.items()} == {
        "connection": "ok", "in recovery": "ok", "same cluster": "ok", "replay": "ok"}, good
    assert "KiB of WAL behind" in good["replay"]["found"]

    standby_sql(standby_url, "SELECT pg_wal_replay_pause()")
    try:
        _, paused = await asyncio.to_thread(_doctor_standby, monkeypatch, capsys, db_url, read_url)
    finally:
        standby_sql(standby_url, "SELECT pg_wal_replay_resume()")
    assert paused["replay"]["status"] == "warn" and "pg_wal_replay_resume" in paused["replay"]["fix"]

    # the primary itself, the standby's other database, a port nobody listens on: each a failure
    code, primary = await asyncio.to_thread(_doctor_standby, monkeypatch, capsys, db_url, db_url)
    assert code == 1 and primary["in recovery"]["status"] == "fail", primary
    code, other_db = await asyncio.to_thread(_doctor_standby, monkeypatch, capsys, db_url,
                                             with_dbname(standby_url, "postgres"))
    assert code == 1 and other_db["database"]["status"] == "fail" and dbname in other_db["database"]["found"]
    closed = psycopg.conninfo.make_conninfo(read_url, port=_closed_port())
    code, down = await asyncio.to_thread(_doctor_standby, monkeypatch, capsys, db_url, closed)
    assert code == 1 and down["connection"]["status"] == "fail" and set(down) == {"connection"}


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
