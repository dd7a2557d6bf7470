"""Alerting: rules API, SQL evaluation in data time, lifecycle, maintenance, tickets, tenancy."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import psycopg
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from psycopg.types.json import Jsonb

from rts_monitor.alerts import evaluator
from rts_monitor.core.settings import Settings
from tests import factories


async def add_rule(conn: Any, business_id: UUID, conditions: dict[str, Any], *, name: str = "cpu_high",
                   device_id: UUID | None = None, severity: str = "warning", **extra: Any) -> UUID:
    """A rule row straight in SQL (the API path is tested separately)."""
    cols = {"alert_name": name, "alert_type": name, "severity": severity, "business_id": business_id,
            "agent_device_id": device_id, "conditions": Jsonb(conditions),
            # no ticket unless a test asks: the business policy (tickets on) is tested on its own
            "create_ticket": False, **extra}
    names = ", ".join(cols)
    marks = ", ".join(f"%({k})s" for k in cols)
    cur = await conn.execute(f"INSERT INTO agent_alerts ({names}) VALUES ({marks}) RETURNING id", cols)
    return (await cur.fetchone())["id"]  # type: ignore[no-any-return]


async def add_samples(conn: Any, device_id: UUID, start: datetime, values: list[float | None], *,
                      step: timedelta = timedelta(minutes=1), metric: str = "cpu_percent") -> datetime:
    """One sample per ``step`` from ``start``; returns the time of the last one."""
    rows = [(device_id, start + i * step, factories.stored_value(metric, v)) for i, v in enumerate(values)]
    col = factories.stored_column(metric)
    async with conn.cursor() as cur:
        await cur.executemany(
            f"INSERT INTO agent_metrics (agent_device_id, collected_at, {col}) VALUES (%s, %s, %s) "
            f"ON CONFLICT (agent_device_id, collected_at) DO UPDATE SET {col} = EXCLUDED.{col}", rows)
    return rows[-1][1]


async def episodes(conn: Any, rule_id: UUID) -> list[dict[str, Any]]:
    cur = await conn.execute("SELECT * FROM agent_alert_history WHERE agent_alert_id = %s ORDER BY triggered_at",
                             (rule_id,))
    return list(await cur.fetchall())


CPU90 = {"metric": "cpu_percent", "operator": ">", "threshold": 90, "duration_minutes": 10}


async def test_metric_rule_fires_after_exactly_the_duration_and_only_once(
        conn: psycopg.AsyncConnection[Any], settings: Settings) -> None:
    t = await factories.tenant(conn)
    rule = await add_rule(conn, t.business_id, CPU90)
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=12)
    # 10 samples one minute apart span 9 minutes: not yet "above 90 for 10 minutes".
    await add_samples(conn, t.agent.id, start, [95.0] * 10)
    r = await evaluator.evaluate(conn, settings)
    assert r.opened == [] and await episodes(conn, rule) == []
    # The 11th sample completes the 10-minute window.
    await add_samples(conn, t.agent.id, start + timedelta(minutes=10), [96.0])
    r = await evaluator.evaluate(conn, settings)
    assert [(o.rule_id, o.device_id, o.alert_name) for o in r.opened] == [(rule, t.agent.id, "cpu_high")]
    # Further cycles while it still holds: no duplicate.
    await add_samples(conn, t.agent.id, start + timedelta(minutes=11), [97.0])
    r = await evaluator.evaluate(conn, settings)
    assert r.opened == []
    eps = await episodes(conn, rule)
    assert len(eps) == 1 and eps[0]["status"] == "active"
    assert eps[0]["metric_value"] > 90 and eps[0]["threshold_value"] == 90
    cur = await conn.execute("SELECT trigger_count, last_triggered FROM agent_alerts WHERE id = %s", (rule,))
    row = await cur.fetchone()
    assert row["trigger_count"] == 1 and row["last_triggered"] is not None


async def test_a_real_metric_value_is_kept_as_its_shortest_decimal(conn: psycopg.AsyncConnection[Any],
                                                                  settings: Settings) -> None:
    """95.1 stored as a real is 95.0999984741211 as a double: the episode keeps 95.1 (max of one
    value) and the average of reals as the shortest decimal of its float (no 95.19999694824219)."""
    t = await factories.tenant(conn)
    peak = await add_rule(conn, t.business_id, {**CPU90, "duration_minutes": 0, "aggregation": "max"}, name="peak")
    mean = await add_rule(conn, t.business_id, {**CPU90, "duration_minutes": 2}, name="mean")
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=3)
    await add_samples(conn, t.agent.id, start, [95.1, 95.4, 95.2])
    await evaluator.evaluate(conn, settings)  # a device judged for the first time: at its newest sample
    (p,), (m,) = await episodes(conn, peak), await episodes(conn, mean)
    assert p["metric_value"] == 95.2 and repr(m["metric_value"]) == "95.23333"


async def test_one_sample_or_a_gappy_window_is_not_enough(conn: psycopg.AsyncConnection[Any],
                                                          settings: Settings) -> None:
    t = await factories.tenant(conn)
    rule = await add_rule(conn, t.business_id, CPU90)
    now = datetime.now(UTC).replace(microsecond=0)
    await add_samples(conn, t.agent.id, now - timedelta(minutes=1), [99.0])
    assert (await evaluator.evaluate(conn, settings)).opened == []
    # Two samples 12 minutes apart "span" the window but leave a gap above the 11-minute limit.
    await add_samples(conn, t.agent.id, now - timedelta(minutes=13), [99.0])
    assert (await evaluator.evaluate(conn, settings)).opened == []
    assert await episodes(conn, rule) == []


async def test_auto_resolve_needs_the_hysteresis_and_flapping_opens_once(
        conn: psycopg.AsyncConnection[Any], settings: Settings) -> None:
    settings = settings.with_(alert_data_stale_seconds=3600)  # the story below spans 41 minutes of data
    t = await factories.tenant(conn)
    rule = await add_rule(conn, t.business_id, CPU90)
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=45)
    last = await add_samples(conn, t.agent.id, start, [95.0] * 11)
    assert len((await evaluator.evaluate(conn, settings)).opened) == 1
    # Just under the threshold for a full window: inside the 5% hysteresis band (85.5), stays open.
    last = await add_samples(conn, t.agent.id, last + timedelta(minutes=1), [88.0] * 11)
    r = await evaluator.evaluate(conn, settings)
    assert r.resolved == [] and (await episodes(conn, rule))[0]["status"] == "active"
    # Flapping around the threshold every minute, one cycle per sample: never a second episode.
    for i in range(8):
        last = await add_samples(conn, t.agent.id, last + timedelta(minutes=1), [92.0 if i % 2 else 89.0])
        await evaluator.evaluate(conn, settings)
    assert len(await episodes(conn, rule)) == 1
    # Clearly below for the whole window: auto-resolved, exactly once.
    last = await add_samples(conn, t.agent.id, last + timedelta(minutes=1), [40.0] * 11)
    r = await evaluator.evaluate(conn, settings)
    assert len(r.resolved) == 1
    assert (await evaluator.evaluate(conn, settings)).resolved == []
    (ep,) = await episodes(conn, rule)
    assert ep["status"] == "auto_resolved" and ep["resolved_at"] is not None


async def test_aggregations_min_and_max(conn: psycopg.AsyncConnection[Any], settings: Settings) -> None:
    t = await factories.tenant(conn)
    cond = {"metric": "disk_percent", "operator": ">=", "threshold": 90, "duration_minutes": 5}
    r_min = await add_rule(conn, t.business_id, {**cond, "aggregation": "min"}, name="disk_min")
    r_max = await add_rule(conn, t.business_id, {**cond, "aggregation": "max"}, name="disk_max")
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=7)
    await add_samples(conn, t.agent.id, start, [95.0, 95.0, 80.0, 95.0, 95.0, 95.0], metric="disk_percent")
    r = await evaluator.evaluate(conn, settings)
    assert {o.rule_id for o in r.opened} == {r_max}
    assert await episodes(conn, r_min) == []


async def test_offline_rule_names_the_device_and_resolves_on_heartbeat(
        conn: psycopg.AsyncConnection[Any], settings: Settings) -> None:
    b = await factories.business(conn)
    gone = await factories.agent(conn, b, name="far-away-box")
    fine = await factories.agent(conn, b, name="nearby-box")
    rule = await add_rule(conn, b, {"kind": "agent_offline", "duration_minutes": 15}, name="offline",
                          severity="critical")
    await conn.execute("UPDATE agent_devices SET last_heartbeat = now() - interval '20 minutes' WHERE id = %s",
                       (gone.id,))
    await conn.execute("UPDATE agent_devices SET last_heartbeat = now() - interval '10 minutes' WHERE id = %s",
                       (fine.id,))
    r = await evaluator.evaluate(conn, settings)
    assert [o.device_id for o in r.opened] == [gone.id]
    (ep,) = await episodes(conn, rule)
    assert "far-away-box" in ep["alert_message"] and ep["severity"] == "critical"
    assert 19 <= ep["metric_value"] <= 21 and ep["threshold_value"] == 15
    await conn.execute("UPDATE agent_devices SET last_heartbeat = now() WHERE id = %s", (gone.id,))
    r = await evaluator.evaluate(conn, settings)
    assert r.resolved == [ep["id"]]


async def test_service_down_after_its_duration_and_back_up(conn: psycopg.AsyncConnection[Any],
                                                           settings: Settings) -> None:
    t = await factories.tenant(conn)
    rule = await add_rule(conn, t.business_id, {"kind": "service_down", "duration_minutes": 5,
                                                "service_name": "nginx"}, name="nginx_down")
    await conn.execute(
        "INSERT INTO agent_monitored_services (agent_device_id, service_name, status, should_be_running, "
        "last_state_change) VALUES (%s, 'nginx', 'stopped', true, now() - interval '3 minutes'), "
        "(%s, 'cron', 'stopped', true, now() - interval '1 hour'), "
        "(%s, 'optional', 'stopped', false, now() - interval '1 hour')", (t.agent.id,) * 3)
    assert (await evaluator.evaluate(conn, settings)).opened == []  # down 3 of 5 minutes; cron not watched
    await conn.execute("UPDATE agent_monitored_services SET last_state_change = now() - interval '6 minutes' "
                       "WHERE agent_device_id = %s AND service_name = 'nginx'", (t.agent.id,))
    r = await evaluator.evaluate(conn, settings)
    assert [(o.rule_id, o.device_id) for o in r.opened] == [(rule, t.agent.id)]
    assert "nginx" in (await episodes(conn, rule))[0]["alert_message"]
    await conn.execute("UPDATE agent_monitored_services SET status = 'running', last_state_change = now() "
                       "WHERE agent_device_id = %s AND service_name = 'nginx'", (t.agent.id,))
    assert len((await evaluator.evaluate(conn, settings)).resolved) == 1


async def test_late_data_is_judged_in_data_time(conn: psycopg.AsyncConnection[Any], settings: Settings) -> None:
    b = await factories.business(conn)
    replayed = await factories.agent(conn, b)
    ancient = await factories.agent(conn, b)
    rule = await add_rule(conn, b, CPU90)
    now = datetime.now(UTC).replace(microsecond=0)
    # An agent back from an outage uploads its spool at once: 11 minutes that ended 3 minutes ago.
    await add_samples(conn, replayed.id, now - timedelta(minutes=13), [97.0] * 11)
    # Another replays a spike from two hours ago: too old to say anything about now.
    await add_samples(conn, ancient.id, now - timedelta(hours=2), [97.0] * 11)
    r = await evaluator.evaluate(conn, settings, devices=[replayed.id, ancient.id])
    assert [o.device_id for o in r.opened] == [replayed.id]
    (ep,) = await episodes(conn, rule)
    assert ep["condition_since"] == now - timedelta(minutes=13)


async def test_maintenance_suppresses_opening_and_leaving_it_is_quiet(
        conn: psycopg.AsyncConnection[Any], settings: Settings) -> None:
    b = await factories.business(conn)
    site_a, site_b = await factories.location(conn, b), await factories.location(conn, b)
    in_a = await factories.agent(conn, b, site_a)
    in_b = await factories.agent(conn, b, site_b)
    rule = await add_rule(conn, b, CPU90)
    cur = await conn.execute(
        "INSERT INTO alert_maintenance_windows (business_id, service_location_id, starts_at, ends_at) "
        "VALUES (%s, %s, now() - interval '1 hour', now() + interval '1 hour') RETURNING id", (b, site_a))
    window = (await cur.fetchone())["id"]
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=12)
    for dev in (in_a, in_b):
        await add_samples(conn, dev.id, start, [95.0] * 11)
    r = await evaluator.evaluate(conn, settings)
    assert [o.device_id for o in r.opened] == [in_b.id]  # site A is in maintenance
    # The problem clears while still in maintenance, then the window ends: nothing opens or resolves for A.
    await add_samples(conn, in_a.id, start + timedelta(minutes=11), [10.0] * 11)
    await evaluator.evaluate(conn, settings)
    await conn.execute("UPDATE alert_maintenance_windows SET ends_at = now() - interval '1 second' WHERE id = %s",
                       (window,))
    r = await evaluator.evaluate(conn, settings)
    assert r.opened == [] and r.resolved == []
    assert [e["agent_device_id"] for e in await episodes(conn, rule)] == [in_b.id]


async def test_scoping_device_rules_disabled_devices_and_hook_devices(
        conn: psycopg.AsyncConnection[Any], settings: Settings) -> None:
    b = await factories.business(conn)
    one, two, muted = [await factories.agent(conn, b) for _ in range(3)]
    other = await factories.tenant(conn)
    dev_rule = await add_rule(conn, b, CPU90, name="only_one", device_id=one.id)
    biz_rule = await add_rule(conn, b, CPU90, name="all_devices")
    await conn.execute("UPDATE agent_devices SET alerts_enabled = false WHERE id = %s", (muted.id,))
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=12)
    for dev in (one.id, two.id, muted.id, other.agent.id):
        await add_samples(conn, dev, start, [95.0] * 11)
    # The ingest hook evaluates only the devices of its flush.
    r = await evaluator.evaluate(conn, settings, devices=[two.id], kinds=("metric",))
    assert r.opened_by_device() == {two.id: ["all_devices"]}
    r = await evaluator.evaluate(conn, settings)
    assert sorted((o.device_id == one.id, o.alert_name) for o in r.opened) == [(True, "all_devices"),
                                                                              (True, "only_one")]
    assert {e["agent_device_id"] for e in await episodes(conn, dev_rule)} == {one.id}
    assert {e["agent_device_id"] for e in await episodes(conn, biz_rule)} == {one.id, two.id}


async def test_manual_resolve_is_not_undone_by_the_next_cycle(conn: psycopg.AsyncConnection[Any],
                                                               settings: Settings) -> None:
    t = await factories.tenant(conn)
    rule = await add_rule(conn, t.business_id, CPU90)
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=12)
    last = await add_samples(conn, t.agent.id, start, [95.0] * 11)
    (opened,) = (await evaluator.evaluate(conn, settings)).opened
    await conn.execute("UPDATE agent_alert_history SET status = 'resolved', resolved_at = now() WHERE id = %s",
                       (opened.history_id,))
    await add_samples(conn, t.agent.id, last + timedelta(minutes=1), [95.0])
    assert (await evaluator.evaluate(conn, settings)).opened == []
    assert len(await episodes(conn, rule)) == 1


async def deliver(conn: Any, device_id: UUID, rows: list[tuple[datetime, float | None]],
                  metric: str = "cpu_percent") -> None:
    """Samples as an ingest flush writes them: the rows, the committed range and the device's
    last_metrics_received, in one transaction (what incremental cycles rely on)."""
    async with conn.transaction():
        await factories.metric_samples(conn, [{"agent_device_id": device_id, "collected_at": at, metric: v}
                                              for at, v in rows])
        await conn.execute("UPDATE agent_devices SET last_metrics_received = now() WHERE id = %s", (device_id,))


async def test_a_replayed_spool_opens_and_clears_inside_one_cycle(conn: psycopg.AsyncConnection[Any],
                                                                 settings: Settings) -> None:
    """Every instant of a batch is judged in order: a spike that came and went while the agent was
    offline is one episode, opened and cleared in data time, resolved at once."""
    t = await factories.tenant(conn)
    rule = await add_rule(conn, t.business_id, CPU90, create_ticket=True)
    start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=14)
    m = timedelta(minutes=1)
    values = [40.0] * 2 + [95.0] * 12 + [20.0] * 1  # 15 samples, the newest 0 minutes ago ... at most
    await deliver(conn, t.agent.id, [(start + i * m, v) for i, v in enumerate(values[:14])])
    r = await evaluator.evaluate(conn, settings, devices=[t.agent.id], kinds=("metric",))
    assert len(r.opened) == 1 and r.resolved == []
    await deliver(conn, t.agent.id, [(start + 14 * m, 20.0)])
    assert (await evaluator.evaluate(conn, settings, devices=[t.agent.id], kinds=("metric",))).resolved == []
    # A longer replay in one batch (of a device judged before): hot for 12 minutes, then cool.
    other = await factories.agent(conn, t.business_id)
    await evaluator.evaluate(conn, settings)
    at = [start + i * m for i in range(22)]
    await deliver(conn, other.id, list(zip(at, [95.0] * 12 + [10.0] * 10, strict=True)))
    r = await evaluator.evaluate(conn, settings, devices=[other.id], kinds=("metric",))
    assert [o.device_id for o in r.opened] == [other.id] and len(r.resolved) == 1
    (ep,) = [e for e in await episodes(conn, rule) if e["agent_device_id"] == other.id]
    assert ep["status"] == "auto_resolved" and ep["detected_at"] == at[10] and ep["condition_since"] == at[0]
    assert at[11] < ep["cleared_at"] <= at[21] and ep["resolved_at"] is not None
    cur = await conn.execute("SELECT channel, event FROM alert_outbox WHERE alert_history_id = %s ORDER BY event",
                             (ep["id"],))
    assert [(x["channel"], x["event"]) for x in await cur.fetchall()] == [("ticket", "opened"), ("ticket", "resolved")]


async def test_incremental_cycles_judge_only_what_changed(conn: psycopg.AsyncConnection[Any],
                                                          settings: Settings) -> None:
    """``pairs``: the pairs a cycle judged (metric pairs of due devices, and the agent_offline and
    service_down pairs that can change: a breach, or an open episode)."""
    b = await factories.business(conn)
    devs = [await factories.agent(conn, b) for _ in range(3)]
    rule = await add_rule(conn, b, CPU90)
    offline = await add_rule(conn, b, {"kind": "agent_offline", "duration_minutes": 15}, name="offline")
    start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=12)
    for d in devs:
        await deliver(conn, d.id, [(start + timedelta(minutes=i), 50.0) for i in range(11)])

    async def judged() -> int:
        return (await evaluator.evaluate(conn, settings, incremental=True)).pairs

    assert await judged() == 3  # nothing judged yet: every device is due; all heard from recently
    assert await judged() == 0
    # New samples of one device: that device's metric pair.
    await deliver(conn, devs[0].id, [(start + timedelta(minutes=11), 99.0)])
    assert await judged() == 1
    # A hook judged the new samples already: the cycle has nothing left to do.
    await deliver(conn, devs[1].id, [(start + timedelta(minutes=11), 99.0)])
    await evaluator.evaluate(conn, settings, devices=[devs[1].id], kinds=("metric",))
    assert await judged() == 0
    # A rule edit or a maintenance window of the business: all its devices.
    await conn.execute("UPDATE agent_alerts SET conditions = conditions || '{\"threshold\": 40}' WHERE id = %s",
                       (rule,))
    r = await evaluator.evaluate(conn, settings, incremental=True)
    assert r.pairs == 3 and len(r.opened) == 3  # 40 is exceeded by all three now
    assert await judged() == 0
    await conn.execute("INSERT INTO alert_maintenance_windows (business_id, starts_at, ends_at) "
                       "VALUES (%s, now() - interval '1 hour', now() + interval '1 hour')", (b,))
    assert await judged() == 3
    # The device itself: alerts switched off (nothing to judge) and on again.
    await conn.execute("UPDATE agent_devices SET alerts_enabled = false WHERE id = %s", (devs[2].id,))
    assert await judged() == 0
    await conn.execute("UPDATE agent_devices SET alerts_enabled = true WHERE id = %s", (devs[2].id,))
    assert await judged() == 1
    await conn.execute("DELETE FROM alert_maintenance_windows WHERE business_id = %s", (b,))
    assert await judged() == 3
    # The wall clock: a device silent for longer than the offline rule's duration is judged (and
    # opens) in every cycle while its episode is open, whether or not anything else changed.
    await conn.execute("UPDATE agent_devices SET last_heartbeat = now() - interval '20 minutes' WHERE id = %s",
                       (devs[0].id,))
    r = await evaluator.evaluate(conn, settings, incremental=True)
    assert [(o.rule_id, o.device_id) for o in r.opened] == [(offline, devs[0].id)] and r.pairs == 1
    assert await judged() == 1
    await conn.execute("UPDATE agent_devices SET last_heartbeat = now() WHERE id = %s", (devs[0].id,))
    assert len((await evaluator.evaluate(conn, settings, incremental=True)).resolved) == 1
    assert await judged() == 0


# --- incremental cycles equal full ones (property) ----------------------------------------------

_VALUES = st.sampled_from([None, 20.0, 47.0, 49.0, 50.0, 51.0, 53.0, 80.0])
_SAMPLES = st.tuples(st.just("samples"), st.integers(0, 2), st.integers(1, 12), st.integers(0, 14), _VALUES,
                     st.booleans())
_OP = st.one_of(
    _SAMPLES, _SAMPLES, _SAMPLES, _SAMPLES, _SAMPLES, _SAMPLES,  # most steps deliver samples
    st.tuples(st.just("hook"), st.integers(0, 2)),
    st.tuples(st.just("cycle")), st.tuples(st.just("cycle")),
    st.tuples(st.just("rule"), st.integers(0, 2),
              st.sampled_from(["threshold", "duration", "aggregation", "disable", "enable", "delete"])),
    st.tuples(st.just("maintenance"), st.sampled_from(["create", "end", "move", "delete"]), st.integers(0, 2),
              st.integers(0, 170), st.integers(1, 60)),
    st.tuples(st.just("resolve"), st.integers(0, 2), st.integers(0, 2)),
    st.tuples(st.just("toggle"), st.integers(0, 2)),
    st.tuples(st.just("relocate"), st.integers(0, 2)),
)


@given(ops=st.lists(_OP, min_size=10, max_size=60), seed=st.integers(0, 2**16))
@hsettings(max_examples=int(os.environ.get("RTS_ALERT_EXAMPLES", "40")), deadline=None,
           suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
def test_property_incremental_cycles_open_exactly_what_full_cycles_open(
        db_url: str, second_db_url: str, settings: Settings, ops: list[tuple[Any, ...]], seed: int) -> None:
    """The same random workload (samples on time, late and out of order, gaps, hooks, rule edits,
    maintenance windows, manual resolves, devices switched off or moved) through full cycles in one
    database and incremental cycles in another: after every cycle both hold the same episodes."""
    import asyncio
    import random

    from psycopg.rows import dict_row

    from rts_monitor.alerts import lifecycle
    from rts_monitor.auth.principal import Principal, Role
    rnd = random.Random(seed)
    staff = Principal(user_id=uuid4(), role=Role.admin, business_id=None)
    cfg = settings.with_(alert_data_stale_seconds=6 * 3600)

    async def run() -> None:
        async with (await psycopg.AsyncConnection.connect(db_url, autocommit=True, row_factory=dict_row) as full,
                    await psycopg.AsyncConnection.connect(second_db_url, autocommit=True, row_factory=dict_row) as inc):
            both = (full, inc)
            biz, locs, devs = uuid4(), [uuid4(), uuid4()], [uuid4(), uuid4(), uuid4()]
            rules = [uuid4(), uuid4(), uuid4()]
            base = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)
            for c in both:
                await c.execute("INSERT INTO businesses (id, business_name) VALUES (%s, 'inc')", (biz,))
                for loc in locs:
                    await c.execute("INSERT INTO service_locations (id, business_id, location_name) "
                                    "VALUES (%s, %s, 'site')", (loc, biz))
                for i, d in enumerate(devs):
                    await c.execute("INSERT INTO agent_devices (id, business_id, service_location_id, device_name, "
                                    "os_type, agent_version, status) VALUES (%s, %s, %s, %s, 'linux', '1', 'online')",
                                    (d, biz, locs[i % 2], f"dev{i}"))
                await add_rule(c, biz, {"metric": "cpu_percent", "operator": ">", "threshold": 50,
                                        "duration_minutes": 3}, name="r0", id=rules[0])
                await add_rule(c, biz, {"metric": "cpu_percent", "operator": "<=", "threshold": 48,
                                        "duration_minutes": 0, "aggregation": "max", "hysteresis": 1},
                               name="r1", id=rules[1], device_id=devs[1])
                await add_rule(c, biz, {"metric": "cpu_percent", "operator": ">=", "threshold": 52,
                                        "duration_minutes": 1, "aggregation": "min", "hysteresis": 0},
                               name="r2", id=rules[2])
            latest = [base] * 3
            windows: list[UUID] = []

            async def compare() -> None:
                got = []
                for c in both:
                    cur = await c.execute(
                        "SELECT agent_alert_id, agent_device_id, status, detected_at, cleared_at, condition_since, "
                        "metric_value FROM agent_alert_history WHERE business_id = %s "
                        "ORDER BY agent_alert_id, agent_device_id, detected_at", (biz,))
                    got.append(await cur.fetchall())
                assert got[0] == got[1]

            for op in ops:
                kind = op[0]
                if kind == "samples":
                    _, d, n, gap, value, late = op
                    if late and latest[d] > base + timedelta(minutes=20):
                        # out of order: fill in earlier times of this device (some already taken)
                        at = [latest[d] - timedelta(seconds=rnd.randint(30, 1200)) for _ in range(n)]
                    else:
                        t0 = latest[d] + timedelta(minutes=gap + 1)
                        at = [t0 + timedelta(minutes=i, seconds=rnd.randint(-20, 20)) for i in range(n)]
                        latest[d] = max(latest[d], max(at))
                    flap = [-3.0, -1.0, -0.5, 0.0, 0.5, 1.0, 3.0]  # around the level: flapping near a threshold
                    rows = sorted({a: None if value is None else value + rnd.choice(flap) for a in at}.items())
                    for c in both:
                        await deliver(c, devs[d], rows)
                elif kind == "hook":
                    for c in both:
                        await evaluator.evaluate(c, cfg, devices=[devs[op[1]]], kinds=("metric",))
                elif kind == "cycle":
                    await evaluator.evaluate(full, cfg)
                    await evaluator.evaluate(inc, cfg, incremental=True)
                    await compare()
                elif kind == "rule":
                    r, what = rules[op[1]], op[2]
                    sql = {
                        "threshold": "UPDATE agent_alerts SET conditions = conditions || jsonb_build_object("
                                     "'threshold', (conditions->>'threshold')::float8 + 2) WHERE id = %s",
                        "duration": "UPDATE agent_alerts SET conditions = conditions || jsonb_build_object("
                                    "'duration_minutes', ((conditions->>'duration_minutes')::int + 2) %% 6) "
                                    "WHERE id = %s",
                        "aggregation": "UPDATE agent_alerts SET conditions = conditions || jsonb_build_object("
                                       "'aggregation', CASE conditions->>'aggregation' WHEN 'min' THEN 'avg' "
                                       "WHEN 'max' THEN 'min' ELSE 'max' END) WHERE id = %s",
                        "disable": "UPDATE agent_alerts SET is_active = false WHERE id = %s",
                        "enable": "UPDATE agent_alerts SET is_active = true WHERE id = %s",
                        "delete": "UPDATE agent_alerts SET soft_delete = true, is_active = false WHERE id = %s",
                    }[what]
                    for c in both:
                        await c.execute(sql, (r,))
                        if what in ("disable", "delete"):
                            await c.execute("UPDATE agent_alert_history SET status = 'auto_resolved', "
                                            "resolved_at = now() WHERE agent_alert_id = %s "
                                            "AND status IN ('active', 'acknowledged')", (r,))
                elif kind == "maintenance":
                    _, what, scope, offset, length = op
                    starts = base + timedelta(minutes=offset)
                    if what == "create" or not windows:
                        w = uuid4()
                        windows.append(w)
                        for c in both:
                            await c.execute(
                                "INSERT INTO alert_maintenance_windows (id, business_id, service_location_id, "
                                "agent_device_id, starts_at, ends_at) VALUES (%s, %s, %s, %s, %s, %s)",
                                (w, biz, locs[0] if scope == 1 else None, devs[0] if scope == 2 else None,
                                 starts, starts + timedelta(minutes=length)))
                        continue
                    w = rnd.choice(windows)
                    for c in both:
                        if what == "end":
                            await c.execute("UPDATE alert_maintenance_windows SET ends_at = starts_at + "
                                            "interval '1 minute' WHERE id = %s", (w,))
                        elif what == "move":
                            await c.execute("UPDATE alert_maintenance_windows SET starts_at = %s, ends_at = %s "
                                            "WHERE id = %s", (starts, starts + timedelta(minutes=length), w))
                        else:
                            await c.execute("DELETE FROM alert_maintenance_windows WHERE id = %s", (w,))
                    if what == "delete":
                        windows.remove(w)
                elif kind == "resolve":
                    for c in both:
                        cur = await c.execute("SELECT id FROM agent_alert_history WHERE agent_alert_id = %s "
                                              "AND agent_device_id = %s AND status IN ('active', 'acknowledged')",
                                              (rules[op[1]], devs[op[2]]))
                        row = await cur.fetchone()
                        if row is not None:
                            await lifecycle.resolve(c, principal=staff, alert_id=row["id"], notes=None)
                elif kind == "toggle":
                    for c in both:
                        await c.execute("UPDATE agent_devices SET alerts_enabled = NOT alerts_enabled WHERE id = %s",
                                        (devs[op[1]],))
                elif kind == "relocate":
                    for c in both:
                        await c.execute("UPDATE agent_devices SET service_location_id = CASE service_location_id "
                                        "WHEN %s THEN %s::uuid ELSE %s::uuid END WHERE id = %s",
                                        (locs[0], locs[1], locs[0], devs[op[1]]))
            await evaluator.evaluate(full, cfg)
            await evaluator.evaluate(inc, cfg, incremental=True)
            await compare()
            for c in both:  # this example's rules rest: later examples judge only their own
                await c.execute("UPDATE agent_alerts SET is_active = false WHERE business_id = %s", (biz,))

    asyncio.run(run())


@pytest.fixture
def second_db_url(server_url: str, template_db: str) -> Iterator[str]:
    """Another fresh migrated database beside ``db_url`` (the incremental side of the property)."""
    from tests.fix_db import clone_template, drop_database

    name, url = clone_template(server_url, template_db, "inc")
    yield url
    drop_database(server_url, name)


# --- tickets ---------------------------------------------------------------------------------

async def _ticket_world(conn: Any) -> tuple[factories.Tenant, UUID]:
    """A tenant whose CPU rule opens a ticket, with 11 minutes above 90% already stored."""
    t = await factories.tenant(conn)
    rule = await add_rule(conn, t.business_id, CPU90, name="cpu_ticket", severity="critical",
                          create_ticket=True)
    await add_samples(conn, t.agent.id, datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=12),
                      [95.0] * 11)
    return t, rule


async def test_ticket_exactly_once_when_the_ticket_step_fails_once(conn: psycopg.AsyncConnection[Any],
                                                                   settings: Settings) -> None:
    from rts_monitor.alerts import tickets
    from rts_monitor.db import open_pool

    cur = await conn.execute("INSERT INTO priority_levels (level_name, sort_order) VALUES ('Low', 1), "
                             "('High', 3) RETURNING id, level_name")
    high = {r["level_name"]: r["id"] for r in await cur.fetchall()}["High"]
    await conn.execute("UPDATE alert_severity_ticket_map SET priority_level_id = %s WHERE severity = 'critical'",
                       (high,))
    t, rule = await _ticket_world(conn)
    (opened,) = (await evaluator.evaluate(conn, settings)).opened
    settings = settings.with_(alert_fault_inject="ticket_once", notify_backoff_seconds=0.0)
    tickets._fault_fired = False
    pool = await open_pool(settings, max_size=2)
    try:
        assert await tickets.process(pool, settings) == 1  # first attempt rolled back, retry succeeded
        assert tickets._fault_fired
        assert await tickets.process(pool, settings) == 0
    finally:
        await pool.close()
    cur = await conn.execute("SELECT * FROM service_requests WHERE business_id = %s", (t.business_id,))
    (sr,) = await cur.fetchall()
    (ep,) = await episodes(conn, rule)
    assert ep["service_request_created"] == sr["id"]
    assert sr["source"] == "automated_agent_alert" and sr["priority_level_id"] == high
    assert sr["service_location_id"] == t.location_id and "cpu_ticket" in sr["title"]
    assert str(opened.history_id) in sr["description"]
    cur = await conn.execute("SELECT status, attempts, last_error FROM alert_outbox WHERE channel = 'ticket'")
    (row,) = await cur.fetchall()
    assert row["status"] == "done" and row["attempts"] == 2  # the rolled-back try counts (outbox.retry)
    # Resolving the alert annotates its ticket (once), with the notes.
    from rts_monitor.alerts import lifecycle
    from rts_monitor.auth.principal import Principal, Role

    admin = Principal(user_id=uuid4(), role=Role.admin, business_id=None)
    await lifecycle.resolve(conn, principal=admin, alert_id=opened.history_id, notes="replaced the fan")
    pool = await open_pool(settings, max_size=2)
    try:
        assert await tickets.process(pool, settings) == 1
    finally:
        await pool.close()
    cur = await conn.execute("SELECT description FROM service_requests WHERE id = %s", (sr["id"],))
    description = (await cur.fetchone())["description"]
    assert description.count("Alert resolved at") == 1 and "Notes: replaced the fan" in description


async def wait_for(check: Any, timeout: float = 30.0, interval: float = 0.2) -> Any:  # noqa: ASYNC109
    """Poll ``check()`` (async) until it returns something truthy; fail after ``timeout``."""
    import asyncio
    import time

    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)


FAST = {"RTS_ALERT_EVALUATE_SECONDS": "1", "RTS_ALERT_OUTBOX_SECONDS": "1", "RTS_NOTIFY_BACKOFF_SECONDS": "0.2"}


async def test_ticket_exactly_once_when_the_server_dies_mid_ticket(conn: psycopg.AsyncConnection[Any],
                                                                   api_factory: Any) -> None:
    _, rule = await _ticket_world(conn)
    crashing = api_factory(env={**FAST, "RTS_ALERT_FAULT_INJECT": "ticket_exit"})

    async def opened() -> Any:
        return await episodes(conn, rule)

    (ep,) = await wait_for(opened)
    # The server dies (os._exit) inside the ticket transaction: the episode stays, no ticket exists.
    crashing.proc.wait(timeout=30)
    assert crashing.proc.returncode == 70
    assert '"alerts.fault_injected"' in crashing.log_path.read_text()
    cur = await conn.execute("SELECT count(*) AS n FROM service_requests")
    assert (await cur.fetchone())["n"] == 0
    # A healthy instance picks the pending outbox row up: exactly one ticket, linked.
    api_factory(env=FAST)

    async def linked() -> Any:
        (row,) = await episodes(conn, rule)
        return row["service_request_created"]

    sr_id = await wait_for(linked)
    cur = await conn.execute("SELECT id FROM service_requests WHERE source = 'automated_agent_alert'")
    assert [r["id"] for r in await cur.fetchall()] == [sr_id]
    assert [e["id"] for e in await episodes(conn, rule)] == [ep["id"]]


async def test_two_processes_never_evaluate_at_the_same_time(conn: psycopg.AsyncConnection[Any],
                                                             api_factory: Any) -> None:
    """Each cycle holds the job lock 600 ms every second in both processes: without the lock they
    would overlap nearly every time."""
    import asyncio

    t = await factories.tenant(conn)
    await add_rule(conn, t.business_id, CPU90)
    env = {**FAST, "RTS_ALERT_CYCLE_PAD_MS": "600"}
    a, b = api_factory(env=env), api_factory(env=env)
    await asyncio.sleep(6)
    a.stop(), b.stop()
    cur = await conn.execute("SELECT instance, started_at, finished_at FROM alert_evaluation_runs "
                             "WHERE finished_at IS NOT NULL ORDER BY started_at")
    runs = await cur.fetchall()
    assert len(runs) >= 4
    for server in (a, b):  # both really competed for the job (which one wins each tick is up to timing)
        assert '"alerts.evaluate"' in server.log_path.read_text()
    for prev, nxt in itertools.pairwise(runs):
        assert nxt["started_at"] >= prev["finished_at"], f"overlapping cycles: {prev} / {nxt}"


# --- API ---------------------------------------------------------------------------------------

from tests.fix_api import ApiServer  # noqa: E402


def staff(api: ApiServer) -> dict[str, str]:
    return api.headers(api.token("admin"))


def customer(api: ApiServer, t: factories.Tenant) -> dict[str, str]:
    return api.headers(api.token("customer", business_id=t.business_id, user_id=t.customer_id))


RULE_BODY = {"alert_name": "cpu_high", "severity": "warning",
             "conditions": {"metric": "cpu_percent", "operator": ">", "threshold": 90, "duration_minutes": 10}}


async def add_episode(conn: Any, rule_id: UUID, t: factories.Tenant, *, severity: str = "warning",
                      status: str = "active", ago: timedelta = timedelta(0)) -> UUID:
    cur = await conn.execute(
        "INSERT INTO agent_alert_history (agent_alert_id, agent_device_id, business_id, severity, alert_message, "
        "status, triggered_at) VALUES (%s, %s, %s, %s, 'test', %s, now() - %s) RETURNING id",
        (rule_id, t.agent.id, t.business_id, severity, status, ago))
    return (await cur.fetchone())["id"]  # type: ignore[no-any-return]


async def test_rules_crud_over_http(api: ApiServer, client: Any, api_conn: Any) -> None:
    t = await factories.tenant(api_conn)
    h = staff(api)
    resp = await client.post("/api/alerts/rules", json={**RULE_BODY, "business_id": str(t.business_id),
                                                        "create_ticket": True}, headers=h)
    assert resp.status_code == 201, resp.text
    rule = resp.json()
    assert rule["business_id"] == str(t.business_id) and rule["agent_device_id"] is None
    assert rule["conditions"]["aggregation"] == "avg" and rule["alert_type"] == "cpu_percent_threshold"
    assert rule["trigger_count"] == 0 and rule["is_active"] is True and rule["create_ticket"] is True
    dev = await client.post("/api/alerts/rules", headers=h, json={
        "alert_name": "offline", "severity": "critical", "agent_device_id": str(t.agent.id),
        "conditions": {"kind": "agent_offline", "duration_minutes": 15}})
    assert dev.status_code == 201, dev.text
    assert dev.json()["business_id"] == str(t.business_id)
    listed = (await client.get("/api/alerts/rules", params={"business_id": str(t.business_id)}, headers=h)).json()
    assert {r["alert_name"] for r in listed["rules"]} == {"cpu_high", "offline"}
    upd = await client.patch(f"/api/alerts/rules/{rule['id']}", headers=h,
                             json={"conditions": {**RULE_BODY["conditions"], "threshold": 80, "aggregation": "max"}})
    assert upd.status_code == 200 and upd.json()["conditions"]["threshold"] == 80
    bad = await client.patch(f"/api/alerts/rules/{rule['id']}", headers=h,
                             json={"conditions": {**RULE_BODY["conditions"], "metric": "gpu_percent"}})
    assert bad.status_code == 422 and bad.json()["field"] == "conditions.metric"
    cur = await api_conn.execute("SELECT threshold, aggregation FROM agent_alerts WHERE id = %s", (rule["id"],))
    assert await cur.fetchone() == {"threshold": 80.0, "aggregation": "max"}
    # Disabling resolves the rule's open alerts.
    ep = await add_episode(api_conn, rule["id"], t)
    dis = await client.post(f"/api/alerts/rules/{rule['id']}/disable", headers=h)
    assert dis.status_code == 200 and dis.json()["is_active"] is False
    got = (await client.get(f"/api/alerts/{ep}", headers=h)).json()
    assert got["status"] == "auto_resolved" and "rule disabled" in got["resolution_notes"]
    assert (await client.delete(f"/api/alerts/rules/{rule['id']}", headers=h)).status_code == 204
    assert (await client.get(f"/api/alerts/rules/{rule['id']}", headers=h)).status_code == 404


async def test_invalid_rules_name_the_field(api: ApiServer, client: Any, api_conn: Any) -> None:
    t = await factories.tenant(api_conn)
    h = staff(api)
    cases = [
        ({"metric": "cpu_temp", "operator": ">", "threshold": 1}, "conditions.metric"),
        ({"metric": "cpu_percent", "operator": ">"}, "conditions.threshold"),
        ({"metric": "cpu_percent", "operator": ">", "threshold": 150}, "conditions.threshold"),
        ({"metric": "cpu_percent", "operator": "=>", "threshold": 5}, "conditions.operator"),
        ({"metric": "cpu_percent", "operator": ">", "threshold": 5, "aggregation": "median"},
         "conditions.aggregation"),
        ({"metric": "cpu_percent", "operator": ">", "threshold": 5, "duration_minutes": -1},
         "conditions.duration_minutes"),
        ({"kind": "agent_offline", "metric": "cpu_percent", "duration_minutes": 5}, "conditions.metric"),
        ({"kind": "agent_offline", "duration_minutes": 0}, "conditions.duration_minutes"),
        ({"kind": "disk_smart"}, "conditions.kind"),
    ]
    for conditions, field in cases:
        body = {**RULE_BODY, "business_id": str(t.business_id), "conditions": conditions}
        resp = await client.post("/api/alerts/rules", json=body, headers=h)
        assert resp.status_code == 422, (conditions, resp.text)
        assert resp.json()["field"] == field, (conditions, resp.json())
        assert field in resp.json()["message"] and resp.json()["code"] == "validation_error"
    body = {**RULE_BODY, "conditions": {**RULE_BODY["conditions"], "bogus": 1}}
    resp = await client.post("/api/alerts/rules", json=body, headers=h)
    assert resp.status_code == 422 and resp.json()["field"] == "conditions.bogus" and "bogus" in resp.json()["message"]
    resp = await client.post("/api/alerts/rules", headers=h, json={
        **RULE_BODY, "business_id": str(t.business_id), "notification_channels": ["webhook"]})
    assert resp.status_code == 422 and resp.json()["field"] == "webhook_url"
    resp = await client.post("/api/alerts/rules", headers=h, json={
        **RULE_BODY, "business_id": str(t.business_id), "notification_channels": ["email"],
        "notification_recipients": ["ops@example.test", "not-an-address"]})
    assert resp.status_code == 422 and resp.json()["field"] == "notification_recipients[1]"
    resp = await client.post("/api/alerts/rules", headers=h, json={**RULE_BODY, "severity": "fatal",
                                                                   "business_id": str(t.business_id)})
    assert resp.status_code == 422 and resp.json()["field"] == "severity"


async def test_alert_endpoints_enforce_tenancy(api: ApiServer, client: Any, api_conn: Any) -> None:
    mine, theirs = await factories.tenant(api_conn), await factories.tenant(api_conn)
    my_rule = await add_rule(api_conn, mine.business_id, CPU90, name="mine")
    their_rule = await add_rule(api_conn, theirs.business_id, CPU90, name="theirs")
    my_ep = await add_episode(api_conn, my_rule, mine)
    their_ep = await add_episode(api_conn, their_rule, theirs)
    cur = await api_conn.execute("INSERT INTO alert_maintenance_windows (business_id, starts_at, ends_at) VALUES "
                                 "(%s, now(), now() + interval '1 hour') RETURNING id", (theirs.business_id,))
    their_window = (await cur.fetchone())["id"]
    h = customer(api, mine)
    missing = [
        ("GET", f"/api/alerts/rules/{their_rule}"), ("PATCH", f"/api/alerts/rules/{their_rule}"),
        ("DELETE", f"/api/alerts/rules/{their_rule}"), ("GET", f"/api/alerts/{their_ep}"),
        ("POST", f"/api/alerts/{their_ep}/acknowledge"), ("POST", f"/api/alerts/{their_ep}/resolve"),
        ("GET", f"/api/alerts/{their_ep}/deliveries"), ("GET", f"/api/agents/{theirs.agent.id}/alerts"),
        ("GET", f"/api/alerts/maintenance/{their_window}"),
    ]
    for method, path in missing:
        resp = await client.request(method, path, headers=h, json={} if method in ("POST", "PATCH") else None)
        expected = 403 if method in ("PATCH", "DELETE") else 404  # writes: customers may not write rules here
        assert resp.status_code == expected, (method, path, resp.text)
    listed = (await client.get("/api/alerts", headers=h)).json()
    assert [a["id"] for a in listed["alerts"]] == [str(my_ep)]
    # Even asking for the other business by id shows nothing of it.
    listed = (await client.get("/api/alerts", params={"business_id": str(theirs.business_id)}, headers=h)).json()
    assert listed == {"alerts": [], "total": 0}
    rules = (await client.get("/api/alerts/rules", headers=h)).json()["rules"]
    assert [r["id"] for r in rules] == [str(my_rule)]
    windows = (await client.get("/api/alerts/maintenance", headers=h)).json()["windows"]
    assert windows == []
    assert (await client.get(f"/api/agents/{mine.agent.id}/alerts", headers=h)).json()["total"] == 1
    # Customers may not write rules unless RTS_ALERT_CUSTOMER_RULES is on.
    resp = await client.post("/api/alerts/rules", json=RULE_BODY, headers=h)
    assert resp.status_code == 403
    # Staff writing for a device of another business than the one named: refused, naming the field.
    resp = await client.post("/api/alerts/rules", headers=staff(api), json={
        **RULE_BODY, "business_id": str(mine.business_id), "agent_device_id": str(theirs.agent.id)})
    assert resp.status_code == 422 and resp.json()["field"] == "agent_device_id"


async def test_acknowledge_resolve_and_filters(api: ApiServer, client: Any, api_conn: Any) -> None:
    t = await factories.tenant(api_conn)
    rule = await add_rule(api_conn, t.business_id, CPU90)
    offline = await add_rule(api_conn, t.business_id, {"kind": "agent_offline", "duration_minutes": 30},
                             name="offline")
    ep = await add_episode(api_conn, rule, t, severity="warning", ago=timedelta(hours=1))
    old = await add_episode(api_conn, offline, t, severity="critical", status="auto_resolved",
                            ago=timedelta(days=2))
    h = customer(api, t)
    resp = await client.post(f"/api/alerts/{ep}/acknowledge", headers=h, json={"notes": "looking into it"})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["status"] == "acknowledged" and body["acknowledged_by"] == str(t.customer_id)
    assert body["acknowledged_at"] is not None and "looking into it" in body["resolution_notes"]
    assert (await client.post(f"/api/alerts/{ep}/acknowledge", headers=h)).status_code == 409
    resp = await client.post(f"/api/alerts/{ep}/resolve", headers=h, json={"notes": "rebooted"})
    assert resp.status_code == 200
    assert resp.json()["status"] == "resolved" and resp.json()["resolved_at"] is not None
    assert "rebooted" in resp.json()["resolution_notes"]
    assert (await client.post(f"/api/alerts/{ep}/resolve", headers=h)).status_code == 409

    async def ids(**params: Any) -> list[str]:
        resp = await client.get("/api/alerts", params=params, headers=h)
        assert resp.status_code == 200, resp.text
        return [a["id"] for a in resp.json()["alerts"]]

    assert await ids() == [str(ep), str(old)]
    assert await ids(severity="critical") == [str(old)]
    assert await ids(status="resolved,active") == [str(ep)]
    since = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    assert await ids(since=since) == [str(ep)]
    assert await ids(until=since) == [str(old)]
    assert await ids(rule_id=str(offline)) == [str(old)]
    resp = await client.get("/api/alerts", params={"status": "open"}, headers=h)
    assert resp.status_code == 422 and resp.json()["field"] == "status"
    per_agent = (await client.get(f"/api/agents/{t.agent.id}/alerts", params={"status": "auto_resolved"},
                                  headers=h)).json()
    assert [a["id"] for a in per_agent["alerts"]] == [str(old)] and per_agent["alerts"][0]["alert_name"] == "offline"


async def test_metrics_upload_answers_alerts_triggered(api: ApiServer, client: Any, api_conn: Any) -> None:
    t = await factories.tenant(api_conn)
    await add_rule(api_conn, t.business_id, CPU90, name="cpu_high")
    await add_rule(api_conn, t.business_id, {**CPU90, "metric": "memory_percent"}, name="mem_high")
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=11)

    def sample(i: int, cpu: float) -> dict[str, Any]:
        return {"collected_at": (start + timedelta(minutes=i)).isoformat().replace("+00:00", "Z"),
                "cpu_percent": cpu, "memory_percent": 50.0}

    first = await client.post(f"/api/agents/{t.agent.id}/metrics", headers=t.agent.headers,
                              json={"metrics": [sample(i, 95.0) for i in range(10)]})
    assert first.status_code == 200, first.text
    assert first.json()["alerts_triggered"] == []  # 9 minutes of data
    second = await client.post(f"/api/agents/{t.agent.id}/metrics", headers=t.agent.headers,
                               json={"metrics": [sample(10, 96.0)]})
    assert second.status_code == 200 and second.json()["alerts_triggered"] == ["cpu_high"]
    third = await client.post(f"/api/agents/{t.agent.id}/metrics", headers=t.agent.headers,
                              json={"metrics": [sample(11, 97.0)]})
    assert third.json()["alerts_triggered"] == []  # already open: not triggered again
    listed = (await client.get(f"/api/agents/{t.agent.id}/alerts", headers=customer(api, t))).json()
    assert [a["alert_name"] for a in listed["alerts"]] == ["cpu_high"]


async def test_maintenance_windows_over_http_and_customer_rules_setting(api_factory: Any, conn: Any) -> None:
    t = await factories.tenant(conn)
    server = api_factory(env={"RTS_ALERT_CUSTOMER_RULES": "true"})
    h = customer(server, t)
    async with server.client() as c:
        created = await c.post("/api/alerts/rules", json=RULE_BODY, headers=h)
        assert created.status_code == 201 and created.json()["business_id"] == str(t.business_id)
        now = datetime.now(UTC)
        w = await c.post("/api/alerts/maintenance", headers=h, json={
            "service_location_id": str(t.location_id), "reason": "patching",
            "starts_at": (now - timedelta(minutes=1)).isoformat(), "ends_at": (now + timedelta(hours=1)).isoformat()})
        assert w.status_code == 201, w.text
        window = w.json()
        assert window["business_id"] == str(t.business_id) and window["active"] is True
        bad = await c.post("/api/alerts/maintenance", headers=h, json={
            "starts_at": now.isoformat(), "ends_at": (now - timedelta(hours=1)).isoformat()})
        assert bad.status_code == 422 and bad.json()["field"] == "ends_at"
        current = (await c.get("/api/alerts/maintenance", params={"current": "true"}, headers=h)).json()
        assert [x["id"] for x in current["windows"]] == [window["id"]]
        ended = await c.patch(f"/api/alerts/maintenance/{window['id']}", headers=h,
                              json={"ends_at": now.isoformat()})
        assert ended.status_code == 200 and ended.json()["active"] is False
        assert (await c.get("/api/alerts/maintenance", headers=h)).json()["windows"] == []
        assert (await c.delete(f"/api/alerts/maintenance/{window['id']}", headers=h)).status_code == 204
        assert (await c.get(f"/api/alerts/maintenance/{window['id']}", headers=h)).status_code == 404


async def test_ticket_policy_by_severity_and_rule_overrides(api: ApiServer, client: Any, api_conn: Any,
                                                            settings: Settings) -> None:
    """A new business follows the API contract (every alert opens a ticket); its policy narrows
    that by severity; a rule's create_ticket true/false wins over the policy, null follows it."""
    t = await factories.tenant(api_conn)
    h = staff(api)
    path = f"/api/businesses/{t.business_id}/ticket-policy"
    assert (await client.get(path, headers=h)).json()["ticket_severities"] == ["info", "warning", "critical"]

    async def rule(name: str, severity: str, **extra: Any) -> str:
        resp = await client.post("/api/alerts/rules", headers=h, json={
            "alert_name": name, "severity": severity, "business_id": str(t.business_id),
            "conditions": {"kind": "service_down", "duration_minutes": 0, "service_name": name}, **extra})
        assert resp.status_code == 201, resp.text
        return str(resp.json()["id"])

    async def tickets_after_crash(name: str) -> list[str]:
        await api_conn.execute(
            "INSERT INTO agent_monitored_services (agent_device_id, service_name, status, should_be_running) "
            "VALUES (%s, %s, 'stopped', true)", (t.agent.id, name))
        await evaluator.evaluate(api_conn, settings, devices=[t.agent.id], kinds=("service_down",))
        cur = await api_conn.execute(
            "SELECT o.channel FROM alert_outbox o JOIN agent_alert_history h ON h.id = o.alert_history_id "
            "JOIN agent_alerts r ON r.id = h.agent_alert_id WHERE r.alert_name = %s AND r.business_id = %s",
            (name, t.business_id))
        return [r["channel"] for r in await cur.fetchall()]

    await rule("svc-a", "info")
    assert await tickets_after_crash("svc-a") == ["ticket"]  # the default: tickets on
    resp = await client.put(path, headers=h, json={"ticket_severities": ["critical", "warning"]})
    assert resp.status_code == 200, resp.text
    assert resp.json()["ticket_severities"] == ["warning", "critical"]
    await rule("svc-b", "info")
    await rule("svc-c", "warning")
    await rule("svc-d", "info", create_ticket=True)
    await rule("svc-e", "critical", create_ticket=False)
    assert await tickets_after_crash("svc-b") == []
    assert await tickets_after_crash("svc-c") == ["ticket"]
    assert await tickets_after_crash("svc-d") == ["ticket"]
    assert await tickets_after_crash("svc-e") == []

    customer = api.headers(api.token("customer", user_id=t.customer_id, business_id=t.business_id))
    assert (await client.get(path, headers=customer)).status_code == 200
    assert (await client.put(path, headers=customer, json={"ticket_severities": []})).status_code == 403
    other = await factories.tenant(api_conn)
    assert (await client.get(f"/api/businesses/{other.business_id}/ticket-policy", headers=customer)).status_code == 404
    bad = await client.put(path, headers=h, json={"ticket_severities": ["urgent"]})
    assert bad.status_code == 422 and bad.json()["field"] == "ticket_severities[0]", bad.text
    cur = await api_conn.execute("SELECT count(*) AS n FROM audit_log WHERE action = 'ticket_policy.set' "
                                 "AND business_id = %s", (t.business_id,))
    assert (await cur.fetchone())["n"] == 1


