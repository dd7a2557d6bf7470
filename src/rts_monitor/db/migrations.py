"""Schema migrations: numbered SQL files, a checksummed ledger, an advisory lock, edition choice.

Files (under ``sql/``):

* ``migrations/NNNN_name.sql`` run once, in order, each in its own transaction.
* ``migrations/NNNN_name.{tsl,apache,postgres}.sql``: the same version number in flavours; only
  the one matching the database's edition runs. A flavour may also stand beside a plain
  ``NNNN_name.sql``: it replaces it on its edition (how a step written for TimescaleDB gets its
  plain-PostgreSQL form without editing the applied file), the plain one runs on the others.
* ``repeatable/{common,tsl,apache,postgres}/*.sql`` (functions, views): re-applied whenever their
  text changes, after the versioned files.

The edition (``core/edition.py``): the TimescaleDB license when the extension is there or can be
created (``timescale`` → tsl, else apache); ``postgres`` when the server has no TimescaleDB, does
not preload it, or refuses to create it. A database migrated as ``postgres`` stays so (its ledger
says so) even if TimescaleDB appears on the server later: its tables are not hypertables.

A file whose first line is ``-- rts:no-transaction`` runs statement by statement in autocommit
(some TimescaleDB DDL refuses transaction blocks). Two processes migrating at once serialise on a
session advisory lock; the loser then finds nothing to do. An applied file that was edited stops
the run: the fix is a new migration, never a rewrite of history.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import psycopg
from psycopg import sql as pgsql

from rts_monitor.core import resources
from rts_monitor.core.edition import Edition

log = logging.getLogger(__name__)

MIGRATE_LOCK_KEY = 0x7274_736D_6967  # "rtsmig": one lock id for every rts-monitor instance
NO_TX_MARKER = "-- rts:no-transaction"
_VERSIONED = re.compile(r"^(?P<version>\d{4})_(?P<name>[a-z0-9_]+?)(?:\.(?P<edition>tsl|apache|postgres))?\.sql$")

LEDGER_DDL = """
CREATE TABLE IF NOT EXISTS rts_migrations (
    kind        text        NOT NULL CHECK (kind IN ('versioned', 'repeatable')),
    name        text        NOT NULL,
    version     integer,
    filename    text        NOT NULL,
    checksum    text        NOT NULL,
    edition     text        NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now(),
    duration_ms integer     NOT NULL,
    PRIMARY KEY (kind, name)
)
"""


class MigrationError(RuntimeError):
    """The schema cannot be brought up to date safely; the message says why."""


@dataclass(frozen=True)
class SqlFile:
    kind: Literal["versioned", "repeatable"]
    name: str
    version: int | None
    path: Path

    @property
    def text(self) -> str:
        return self.path.read_text()

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.path.read_bytes()).hexdigest()


@dataclass(frozen=True)
class MigrateResult:
    edition: Edition
    applied: list[str]
    unchanged: int


def sql_dir() -> Path:
    """``sql/`` of the checkout (editable install) or the copy packaged in the wheel."""
    found = resources.find("sql", "sql")
    if found is None:
        raise MigrationError("the sql/ directory is not part of this installation")
    return found


def plan(edition: Edition, root: Path | None = None) -> list[SqlFile]:
    """Every file that applies to this edition, in application order."""
    root = root or sql_dir()
    versioned: dict[int, SqlFile] = {}
    flavoured: dict[int, SqlFile] = {}  # this edition's flavour of a version: replaces a plain file
    for path in sorted((root / "migrations").glob("*.sql")):
        m = _VERSIONED.match(path.name)
        if not m:
            raise MigrationError(f"migration file name not of the form NNNN_name[.edition].sql: {path.name}")
        file_edition = m["edition"]
        if file_edition is not None and file_edition != edition:
            continue
        version = int(m["version"])
        into = versioned if file_edition is None else flavoured
        if version in into:
            other = into[version].path.name
            raise MigrationError(f"two migrations with version {version:04d}: {path.name}, {other}")
        into[version] = SqlFile("versioned", f"{version:04d}_{m['name']}", version, path)
    versioned.update(flavoured)
    repeatable = [
        SqlFile("repeatable", f"{sub}/{path.stem}", None, path)
        for sub in ("common", edition)
        for path in sorted((root / "repeatable" / sub).glob("*.sql"))
    ]
    return [versioned[v] for v in sorted(versioned)] + repeatable


def detect_edition(conn: psycopg.Connection[tuple[object, ...]]) -> Edition:
    """``tsl`` for TimescaleDB's Community license, ``apache`` for the Apache build, ``postgres``
    where TimescaleDB is not to be had (creating the extension when it is available)."""
    if _ledger_edition(conn) == "postgres":
        return "postgres"
    row = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'").fetchone()
    if row is None:
        why = _no_timescaledb(conn)
        if why is None:
            try:
                conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
                conn.commit()
            except psycopg.Error as exc:
                conn.rollback()
                why = f"CREATE EXTENSION timescaledb was refused: {str(exc).strip()}"
        if why is not None:
            conn.commit()
            log.warning("migration.edition_postgres", extra={"reason": why})
            return "postgres"
    license_row = conn.execute("SELECT current_setting('timescaledb.license', true)").fetchone()
    license_name = (license_row[0] if license_row else None) or "apache"
    conn.commit()
    return "tsl" if license_name == "timescale" else "apache"


def _ledger_edition(conn: psycopg.Connection[tuple[object, ...]]) -> str | None:
    """The edition this database was migrated for, if it was."""
    row = conn.execute(
        "SELECT to_regclass('rts_migrations') IS NOT NULL").fetchone()
    if not row or not row[0]:
        conn.commit()
        return None
    found = conn.execute("SELECT edition FROM rts_migrations ORDER BY applied_at LIMIT 1").fetchone()
    conn.commit()
    return str(found[0]) if found else None


def _no_timescaledb(conn: psycopg.Connection[tuple[object, ...]]) -> str | None:
    """Why TimescaleDB cannot be used here (None: try creating it)."""
    available = conn.execute(
        "SELECT default_version FROM pg_available_extensions WHERE name = 'timescaledb'").fetchone()
    if available is None:
        return "the server has no timescaledb extension"
    preload = conn.execute("SELECT current_setting('shared_preload_libraries')").fetchone()
    if preload is None or "timescaledb" not in str(preload[0]):
        return "timescaledb is installed but not in shared_preload_libraries"
    return None


def migrate(dsn: str, *, root: Path | None = None) -> MigrateResult:
    """Bring the schema up to date; safe to run from several processes at once."""
    with psycopg.connect(dsn, application_name="rts-monitor:migrate") as conn:
        conn.execute("SET lock_timeout = '60s'")
        conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATE_LOCK_KEY,))
        conn.commit()
        try:
            edition = detect_edition(conn)
            conn.execute(LEDGER_DDL)
            conn.commit()
            return _apply_all(conn, edition, plan(edition, root))
        finally:
            conn.rollback()
            conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATE_LOCK_KEY,))
            conn.commit()


def _apply_all(conn: psycopg.Connection[tuple[object, ...]], edition: Edition, files: list[SqlFile]) -> MigrateResult:
    ledger = {
        (str(kind), str(name)): (str(checksum), str(filename))
        for kind, name, checksum, filename in conn.execute(
            "SELECT kind, name, checksum, filename FROM rts_migrations"
        ).fetchall()
    }
    conn.commit()
    known = {(f.kind, f.name) for f in files}
    for (kind, name), (_checksum, filename) in ledger.items():
        if kind == "versioned" and (kind, name) not in known:
            raise MigrationError(
                f"migration {filename} is recorded as applied but its file is missing from sql/"
            )
    applied: list[str] = []
    unchanged = 0
    for f in files:
        recorded = ledger.get((f.kind, f.name))
        checksum = f.checksum
        if recorded is not None and recorded[0] == checksum:
            unchanged += 1
            continue
        if recorded is not None and f.kind == "versioned":
            raise MigrationError(
                f"migration {f.path.name} was edited after it was applied "
                f"(recorded checksum {recorded[0][:12]}…, file now {checksum[:12]}…); "
                "restore the file and put the change in a new migration"
            )
        _apply_one(conn, f, edition, checksum)
        applied.append(f.path.name)
    return MigrateResult(edition, applied, unchanged)


def _apply_one(conn: psycopg.Connection[tuple[object, ...]], f: SqlFile, edition: Edition, checksum: str) -> None:
    started = time.monotonic()
    text = f.text
    log.info("migration.apply", extra={"file": f.path.name, "kind": f.kind, "edition": edition})
    try:
        if text.lstrip().startswith(NO_TX_MARKER):
            conn.autocommit = True
            try:
                for statement in split_statements(text):
                    conn.execute(pgsql.SQL(statement))
            finally:
                conn.autocommit = False
        else:
            conn.execute(pgsql.SQL(text))
        conn.execute(
            """
            INSERT INTO rts_migrations (kind, name, version, filename, checksum, edition, duration_ms)
            VALUES (%s, %s, %s, %s, %s, %s, %s)
            ON CONFLICT (kind, name) DO UPDATE
               SET checksum = EXCLUDED.checksum, filename = EXCLUDED.filename,
                   edition = EXCLUDED.edition, applied_at = now(),
                   duration_ms = EXCLUDED.duration_ms
            """,
            (f.kind, f.name, f.version, f.path.name, checksum, edition,
             int((time.monotonic() - started) * 1000)),
        )
        conn.commit()
    except psycopg.Error as exc:
        conn.rollback()
        raise MigrationError(f"{f.path.name} failed: {exc}") from exc


def split_statements(text: str) -> list[str]:
    """Split on semicolons outside quotes, comments and dollar-quoted bodies."""
    out: list[str] = []
    buf: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("--", i):
            j = text.find("\n", i)
            j = n if j == -1 else j
            buf.append(text[i:j])
            i = j
            continue
        if text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j == -1 else j + 2
            buf.append(text[i:j])
            i = j
            continue
        if c == "'":
            j = i + 1
            while j < n:
                if text[j] == "'" and text.startswith("''", j):
                    j += 2
                    continue
                if text[j] == "'":
                    break
                j += 1
            buf.append(text[i : j + 1])
            i = j + 1
            continue
        if c == "$":
            m = re.match(r"\$[A-Za-z_]*\$", text[i:])
            if m:
                tag = m.group(0)
                j = text.find(tag, i + len(tag))
                j = n if j == -1 else j + len(tag)
                buf.append(text[i:j])
                i = j
                continue
        if c == ";":
            stmt = "".join(buf).strip()
            if _has_code(stmt):
                out.append(stmt)
            buf = []
            i += 1
            continue
        buf.append(c)
        i += 1
    stmt = "".join(buf).strip()
    if _has_code(stmt):
        out.append(stmt)
    return out


def _has_code(stmt: str) -> bool:
    return any(line.strip() and not line.strip().startswith("--") for line in stmt.splitlines())


def status(dsn: str, *, root: Path | None = None) -> list[dict[str, object]]:
    """Each file with applied/pending/edited state, for `rts-monitor db migrate --status`."""
    with psycopg.connect(dsn) as conn:
        edition = detect_edition(conn)
        conn.execute(LEDGER_DDL)
        ledger = {
            (str(k), str(n)): (str(c), a)
            for k, n, c, a in conn.execute("SELECT kind, name, checksum, applied_at FROM rts_migrations")
        }
        conn.commit()
    rows: list[dict[str, object]] = []
    for f in plan(edition, root):
        rec = ledger.get((f.kind, f.name))
        state = "pending" if rec is None else ("applied" if rec[0] == f.checksum else "edited")
        rows.append({"file": f.path.name, "kind": f.kind, "state": state,
                     "applied_at": None if rec is None else rec[1]})
    return rows
