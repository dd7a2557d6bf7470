"""TimescaleDB Community (TSL) built from source against PostgreSQL 17, once per machine.

Neither Debian nor anything reachable from these machines ships the Community build (Debian's
``postgresql-17-timescaledb`` is the Apache-only one), so ``rts-monitor db up --edition tsl``
builds it from TimescaleDB's own release source:

1. A minimal Debian 13 root of its own (``debootstrap``, PostgreSQL 17 + the build tools), cached
   in the cache dir beside the Apache edition's root and shared by every checkout. Its own root,
   not the Apache one: installing a source-built ``timescaledb.so`` loader into a root whose
   servers run Debian's Apache build would change what those clusters load.
2. The source archive from ``RTS_TIMESCALEDB_SOURCE`` (a path or an URL), checked against the
   SHA-256 pinned below before anything is unpacked.
3. ``./bootstrap`` (cmake) + ``make -j<cores>``, run inside the root with progress shown, then
   ``make install DESTDIR=/stage``: nothing lands in the root's PostgreSQL until the whole build
   succeeded. The staged files are then copied in and checked, and only then is the root marked
   ready. A failed step says which one failed with the tail of its output; the root stays
   unready (its base is reused by the next attempt, which first removes whatever an interrupted
   copy left, using CMake's install manifest).

Measured on 2 cores: debootstrap ~70 s, build ~2.5-4 min (``docs/schema.md``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tarfile
import time
import urllib.request
from pathlib import Path

from rts_monitor.devtools.localdb import (
    DEBIAN_MIRROR,
    PG_MAJOR,
    LocalDbError,
    _file_lock,
    _is_root,
    _say,
    _stream,
    ensure_debootstrap,
)

TIMESCALEDB_VERSION = "2.29.2"
# SHA-256 of the release source archive (`timescaledb-<version>/…`), as in shared/vendor/SHA256SUMS.
SOURCE_SHA256 = {"2.29.2": "964a1a10660cf1aacc37b86fae07cf9381110cd2afe3f8f7f9f2a1162a58a623"}
RELEASE_URL = "https://github.com/timescale/timescaledb/archive/refs/tags/{version}.tar.gz"
BUILD_PACKAGES = (
    f"postgresql-{PG_MAJOR}", f"postgresql-server-dev-{PG_MAJOR}", "cmake", "gcc", "make", "libssl-dev",
    "libkrb5-dev", "libicu-dev",  # libicu-dev: PostgreSQL's pg_locale.h includes unicode/ucol.h
    "ca-certificates",
)
BOOTSTRAP_FLAGS = (
    "-DREGRESS_CHECKS=OFF", "-DTAP_CHECKS=OFF", "-DWARNINGS_AS_ERRORS=OFF", "-DLINTER=OFF",
    "-DCMAKE_BUILD_TYPE=RelWithDebInfo", f"-DPG_CONFIG=/usr/lib/postgresql/{PG_MAJOR}/bin/pg_config",
)
READY = ".rts-ready"
BASE_READY = ".rts-base-ready"

# Changes to the release source, applied after unpacking: (file, exact text, replacement). Each
# text must occur exactly once, or the build stops. PATCH_LEVEL is part of the root's name, so a
# changed set builds a new root instead of reusing one built without it.
#
# PostgreSQL 17.12 refuses to drop a portal that is still being set up (status PORTAL_NEW or
# PORTAL_DEFINED: "cannot drop portal "" while it is being set up"). TimescaleDB 2.29.2's job
# runner (tsl/src/bgw_policy/job.c, job_execute) creates a portal only to carry the job's
# snapshot and drops it, never started, after the job's last commit; so every background job
# (continuous aggregate refresh, retention, compression) did its work and was then recorded as
# failed, retried with backoff and listed in timescaledb_information.job_errors. Marking the
# portal done before dropping it is what PortalRun would have left it as.
PATCHES: tuple[tuple[str, str, str], ...] = (
    ("tsl/src/bgw_policy/job.c",
     "\t\tCommitTransactionCommand();\n\t\tPortalDrop(portal, false);",
     "\t\tCommitTransactionCommand();\n\t\tportal->status = PORTAL_DONE;\n\t\tPortalDrop(portal, false);"),
)
PATCH_LEVEL = 1


def root_dir(cache_dir: Path, version: str = TIMESCALEDB_VERSION) -> Path:
    return cache_dir / f"debian13-pg{PG_MAJOR}-timescaledb-{version}-tsl-p{PATCH_LEVEL}-root"


def apply_patches(source_dir: Path) -> None:
    for name, old, new in PATCHES:
        path = source_dir / name
        text = path.read_text()
        if text.count(old) != 1:
            raise LocalDbError(f"patching TimescaleDB {TIMESCALEDB_VERSION}: {name} does not hold the expected "
                               "text exactly once (a different source?); nothing was built")
        path.write_text(text.replace(old, new))


def default_source(checkout: Path | None) -> str:
    """The vendored archive beside the checkout (``../shared/vendor``) if present, else the tag's release."""
    if checkout is not None:
        vendored = checkout.parent / "shared" / "vendor" / f"timescaledb-{TIMESCALEDB_VERSION}.tar.gz"
        if vendored.is_file():
            return str(vendored)
    return RELEASE_URL.format(version=TIMESCALEDB_VERSION)


