"""The spool: durable before anything is sent, bounded with a counted drop of the oldest,
deletes only what was acknowledged, survives SIGKILL of the writing process."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from rts_agent.spool import Spool


def stamp(i: int) -> str:
    return f"2026-01-01T00:{i // 60:02d}:{i % 60:02d}.000000Z"


def test_fifo_peek_and_ack_delete_only_what_was_acknowledged(tmp_path: Path) -> None:
    with Spool(tmp_path / "s.db", max_bytes=1_000_000) as sp:
        for i in range(10):
            sp.put(stamp(i), b'{"i":%d}' % i)
        batch = sp.peek(4)
        assert [p.collected_at for p in batch] == [stamp(i) for i in range(4)]
        assert sp.ack([batch[0].seq, batch[1].seq]) == 2
        assert sp.ack([batch[0].seq]) == 0  # acknowledged twice: nothing more to delete
        assert [p.collected_at for p in sp.peek(3)] == [stamp(2), stamp(3), stamp(4)]
        stats = sp.stats()
        assert (stats.depth, stats.sent_total, stats.spooled_total, stats.dropped_total) == (8, 2, 10, 0)
        assert stats.bytes == sum(len(b'{"i":%d}' % i) for i in range(2, 10))
        # The same collected_at twice is one sample.
        assert sp.put(stamp(9), b"again") == 0
        assert sp.stats().depth == 8


def test_wal_mode_and_full_sync(tmp_path: Path) -> None:
    with Spool(tmp_path / "s.db", max_bytes=1000) as sp:
        assert sp._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert sp._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_full_spool_drops_oldest_counts_and_reports_once(tmp_path: Path) -> None:
    body = b"x" * 100
    with Spool(tmp_path / "s.db", max_bytes=1000) as sp:
        dropped = [sp.put(stamp(i), body) for i in range(25)]
        assert sum(dropped) == 15
        stats = sp.stats()
        assert stats.depth == 10 and stats.bytes == 1000
        assert stats.oldest == stamp(15) and stats.newest == stamp(24)  # the newest are kept
        report = sp.drop_report()
        assert report is not None
        assert (report.count, report.first_collected_at, report.last_collected_at) == (15, stamp(0), stamp(14))
        sp.clear_drop_report(report)
        assert sp.drop_report() is None
        sp.put(stamp(25), body)
        again = sp.drop_report()
        assert again is not None and again.count == 1 and again.first_collected_at == stamp(15)
        assert sp.stats().dropped_total == 16
    # Counters survive a restart.
    with Spool(tmp_path / "s.db", max_bytes=1000) as sp:
        assert sp.stats().dropped_total == 16 and sp.stats().dropped_unreported == 1


def test_the_batch_in_flight_is_never_dropped_and_so_never_counted_twice(tmp_path: Path) -> None:
    """A sample the sender is delivering may be acknowledged by the server: dropping it too would
    count it as both stored and dropped. Overflow skips the leased batch; after release it is
    the oldest again."""
    body = b"x" * 100
    with Spool(tmp_path / "s.db", max_bytes=1000) as sp:
        for i in range(10):
            sp.put(stamp(i), body)
        batch = sp.peek(3)
        sp.lease([p.seq for p in batch])
        assert sp.put(stamp(10), body) == 1
        assert [p.collected_at for p in sp.peek(3)] == [stamp(0), stamp(1), stamp(2)]
        report = sp.drop_report()
        assert report is not None and report.first_collected_at == stamp(3)
        assert sp.ack([p.seq for p in batch]) == 3
        sp.release()
        sp.put(stamp(11), body)
        assert sp.stats().dropped_total == 1 and sp.stats().oldest == stamp(4)
        for i in range(12, 15):  # 1,100 bytes at stamp(14): nothing leased, so the oldest goes
            sp.put(stamp(i), body)
        assert sp.stats().dropped_total == 2 and sp.stats().oldest == stamp(5)


def test_a_sample_larger_than_the_spool_keeps_only_itself(tmp_path: Path) -> None:
    with Spool(tmp_path / "s.db", max_bytes=150) as sp:
        sp.put(stamp(0), b"a" * 100)
        assert sp.put(stamp(1), b"b" * 200) == 1
        assert [p.body for p in sp.peek(5)] == [b"b" * 200]


def test_quarantine_removes_a_poison_sample(tmp_path: Path) -> None:
    with Spool(tmp_path / "s.db", max_bytes=10_000) as sp:
        sp.put(stamp(0), b"bad")
        sp.put(stamp(1), b"good")
        sp.quarantine(sp.peek(1)[0].seq)
        assert [p.body for p in sp.peek(5)] == [b"good"]
        assert sp.stats().quarantined_total == 1 and sp.stats().bytes == 4


def test_results_table(tmp_path: Path) -> None:
    with Spool(tmp_path / "s.db", max_bytes=10_000) as sp:
        sp.put_result("c1", b"{}")
        assert sp.has_result("c1") and sp.pending_results() == [("c1", b"{}")]
        sp.delete_result("c1")
        assert not sp.has_result("c1")


WRITER = textwrap.dedent("""
    import sys
    from pathlib import Path
    from rts_agent.spool import Spool
    sp = Spool(Path(sys.argv[1]), max_bytes=10**9)
    i = 0
    while True:
        sp.put("2026-01-01T00:00:00.%06dZ" % i, b'{"n":%d}' % i)
        print(i, flush=True)   # printed only after put() returned: that sample is durable
        i += 1
