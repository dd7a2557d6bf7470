"""The on-disk spool: every sample is written here before anything tries to send it.

SQLite in WAL mode with ``synchronous=FULL``: once ``put`` returns, the sample survives a crash,
``kill -9`` or power loss. The sender reads the oldest samples (``peek``), posts them, and deletes
only what the server acknowledged (``ack``); a crash between post and ack re-sends the batch,
which is harmless because the server deduplicates on (agent, collected_at). For the same reason
an ``ack`` is not fsync'd on its own (``synchronous=NORMAL`` for that transaction): a power cut
can only undo it, re-sending its batch; the next ``put``'s fsync takes it to disk anyway.

What one sample costs the disk is kept small: a row in one table (the rowid orders the FIFO; no
AUTOINCREMENT bookkeeping, no index) and one counters row, i.e. two pages per ``put`` and two per
``ack`` in the WAL.

The spool is bounded by the payload bytes it holds (``max_bytes``). When a new sample does not
fit, the oldest samples are dropped, counted, and their time range remembered until the runner
has reported the loss (``drop_report`` / ``clear_drop_report``): losing data is allowed only
loudly. A second table holds command results not yet delivered, so a result survives a restart.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

# The rowid ``seq`` is the FIFO order: a new row always gets one more than the highest present.
_SAMPLES = """
CREATE TABLE IF NOT EXISTS {name} (
    seq          INTEGER PRIMARY KEY,
    collected_at TEXT    NOT NULL,
    body         BLOB    NOT NULL,
    bytes        INTEGER NOT NULL
);
"""
_SCHEMA = _SAMPLES.format(name="samples") + """
CREATE TABLE IF NOT EXISTS counters (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS state (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS results (
    command_id TEXT PRIMARY KEY,
    body       BLOB NOT NULL,
    created    REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    event_id TEXT PRIMARY KEY,
    body     BLOB NOT NULL,
    created  REAL NOT NULL
);
"""
# 0: samples with AUTOINCREMENT and a UNIQUE index on collected_at (two more pages per put).
SCHEMA_VERSION = 1

# Counters kept in the database so they survive restarts.
BYTES = "bytes"  # payload bytes currently held
SPOOLED_TOTAL = "spooled_total"
SENT_TOTAL = "sent_total"
DROPPED_TOTAL = "dropped_total"
DROPPED_UNREPORTED = "dropped_unreported"
QUARANTINED_TOTAL = "quarantined_total"


@dataclass(frozen=True)
class Pending:
    """One spooled sample as the sender sees it."""

    seq: int
    collected_at: str
    body: bytes


@dataclass(frozen=True)
class DropReport:
    """Samples dropped because the spool was full and not yet reported to the server."""

    count: int
    first_collected_at: str
    last_collected_at: str


@dataclass(frozen=True)
class Stats:
    depth: int
    bytes: int
    max_bytes: int
    oldest: str | None
    newest: str | None
    spooled_total: int
    sent_total: int
    dropped_total: int
    dropped_unreported: int
    quarantined_total: int
    pending_results: int = 0


class Spool:
    """A bounded FIFO of serialized samples; one instance per process (single writer)."""

    def __init__(self, path: Path, *, max_bytes: int) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self._leased: frozenset[int] = frozenset()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        # SQLite's default page cache is 2 MiB per connection; the agent reads a batch at a time
        # (the OS page cache has the rest), so a backlog need not grow its resident memory.
        self._db.execute("PRAGMA cache_size=-256")
        self._migrate()
        self._db.executescript(_SCHEMA)
        if int(self._db.execute("PRAGMA user_version").fetchone()[0]) != SCHEMA_VERSION:
            self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")  # a new spool (a write: not on every start)

    def _migrate(self) -> None:
        """A spool written by an older agent: same rows, same order, lighter table."""
        version = int(self._db.execute("PRAGMA user_version").fetchone()[0])
        present = self._db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'samples'").fetchone()
        if present is None or version >= 1:
            return
        with self._tx():
            self._db.execute(_SAMPLES.format(name="samples_v1"))
            self._db.execute("INSERT INTO samples_v1 (seq, collected_at, body, bytes) "
                             "SELECT seq, collected_at, body, bytes FROM samples ORDER BY seq")
            self._db.execute("DROP TABLE samples")
            self._db.execute("ALTER TABLE samples_v1 RENAME TO samples")
            self._db.execute("DELETE FROM sqlite_sequence WHERE name = 'samples'")
            self._db.execute("PRAGMA user_version=1")

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- counters ---------------------------------------------------------------------------
    def _counter(self, name: str) -> int:
        row = self._db.execute("SELECT value FROM counters WHERE name = ?", (name,)).fetchone()
        return int(row[0]) if row else 0

    def _add(self, name: str, delta: int) -> None:
        self._db.execute(
            "INSERT INTO counters (name, value) VALUES (?, ?) "
            "ON CONFLICT (name) DO UPDATE SET value = value + excluded.value",
            (name, delta),
        )

    def get_state(self, name: str) -> str | None:
        row = self._db.execute("SELECT value FROM state WHERE name = ?", (name,)).fetchone()
        return str(row[0]) if row else None

    def set_state(self, name: str, value: str) -> None:
        self._db.execute(
            "INSERT INTO state (name, value) VALUES (?, ?) "
            "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            (name, value),
        )

    def delete_state(self, name: str) -> None:
        self._db.execute("DELETE FROM state WHERE name = ?", (name,))

    # -- samples ----------------------------------------------------------------------------
    def put(self, collected_at: str, body: bytes) -> int:
        """Store one sample durably; returns how many old samples were dropped to make room.

        A sample with the ``collected_at`` of the newest one is ignored (a clock that did not move);
        any other repeat (a clock set back) the server deduplicates on (agent, collected_at).
        """
        size = len(body)
        dropped = 0
        with self._tx():
            newest = self._db.execute("SELECT collected_at FROM samples ORDER BY seq DESC LIMIT 1").fetchone()
            if newest is not None and newest[0] == collected_at:
                return 0
            self._db.execute("INSERT INTO samples (collected_at, body, bytes) VALUES (?, ?, ?)",
                             (collected_at, body, size))
            self._add(BYTES, size)
            self._add(SPOOLED_TOTAL, 1)
            excess = self._counter(BYTES) - self.max_bytes
            if excess > 0:
                dropped = self._drop_oldest(excess)
        return dropped

    def lease(self, seqs: list[int]) -> None:
        """Mark the batch being sent: the overflow drop skips it, so a sample the server is about
        to acknowledge is never also counted (and reported) as dropped. Release after the try."""
        self._leased = frozenset(seqs)

    def release(self) -> None:
        self._leased = frozenset()

    def _drop_oldest(self, excess: int) -> int:
        """Delete the oldest samples until ``excess`` bytes are freed (never the newest one, never
        the batch in flight: the spool may exceed its bound by at most that batch meanwhile)."""
        cur = self._db.execute(
            "SELECT seq, collected_at, bytes FROM samples "
            "WHERE seq < (SELECT max(seq) FROM samples) ORDER BY seq"
        )
        leased = self._leased
        freed, victims = 0, []
        for seq, collected_at, size in cur:  # stepped lazily: stops after the few it needs
            if seq in leased:
                continue
            victims.append((seq, collected_at))
            freed += size
            if freed >= excess:
                break
        cur.close()
        if not victims:
            return 0
        marks = ",".join("?" * len(victims))
        self._db.execute(f"DELETE FROM samples WHERE seq IN ({marks})", [v[0] for v in victims])
        self._add(BYTES, -freed)
        self._add(DROPPED_TOTAL, len(victims))
        self._add(DROPPED_UNREPORTED, len(victims))
        if self.get_state("drop_first") is None:
            self.set_state("drop_first", victims[0][1])
        self.set_state("drop_last", victims[-1][1])
        return len(victims)

    def peek(self, limit: int) -> list[Pending]:
        """The oldest ``limit`` samples, oldest first (catch-up order)."""
        rows = self._db.execute(
            "SELECT seq, collected_at, body FROM samples ORDER BY seq LIMIT ?", (limit,)
        ).fetchall()
        return [Pending(int(s), str(c), bytes(b)) for s, c, b in rows]

    def ack(self, seqs: list[int]) -> int:
        """Delete samples the server acknowledged; returns how many were still present.

        Not fsync'd on its own: undone by a power cut, it only means a re-send (module docstring).
        """
        if not seqs:
            return 0
        self._db.execute("PRAGMA synchronous=NORMAL")
        try:
            with self._tx():
                marks = ",".join("?" * len(seqs))
                row = self._db.execute(
                    f"SELECT count(*), coalesce(sum(bytes), 0) FROM samples WHERE seq IN ({marks})", seqs
                ).fetchone()
                self._db.execute(f"DELETE FROM samples WHERE seq IN ({marks})", seqs)
                self._add(BYTES, -int(row[1]))
                self._add(SENT_TOTAL, int(row[0]))
        finally:
            self._db.execute("PRAGMA synchronous=FULL")
        return int(row[0])

    def quarantine(self, seq: int) -> None:
        """Remove a sample the server rejects as invalid, so it cannot block the queue forever."""
        with self._tx():
            row = self._db.execute("SELECT bytes FROM samples WHERE seq = ?", (seq,)).fetchone()
            if row is None:
                return
            self._db.execute("DELETE FROM samples WHERE seq = ?", (seq,))
            self._add(BYTES, -int(row[0]))
            self._add(QUARANTINED_TOTAL, 1)

    def drop_report(self) -> DropReport | None:
        count = self._counter(DROPPED_UNREPORTED)
        if count <= 0:
            return None
        return DropReport(count, self.get_state("drop_first") or "", self.get_state("drop_last") or "")

    def clear_drop_report(self, report: DropReport) -> None:
        """The server has been told about ``report``; later drops start a new report."""
        with self._tx():
            self._add(DROPPED_UNREPORTED, -report.count)
            if self._counter(DROPPED_UNREPORTED) <= 0:
                self._db.execute("DELETE FROM state WHERE name IN ('drop_first', 'drop_last')")

    def stats(self) -> Stats:
        depth, oldest, newest = self._db.execute(
            "SELECT count(*), min(collected_at), max(collected_at) FROM samples"
        ).fetchone()
        return Stats(
            depth=int(depth), bytes=self._counter(BYTES), max_bytes=self.max_bytes,
            oldest=oldest, newest=newest, spooled_total=self._counter(SPOOLED_TOTAL),
            sent_total=self._counter(SENT_TOTAL), dropped_total=self._counter(DROPPED_TOTAL),
            dropped_unreported=self._counter(DROPPED_UNREPORTED),
            quarantined_total=self._counter(QUARANTINED_TOTAL),
        )

    # -- command results awaiting delivery ---------------------------------------------------
    def put_result(self, command_id: str, body: bytes) -> None:
        self._db.execute(
            "INSERT INTO results (command_id, body, created) VALUES (?, ?, ?) "
            "ON CONFLICT (command_id) DO UPDATE SET body = excluded.body",
            (command_id, body, time.time()),
        )

    def pending_results(self) -> list[tuple[str, bytes]]:
        rows = self._db.execute("SELECT command_id, body FROM results ORDER BY created").fetchall()
        return [(str(c), bytes(b)) for c, b in rows]

    def result_ids(self) -> list[str]:
        """Results awaiting delivery, oldest first (ids only: bodies are read one at a time)."""
        return [str(r[0]) for r in self._db.execute("SELECT command_id FROM results ORDER BY created")]

    def get_result(self, command_id: str) -> bytes | None:
        row = self._db.execute("SELECT body FROM results WHERE command_id = ?", (command_id,)).fetchone()
        return bytes(row[0]) if row else None

    def count_results(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM results").fetchone()[0])

    def has_result(self, command_id: str) -> bool:
        return self._db.execute("SELECT 1 FROM results WHERE command_id = ?", (command_id,)).fetchone() is not None

    def delete_result(self, command_id: str) -> None:
        self._db.execute("DELETE FROM results WHERE command_id = ?", (command_id,))

    # -- events awaiting delivery (service_crashed, service_recovered) ---------------------------
    def put_event(self, event_id: str, body: bytes) -> None:
        self._db.execute("INSERT OR IGNORE INTO events (event_id, body, created) VALUES (?, ?, ?)",
                         (event_id, body, time.time()))

    def pending_events(self) -> list[tuple[str, bytes]]:
        """Oldest first: a crash is delivered before the recovery that followed it."""
        rows = self._db.execute("SELECT event_id, body FROM events ORDER BY created, rowid").fetchall()
        return [(str(e), bytes(b)) for e, b in rows]

    def count_events(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM events").fetchone()[0])

    def delete_event(self, event_id: str) -> None:
        self._db.execute("DELETE FROM events WHERE event_id = ?", (event_id,))

    def _tx(self) -> _Tx:
        return _Tx(self._db)


class _Tx:
    """BEGIN IMMEDIATE … COMMIT (ROLLBACK on error) on an autocommit sqlite3 connection."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *_: object) -> None:
        self._db.execute("ROLLBACK" if exc_type is not None else "COMMIT")


def open_readonly_stats(path: Path, attempts: int = 20) -> Stats | None:
    """Spool figures for ``rts-agent status`` without taking the writer's place.

    A read-only connection to a WAL database fails transiently while the writer creates or
    recovers its ``-wal``/``-shm`` files (seen at agent start: "unable to open database file"),
    so the read is retried for about a second before the error is reported.
    """
    if not path.exists():
        return None
    for attempt in range(attempts):
        try:
            return _read_stats(path)
        except sqlite3.OperationalError:
            if attempt == attempts - 1:
                raise
            time.sleep(0.05)
    return None


def _read_stats(path: Path) -> Stats:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        depth, oldest, newest = db.execute(
            "SELECT count(*), min(collected_at), max(collected_at) FROM samples"
        ).fetchone()
        counters = dict(db.execute("SELECT name, value FROM counters").fetchall())
        results = int(db.execute("SELECT count(*) FROM results").fetchone()[0])
    finally:
        db.close()
    return Stats(
        depth=int(depth), bytes=int(counters.get(BYTES, 0)), max_bytes=0, oldest=oldest, newest=newest,
        spooled_total=int(counters.get(SPOOLED_TOTAL, 0)), sent_total=int(counters.get(SENT_TOTAL, 0)),
        dropped_total=int(counters.get(DROPPED_TOTAL, 0)),
        dropped_unreported=int(counters.get(DROPPED_UNREPORTED, 0)),
        quarantined_total=int(counters.get(QUARANTINED_TOTAL, 0)), pending_results=results,
    )
