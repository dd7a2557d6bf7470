"""Development subcommands: ``rts-monitor db up|down|status`` (the local server) and ``demo``."""

from __future__ import annotations

import argparse
import sys

from rts_monitor.core.concern import SubParsers
from rts_monitor.core.settings import Settings
from rts_monitor.devtools import demo


def _db_up(args: argparse.Namespace, settings: Settings) -> int:
    from rts_monitor.db import migrations
    from rts_monitor.devtools import localdb

    url = localdb.up(settings)
    if not args.no_migrate:
        result = migrations.migrate(url)
        print(f"[db] migrations: edition={result.edition} applied={len(result.applied)} "
              f"unchanged={result.unchanged}", file=sys.stderr)
    print(url)
    return 0


def _db_down(_: argparse.Namespace, settings: Settings) -> int:
    from rts_monitor.devtools import localdb

    localdb.down(settings)
    return 0


def _db_status(_: argparse.Namespace, settings: Settings) -> int:
    from rts_monitor.devtools import localdb

    info = localdb.status(settings)
    width = max(len(k) for k in info)
    for key, value in info.items():
        print(f"{key:<{width}}  {value}")
    return 0 if info.get("running") else 3


def register_db(dbsub: SubParsers) -> None:
    p = dbsub.add_parser("up", help="provision/start the local server, migrate, print the DSN")
    p.add_argument("--no-migrate", action="store_true")
    p.set_defaults(func=_db_up)
    dbsub.add_parser("down", help="stop the local server").set_defaults(func=_db_down)
    dbsub.add_parser("status", help="is the local server running, which edition").set_defaults(func=_db_status)


def register(sub: SubParsers) -> None:
    demo.register(sub)
