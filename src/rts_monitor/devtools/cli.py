"""Development subcommands: ``rts-monitor db up|down|status`` (the local server) and ``demo``."""

from __future__ import annotations

import argparse
import sys

from rts_monitor.core.concern import SubParsers
from rts_monitor.core.edition import EDITIONS
from rts_monitor.core.settings import Settings
from rts_monitor.devtools import demo
from rts_monitor.devtools.localdb import PG_MAJORS


def _db_up(args: argparse.Namespace, settings: Settings) -> int:
    from rts_monitor.db import migrations
    from rts_monitor.devtools import localdb

    edition = localdb.check_edition(args.edition) if args.edition else None
    if args.replica and args.pg_major not in (None, localdb.PG_MAJOR):
        raise SystemExit(f"db up: --replica is for PostgreSQL {localdb.PG_MAJOR} servers, not {args.pg_major}")
    url = localdb.up(settings, edition, remember=not args.no_remember, pg_major=args.pg_major)
    if not args.no_migrate:
        result = migrations.migrate(url)
        print(f"[db] migrations: edition={result.edition} applied={len(result.applied)} "
              f"unchanged={result.unchanged}", file=sys.stderr)
    if args.replica:  # after the migrations: the standby's copy then has the schema already
        from rts_monitor.devtools import standby

        url = standby.up(settings, edition)
    print(url)
    return 0


def _db_down(args: argparse.Namespace, settings: Settings) -> int:
    from rts_monitor.devtools import localdb

    edition = localdb.check_edition(args.edition) if args.edition else None
    if args.replica:
        from rts_monitor.devtools import standby

        standby.down(settings, edition)
        return 0
    localdb.down(settings, edition, args.pg_major)
    return 0


def _db_status(args: argparse.Namespace, settings: Settings) -> int:
    from rts_monitor.devtools import localdb

    info = localdb.status(settings, localdb.check_edition(args.edition) if args.edition else None, args.pg_major)
    width = max(len(k) for k in info)
    for key, value in info.items():
        print(f"{key:<{width}}  {value}")
    return 0 if info.get("running") else 3


EDITION_HELP = ("tsl: TimescaleDB Community built from source (default); apache: Debian's TimescaleDB; "
                "postgres: plain PostgreSQL (the Aurora/RDS shape)")
MAJOR_HELP = ("PostgreSQL major: 17 (default), or 15 or 16 for the postgres edition (15: Debian 12's own "
              "postgresql-15 where present; 16, and 15 elsewhere: pinned builds fetched once with npm pack)")


def register_db(dbsub: SubParsers) -> None:
    p = dbsub.add_parser("up", help="provision/start the local server, migrate, print the DSN")
    p.add_argument("--edition", choices=EDITIONS,
                   help=EDITION_HELP + "; remembered for this checkout (default: the last one, else tsl)")
    p.add_argument("--no-remember", action="store_true",
                   help="start this edition's server beside the default one without making it the default")
    p.add_argument("--no-migrate", action="store_true")
    p.add_argument("--replica", action="store_true",
                   help="also start a streaming hot standby of it (pg_basebackup, same edition) and print its "
                        "DSN, the RTS_DATABASE_READ_URL to use, instead of the primary's")
    p.add_argument("--pg-major", choices=PG_MAJORS, help=MAJOR_HELP + "; remembered with the edition")
    p.set_defaults(func=_db_up)
    p = dbsub.add_parser("down", help="stop the local server(s) and their standbys: every edition's, or --edition's")
    p.add_argument("--edition", choices=EDITIONS)
    p.add_argument("--replica", action="store_true", help="stop only the standby")
    p.add_argument("--pg-major", choices=PG_MAJORS, help="only this major's server (default: every major's)")
    p.set_defaults(func=_db_down)
    p = dbsub.add_parser("status", help="is the local server running, which edition")
    p.add_argument("--edition", choices=EDITIONS)
    p.add_argument("--pg-major", choices=PG_MAJORS, help=MAJOR_HELP)
    p.set_defaults(func=_db_status)


def register(sub: SubParsers) -> None:
    demo.register(sub)
