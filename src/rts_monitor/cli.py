"""``rts-monitor``: db url|migrate, serve, scheduler, doctor, config; each concern's commands (``wiring``);
the development commands (``devtools``: db up|down|status, demo)."""

from __future__ import annotations

import argparse
import contextlib
import inspect
import os
import sys
from collections.abc import Callable

from rts_monitor import wiring
from rts_monitor.core import logs, metrics
from rts_monitor.core.settings import ROLES, Settings, describe, variables_for
from rts_monitor.devtools import cli as devtools_cli

Handler = Callable[[argparse.Namespace, Settings], int]

def _db_url(_: argparse.Namespace, settings: Settings) -> int:
    from rts_monitor.db import resolve_database_url

    print(resolve_database_url(settings))
    return 0


def _db_migrate(args: argparse.Namespace, settings: Settings) -> int:
    from rts_monitor.db import migrations, resolve_database_url

    url = resolve_database_url(settings)
    if args.status:
        for row in migrations.status(url):
            print(f"{row['state']:<8} {row['kind']:<10} {row['file']}  {row['applied_at'] or ''}")
        return 0
    result = migrations.migrate(url)
    for name in result.applied:
        print(f"applied   {name}")
    print(f"edition={result.edition} applied={len(result.applied)} unchanged={result.unchanged}")
    return 0


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from rts_monitor.db import migrations, resolve_database_url

    settings = settings.with_(
        host=args.host or settings.host,
        port=args.port or settings.port,
        workers=args.workers or settings.workers,
    )
    settings.require_runnable()  # before any worker starts: one clear message, not one per worker
    _raise_open_files()
    # Before any worker exists: every worker writes its metrics there, /metrics merges them.
    metrics.prepare_multiproc_dir(settings.state_dir)
    if settings.metrics_bind:
        from rts_monitor.observability import listener

        listener.start(settings.metrics_bind)
    url = resolve_database_url(settings)
    if not args.no_migrate:
        migrations.migrate(url)
    # Worker processes rebuild Settings from the environment: hand them what was resolved here.
    os.environ["DATABASE_URL"] = url
    os.environ["RTS_HOST"], os.environ["RTS_PORT"] = settings.host, str(settings.port)
    os.environ["RTS_WORKERS"] = str(settings.workers)
    os.environ["RTS_STATE_DIR"] = str(settings.state_dir)
    if not settings.production:  # workers share this process's generated development secrets
        os.environ["RTS_ENV"] = settings.env
        if not settings.jwt_secret and not settings.jwt_public_key:
            os.environ["RTS_JWT_SECRET"] = settings.effective_jwt_secret()
        os.environ["RTS_WEBHOOK_SECRET"] = settings.effective_webhook_secret()
    # uvicorn's supervisor kills a worker that does not answer its ping within 5 s, also while it
    # starts: on a loaded host (measured: load 10 on 2 cores) a starting worker missed it every
    # time and was restarted forever. Given where the installed uvicorn has the setting.
    patience = ({"timeout_worker_healthcheck": 30}
                if "timeout_worker_healthcheck" in inspect.signature(uvicorn.Config).parameters else {})
    uvicorn.run(
        "rts_monitor.api.app:create_app",
        **patience,  # type: ignore[arg-type]
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_config=None,
        access_log=False,
        loop="uvloop",
        http="httptools",
        timeout_graceful_shutdown=30,
        ws_ping_interval=settings.ws_ping_interval_seconds,
        ws_ping_timeout=settings.ws_ping_timeout_seconds,
    )
    return 0


def _raise_open_files() -> None:
    """Every agent's WebSocket is an open file: a soft limit of 1024 (many distributions' default)
    would refuse sockets long before the memory runs out. Raised to the hard limit, which the
    operator sets (systemd LimitNOFILE=, ulimit -Hn, Docker --ulimit nofile=); workers inherit it."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or soft < hard):
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        # a hard limit above the kernel's nr_open is refused: the soft one stays
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def _scheduler(_: argparse.Namespace, settings: Settings) -> int:
    """Only the scheduled jobs, no HTTP: for deployments that run API replicas with the
    scheduler disabled (docker/compose.yaml). Singleton jobs lock across processes anyway."""
    import asyncio
    import signal

    async def run() -> None:
        if settings.metrics_bind:
            from rts_monitor.observability import listener

            listener.start(settings.metrics_bind)
        async with wiring.runtime(settings, components=False, run_jobs=True):
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, stop.set)
            await stop.wait()

    logs.setup(settings.log_level, settings.log_format)
    asyncio.run(run())
    return 0


def _doctor(args: argparse.Namespace, settings: Settings) -> int:
    """Configuration, database and jobs checked; a table of what to fix; 1 when something fails."""
    from rts_monitor.core.tables import print_table
    from rts_monitor.observability import doctor

    findings = doctor.run(settings, wiring.jobs())
    shown = [f for f in findings if args.all or f.status != "ok"] or findings
    print_table(doctor.rows(shown), as_json=args.json)
    failed = sum(f.status == "fail" for f in findings)
    warned = sum(f.status == "warn" for f in findings)
    if not args.json:
        print(f"\n{len(findings)} checks: {failed} failing, {warned} to look at"
              + ("" if args.all else " (--all lists the passing ones too)"))
    return doctor.exit_code(findings)


def _config(args: argparse.Namespace, __: Settings) -> int:
    if args.role:
        print("\n".join(variables_for(args.role, runs_jobs=args.role == "api" and args.runs_jobs)))
        return 0
    for env, default, doc in describe():
        print(f"{env:<34} {default:<28} {doc}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rts-monitor", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    db = sub.add_parser("db", help="local TimescaleDB and migrations")
    dbsub = db.add_subparsers(dest="db_command", required=True)
    devtools_cli.register_db(dbsub)
    dbsub.add_parser("url", help="print the DSN in use").set_defaults(func=_db_url)
    p = dbsub.add_parser("migrate", help="apply pending migrations")
    p.add_argument("--status", action="store_true", help="list files and their state")
    p.set_defaults(func=_db_migrate)

    p = sub.add_parser("serve", help="run the API and the scheduler")
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.add_argument("--workers", type=int)
    p.add_argument("--no-migrate", action="store_true")
    p.set_defaults(func=_serve)

    sub.add_parser("scheduler", help="run only the scheduled jobs (no HTTP)").set_defaults(func=_scheduler)
    p = sub.add_parser("doctor", help="check configuration, database and jobs; exit 1 if something fails")
    p.add_argument("--all", action="store_true", help="list the passing checks too")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_doctor)
    p = sub.add_parser("config", help="list environment variables and defaults")
    p.add_argument("--role", choices=ROLES, help="only the variables a production process of this role needs")
    p.add_argument("--runs-jobs", action="store_true", help="with --role api: the API also runs the jobs")
    p.set_defaults(func=_config)

    wiring.register_cli(sub)
    devtools_cli.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = parser_args(argv)
    try:
        settings = Settings.from_env()
        logs.setup(settings.log_level, os.environ.get("RTS_LOG_FORMAT", "text"))
        return int(args.func(args, settings))
    except Exception as exc:
        from rts_monitor.core.settings import ConfigurationError
        from rts_monitor.db.migrations import MigrationError
        from rts_monitor.db.pool import NoDatabaseConfigured
        from rts_monitor.devtools.localdb import LocalDbError

        if isinstance(exc, LocalDbError | MigrationError | NoDatabaseConfigured | ConfigurationError):
            print(f"error: {exc}", file=sys.stderr)
            return 2
        raise


def parser_args(argv: list[str] | None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


if __name__ == "__main__":
    sys.exit(main())
