"""A streaming hot standby of this checkout's local server: ``rts-monitor db up --replica``.

So read replicas (``RTS_DATABASE_READ_URL``, ``db/reads.py``) are developed and tested against the
real thing: the same PostgreSQL binaries, route and edition as the primary (for tsl, its chroot
root), a physical copy taken with ``pg_basebackup -R`` (which also writes ``standby.signal`` and
``primary_conninfo``), streaming from the primary from then on.

* Its data directory is ``standby/`` beside the primary's ``data/`` (``.rts/pg-tsl/standby``), so
  the route's bind mount already shows it to the server; its log is ``standby.log`` there.
* Its port is chosen once (the first free one from 54529) and kept in ``db.json`` beside the
  primary's, as ``replica_port``/``replica_url``.
* The primary needs nothing changed: initdb's defaults already stream (``wal_level=replica``,
  ``max_wal_senders=10``, ``host replication all 127.0.0.1/32 scram-sha-256`` in pg_hba.conf) and
  its user ``rts`` is a superuser, so it may replicate.
* ``rts.auto.conf`` comes over with the copy and is rewritten with the standby's port and a smaller
  ``shared_buffers`` (a standby must keep ``max_connections``, ``max_worker_processes`` and
  ``max_locks_per_transaction`` at least the primary's: the rest of the file stays as it was) and
  ``hot_standby_feedback`` (long chart queries are not cancelled by the vacuum of rows they read).
* ``db down`` stops it before the primary; ``db down --replica`` stops it alone. There is no
  replication slot: a standby stopped while the primary wrote more WAL than it keeps is copied
  again by the next ``up`` (``_primary_has_its_wal``).

A small database copies in seconds (``--checkpoint=fast``, ``--no-sync``: a standby lost in a host
crash is made again by the next ``db up --replica``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

from rts_monitor.core.edition import Edition
from rts_monitor.core.settings import Settings
from rts_monitor.devtools import localdb
from rts_monitor.devtools.localdb import DB_NAME, DB_USER, SERVER_CONF, Layout, LocalDbError, Route

FIRST_PORT = localdb.DEFAULT_PORT + 200  # above the range primaries move to (localdb._move_port)
# After a crash (the kill drill) recovery first syncs the data directory (file by file that took
# over 10 s here, one syncfs() a fraction of it), then replays from the last restartpoint: every
# minute rather than the primary's 15, so a restart replays seconds of WAL, not the whole session's.
STANDBY_CONF = {"shared_buffers": "'512MB'", "hot_standby": "on", "hot_standby_feedback": "on",
                "recovery_init_sync_method": "syncfs", "checkpoint_timeout": "'1min'"}


def data_dir(lay: Layout) -> Path:
    return lay.pg_dir / "standby"


def _server_path(route: Route) -> str:
    """The standby's data directory as the server sees it (inside the root, through the mount)."""
    return route.data_dir_for_server().rsplit("/", 1)[0] + "/standby"


def running(route: Route) -> bool:
    """By its pid file, not ``pg_ctl status``: a killed postmaster whose zombie the host's init has
    not reaped yet still answers ``kill(pid, 0)``, and pg_ctl would call it running."""
    return route.is_prepared() and _live_pid(route.lay) is not None


