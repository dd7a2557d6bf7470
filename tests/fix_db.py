"""Database fixtures: one migrated template per test session, a fresh clone per test.

The server is the real one from ``DATABASE_URL`` or ``rts-monitor db up``: TimescaleDB Community
(tsl), Debian's Apache build (apache) or plain PostgreSQL (postgres); ``./dev test`` runs the
suite on tsl and the edition-dependent tests on the other two (``conftest.py``). Cloning a
template (CREATE DATABASE … TEMPLATE) takes ~0.1-0.3 s and gives every test its own schema, so
tests can run DDL, load data and kill servers without seeing each other. Names carry the pid so
several pytest sessions can share one server.

On tsl the template's policy jobs are paused before it is cloned: every clone gets TimescaleDB's
scheduler, which would otherwise run the template's refresh, compression and retention policies
at once (their next start lies in the past), racing the tests' own data. A test of the policies
runs or resumes them itself.
"""

from __future__ import annotations

import itertools
import os
import secrets
from collections.abc import AsyncIterator, Iterator
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from psycopg.rows import dict_row

from rts_monitor.core.edition import Edition
from rts_monitor.core.settings import Settings
from rts_monitor.db import migrations, resolve_database_url

# Every process the tests start (servers, agents, CLI) runs in test mode: development secrets
# generated in its state dir and the fault-injection drills allowed (core/settings.py, RTS_ENV).
# Here, in a plugin every run loads (pyproject addopts), not in a conftest.py that only some do.
os.environ["RTS_ENV"] = "test"

_counter = itertools.count()
TEST_JWT_SECRET = "test-" + secrets.token_urlsafe(32)
PAUSE_POLICIES = ("SELECT alter_job(job_id, scheduled => false) FROM timescaledb_information.jobs "
                  "WHERE proc_name LIKE 'policy%'")


def probe_edition(url: str) -> Edition:
    """The edition a fresh database on this server gets (what the migrations will choose).

    ``timescaledb.license`` is only defined once the extension's library is loaded into a
    session, so the probe creates the extension in a transaction it rolls back.
    """
    with psycopg.connect(url, connect_timeout=10) as conn:
        row = conn.execute("SELECT current_setting('shared_preload_libraries')").fetchone()
        if row is None or "timescaledb" not in str(row[0]):
            return "postgres"
        conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
        license_row = conn.execute("SELECT current_setting('timescaledb.license', true)").fetchone()
        conn.rollback()
    return "tsl" if license_row and license_row[0] == "timescale" else "apache"


def with_dbname(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + name))


def _admin(url: str) -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(with_dbname(url, "postgres"), autocommit=True)


def create_database(server_url: str, name: str, template: str | None = None) -> str:
    with _admin(server_url) as conn:
        if template:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        else:
            conn.execute(f'CREATE DATABASE "{name}"')
    return with_dbname(server_url, name)


def drop_database(server_url: str, name: str) -> None:
    with _admin(server_url) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def server_url() -> str:
    """DSN of the server under test (any database on it)."""
    return resolve_database_url(Settings.from_env())


@pytest.fixture(scope="session")
def server_edition(server_url: str) -> Edition:
    """tsl, apache or postgres: what the server under test gives a migrated database."""
    return probe_edition(server_url)


@pytest.fixture(scope="session")
def template_db(server_url: str, server_edition: Edition) -> Iterator[str]:
    name = f"rts_tmpl_{os.getpid()}_{secrets.token_hex(3)}"
    url = create_database(server_url, name)
    result = migrations.migrate(url)
    assert result.edition == server_edition, (result.edition, server_edition)
    if server_edition == "tsl":
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(PAUSE_POLICIES)
    with _admin(server_url) as conn:
        # No connections allowed: TimescaleDB's scheduler then leaves it alone, so clones work.
        conn.execute(f'ALTER DATABASE "{name}" WITH IS_TEMPLATE true ALLOW_CONNECTIONS false')
        conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
    yield name
    with _admin(server_url) as conn:
        conn.execute(f'ALTER DATABASE "{name}" WITH IS_TEMPLATE false')
    drop_database(server_url, name)


def clone_template(server_url: str, template_db: str, label: str = "t") -> tuple[str, str]:
    name = f"rts_{label}_{os.getpid()}_{next(_counter)}"
    return name, create_database(server_url, name, template_db)


@pytest.fixture
def db_url(server_url: str, template_db: str) -> Iterator[str]:
    """A fresh, migrated database for this test alone."""
    name, url = clone_template(server_url, template_db)
    yield url
    drop_database(server_url, name)


@pytest.fixture
def empty_db_url(server_url: str) -> Iterator[str]:
    """A database with nothing in it (not even the extension): for migration tests."""
    name = f"rts_empty_{os.getpid()}_{next(_counter)}"
    url = create_database(server_url, name)
    yield url
    drop_database(server_url, name)


@pytest.fixture
async def conn(db_url: str) -> AsyncIterator[psycopg.AsyncConnection[dict[str, object]]]:
    """An autocommit async connection (dict rows) to this test's database."""
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True, row_factory=dict_row) as c:
        yield c


@pytest.fixture
def settings(db_url: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Settings pointing at this test's database, with a known JWT secret."""
    return Settings.from_env(
        database_url=db_url,
        jwt_secret=TEST_JWT_SECRET,
        state_dir=tmp_path_factory.mktemp("state"),
        log_format="text",
    )
