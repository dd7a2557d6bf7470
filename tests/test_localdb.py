"""The embedded database provisioner (`rts-monitor db up`) on its own state directory.

CI deletes a checkout while its server still runs and clones again at the same path; the bind
mount named after that path survives, pointing at the deleted directory. `db up` must notice,
stop the orphaned server and provision afresh instead of failing in initdb.
"""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

import psycopg
import pytest

from rts_monitor.core.settings import Settings
from rts_monitor.devtools import localdb
from tests.fix_api import free_port

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0, reason="bind mounts (and so stale ones) only exist when running as root"
)


def _listener() -> socket.socket:
    """Another program listening on some port of 127.0.0.1."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    return s


def _timescale_version(url: str) -> str:
    with psycopg.connect(url, connect_timeout=10) as conn:
        row = conn.execute(
            "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'"
        ).fetchone()
    assert row is not None
    return str(row[0])


def _mount_target(settings: Settings) -> Path:
    lay = localdb.layout(settings)
    route = localdb.choose_route(lay)
    return route.server_root() / lay.mount_name.lstrip("/")


def test_up_heals_a_checkout_deleted_while_its_server_ran(tmp_path: Path) -> None:
    checkout = tmp_path / "checkout"
    settings = Settings.from_env(state_dir=checkout / ".rts", local_db_port=free_port())
    lay = localdb.layout(settings)
    try:
        first = localdb.up(settings)
        assert _timescale_version(first)
        route = localdb.choose_route(lay)
        orphans = localdb._postmasters(route.data_dir_for_server(), route.server_root())
        assert len(orphans) == 1

        shutil.rmtree(checkout)  # what a CI runner does to the previous clone
        target = _mount_target(settings)
        checkout.mkdir()
        lay.pg_dir.mkdir(parents=True)
        assert localdb._is_mounted(target) and not localdb._mounted_here(lay.pg_dir, target)

        second = localdb.up(settings)

        assert second != first  # a new cluster, new password
        assert _timescale_version(second)
        assert localdb._mounted_here(lay.pg_dir, target)
        assert (lay.data_dir / "PG_VERSION").exists()  # the cluster lives in the new checkout
        # Stopped by `up`, or already exiting by itself: a server whose data directory vanished
        # may PANIC on its own within seconds (then `up` no longer sees it as a server).
        assert not localdb.process_alive(orphans[0])
        assert localdb.status(settings)["running"] is True
    finally:
        localdb.down(settings)
    assert not localdb._is_mounted(_mount_target(settings))
    assert localdb.status(settings)["running"] is False


def test_up_moves_off_a_port_another_server_holds_and_keeps_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with _listener() as squatter, _listener() as other:
        taken = int(squatter.getsockname()[1])
        monkeypatch.setattr(localdb, "DEFAULT_PORT", taken)
        settings = Settings.from_env(state_dir=tmp_path / "checkout" / ".rts", local_db_port=0)
        lay = localdb.layout(settings)
        try:
            url = localdb.up(settings)
            assert lay.port != taken and lay.recorded()["port"] == lay.port
            assert f"@127.0.0.1:{lay.port}/" in url and _timescale_version(url)
            assert localdb.up(settings) == url  # running: same server, same DSN
            localdb.down(settings)
            squatter.close()
            assert localdb.up(settings) == url  # restarted where it was, though the default is free now

            localdb.down(settings)
            pinned = settings.with_(local_db_port=int(other.getsockname()[1]))
            with pytest.raises(localdb.LocalDbError, match="RTS_DB_PORT"):
                localdb.up(pinned)  # a port pinned by RTS_DB_PORT is never silently changed
        finally:
            localdb.down(settings)


def test_compose_pins_the_timescaledb_version_the_tests_build() -> None:
    from rts_monitor.devtools import tslbuild

    compose = (Path(__file__).resolve().parents[1] / "docker" / "compose.yaml").read_text()
    assert f"image: timescale/timescaledb:{tslbuild.TIMESCALEDB_VERSION}-pg17" in compose


def test_a_source_that_does_not_match_the_pinned_sha256_is_refused(tmp_path: Path) -> None:
    from rts_monitor.devtools import tslbuild

    bogus = tmp_path / "timescaledb-2.29.2.tar.gz"
    bogus.write_bytes(b"not the release archive")
    with pytest.raises(localdb.LocalDbError, match=r"SHA-256 .* not the pinned .* refusing to build"):
        tslbuild._fetch(str(bogus), tmp_path / "cache")
    assert not list((tmp_path / "cache" / "sources").iterdir())  # nothing half-fetched is kept
    with pytest.raises(localdb.LocalDbError, match="no such file"):
        tslbuild._fetch(str(tmp_path / "missing.tar.gz"), tmp_path / "cache")


def test_the_tsl_build_is_cached_per_machine_with_its_record() -> None:
    """The Community build exists once in the cache (the suite runs on it) with what it was built from."""
    from rts_monitor.devtools import tslbuild

    if os.environ.get("DATABASE_URL"):
        pytest.skip("DATABASE_URL is set: no local server was provisioned")
    root = tslbuild.root_dir(Settings.from_env().cache_dir)
    info = tslbuild.built_info(root)
    assert info["timescaledb"] == tslbuild.TIMESCALEDB_VERSION
    assert info["sha256"] == tslbuild.SOURCE_SHA256[tslbuild.TIMESCALEDB_VERSION]
    lib = root / "usr" / "lib" / "postgresql" / "17" / "lib"
    assert (lib / f"timescaledb-tsl-{tslbuild.TIMESCALEDB_VERSION}.so").is_file()
    # Debian's Apache root is another one, untouched: its loader is still the packaged one.
    apache_root = localdb.layout(Settings.from_env(), "apache").root
    assert apache_root != root
    assert not (apache_root / "usr" / "lib" / "postgresql" / "17" / "lib"
                / f"timescaledb-tsl-{tslbuild.TIMESCALEDB_VERSION}.so").exists()


@pytest.mark.parametrize("major", ["15", "16"])
def test_the_postgres_edition_runs_on_another_major_as_a_server_of_its_own(tmp_path: Path, major: str) -> None:
    """15 from Debian 12's packages where the host has them, else (and 16 always) the npm build."""
    from rts_monitor.devtools import npmpg

    settings = Settings.from_env(state_dir=tmp_path / "checkout" / ".rts", local_db_port=free_port())
    with pytest.raises(localdb.LocalDbError, match="postgres edition only"):
        localdb.layout(settings, "apache", pg_major=major)
    try:
        url = localdb.up(settings, "postgres", pg_major=major)
        with psycopg.connect(url, connect_timeout=10) as conn:
            row = conn.execute("SELECT current_setting('server_version')").fetchone()
        lay = localdb.layout(settings)  # remembered: the checkout's default is now postgres on this major
        native = Path(f"/usr/lib/postgresql/{major}/bin/postgres").exists()
        assert lay.recorded()["servers"][lay.key]["route"] == ("native" if native else "npm")
        assert row is not None and row[0].startswith(major + ".")
        if not native:
            assert row[0] == npmpg.release(major)  # the pinned build, not some other postgres
        assert (lay.edition, lay.pg_major, lay.pg_dir.name) == ("postgres", major, f"pg-postgres-pg{major}")
        assert lay.recorded()["url"] == url and list(lay.recorded()["servers"]) == [f"postgres-pg{major}"]
        assert localdb.layout(settings, "postgres", primary=False).pg_dir.name == "pg-postgres"  # 17's
        assert str(localdb.status(settings)["postgres"]).startswith(major)
        assert localdb.up(settings, "postgres", pg_major=major) == url  # running: same server, same DSN
    finally:
        localdb.down(settings)
    assert localdb.status(settings)["running"] is False


def test_postgresql_15_runs_from_the_npm_build_where_debian_has_no_packages(tmp_path: Path) -> None:
    """What a Debian 13 host does for the PG 15 leg, forced here by the server record's route."""
    from rts_monitor.devtools import npmpg

    settings = Settings.from_env(state_dir=tmp_path / "checkout" / ".rts", local_db_port=free_port())
    lay = localdb.layout(settings, "postgres", primary=False, pg_major="15")
    lay.state_dir.mkdir(parents=True)
    lay.record(route="npm")
    try:
        url = localdb.up(settings, "postgres", remember=False, pg_major="15")
        with psycopg.connect(url, connect_timeout=10) as conn:
            row = conn.execute("SELECT current_setting('server_version'), "
                               "(SELECT count(*) FROM pg_available_extensions "
                               " WHERE name IN ('pg_trgm', 'pgcrypto'))").fetchone()
        assert row == (npmpg.release("15"), 2)
        assert lay.server_record()["route"] == "npm"
    finally:
        localdb.down(settings, "postgres", "15")
    assert localdb.status(settings, "postgres", "15")["running"] is False