""")


def test_sigkill_mid_write_loses_nothing_that_was_acknowledged_by_put(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    confirmed = -1
    deadline = time.monotonic() + 20
    while confirmed < 200 and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        confirmed = int(line)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    # confirmations printed between our last read and the kill are still in the pipe
    for line in proc.stdout.read().split():
        confirmed = int(line)
    assert confirmed >= 200, "writer too slow"
    db = sqlite3.connect(path)
    rows = db.execute("SELECT collected_at FROM samples ORDER BY seq").fetchall()
    ns = [int(r[0][20:26]) for r in rows]
    # Everything confirmed is there, in order, once; at most one more (written, not yet printed).
    assert ns[: confirmed + 1] == list(range(confirmed + 1))
    assert len(ns) in (confirmed + 1, confirmed + 2)
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


OLD_SCHEMA = """
CREATE TABLE samples (seq INTEGER PRIMARY KEY AUTOINCREMENT, collected_at TEXT NOT NULL UNIQUE,
                      body BLOB NOT NULL, bytes INTEGER NOT NULL);
CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE state (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE results (command_id TEXT PRIMARY KEY, body BLOB NOT NULL, created REAL NOT NULL);
"""


def test_a_spool_from_an_older_agent_keeps_every_sample_in_order(tmp_path: Path) -> None:
    """The first schema (AUTOINCREMENT, UNIQUE collected_at) becomes the lighter one, rows kept."""
    path = tmp_path / "s.db"
    db = sqlite3.connect(path)
    db.executescript(OLD_SCHEMA)
    for i in (3, 5, 9):  # gaps, as acknowledged samples leave them
        db.execute("INSERT INTO samples (seq, collected_at, body, bytes) VALUES (?, ?, ?, 1)", (i, stamp(i), b"x"))
    db.execute("INSERT INTO counters VALUES ('bytes', 3), ('spooled_total', 10), ('sent_total', 7)")
    db.execute("INSERT INTO results VALUES ('c1', x'7b7d', 1.0)")
    db.commit()
    db.close()
    with Spool(path, max_bytes=10_000) as sp:
        assert [(p.seq, p.collected_at) for p in sp.peek(10)] == [(3, stamp(3)), (5, stamp(5)), (9, stamp(9))]
        stats = sp.stats()
        assert (stats.depth, stats.bytes, stats.spooled_total, stats.sent_total) == (3, 3, 10, 7)
        assert sp.pending_results() == [("c1", b"{}")]
        sp.put(stamp(10), b"y")
        assert sp.peek(10)[-1].seq == 10  # above every row present
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == 1
    indexes = db.execute("SELECT count(*) FROM sqlite_master WHERE type = 'index' AND tbl_name = 'samples'")
    assert indexes.fetchone()[0] == 0
    assert "AUTOINCREMENT" not in db.execute("SELECT sql FROM sqlite_master WHERE name = 'samples'").fetchone()[0]
    db.close()
    with Spool(path, max_bytes=10_000) as sp:  # opening again changes nothing
        assert len(sp.peek(10)) == 4


def test_an_ack_is_not_fsynced_but_a_put_is(tmp_path: Path) -> None:
    with Spool(tmp_path / "s.db", max_bytes=10_000) as sp:
        sp.put(stamp(1), b"x")
        sp.ack([p.seq for p in sp.peek(1)])
        assert sp._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # back to FULL for the next put