async def test_crash_event_path_waits_the_remediation_grace_and_leaves_metrics_to_cycles(
        conn: psycopg.AsyncConnection[Any], settings: Settings) -> None:
    """The crash-event evaluation (devices + service_down, events/service.py) judges service_down
    as a cycle does, remediation grace included; it judges no metric rule, so it must not mark the
    device's samples as judged: the next incremental cycle still opens the metric episode."""
    settings = settings.with_(remediation_grace_seconds=300)
    t = await factories.tenant(conn)
    svc = await add_rule(conn, t.business_id, {"kind": "service_down", "duration_minutes": 0,
                                               "service_name": "nginx"}, name="nginx_down")
    cpu = await add_rule(conn, t.business_id, CPU90, name="cpu_high")
    await conn.execute("UPDATE agent_devices SET auto_remediation_enabled = true WHERE id = %s", (t.agent.id,))
    await conn.execute(
        "INSERT INTO agent_monitored_services (agent_device_id, service_name, status, should_be_running, "
        "auto_restart, last_state_change) VALUES (%s, 'nginx', 'stopped', true, true, now() - interval '1 minute')",
        (t.agent.id,))
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=14)
    await add_samples(conn, t.agent.id, start, [95.0] * 14)
    await conn.execute("UPDATE agent_devices SET last_metrics_received = now() WHERE id = %s", (t.agent.id,))
    crash = {"devices": [t.agent.id], "kinds": ("service_down",)}
    assert (await evaluator.evaluate(conn, settings, **crash)).opened == []  # restart gets its grace first
    await conn.execute("UPDATE agent_monitored_services SET last_state_change = now() - interval '6 minutes' "
                       "WHERE agent_device_id = %s", (t.agent.id,))
    r = await evaluator.evaluate(conn, settings, **crash)
    assert [(o.rule_id, o.device_id) for o in r.opened] == [(svc, t.agent.id)]
    r = await evaluator.evaluate(conn, settings, incremental=True)
    assert [(o.rule_id, o.device_id) for o in r.opened] == [(cpu, t.agent.id)]
    # without auto-remediation the grace does not apply
    await conn.execute("UPDATE agent_devices SET auto_remediation_enabled = false WHERE id = %s", (t.agent.id,))
    await conn.execute("INSERT INTO agent_monitored_services (agent_device_id, service_name, status, "
                       "should_be_running, auto_restart, last_state_change) "
                       "VALUES (%s, 'redis', 'stopped', true, true, now())", (t.agent.id,))
    redis = await add_rule(conn, t.business_id, {"kind": "service_down", "duration_minutes": 0,
                                                 "service_name": "redis"}, name="redis_down")
    r = await evaluator.evaluate(conn, settings, **crash)
    assert [(o.rule_id, o.device_id) for o in r.opened] == [(redis, t.agent.id)]


