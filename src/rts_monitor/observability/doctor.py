"""``rts-monitor doctor``: what is wrong with this deployment, and what to do about it.

Read-only: it changes nothing in the database (no ledger table or extension is created, unlike
``db migrate``). Each check is a row: area, check, status (``ok``, ``warn``, ``fail``), what was
found and, when not ok, what to fix. The command exits 1 when any check fails, 0 otherwise
(warnings are things to look at, not outages). docs/operations.md lists the checks.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import psycopg
from psycopg.rows import dict_row

from rts_monitor.core.edition import Edition
from rts_monitor.core.scheduler import Job
from rts_monitor.core.settings import Settings
from rts_monitor.db import Queries, resolve_database_url
from rts_monitor.db.migrations import MigrationError, plan

Q = Queries.beside(__file__)
MIN_POSTGRES = 150000
SKEW_WARN_SECONDS = 2.0
SKEW_FAIL_SECONDS = 30.0
# A job whose last success is older than this many intervals (plus a minute) has stopped running.
LATE_INTERVALS = 3
FAILING_IN_A_ROW = 3
# TimescaleDB's policies (3 refreshes, retention per level, compression) each need a background
# worker when they run; fewer than this and they queue behind each other.
MIN_BACKGROUND_WORKERS = 8


@dataclass
class Finding:
    area: str
    check: str
    status: str  # ok | warn | fail
    found: str
    fix: str = ""


def configuration(settings: Settings, channels: dict[str, int] | None) -> list[Finding]:
    out: list[Finding] = []
    add = out.append
    if settings.production:
        missing = settings.missing_for_production()
        for item in missing:
            variable, _, why = item.partition(": ")
            add(Finding("config", variable.split(" ")[0], "fail", "not set", f"set {variable} ({why})"))
        if not missing:
            add(Finding("config", "secrets", "ok", "RTS_JWT_SECRET/RTS_JWT_PUBLIC_KEY, RTS_WEBHOOK_SECRET set"))
        if settings.jwt_secret and len(settings.jwt_secret) < 32:
            add(Finding("config", "RTS_JWT_SECRET", "warn", f"{len(settings.jwt_secret)} characters",
                        "use a random secret of at least 32 characters"))
    else:
        add(Finding("config", "RTS_ENV", "warn", f"{settings.env}: secrets are generated in the state dir",
                    "RTS_ENV=production for a real deployment"))
    if settings.public_url:
        if settings.production and not settings.public_url.startswith("https://"):
            add(Finding("config", "RTS_PUBLIC_URL", "warn", settings.public_url,
                        "agents send their tokens to this URL: use https"))
        else:
            add(Finding("config", "RTS_PUBLIC_URL", "ok", settings.public_url))
    elif not settings.production:
        add(Finding("config", "RTS_PUBLIC_URL", "warn", f"empty: agents are told {settings.effective_public_url}",
                    "set RTS_PUBLIC_URL to the address agents reach"))
    if not settings.metrics_token and not settings.metrics_bind:
        add(Finding("config", "metrics", "warn", "GET /metrics is disabled",
                    "set RTS_METRICS_TOKEN or RTS_METRICS_BIND to let Prometheus scrape"))
    else:
        add(Finding("config", "metrics", "ok", "token" if settings.metrics_token else settings.metrics_bind))
    if channels is not None:
        if channels.get("email"):
            if settings.smtp_host:
                add(Finding("config", "RTS_SMTP_HOST", "ok", f"{settings.smtp_host}:{settings.smtp_port}"))
            else:
                add(Finding("config", "RTS_SMTP_HOST", "fail",
                            f"{channels['email']} active alert rule(s) notify by e-mail and no SMTP server is set",
                            "set RTS_SMTP_HOST (and RTS_SMTP_FROM, credentials) for the process running jobs"))
        if channels.get("sms"):
            missing = [name for name, value in (("RTS_SMS_ACCOUNT_SID", settings.sms_account_sid),
                                                ("RTS_SMS_AUTH_TOKEN", settings.sms_auth_token),
                                                ("RTS_SMS_FROM", settings.sms_from)) if not value]
            if missing:
                add(Finding("config", "RTS_SMS_*", "fail",
                            f"{channels['sms']} active alert rule(s) text by SMS; not set: {', '.join(missing)}",
                            f"set {', '.join(missing)} for the process running jobs"))
            else:
                add(Finding("config", "RTS_SMS_*", "ok", f"{settings.sms_provider} from {settings.sms_from}"))
        if channels.get("webhook") and settings.production and not settings.webhook_secret:
            add(Finding("config", "RTS_WEBHOOK_SECRET", "fail", "webhook rules exist, no signing key",
                        "set RTS_WEBHOOK_SECRET"))
    return out


def _edition(conn: psycopg.Connection[dict[str, Any]], facts: dict[str, Any]) -> Edition:
    ledger = conn.execute("SELECT to_regclass('rts_migrations') IS NOT NULL AS present").fetchone()
    if ledger and ledger["present"]:
        row = conn.execute("SELECT edition FROM rts_migrations LIMIT 1").fetchone()
        if row and row["edition"] in ("tsl", "apache", "postgres"):
            return row["edition"]  # type: ignore[no-any-return]
    if facts["timescaledb"] is None:
        return "postgres"
    return "tsl" if facts["license"] == "timescale" else "apache"


def database(conn: psycopg.Connection[dict[str, Any]], *, now: float) -> tuple[list[Finding], Edition]:
    out: list[Finding] = []
    add = out.append
    facts = conn.execute(Q.database_facts).fetchone()
    assert facts is not None
    edition = _edition(conn, facts)
    add(Finding("database", "edition", "ok", f"{edition} (TimescaleDB {facts['timescaledb'] or 'absent'}, "
                                             f"license {facts['license'] or '-'})"))
    if facts["postgres_num"] < MIN_POSTGRES:
        add(Finding("database", "postgres", "fail", facts["postgres"], "PostgreSQL 15 or newer is needed"))
    else:
        add(Finding("database", "postgres", "ok", facts["postgres"]))
    if edition != "postgres":
        installed, available = facts["timescaledb"], facts["timescaledb_available"]
        if installed is None:
            add(Finding("database", "timescaledb", "fail", "extension not installed", "rts-monitor db migrate"))
        elif available and available != installed:
            add(Finding("database", "timescaledb", "warn", f"{installed} installed, {available} available",
                        "ALTER EXTENSION timescaledb UPDATE (first statement of a fresh session)"))
        else:
            add(Finding("database", "timescaledb", "ok", installed))
        workers = int(facts["max_background_workers"] or 0)
        if edition == "tsl" and workers < MIN_BACKGROUND_WORKERS:
            add(Finding("database", "timescaledb.max_background_workers", "warn", str(workers),
                        f"at least {MIN_BACKGROUND_WORKERS}: the refresh, retention and compression policies "
                        "each need a worker"))
        else:
            add(Finding("database", "timescaledb.max_background_workers", "ok", str(workers)))
    out.extend(_migrations(conn, edition))
    tz = facts["timezone"]
    add(Finding("database", "TimeZone", "ok" if tz in ("UTC", "Etc/UTC") else "warn", tz,
                "" if tz in ("UTC", "Etc/UTC") else "ALTER DATABASE … SET timezone = 'UTC' (reports and "
                                                      "daily buckets assume UTC)"))
    skew = float(facts["server_epoch"]) - now
    status = "ok" if abs(skew) < SKEW_WARN_SECONDS else "warn" if abs(skew) < SKEW_FAIL_SECONDS else "fail"
    add(Finding("database", "clock skew", status, f"{skew:+.2f} s (server - this host)",
                "" if status == "ok" else "run NTP (chrony) on both hosts: ingest refuses samples from the "
                                          "future and staleness is judged by the server's clock"))
    return out, edition


def _migrations(conn: psycopg.Connection[dict[str, Any]], edition: Edition) -> list[Finding]:
    try:
        files = plan(edition)
    except MigrationError as exc:
        return [Finding("database", "migrations", "fail", str(exc), "reinstall rts-monitor")]
    present = conn.execute("SELECT to_regclass('rts_migrations') IS NOT NULL AS present").fetchone()
    ledger: dict[tuple[str, str], str] = {}
    if present and present["present"]:
        ledger = {(r["kind"], r["name"]): r["checksum"]
                  for r in conn.execute("SELECT kind, name, checksum FROM rts_migrations")}
    pending = [f.path.name for f in files if (f.kind, f.name) not in ledger]
    edited = [f.path.name for f in files if ledger.get((f.kind, f.name)) not in (None, f.checksum)]
    if pending:
        return [Finding("database", "migrations", "fail", f"{len(pending)} pending: {', '.join(pending[:3])}"
                        + ("…" if len(pending) > 3 else ""), "rts-monitor db migrate")]
    if edited:
        return [Finding("database", "migrations", "fail", f"edited after being applied: {', '.join(edited[:3])}",
                        "restore the applied files; changes go into a new migration")]
    return [Finding("database", "migrations", "ok", f"{len(files)} files applied")]


def jobs(conn: psycopg.Connection[dict[str, Any]], specs: Sequence[Job]) -> list[Finding]:
    out: list[Finding] = []
    present = conn.execute("SELECT to_regclass('rts_job_runs') IS NOT NULL AS present").fetchone()
    if not present or not present["present"]:
        return [Finding("jobs", "rts_job_runs", "fail", "table missing", "rts-monitor db migrate")]
    runs = {r["name"]: r for r in conn.execute(Q.job_runs)}
    for spec in specs:
        row = runs.get(spec.name)
        if row is None:
            out.append(Finding("jobs", spec.name, "fail", "no scheduler has ever run it",
                               "run a scheduler: `rts-monitor scheduler`, or an API with RTS_SCHEDULER_ENABLED"))
            continue
        interval = float(row["interval_seconds"])
        late = LATE_INTERVALS * interval + 60
        if row["waiting"]:  # not run since the last scheduler start
            since = float(row["since_registered_seconds"])
            if since <= late:
                out.append(Finding("jobs", spec.name, "ok", f"scheduled {since:.0f} s ago, first run due "
                                                            f"within {interval:g} s"))
            else:
                out.append(Finding("jobs", spec.name, "fail", f"not run since a scheduler started {since:.0f} s "
                                                              f"ago (every {interval:g} s)",
                                   "is the scheduler still running? see its job.failed and job.skipped lines"))
            continue
        since_start = float(row["since_start_seconds"])
        since_success = None if row["since_success_seconds"] is None else float(row["since_success_seconds"])
        if row["consecutive_failures"] >= FAILING_IN_A_ROW:
            out.append(Finding("jobs", spec.name, "fail",
                               f"failed {row['consecutive_failures']} times in a row: {row['last_error']}"[:200],
                               "see the job.failed log lines of the scheduler"))
        elif since_start > late:
            out.append(Finding("jobs", spec.name, "fail", f"last ran {since_start:.0f} s ago (every {interval:g} s)",
                               "is a scheduler running? (`rts-monitor scheduler` or RTS_SCHEDULER_ENABLED)"))
        elif since_success is None or since_success > late:
            out.append(Finding("jobs", spec.name, "warn", f"no success for {since_success or 0:.0f} s: "
                                                          f"{row['last_error']}"[:200],
                               "see the job.failed log lines"))
        else:
            out.append(Finding("jobs", spec.name, "ok", f"ran {since_start:.0f} s ago, {row['failures']} of "
                                                        f"{row['runs']} runs failed"))
    return out


def standby(settings: Settings, primary: psycopg.Connection[dict[str, Any]]) -> list[Finding]:
    """RTS_DATABASE_READ_URL, when set: reachable, a standby (in recovery), of this very primary
    (the same system identifier), and replaying. The API bypasses a standby that fails any of
    these (db/reads.py), so a wrong one costs the primary every read it was meant to take, without
    a single failed request: this is where it shows."""
    if not settings.database_read_url:
        return []
    url = settings.database_read_url
    where = _safe_dsn(url)
    try:
        with psycopg.connect(url, row_factory=dict_row, connect_timeout=5, autocommit=True,
                             application_name="rts-monitor:doctor") as conn:
            facts = conn.execute(Q.standby_facts).fetchone()
            assert facts is not None
            mine = primary.execute(Q.standby_facts).fetchone()
            assert mine is not None
            ahead = primary.execute(
                "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s::pg_lsn) AS bytes",
                (facts["replayed"],)).fetchone() if facts["replayed"] else None
    except psycopg.OperationalError as exc:
        return [Finding("standby", "connection", "fail", f"{where}: {type(exc).__name__}: {exc}".strip()[:200],
                        "check RTS_DATABASE_READ_URL and that the standby runs (the API reads from the primary "
                        "meanwhile)")]
    except psycopg.Error as exc:
        return [Finding("standby", "connection", "fail", f"{where}: {type(exc).__name__}: {exc}".strip()[:200],
                        "the user of RTS_DATABASE_READ_URL needs the same privileges as DATABASE_URL's")]
    out = [Finding("standby", "connection", "ok", where)]
    if not facts["in_recovery"]:
        out.append(Finding("standby", "in recovery", "fail", "a primary, not a standby: the API never reads from it",
                           "point RTS_DATABASE_READ_URL at a hot standby of DATABASE_URL (streaming replication)"))
        return out
    out.append(Finding("standby", "in recovery", "ok", "a hot standby"))
    if facts["system_identifier"] is None or mine["system_identifier"] is None:
        out.append(Finding("standby", "same cluster", "warn", "cannot read pg_control_system() here",
                           "GRANT pg_monitor to the users of DATABASE_URL and RTS_DATABASE_READ_URL to check it"))
    elif facts["system_identifier"] != mine["system_identifier"]:
        out.append(Finding("standby", "same cluster", "fail",
                           f"a standby of system {facts['system_identifier']}, not of DATABASE_URL's "
                           f"({mine['system_identifier']}): it serves another database's data",
                           "point RTS_DATABASE_READ_URL at a standby of DATABASE_URL's server"))
        return out
    else:
        out.append(Finding("standby", "same cluster", "ok", f"system {facts['system_identifier']}"))
    if facts["dbname"] != mine["dbname"]:
        out.append(Finding("standby", "database", "fail", f"{facts['dbname']}, not {mine['dbname']}",
                           "RTS_DATABASE_READ_URL names the same database as DATABASE_URL"))
    behind = float(ahead["bytes"]) if ahead and ahead["bytes"] is not None else None
    if facts["paused"]:
        out.append(Finding("standby", "replay", "warn", "WAL replay is paused: it falls behind and gets bypassed",
                           "SELECT pg_wal_replay_resume() on the standby"))
    elif behind is None:
        out.append(Finding("standby", "replay", "warn", "nothing replayed yet",
                           "is it streaming from the primary? (pg_stat_wal_receiver on the standby)"))
    else:
        out.append(Finding("standby", "replay", "ok", f"{behind / 1024:,.0f} KiB of WAL behind the primary "
                                                      f"(bypassed beyond {settings.read_max_lag_seconds:g} s)"))
    return out


def run(settings: Settings, specs: Sequence[Job]) -> list[Finding]:
    """Every check, in order: configuration, database, jobs, the standby (with one)."""
    findings: list[Finding] = []
    try:
        url = resolve_database_url(settings)
    except Exception as exc:
        findings.extend(configuration(settings, None))
        findings.append(Finding("database", "DATABASE_URL", "fail", str(exc), "set DATABASE_URL"))
        return findings
    channels: dict[str, int] | None = None
    checks: list[Finding] = []
    try:
        with psycopg.connect(url, row_factory=dict_row, connect_timeout=5, autocommit=True,
                             application_name="rts-monitor:doctor") as conn:
            checks.append(Finding("database", "connection", "ok", _safe_dsn(url)))
            try:
                found, _ = database(conn, now=time.time())
                checks.extend(found)
                row = conn.execute(Q.channels_in_use).fetchone()
                channels = {k: int(v or 0) for k, v in (row or {}).items()}
                checks.extend(jobs(conn, specs))
                checks.extend(standby(settings, conn))
            except psycopg.Error as exc:  # a schema this code does not expect (pending migrations)
                checks.append(Finding("database", "schema", "fail", f"{type(exc).__name__}: {exc}".strip()[:200],
                                      "rts-monitor db migrate, then run doctor again"))
    except psycopg.OperationalError as exc:
        checks.append(Finding("database", "connection", "fail", f"{type(exc).__name__}: {exc}".strip()[:200],
                              "check DATABASE_URL and that the server runs and accepts this host"))
    findings.extend(configuration(settings, channels))
    findings.extend(checks)
    return findings


def _safe_dsn(url: str) -> str:
    info = psycopg.conninfo.conninfo_to_dict(url)
    return f"{info.get('host', 'localhost')}:{info.get('port', 5432)}/{info.get('dbname', '')}"


def rows(findings: Sequence[Finding]) -> list[dict[str, Any]]:
    return [asdict(f) for f in findings]


def exit_code(findings: Sequence[Finding]) -> int:
    return 1 if any(f.status == "fail" for f in findings) else 0
