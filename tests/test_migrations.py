"""Migrations against the real server: fresh, idempotent, tamper-proof, concurrent, portal-safe."""

from __future__ import annotations

import shutil
import threading
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from rts_monitor.core.edition import Edition
from rts_monitor.db import migrations

AGENT_TABLES = {
    "agent_devices", "agent_metrics", "agent_alerts", "agent_alert_history", "agent_commands",
    "agent_software_inventory", "agent_monitored_services",
}


def _tables(url: str) -> set[str]:
    with psycopg.connect(url) as c:
        return {r[0] for r in c.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}


def _ledger(url: str) -> list[tuple[str, str, str]]:
    with psycopg.connect(url) as c:
        return [tuple(r) for r in c.execute("SELECT kind, name, checksum FROM rts_migrations ORDER BY 1, 2")]


def test_fresh_database_gets_every_table_and_ledger(empty_db_url: str, server_edition: Edition) -> None:
    result = migrations.migrate(empty_db_url)
    assert result.edition == server_edition
    assert result.applied[0] == "0001_portal_core.sql"
    assert AGENT_TABLES | {"businesses", "service_locations", "users", "service_requests"} <= _tables(empty_db_url)
    assert len(_ledger(empty_db_url)) == len(migrations.plan(server_edition))
    with psycopg.connect(empty_db_url) as c:
        editions = {r[0] for r in c.execute("SELECT edition FROM rts_migrations")}
        extension = c.execute("SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'").fetchone()
    assert editions == {server_edition}
    assert (extension is None) == (server_edition == "postgres")


def test_second_run_is_a_noop(empty_db_url: str) -> None:
    migrations.migrate(empty_db_url)
    before = _ledger(empty_db_url)
    again = migrations.migrate(empty_db_url)
    assert again.applied == []
    assert again.unchanged == len(before)
    assert _ledger(empty_db_url) == before


def test_edited_migration_is_refused(empty_db_url: str, tmp_path: Path) -> None:
    root = tmp_path / "sql"
    shutil.copytree(migrations.sql_dir(), root)
    migrations.migrate(empty_db_url, root=root)
    target = root / "migrations" / "0002_agent_tables.sql"
    target.write_text(target.read_text() + "\n-- an innocent-looking edit\n")
    with pytest.raises(migrations.MigrationError, match=r"0002_agent_tables\.sql was edited"):
        migrations.migrate(empty_db_url, root=root)


def test_missing_applied_file_is_refused(empty_db_url: str, tmp_path: Path) -> None:
    root = tmp_path / "sql"
    shutil.copytree(migrations.sql_dir(), root)
    (root / "migrations" / "0099_extra.sql").write_text("CREATE TABLE extra_t (id int);")
    migrations.migrate(empty_db_url, root=root)
    (root / "migrations" / "0099_extra.sql").unlink()
    with pytest.raises(migrations.MigrationError, match="missing"):
        migrations.migrate(empty_db_url, root=root)


def test_new_migration_applies_alone_and_failure_rolls_back(empty_db_url: str, tmp_path: Path) -> None:
    root = tmp_path / "sql"
    shutil.copytree(migrations.sql_dir(), root)
    migrations.migrate(empty_db_url, root=root)
    (root / "migrations" / "0098_broken.sql").write_text(
        "CREATE TABLE half_done (id int);\nSELECT no_such_function();"
    )
    with pytest.raises(migrations.MigrationError, match=r"0098_broken\.sql failed"):
        migrations.migrate(empty_db_url, root=root)
    assert "half_done" not in _tables(empty_db_url)
    (root / "migrations" / "0098_broken.sql").write_text("CREATE TABLE half_done (id int);")
    assert migrations.migrate(empty_db_url, root=root).applied == ["0098_broken.sql"]