async def test_ingest_answer_reports_what_its_samples_opened_when_a_cycle_judged_them_first(
        conn: psycopg.AsyncConnection[Any], settings: Settings) -> None:
    """The race behind alerts_triggered: a periodic cycle judges a flush's freshly committed samples
    before the flush's hook. The hook then opens nothing, but its answer (opened_in_ranges, what
    alerts.jobs.on_ingest returns) still names the episode those samples opened; an episode opened
    at an instant outside the flush's range is not its answer."""
    t = await factories.tenant(conn)
    await add_rule(conn, t.business_id, CPU90, name="cpu_high")
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=12)
    await add_samples(conn, t.agent.id, start, [95.0] * 10)
    assert (await evaluator.evaluate(conn, settings)).opened == []  # 9 minutes of data
    last = await add_samples(conn, t.agent.id, start + timedelta(minutes=10), [96.0])
    assert len((await evaluator.evaluate(conn, settings)).opened) == 1  # the cycle came first
    hook = await evaluator.evaluate(conn, settings, devices=[t.agent.id], kinds=("metric",))
    assert hook.opened == []
    assert await evaluator.opened_in_ranges(conn, settings, {t.agent.id: (last, last)}, hook) == {
        t.agent.id: ["cpu_high"]}
    later = await add_samples(conn, t.agent.id, start + timedelta(minutes=11), [97.0])
    hook = await evaluator.evaluate(conn, settings, devices=[t.agent.id], kinds=("metric",))
    assert await evaluator.opened_in_ranges(conn, settings, {t.agent.id: (later, later)}, hook) == {}