def _live_pid(lay: Layout) -> int | None:
    try:
        found = int((data_dir(lay) / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return found if localdb.process_alive(found) else None


def pid(settings: Settings, edition: Edition | None = None) -> int | None:
    """The standby's postmaster (for the drill that kills it), None when it is not running."""
    return _live_pid(localdb.layout(settings, edition))


def _port(route: Route) -> int:
    """The port kept for this standby, unless another server took it meanwhile."""
    kept = route.lay.server_record().get("replica_port")
    # Nothing accepting connections: ours (a killed standby leaves TIME_WAIT sockets that make a
    # plain bind fail for a minute; PostgreSQL binds with SO_REUSEADDR regardless).
    if isinstance(kept, int) and (running(route) or not localdb._port_open(kept)):
        return kept
    for port in range(FIRST_PORT, FIRST_PORT + 200):
        if localdb.port_free(port):
            return port
    raise LocalDbError(f"no free port in {FIRST_PORT}-{FIRST_PORT + 199} for the standby")


def url(lay: Layout, port: int) -> str:
    password = lay.password_file.read_text().strip()
    return f"postgresql://{DB_USER}:{password}@127.0.0.1:{port}/{DB_NAME}"


def up(settings: Settings, edition: Edition | None = None) -> str:
    """Make (first time) and start the standby of the running local server; return its DSN."""
    lay = localdb.layout(settings, edition)
    with localdb._file_lock(lay.state_dir / "db.lock"):
        route = localdb.choose_route(lay)
        if not route.is_prepared() or not localdb._server_running(route):
            raise LocalDbError("the local server is not running: `rts-monitor db up` first")
        port = _port(route)
        target = data_dir(lay)
        if (target / "standby.signal").exists() and not running(route) and not _primary_has_its_wal(route, lay):
            localdb._say("the primary no longer holds the WAL this standby needs to catch up (it was stopped "
                         "while the primary wrote more than it keeps): copying it again")
            _basebackup(route, lay, target)
        if not (target / "standby.signal").exists():
            _basebackup(route, lay, target)
        _write_conf(lay, target, port)
        if running(route):
            localdb._say(f"standby already running on 127.0.0.1:{port}")
        else:
            _start(route, port)
        dsn = url(lay, port)
        lay.record(replica_port=port, replica_url=dsn)
        masked = dsn.replace(lay.password_file.read_text().strip(), "***")
        localdb._say(f"standby ready: RTS_DATABASE_READ_URL={masked}")
        return dsn


def _primary_has_its_wal(route: Route, lay: Layout) -> bool:
    """Whether the primary's ``pg_wal`` still holds the segment a stopped standby resumes from (its
    last restartpoint's REDO). There is no replication slot (one would keep WAL for a standby that
    may never start again, until the disk fills), so a standby stopped while the primary wrote more
    than ``max_wal_size`` can only be copied again: started as it is, it would wait forever."""
    res = subprocess.run(route.pg("pg_controldata", "-D", _server_path(route)), text=True, capture_output=True)
    for line in res.stdout.splitlines():
        if line.startswith("Latest checkpoint's REDO WAL file:"):
            return (lay.data_dir / "pg_wal" / line.split(":", 1)[1].strip()).exists()
    return True  # cannot tell: start it as it is (it catches up, or its log says why not)


def _basebackup(route: Route, lay: Layout, target: Path) -> None:
    """Copy the primary's cluster into ``target`` (a half-made copy of an interrupted run is
    removed first: pg_basebackup wants an empty directory)."""
    shutil.rmtree(target, ignore_errors=True)
    started = time.monotonic()
    localdb._say(f"pg_basebackup from 127.0.0.1:{lay.port} into {target}")
    cmd = route.pg("pg_basebackup", "-D", _server_path(route), "-h", "127.0.0.1", "-p", str(lay.port),
                   "-U", DB_USER, "-R", "-X", "stream", "--checkpoint=fast", "--no-sync",
                   "--no-password")
    res = subprocess.run(cmd, text=True, capture_output=True,
                         env={**os.environ, "PGPASSWORD": lay.password_file.read_text().strip(),
                              "PGAPPNAME": "rts-standby"})
    if res.returncode != 0:
        shutil.rmtree(target, ignore_errors=True)
        raise LocalDbError(f"pg_basebackup failed ({res.returncode}):\n{res.stdout}{res.stderr}".strip())
    localdb._say(f"pg_basebackup: done in {time.monotonic() - started:.1f}s")


def _write_conf(lay: Layout, target: Path, port: int) -> None:
    conf = dict(SERVER_CONF)
    if lay.edition == "postgres":
        for key in localdb.TIMESCALE_ONLY:
            conf.pop(key)
    conf.update(STANDBY_CONF)
    conf["port"] = str(port)
    conf["unix_socket_directories"] = "''"
    (target / "rts.auto.conf").write_text(
        "# written by rts-monitor db up --replica (devtools/standby.py)\n"
        + "".join(f"{k} = {v}\n" for k, v in conf.items()))


def _start(route: Route, port: int) -> None:
    """pg_ctl start; a standby whose postmaster was killed leaves backends that hold its shared
    memory for a moment (they exit when they notice): retried for a while."""
    localdb._say(f"starting the standby on 127.0.0.1:{port}")
    # The pid file of a killed standby names a dead (or zombie) process, which the new postmaster
    # would take for a running one: it is removed (running() has just said nothing runs).
    (data_dir(route.lay) / "postmaster.pid").unlink(missing_ok=True)
    cmd = route.pg("pg_ctl", "start", "-w", "-t", "60", "-D", _server_path(route),
                   "-l", _server_path(route).rsplit("/", 1)[0] + "/standby.log")
    deadline = time.monotonic() + 20
    while True:
        res = subprocess.run(cmd, text=True, capture_output=True)
        if res.returncode == 0:
            return
        if time.monotonic() > deadline:
            raise LocalDbError(f"the standby did not start ({res.returncode}): {res.stdout}{res.stderr}; see "
                               f"{data_dir(route.lay).parent / 'standby.log'}")
        time.sleep(0.5)


def down(settings: Settings, edition: Edition | None = None, *, quiet: bool = False) -> None:
    """Stop the standby (data kept: the next ``db up --replica`` starts it and it catches up)."""
    lay = localdb.layout(settings, edition, primary=edition is None)
    if not (data_dir(lay) / "PG_VERSION").exists():
        if not quiet:
            localdb._say(f"{lay.edition}: no standby")
        return
    route = localdb.choose_route(lay)
    if running(route):
        localdb._run(route.pg("pg_ctl", "stop", "-m", "fast", "-w", "-D", _server_path(route)), quiet=True)
        localdb._say(f"{lay.edition}: standby stopped")
    elif not quiet:
        localdb._say(f"{lay.edition}: standby not running")


def status(settings: Settings, edition: Edition | None = None) -> dict[str, object]:
    lay = localdb.layout(settings, edition, primary=edition is None)
    if not (data_dir(lay) / "PG_VERSION").exists():
        return {"replica": "none (rts-monitor db up --replica)"}
    port = lay.server_record().get("replica_port")
    route = localdb.choose_route(lay)
    if not running(route):
        return {"replica": f"stopped (port {port})"}
    out: dict[str, object] = {"replica": f"running on 127.0.0.1:{port}"}
    try:
        import psycopg

        with psycopg.connect(url(lay, int(port or 0)), connect_timeout=5) as conn:
            row = conn.execute("SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn()::text, "
                               "pg_is_wal_replay_paused()").fetchone()
        assert row is not None
        out["replica_replayed"] = f"{row[1]}{' (replay paused)' if row[2] else ''}"
    except Exception as exc:  # status must answer whatever the standby does
        out["replica_replayed"] = f"unknown: {exc}"[:120]
    out["replica_dsn"] = url(lay, int(port or 0)).replace(lay.password_file.read_text().strip(), "***")
    return out
