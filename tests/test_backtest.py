"""Backtest: a rule's would-be episodes over a past period, judged exactly as the live evaluator."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import msgspec
import psycopg

from rts_monitor.alerts import backtest, evaluator
from rts_monitor.alerts.structs import BacktestRequest, BacktestResult
from rts_monitor.auth.principal import Principal, Role
from rts_monitor.core.settings import Settings
from tests import factories
from tests.test_alerts import CPU90, add_rule, add_samples, episodes

STAFF = Principal(user_id=uuid4(), role=Role.admin, business_id=None)


async def run_backtest(conn: Any, settings: Settings, edition: Any, *, business_id: UUID | None = None,
                       device_id: UUID | None = None, conditions: dict[str, Any], since: datetime,
                       until: datetime | None = None, create_ticket: bool = False,
                       principal: Principal = STAFF) -> BacktestResult:
    body = {"rule": {"alert_name": "bt", "severity": "warning", "business_id": business_id,
                     "agent_device_id": device_id, "conditions": conditions, "create_ticket": create_ticket},
            "since": since, "until": until}
    data = msgspec.convert(body, BacktestRequest)
    return await backtest.backtest(conn, principal=principal, settings=settings, edition=edition, data=data)


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
    assert result.chart.threshold == 90 and result.chart.clear_threshold == 85.5
    # The live evaluator, one cycle per sample, opens exactly these.
    rule = await add_rule(conn, t.business_id, CPU90)
    for i in range(len(values)):
        await conn.execute("DELETE FROM agent_metrics")
        await add_samples(conn, t.agent.id, start, values[:i + 1])
        await add_samples(conn, quiet.id, start, [40.0] * (i + 1))
        await evaluator.evaluate(conn, settings)
    live = [(e["detected_at"], e["cleared_at"], e["metric_value"]) for e in await episodes(conn, rule)]
    assert live == [(g[0], g[1], g[2]) for g in got]
