"""``rts-monitor tiers show|set-retention|set-compression|set-chunk-interval|refresh|retention``."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

from rts_monitor.core.edition import DESCRIBE_SQL, DatabaseInfo, Edition
from rts_monitor.core.errors import DomainError
from rts_monitor.core.settings import Settings
from rts_monitor.tiers import maintenance, service
from rts_monitor.tiers.definitions import LEVELS

Action = Callable[[psycopg.AsyncConnection[Any], Edition, argparse.Namespace], Awaitable[int]]


async def _edition(conn: psycopg.AsyncConnection[Any]) -> Edition:
    row = await (await conn.execute(DESCRIBE_SQL)).fetchone()
    assert row is not None
    return DatabaseInfo.from_row(row).edition


def _run(settings: Settings, action: Action, args: argparse.Namespace) -> int:
    from rts_monitor.db import resolve_database_url

    async def go() -> int:
        async with await psycopg.AsyncConnection.connect(
            resolve_database_url(settings), autocommit=True, row_factory=dict_row,
            application_name="rts-monitor:tiers",
        ) as conn:
            return await action(conn, await _edition(conn), args)

    try:
        return asyncio.run(go())
    except DomainError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2


async def _show(conn: psycopg.AsyncConnection[Any], edition: Edition, args: argparse.Namespace) -> int:
    from rts_monitor.core.tables import print_table

    view = await service.show(conn, edition=edition)
    if args.json:
        print(json.dumps(view, default=str, indent=2))
        return 0
    print(f"edition: {edition}")
    print_table([{k: v for k, v in row.items() if k != "bytes"} for row in view["levels"]])
    print()
    print_table(view["jobs"])
    for feature, why in view["unavailable"].items():
        print(f"unavailable on this edition: {feature}: {why}")
    return 0


async def _set_retention(conn: psycopg.AsyncConnection[Any], edition: Edition, args: argparse.Namespace) -> int:
    retention = service.parse_duration(args.retention, field="retention")
    await service.set_retention(conn, edition=edition, level=args.level, retention=retention)
    print(f"{args.level}: retention {retention or 'forever'}")
    return await _show(conn, edition, argparse.Namespace(json=False))


async def _set_compression(conn: psycopg.AsyncConnection[Any], edition: Edition, args: argparse.Namespace) -> int:
    after = service.parse_duration(args.after, field="compress_after")
    await service.set_compression(conn, edition=edition, after=after)
    print(f"agent_metrics: compress chunks older than {after}" if after else "agent_metrics: compression policy off")
    return 0


async def _set_chunk(conn: psycopg.AsyncConnection[Any], edition: Edition, args: argparse.Namespace) -> int:
    interval = service.parse_duration(args.interval, field="chunk_interval", allow_none=False)
    assert interval is not None
    await service.set_chunk_interval(conn, edition=edition, level=args.level, interval=interval)
    print(f"{args.level}: new chunks span {interval}")
    return 0


def _parse_time(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


async def _refresh(conn: psycopg.AsyncConnection[Any], edition: Edition, args: argparse.Namespace) -> int:
    out = await service.refresh(conn, edition=edition, start=_parse_time(args.start), end=_parse_time(args.end))
    print(json.dumps(out, default=str, indent=2))
    return 0


async def _retention(conn: psycopg.AsyncConnection[Any], edition: Edition, _: argparse.Namespace) -> int:
    if edition == "tsl":
        print("retention runs as TimescaleDB policies on this edition (see `tiers show`)")
        return 0
    from rts_monitor.core.tables import print_table

    dropped = await maintenance.apply_retention(conn, edition=edition)
    print_table([{"level": k, "dropped_chunks": v} for k, v in dropped.items()])
    return 0


def register(sub: Any) -> None:
    tiers = sub.add_parser("tiers", help="rollup tiers: show, retention, compression, refresh (DBA controls)")
    ts = tiers.add_subparsers(dest="tiers_command", required=True)

    def add(name: str, action: Action, help_text: str) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = ts.add_parser(name, help=help_text)
        p.set_defaults(func=lambda args, settings: _run(settings, action, args))
        return p

    p = add("show", _show, "each tier and the raw table: chunks, size, compression, retention, lag, jobs")
    p.add_argument("--json", action="store_true")
    p = add("set-retention", _set_retention, "how long a level keeps data ('none' = forever)")
    p.add_argument("level", choices=LEVELS)
    p.add_argument("retention", help="e.g. '30 days', 12h, none")
    p = add("set-compression", _set_compression, "compress raw chunks older than AGE (timescale license only)")
    p.add_argument("after", help="e.g. '7 days', or none to stop")
    p = add("set-chunk-interval", _set_chunk, "chunk interval for new chunks of a level")
    p.add_argument("level", choices=LEVELS)
    p.add_argument("interval", help="e.g. '1 day', 6h")
    p = add("refresh", _refresh, "refresh now: one scheduled pass, or re-aggregate [--start, --end)")
    p.add_argument("--start", help="ISO time with zone")
    p.add_argument("--end", help="ISO time with zone")
    add("retention", _retention, "drop chunks/partitions past retention now (apache, postgres editions)")