def test_edition_specific_and_repeatable_files(empty_db_url: str, tmp_path: Path, server_edition: Edition) -> None:
    root = tmp_path / "sql"
    shutil.copytree(migrations.sql_dir(), root)
    for ed in ("tsl", "apache", "postgres"):
        (root / "migrations" / f"0097_flavour.{ed}.sql").write_text(f"CREATE TABLE only_{ed} (id int);")
    # A flavour beside a plain file replaces it on its edition only.
    (root / "migrations" / "0095_plain.sql").write_text("CREATE TABLE plain_one (id int);")
    (root / "migrations" / f"0095_plain.{server_edition}.sql").write_text("CREATE TABLE flavoured_one (id int);")
    view = root / "repeatable" / "common" / "zz_test_view.sql"
    view.parent.mkdir(parents=True, exist_ok=True)
    view.write_text("CREATE OR REPLACE VIEW zz_v AS SELECT 1 AS one;")
    first = migrations.migrate(empty_db_url, root=root)
    assert f"0097_flavour.{server_edition}.sql" in first.applied
    assert f"0095_plain.{server_edition}.sql" in first.applied and "0095_plain.sql" not in first.applied
    tables = _tables(empty_db_url)
    assert {t for t in tables if t.startswith("only_")} == {f"only_{server_edition}"}
    assert "flavoured_one" in tables and "plain_one" not in tables
    view.write_text("CREATE OR REPLACE VIEW zz_v AS SELECT 1 AS one, 2 AS two;")
    second = migrations.migrate(empty_db_url, root=root)
    assert second.applied == ["zz_test_view.sql"]
    with psycopg.connect(empty_db_url) as c:
        assert c.execute("SELECT two FROM zz_v").fetchone() == (2,)


def test_no_transaction_marker_runs_statements_separately(empty_db_url: str, tmp_path: Path) -> None:
    root = tmp_path / "sql"
    shutil.copytree(migrations.sql_dir(), root)
    (root / "migrations" / "0096_no_tx.sql").write_text(
        "-- rts:no-transaction\nCREATE TABLE nt (id int);\n"
        "CREATE INDEX CONCURRENTLY nt_idx ON nt (id);\n"
        "DO $$ BEGIN PERFORM 1; END $$;\n"
    )
    assert "0096_no_tx.sql" in migrations.migrate(empty_db_url, root=root).applied
    with psycopg.connect(empty_db_url) as c:
        assert c.execute("SELECT count(*) FROM pg_indexes WHERE indexname = 'nt_idx'").fetchone() == (1,)


def test_two_concurrent_runs_end_in_one_correct_schema(empty_db_url: str, server_edition: Edition) -> None:
    results: list[object] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def run() -> None:
        barrier.wait()
        try:
            results.append(migrations.migrate(empty_db_url))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    applied = sorted(len(r.applied) for r in results)  # type: ignore[attr-defined]
    assert applied == [0, len(migrations.plan(server_edition))]
    assert len(_ledger(empty_db_url)) == len(migrations.plan(server_edition))
    assert _tables(empty_db_url) >= AGENT_TABLES


@pytest.mark.only_editions("tsl", "apache")
def test_hypertable_and_chunk_interval(db_url: str) -> None:
    with psycopg.connect(db_url) as c:
        row = c.execute(
            "SELECT d.column_name, d.time_interval FROM timescaledb_information.dimensions d "
            "WHERE d.hypertable_name = 'agent_metrics'"
        ).fetchone()
        assert row is not None and row[0] == "collected_at" and str(row[1]) == "1 day, 0:00:00"
        pk = c.execute(
            "SELECT pg_get_indexdef(indexrelid) FROM pg_index WHERE indrelid = 'agent_metrics'::regclass"
        ).fetchall()
        assert len(pk) == 1 and "(agent_device_id, collected_at)" in pk[0][0]
        cols = {r[0]: r[1] for r in c.execute(
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'agent_metrics'"
        )}
        assert "id" not in cols and cols["network_rx_bytes"] == "bigint"
        # gauges as integers at the agent's precision (delta-of-delta compression), read as REAL
        # through the view
        assert cols["cpu_percent_x10"] == "smallint" and cols["load_average_1m_x100"] == "integer"
        view = {r[0]: r[1] for r in c.execute(
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'agent_metric_values'"
        )}
        assert view["cpu_percent"] == "real" and view["memory_used_gb"] == "real"