def is_ready(root: Path) -> bool:
    return (root / READY).is_file()


def built_info(root: Path) -> dict[str, object]:
    try:
        info = json.loads((root / READY).read_text())
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


def ensure(cache_dir: Path, source: str) -> Path:
    """The ready root with TimescaleDB TSL installed; builds it (with progress) the first time."""
    root = root_dir(cache_dir)
    if is_ready(root):
        return root
    if not _is_root():
        raise LocalDbError("building TimescaleDB (TSL) needs root: debootstrap, chroot and mount")
    cache_dir.mkdir(parents=True, exist_ok=True)
    with _file_lock(cache_dir / "tsl-root.lock"):  # a second checkout waits, then reuses the build
        if is_ready(root):
            return root
        started = time.monotonic()
        partial = root.with_name(root.name + ".partial")
        _say(f"TimescaleDB {TIMESCALEDB_VERSION} (Community/TSL) is built once per machine into {root}")
        _base(partial)
        archive = _fetch(source, cache_dir)
        _build(partial, archive)
        partial.rename(root)
        seconds = round(time.monotonic() - started, 1)
        (root / READY).write_text(json.dumps({
            "timescaledb": TIMESCALEDB_VERSION, "sha256": SOURCE_SHA256[TIMESCALEDB_VERSION], "source": source,
            "patch_level": PATCH_LEVEL,
            "seconds": seconds, "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }))
        _say(f"TimescaleDB {TIMESCALEDB_VERSION} TSL ready in {seconds:.0f}s")
        return root


def _base(partial: Path) -> None:
    """Step 1/4: the Debian 13 root with PostgreSQL 17 and the build tools (reused across attempts)."""
    if (partial / BASE_READY).is_file():
        _say("1/4 Debian 13 build root: present (from an earlier attempt)")
        return
    if partial.exists():
        shutil.rmtree(partial)
    ensure_debootstrap()
    _say("1/4 Debian 13 build root with PostgreSQL 17 and the build tools (~70 s, ~1 GB)")
    _stream(
        ["debootstrap", "--variant=minbase", "--include=" + ",".join(BUILD_PACKAGES), "trixie", str(partial),
         DEBIAN_MIRROR],
        label="debootstrap", every=lambda line: line.startswith("I:"),
    )
    (partial / "srv" / "rts").mkdir(parents=True, exist_ok=True)
    (partial / BASE_READY).write_text("ok")


def _fetch(source: str, cache_dir: Path) -> Path:
    """Step 2/4: the source archive, copied or downloaded, its SHA-256 checked against the pin."""
    want = SOURCE_SHA256[TIMESCALEDB_VERSION]
    target = cache_dir / "sources" / f"timescaledb-{TIMESCALEDB_VERSION}.tar.gz"
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.is_file() and _sha256(target) == want:
        _say(f"2/4 source: {target} (cached, SHA-256 ok)")
        return target
    tmp = target.with_suffix(".part")
    if "://" in source:
        _say(f"2/4 source: downloading {source}")
        _download(source, tmp)
    else:
        path = Path(source).expanduser()
        if not path.is_file():
            raise LocalDbError(f"RTS_TIMESCALEDB_SOURCE={source}: no such file")
        _say(f"2/4 source: {path}")
        shutil.copyfile(path, tmp)
    got = _sha256(tmp)
    if got != want:
        tmp.unlink(missing_ok=True)
        raise LocalDbError(f"the TimescaleDB source from {source} has SHA-256 {got}, not the pinned {want} "
                           f"for {TIMESCALEDB_VERSION}: refusing to build it")
    tmp.rename(target)
    return target


def _download(url: str, dest: Path) -> None:
    try:
        with urllib.request.urlopen(url, timeout=60) as resp, open(dest, "wb") as out:
            total = int(resp.headers.get("Content-Length") or 0)
            done, shown = 0, -1
            while chunk := resp.read(1 << 20):
                out.write(chunk)
                done += len(chunk)
                if total and done * 10 // total != shown:
                    shown = done * 10 // total
                    _say(f"download {done * 100 // total}% of {total >> 20} MB")
    except OSError as exc:
        dest.unlink(missing_ok=True)
        raise LocalDbError(f"downloading the TimescaleDB source failed: {url}: {exc}; point "
                           "RTS_TIMESCALEDB_SOURCE at a local copy of the release archive") from exc


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def _chroot(root: Path, script: str) -> list[str]:
    return ["chroot", str(root), "/bin/sh", "-ec", script]


def _build(partial: Path, archive: Path) -> None:
    """Steps 3/4 and 4/4: unpack + build + stage, then install the staged files and check them."""
    work = partial / "build"
    if work.exists():
        shutil.rmtree(work)
    work.mkdir()
    with tarfile.open(archive) as tar:
        tar.extractall(work, filter="data")
    src = f"/build/timescaledb-{TIMESCALEDB_VERSION}"
    if not (partial / src.lstrip("/") / "bootstrap").is_file():
        raise LocalDbError(f"{archive} does not hold timescaledb-{TIMESCALEDB_VERSION}/bootstrap")
    apply_patches(partial / src.lstrip("/"))
    _say(f"3/4 source patched ({len(PATCHES)} change(s), tslbuild.PATCHES)")
    _remove_previous_install(partial)
    jobs = str(max(1, os.cpu_count() or 1))
    _say(f"3/4 building TimescaleDB {TIMESCALEDB_VERSION} (cmake + make -j{jobs}, ~2.5-4 min on 2 cores)")
    last_pct = [-10]

    def progress(line: str) -> bool:
        # make prints "[ 42%] Building C object …": show every 10 %, and cmake's own stages.
        if line.startswith("[") and "%]" in line[:7]:
            pct = int(line[1:4].strip() or 0)
            if pct >= last_pct[0] + 10:
                last_pct[0] = pct
                return True
            return False
        return line.startswith("-- Build files") or line.startswith("-- Configuring done")

    steps = (
        ("cmake bootstrap", f"cd {src} && ./bootstrap {' '.join(BOOTSTRAP_FLAGS)}"),
        ("make", f"cd {src} && make -C build -j{jobs}"),
        ("make install (staged)", f"cd {src} && rm -rf /stage && make -C build install DESTDIR=/stage"),
    )
    for label, script in steps:
        try:
            _stream(_chroot(partial, script), label=f"timescaledb {label}", every=progress, every_nth=1)
        except LocalDbError as exc:
            raise LocalDbError(f"building TimescaleDB {TIMESCALEDB_VERSION} failed at '{label}'; nothing was "
                               f"installed. {exc}") from None
    _say("4/4 installing the built extension into the root and checking it")
    try:
        _stream(_chroot(partial, "cp -a /stage/. / && rm -rf /stage"), label="install", every=lambda _l: False)
        _check(partial)
    except LocalDbError:
        _remove_previous_install(partial)
        raise
    shutil.rmtree(work, ignore_errors=True)  # ~300 MB of objects; the install manifest is kept


def _remove_previous_install(partial: Path) -> None:
    """Undo an interrupted install: every file an earlier staged build listed, and its record."""
    manifest = partial / "var" / "lib" / "rts-timescaledb-install.txt"
    staged = partial / "stage"
    files: list[str] = []
    if manifest.is_file():
        files = manifest.read_text().splitlines()
    elif staged.is_dir():
        files = ["/" + str(p.relative_to(staged)) for p in staged.rglob("*") if p.is_file()]
    for name in files:
        with contextlib.suppress(FileNotFoundError):
            (partial / name.lstrip("/")).unlink()
    manifest.unlink(missing_ok=True)


def _check(partial: Path) -> None:
    lib = partial / "usr" / "lib" / "postgresql" / PG_MAJOR / "lib"
    ext = partial / "usr" / "share" / "postgresql" / PG_MAJOR / "extension"
    want = [lib / "timescaledb.so", lib / f"timescaledb-{TIMESCALEDB_VERSION}.so",
            lib / f"timescaledb-tsl-{TIMESCALEDB_VERSION}.so", ext / "timescaledb.control",
            ext / f"timescaledb--{TIMESCALEDB_VERSION}.sql"]
    missing = [str(p.relative_to(partial)) for p in want if not p.exists()]
    if missing:
        raise LocalDbError("the TimescaleDB build installed incompletely; missing: " + ", ".join(missing))
    control = (ext / "timescaledb.control").read_text()
    if f"default_version = '{TIMESCALEDB_VERSION}'" not in control:
        raise LocalDbError(f"timescaledb.control does not default to {TIMESCALEDB_VERSION}:\n{control}")
    manifest = partial / "var" / "lib" / "rts-timescaledb-install.txt"
    installed = sorted("/" + str(p.relative_to(partial)) for p in (lib, ext) for p in p.glob("timescaledb*"))
    manifest.write_text("\n".join(installed) + "\n")


__all__ = ["RELEASE_URL", "SOURCE_SHA256", "TIMESCALEDB_VERSION", "default_source", "ensure", "root_dir"]

