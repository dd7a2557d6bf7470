"""Backtest: a rule's would-be episodes over a past period, judged exactly as the live evaluator."""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import msgspec
import psycopg
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from psycopg.rows import dict_row

from rts_monitor.alerts import backtest, evaluator
from rts_monitor.alerts.structs import BacktestRequest, BacktestResult
from rts_monitor.auth.principal import Principal, Role
from rts_monitor.core.settings import Settings
from tests import factories
from tests.test_alerts import CPU90, add_rule, add_samples, episodes

STAFF = Principal(user_id=uuid4(), role=Role.admin, business_id=None)


async def run_backtest(conn: Any, settings: Settings, edition: Any, *, business_id: UUID | None = None,
                       device_id: UUID | None = None, conditions: dict[str, Any], since: datetime,
                       until: datetime | None = None, create_ticket: bool | None = False,
                       principal: Principal = STAFF, tiers: bool = True) -> BacktestResult:
    body = {"rule": {"alert_name": "bt", "severity": "warning", "business_id": business_id,
                     "agent_device_id": device_id, "conditions": conditions, "create_ticket": create_ticket},
            "since": since, "until": until}
    data = msgspec.convert(body, BacktestRequest)
    return await backtest.backtest(conn, principal=principal, settings=settings, edition=edition, data=data,
                                   tiers=tiers)


async def test_backtest_finds_the_episodes_the_evaluator_opens(conn: psycopg.AsyncConnection[Any],
                                                               settings: Settings, server_edition: Any) -> None:
    settings = settings.with_(alert_data_stale_seconds=6 * 3600)
    t = await factories.tenant(conn)
    quiet = await factories.agent(conn, t.business_id)
    start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=2)
    # 20 min calm, 15 min hot, 20 min calm, 12 min hot, calm to the end.
    values = [40.0] * 20 + [95.0] * 15 + [40.0] * 20 + [97.0] * 12 + [40.0] * 40
    await add_samples(conn, t.agent.id, start, values)
    await add_samples(conn, quiet.id, start, [40.0] * len(values))
    result = await run_backtest(conn, settings, server_edition, business_id=t.business_id, conditions=CPU90,
                                since=start - timedelta(minutes=5), create_ticket=True)
    assert result.totals.devices_evaluated == 2 and result.totals.devices_affected == 1
    (dev,) = result.devices
    assert dev.agent_device_id == t.agent.id
    got = [(e.start, e.end, e.value, e.peak, e.ticket) for e in dev.episodes]
    m = timedelta(minutes=1)
    # The 10-minute window is covered and above 90 at the 11th hot sample; it clears (average at
    # most 85.5) once enough calm samples are in it.
    assert got[0][0] == start + 30 * m
    assert len(got) == 2 and all(g[4] for g in got)
    assert got[0][3] == 95.0 and got[1][3] == 97.0
    assert result.totals.episodes == 2 and result.totals.tickets == 2
    # create_ticket null: the business's ticket policy decides by severity, as for the live
    # evaluator's outbox (rule_creates_ticket): a new business (no policy) tickets every severity.
    by_policy = await run_backtest(conn, settings, server_edition, business_id=t.business_id, conditions=CPU90,
                                   since=start - timedelta(minutes=5), create_ticket=None)
    assert by_policy.totals.tickets == 2 and all(e.ticket for e in by_policy.devices[0].episodes)
    await conn.execute("INSERT INTO business_ticket_policy (business_id, ticket_severities) VALUES (%s, '{critical}')",
                       (t.business_id,))
    by_policy = await run_backtest(conn, settings, server_edition, business_id=t.business_id, conditions=CPU90,
                                   since=start - timedelta(minutes=5), create_ticket=None)
    assert by_policy.totals.tickets == 0 and not any(e.ticket for e in by_policy.devices[0].episodes)
    forced = await run_backtest(conn, settings, server_edition, business_id=t.business_id, conditions=CPU90,
                                since=start - timedelta(minutes=5), create_ticket=True)
    assert forced.totals.tickets == 2
    await conn.execute("DELETE FROM business_ticket_policy WHERE business_id = %s", (t.business_id,))
    assert result.chart.threshold == 90 and result.chart.clear_threshold == 85.5
    # The live evaluator, on the same history as it arrives, opens exactly these.
    await conn.execute("DELETE FROM agent_metrics")
    rule = await add_rule(conn, t.business_id, CPU90)
    await evaluator.evaluate(conn, settings)
    for i, v in enumerate(values):
        await add_samples(conn, t.agent.id, start + i * m, [v])
        await add_samples(conn, quiet.id, start + i * m, [40.0])
        await evaluator.evaluate(conn, settings)
    live = [(e["detected_at"], e["cleared_at"], e["metric_value"]) for e in await episodes(conn, rule)]
    assert live == [(g[0], g[1], g[2]) for g in got]