@pytest.mark.only_editions("postgres")
def test_postgres_edition_partitions_raw_and_tiers_by_range_with_a_default(db_url: str) -> None:
    with psycopg.connect(db_url) as c:
        parts = {r[0]: r[1] for r in c.execute(
            "SELECT c.relname, pg_get_partkeydef(c.oid) FROM pg_class c WHERE c.relkind = 'p'")}
        assert parts == {"agent_metrics": "RANGE (collected_at)", "agent_metrics_5m": "RANGE (bucket)",
                         "agent_metrics_1h": "RANGE (bucket)", "agent_metrics_1d": "RANGE (bucket)"}
        defaults = {r[0] for r in c.execute(
            "SELECT c.relname FROM pg_class c WHERE c.relispartition "
            "AND pg_get_expr(c.relpartbound, c.oid) = 'DEFAULT'")}
        assert defaults == {f"{p}_default" for p in parts}
        pk = c.execute("SELECT pg_get_indexdef(indexrelid) FROM pg_index WHERE indrelid = 'agent_metrics'::regclass"
                       ).fetchall()
        assert len(pk) == 1 and "(agent_device_id, collected_at)" in pk[0][0]
        widths = dict(c.execute("SELECT name, partition_interval FROM rts_tier_levels").fetchall())
        assert str(widths["agent_metrics"]) == "1 day, 0:00:00"
        assert c.execute("SELECT count(*) FROM pg_extension WHERE extname = 'timescaledb'").fetchone() == (0,)


def test_a_flavour_replaces_the_plain_file_of_its_version_on_its_edition_only() -> None:
    names = {ed: [f.path.name for f in migrations.plan(ed)] for ed in ("tsl", "apache", "postgres")}
    assert "0003_agent_metrics_hypertable.postgres.sql" in names["postgres"]
    assert "0003_agent_metrics_hypertable.sql" not in names["postgres"]
    for ed in ("tsl", "apache"):
        assert "0003_agent_metrics_hypertable.sql" in names[ed]
        assert not any(n.endswith(".postgres.sql") for n in names[ed])
    assert [n for n in names["postgres"] if n.startswith("0031_")] == ["0031_rollup_tiers.postgres.sql"]


PORTAL_WITH_EXTRAS = """
CREATE TABLE businesses (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), business_name text NOT NULL,
    is_active boolean DEFAULT true, soft_delete boolean DEFAULT false, crm_ref text, tax_id text);
CREATE TABLE service_locations (id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    business_id uuid NOT NULL REFERENCES businesses(id), location_name text NOT NULL,
    is_active boolean DEFAULT true, soft_delete boolean DEFAULT false, geo_point text);
CREATE TABLE users (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), business_id uuid REFERENCES businesses(id),
    email text NOT NULL, role text, last_login_ip inet);
CREATE TABLE service_requests (id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    business_id uuid NOT NULL REFERENCES businesses(id), service_location_id uuid, title text,
    description text, source text, internal_notes text, sla_minutes int);
INSERT INTO businesses (business_name, crm_ref) VALUES ('Existing Co', 'CRM-1');
"""