@pytest.mark.editions
async def test_a_refreshed_calm_history_is_read_from_the_tier_alone(conn: psycopg.AsyncConnection[Any],
                                                                   settings: Settings, server_edition: Any) -> None:
    """After a refresh nothing is in doubt: every hour of a calm device, the newest one (raw tail
    past the watermarks) included, is proven quiet, and the time after an offline device's last
    sample holds nothing to judge, so no raw range is read. (On the TSL edition the aggregates'
    logs keep an open invalidation range from each refresh end on; counting it against hours the
    tiers do not serve, and reading the empty time after a last sample, put a range of every
    device on the raw path: 10.7 s instead of about 1 s for 1 day x 10,000 devices in
    benchmarks/backtest.py.) Late rows into an hour the tier has not seen are still found."""
    from rts_monitor.tiers import service as tiers_service
    from tests.test_alerts import deliver

    t = await factories.tenant(conn)
    offline = await factories.agent(conn, t.business_id)
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=4)
    m = timedelta(minutes=1)
    minutes = int((datetime.now(UTC) - start).total_seconds() // 60) - 1
    # Calm throughout, except no sample at all in the second hour; the offline device stops after 1 h.
    await add_samples(conn, t.agent.id, start, [40.0] * 60)
    await add_samples(conn, t.agent.id, start + 120 * m, [40.0] * (minutes - 120))
    await add_samples(conn, offline.id, start, [40.0] * 60)
    await tiers_service.refresh(conn, edition=server_edition, start=None, end=None)
    since = start + 30 * m
    result = await run_backtest(conn, settings, server_edition, business_id=t.business_id, conditions=CPU90,
                                since=since)
    assert result.totals.devices_evaluated == 2 and result.totals.episodes == 0
    assert result.reads.tier == "agent_metrics_1h"
    assert (result.reads.raw_ranges, result.reads.instants) == (0, 0), result.reads
    # A spool replayed into the empty hour, not refreshed yet: a tier cannot show it (TimescaleDB
    # logs an invalidation, the other editions a pending ingest range), so it is read raw.
    await deliver(conn, t.agent.id, [(start + (70 + i) * m, 95.0) for i in range(15)])
    late = await run_backtest(conn, settings, server_edition, business_id=t.business_id, conditions=CPU90,
                              since=since)
    assert late.totals.episodes == 1 and late.reads.raw_ranges >= 1, late.reads
    (dev,) = late.devices
    assert dev.agent_device_id == t.agent.id and dev.episodes[0].start == start + 80 * m


# --- the backtest means what the evaluator means (property) -------------------------------------

_LEVELS = st.sampled_from([None, 20.0, 35.0, 47.0, 49.0, 50.0, 51.0, 53.0, 65.0, 90.0])
_REGIME = st.tuples(st.integers(1, 40), _LEVELS, st.sampled_from([0.0, 1.0, 3.0]),
                    st.sampled_from([0, 0, 0, 2, 12, 40]))
_CALM = st.tuples(st.integers(60, 150), st.just("calm"), st.just(0.0), st.sampled_from([0, 5]))
_HISTORY = st.lists(st.one_of(_REGIME, _REGIME, _REGIME, _CALM), min_size=1, max_size=8)
_RULE = st.fixed_dictionaries({
    "metric": st.just("cpu_percent"), "operator": st.sampled_from([">", ">=", "<", "<="]),
    "threshold": st.just(50.0), "duration_minutes": st.sampled_from([0, 1, 3, 5, 10]),
    "aggregation": st.sampled_from(["avg", "min", "max"]), "hysteresis": st.sampled_from([None, 0.0, 2.0]),
})
_WINDOW = st.tuples(st.integers(0, 400), st.integers(1, 90), st.integers(0, 2))


@pytest.mark.editions
@given(rule=_RULE, histories=st.lists(_HISTORY, min_size=2, max_size=2),
       windows=st.lists(_WINDOW, max_size=2), jitter=st.sampled_from([0, 10, 25]),
       refresh_at=st.one_of(st.none(), st.floats(0.1, 0.9)), refresh_end=st.booleans(),
       seed=st.integers(0, 2**16))
@hsettings(max_examples=int(os.environ.get("RTS_BACKTEST_EXAMPLES", "30")), deadline=None,
           suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
def test_property_backtest_equals_the_live_evaluator(
        db_url: str, settings: Settings, server_edition: Any, rule: dict[str, Any],
        histories: list[list[tuple[Any, ...]]], windows: list[tuple[int, int, int]], jitter: int,
        refresh_at: float | None, refresh_end: bool, seed: int) -> None:
    """Random histories (gaps, flapping around the threshold, calm hours, maintenance windows) fed
    to the live evaluator as they would arrive (in batches, some late, judged by ingest hooks,
    incremental and full cycles), and the rollup tiers refreshed part-way or not at all: the
    backtest over the same period finds exactly the episodes the evaluator opened, from the same
    instant to the same instant, with the same value."""
    import random

    from rts_monitor.tiers import service as tiers_service
    from tests.test_alerts import deliver

    rnd = random.Random(seed)
    cfg = settings.with_(alert_data_stale_seconds=24 * 3600)
    calm = rule["threshold"] + (-30.0 if rule["operator"] in (">", ">=") else 30.0)

    async def run() -> None:
        async with await psycopg.AsyncConnection.connect(db_url, autocommit=True, row_factory=dict_row) as conn:
            biz = await factories.business(conn)
            locs = [await factories.location(conn, biz) for _ in range(2)]
            devs = [(await factories.agent(conn, biz, locs[i])).id for i in range(2)]
            # Each device's history, ending a few minutes ago.
            series: list[list[tuple[datetime, float | None]]] = []
            for regimes in histories:
                rows: list[tuple[timedelta, float | None]] = []
                offset = timedelta(0)
                for length, level, flap, gap in regimes:
                    offset += timedelta(minutes=gap)
                    for _ in range(length):
                        value = calm if level == "calm" else level
                        if value is not None and flap:
                            value += rnd.choice([-flap, 0.0, flap])
                        rows.append((offset + timedelta(seconds=rnd.randint(-jitter, jitter)), value))
                        offset += timedelta(minutes=1)
                series.append([(t, v) for t, v in rows])
            span = max(s[-1][0] for s in series)
            end = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=2)
            base = end - span
            timed = [sorted({base + t: v for t, v in s}.items()) for s in series]
            for start_min, length, scope in windows:
                w_start = base + timedelta(minutes=start_min)
                await conn.execute(
                    "INSERT INTO alert_maintenance_windows (business_id, service_location_id, agent_device_id, "
                    "starts_at, ends_at) VALUES (%s, %s, %s, %s, %s)",
                    (biz, locs[0] if scope == 1 else None, devs[1] if scope == 2 else None, w_start,
                     w_start + timedelta(minutes=length)))
            rule_id = await add_rule(conn, biz, rule, name="prop")
            await evaluator.evaluate(conn, cfg)  # the devices are known before their first sample
            # Arrival: batches of 1-10 samples per device, in order, interleaved; one device's
            # batches sometimes held back (late) and delivered together.
            queue = [list(s) for s in timed]
            batches: list[tuple[int, list[tuple[datetime, float | None]]]] = []
            while any(queue):
                d = rnd.choice([i for i, q in enumerate(queue) if q])
                n = rnd.randint(1, 10)
                batches.append((d, queue[d][:n]))
                queue[d] = queue[d][n:]
            refresh_index = None if refresh_at is None else int(len(batches) * refresh_at)
            held: list[tuple[int, list[tuple[datetime, float | None]]]] = []
            for i, (d, rows) in enumerate(batches):
                if i == refresh_index:
                    await tiers_service.refresh(conn, edition=server_edition, start=None, end=None)
                if rnd.random() < 0.15 and len(held) < 3:
                    held.append((d, rows))
                    if not any(h[0] != d for h in held):
                        continue
                for hd, hrows in [*held, (d, rows)] if held and held[0][0] == d else [(d, rows)]:
                    await deliver(conn, devs[hd], hrows)
                if held and held[0][0] == d:
                    held = []
                roll = rnd.random()
                if roll < 0.6:
                    await evaluator.evaluate(conn, cfg, devices=[devs[d]], kinds=("metric",))
                elif roll < 0.8:
                    await evaluator.evaluate(conn, cfg, incremental=True)
                elif roll < 0.9:
                    await evaluator.evaluate(conn, cfg)
            for hd, hrows in held:
                await deliver(conn, devs[hd], hrows)
            await evaluator.evaluate(conn, cfg)
            if refresh_end:
                await tiers_service.refresh(conn, edition=server_edition, start=None, end=None)
            live = sorted((e["agent_device_id"], e["detected_at"], e["cleared_at"], e["metric_value"])
                          for e in await episodes(conn, rule_id))
            until = datetime.now(UTC)
            result = await run_backtest(conn, cfg, server_edition, business_id=biz, conditions=rule,
                                        since=base - timedelta(minutes=1), until=until)
            got = sorted((d.agent_device_id, e.start, e.end, e.value) for d in result.devices for e in d.episodes)
            assert got == live, (result.reads, rule)
            raw = await run_backtest(conn, cfg, server_edition, business_id=biz, conditions=rule,
                                     since=base - timedelta(minutes=1), until=until, tiers=False)
            assert raw.devices == result.devices and raw.totals == result.totals
            await conn.execute("UPDATE agent_alerts SET is_active = false WHERE id = %s", (rule_id,))

    asyncio.run(run())


# --- over HTTP: tenancy, fields ------------------------------------------------------------------

async def test_backtest_over_http_answers_per_device_and_keeps_tenancy(api_factory: Any, conn: Any) -> None:
    from tests.test_alerts import customer, staff

    mine, theirs = await factories.tenant(conn), await factories.tenant(conn)
    start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=3)
    for t in (mine, theirs):
        await add_samples(conn, t.agent.id, start, [40.0] * 30 + [95.0] * 20 + [40.0] * 30)
    server = api_factory(env={"RTS_ALERT_CUSTOMER_RULES": "true"})
    since = (start - timedelta(minutes=10)).isoformat()
    rule = {"alert_name": "cpu_high", "severity": "warning", "conditions": CPU90, "create_ticket": True}
    async with server.client() as c:
        h = customer(server, mine)
        resp = await c.post("/api/alerts/rules/backtest", headers=h, json={"rule": rule, "since": since})
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert body["business_id"] == str(mine.business_id) and body["totals"]["episodes"] == 1
        (dev,) = body["devices"]
        assert dev["agent_device_id"] == str(mine.agent.id) and dev["episodes"][0]["ticket"] is True
        assert body["chart"]["threshold"] == 90 and body["chart"]["clear_threshold"] == 85.5
        assert body["chart"]["history_path"] == "/api/agents/{agent_id}/metrics/history"
        # Another business's device or business: not found, as everywhere.
        for extra in ({"agent_device_id": str(theirs.agent.id)}, {"business_id": str(theirs.business_id)}):
            resp = await c.post("/api/alerts/rules/backtest", headers=h,
                                json={"rule": {**rule, **extra}, "since": since})
            assert resp.status_code == 404, (extra, resp.text)
        # Staff may backtest any business.
        resp = await c.post("/api/alerts/rules/backtest", headers=staff(server),
                            json={"rule": {**rule, "agent_device_id": str(theirs.agent.id)}, "since": since})
        assert resp.status_code == 200 and resp.json()["totals"]["devices_evaluated"] == 1
        # A field that breaks a rule is a 422 naming it.
        old = (datetime.now(UTC) - timedelta(days=31)).isoformat()
        cases = [
            ({"rule": {**rule, "conditions": {"kind": "agent_offline", "duration_minutes": 5}}, "since": since},
             "rule.conditions.kind"),
            ({"rule": {**rule, "conditions": {**CPU90, "threshold": 150}}, "since": since},
             "rule.conditions.threshold"),
            ({"rule": rule, "since": old}, "since"),
            ({"rule": rule, "since": since, "until": since}, "until"),
            ({"rule": rule, "since": "0001-01-01T00:00:00Z"}, "since"),
            ({"rule": rule, "since": since, "until": "9999-12-31T23:59:59Z"}, "until"),
            ({"rule": {**rule, "conditions": {**CPU90, "bogus": 1}}, "since": since}, "rule.conditions.bogus"),
        ]
        for payload, field in cases:
            resp = await c.post("/api/alerts/rules/backtest", headers=h, json=payload)
            assert resp.status_code == 422 and resp.json()["field"] == field, (field, resp.text)


async def test_customers_backtest_only_when_customer_rules_are_on(api: Any, client: Any, api_conn: Any) -> None:
    from tests.test_alerts import customer

    t = await factories.tenant(api_conn)
    resp = await client.post("/api/alerts/rules/backtest", headers=customer(api, t), json={
        "rule": {"alert_name": "x", "severity": "info", "conditions": CPU90},
        "since": (datetime.now(UTC) - timedelta(days=1)).isoformat()})
    assert resp.status_code == 403