def test_applies_on_existing_portal_database(empty_db_url: str) -> None:
    with psycopg.connect(empty_db_url) as c:
        c.execute(PORTAL_WITH_EXTRAS)
    result = migrations.migrate(empty_db_url)
    assert "0001_portal_core.sql" in result.applied
    with psycopg.connect(empty_db_url) as c:
        # The portal's own tables are untouched: their extra columns and rows are still there.
        assert c.execute("SELECT crm_ref FROM businesses").fetchone() == ("CRM-1",)
        cols = {r[0] for r in c.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'users'")}
        assert "last_login_ip" in cols and "mfa_enabled" not in cols
        bid = c.execute("SELECT id FROM businesses").fetchone()[0]  # type: ignore[index]
        c.execute(
            "INSERT INTO agent_devices (business_id, device_name, os_type, agent_version) "
            "VALUES (%s, 'd', 'linux', '1')", (bid,))
    assert _tables(empty_db_url) >= AGENT_TABLES


def test_split_statements_respects_quotes_and_dollar_bodies() -> None:
    text = "SELECT ';';\nCREATE FUNCTION f() RETURNS int AS $$ SELECT 1; $$ LANGUAGE sql;\n-- c;\nSELECT 2"
    parts = migrations.split_statements(text)
    assert len(parts) == 3
    assert parts[1].startswith("CREATE FUNCTION") and "SELECT 1;" in parts[1]


def test_scaled_storage_upgrades_a_database_with_data_keeping_every_value_and_setting(
        empty_db_url: str, tmp_path: Path, server_edition: Edition) -> None:
    """0220 on a database that already holds REAL samples: every value reads back the same through
    agent_metric_values, the tiers hold the same numbers, and on tsl compressed chunks, the DBA's
    retention per tier, compress-after and a tier's chunk interval survive the rebuild."""
    root = tmp_path / "sql"
    shutil.copytree(migrations.sql_dir(), root)
    upgrade = sorted((root / "migrations").glob("0220_*"))
    assert upgrade, "the scaled-storage migration moved: update this test"
    held = tmp_path / "held"
    held.mkdir()
    for f in upgrade:
        f.rename(held / f.name)
    migrations.migrate(empty_db_url, root=root)
    start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(days=10)
    devices = [uuid.uuid4() for _ in range(3)]
    with psycopg.connect(empty_db_url, autocommit=True) as c:
        for i, dev in enumerate(devices):
            # values at the agent's precision, as agents send them (one decimal, three, two)
            c.execute(
                "INSERT INTO agent_metrics (agent_device_id, collected_at, cpu_percent, memory_used_gb, "
                "memory_percent, disk_used_gb, disk_percent, load_average_1m, load_average_5m, load_average_15m, "
                "uptime_seconds, network_rx_bytes, network_tx_bytes) "
                "SELECT %s, t, round((50 + 40 * sin(n / 50.0 + %s))::numeric, 1), "
                "round((3 + n %% 997 / 1000.0)::numeric, 3), round((20 + n %% 71 / 10.0)::numeric, 1), 123.456, 61.5, "
                "round((n %% 400 / 100.0)::numeric, 2), 1.25, "
                "NULL, n * 60, n * 1000, n * 10 "
                "FROM generate_series(0, 14399) n, LATERAL (SELECT %s::timestamptz + n * INTERVAL '1 minute' AS t) x",
                (dev, i, start))
        c.execute("INSERT INTO metric_ingest_ranges (agent_device_id, range_start, range_end, row_count) "
                  "SELECT agent_device_id, min(collected_at), max(collected_at), count(*) FROM agent_metrics "
                  "GROUP BY 1")
        before = c.execute("SELECT * FROM agent_metrics ORDER BY agent_device_id, collected_at").fetchall()
        if server_edition == "tsl":
            for cagg in ("agent_metrics_5m", "agent_metrics_1h", "agent_metrics_1d"):
                c.execute(f"CALL refresh_continuous_aggregate('{cagg}', NULL, NULL)")
            c.execute("SELECT compress_chunk(ch) FROM show_chunks('agent_metrics', older_than => now() - "
                      "INTERVAL '7 days') ch")
            c.execute("SELECT remove_retention_policy('agent_metrics_5m')")
            c.execute("SELECT add_retention_policy('agent_metrics_5m', INTERVAL '90 days')")
            c.execute("UPDATE rts_tier_levels SET retention = INTERVAL '90 days' WHERE name = 'agent_metrics_5m'")
            c.execute("UPDATE rts_tier_levels SET compress_after = INTERVAL '5 days' WHERE name = 'agent_metrics'")
            c.execute("SELECT set_chunk_time_interval('agent_metrics_1h', INTERVAL '14 days')")
        else:
            from rts_monitor.tiers import maintenance
            maintenance_sql = [s for t in maintenance.TIERS
                               for s in maintenance.rebuild_range_sql(t, server_edition, by_device=False)]
            for statement in maintenance_sql:  # before 0220 the table itself held the REAL values
                c.execute(statement.replace("%(lo)s", "'-infinity'").replace("%(hi)s", "'infinity'")
                          .replace("agent_metric_values", "agent_metrics"))
        tiers_before = c.execute("SELECT * FROM agent_metrics_5m ORDER BY agent_device_id, bucket").fetchall()
    for f in upgrade:
        (held / f.name).rename(f)
    if server_edition == "tsl":
        # a run interrupted right after the tiers were dropped: the next run must still finish it
        tsl_file = next(f for f in upgrade if f.name.endswith(".tsl.sql"))
        full = tsl_file.read_text()
        cut = full.index("DROP MATERIALIZED VIEW IF EXISTS agent_metrics_5m;")
        tsl_file.write_text(full[:cut] + "DROP MATERIALIZED VIEW IF EXISTS agent_metrics_5m;\n"
                            "SELECT interrupted_here();\n")
        with pytest.raises(migrations.MigrationError):
            migrations.migrate(empty_db_url, root=root)
        tsl_file.write_text(full)
    applied = migrations.migrate(empty_db_url, root=root).applied
    assert len(applied) == 1 and applied[0].startswith("0220_"), applied
    with psycopg.connect(empty_db_url, autocommit=True) as c:
        after = c.execute("SELECT * FROM agent_metric_values ORDER BY agent_device_id, collected_at").fetchall()
        assert after == before
        assert c.execute("SELECT cpu_percent_x10, memory_used_gb_x1000, load_average_1m_x100 FROM agent_metrics "
                         "ORDER BY agent_device_id, collected_at LIMIT 1").fetchone() == (
            round(before[0][2] * 10), round(before[0][3] * 1000), round(before[0][7] * 100))
        if server_edition != "tsl":  # the project's refresh, now reading the view, rebuilds the same numbers
            for statement in maintenance_sql:
                c.execute(statement.replace("%(lo)s", "'-infinity'").replace("%(hi)s", "'infinity'"))
        tiers_after = c.execute("SELECT * FROM agent_metrics_5m ORDER BY agent_device_id, bucket").fetchall()
        assert len(tiers_after) == len(tiers_before) >= 3 * 14400 // 5
        for a, b in zip(tiers_after, tiers_before, strict=True):
            # sums may add in another order; everything else is equal
            assert [v for v in a if not isinstance(v, float)] == [v for v in b if not isinstance(v, float)]
            assert [v for v in a if isinstance(v, float)] == pytest.approx(
                [v for v in b if isinstance(v, float)], rel=1e-12), (a, b)
        if server_edition == "tsl":
            jobs = {(r[0], r[1]): r[2] for r in c.execute(
                "SELECT proc_name, hypertable_name, config FROM timescaledb_information.jobs "
                "WHERE proc_name IN ('policy_retention', 'policy_compression', 'policy_refresh_continuous_aggregate')")}
            caggs = dict(c.execute("SELECT view_name, materialization_hypertable_name "
                                   "FROM timescaledb_information.continuous_aggregates").fetchall())
            assert jobs[("policy_compression", "agent_metrics")]["compress_after"] == "5 days"
            retention = (jobs.get(("policy_retention", "agent_metrics_5m"))
                         or jobs[("policy_retention", caggs["agent_metrics_5m"])])
            assert retention["drop_after"] == "90 days", jobs
            assert sum(1 for (proc, _) in jobs if proc == "policy_refresh_continuous_aggregate") == 3
            width = c.execute("SELECT time_interval FROM timescaledb_information.dimensions "
                              "WHERE hypertable_name = %s", (caggs["agent_metrics_1h"],)).fetchone()
            assert width == (timedelta(days=14),)
            segment = c.execute("SELECT segmentby FROM timescaledb_information.hypertable_compression_settings "
                                "WHERE hypertable = 'agent_metrics'::regclass").fetchone()
            assert segment == ("agent_device_id",)
            # the chunks decompressed for the change compress again, as integers
            c.execute("SELECT compress_chunk(ch) FROM show_chunks('agent_metrics', older_than => now() - "
                      "INTERVAL '7 days') ch")
            assert c.execute("SELECT * FROM agent_metric_values ORDER BY agent_device_id, collected_at"
                             ).fetchall() == before
