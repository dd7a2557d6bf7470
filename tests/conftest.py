"""Fixtures live in fix_*.py plugins (see pyproject addopts); factories in factories.py.

The edition matrix (``./dev test``): the whole suite runs against the default edition's server
(tsl); then, with ``RTS_TEST_SCOPE=editions`` and ``DATABASE_URL`` pointing at each other
edition's server, only the edition-dependent tests run. Marks:

* ``editions``: depends on the storage edition, so it runs on every edition of the matrix. Whole
  modules below and single tests of other modules (by name, so their files need no edit) get it.
* ``only_editions("apache", "postgres")``: applies to some editions only; deselected (not
  skipped) elsewhere, so that every run of the matrix executes what it selects.
"""

from __future__ import annotations

import os

import pytest

EDITION_MODULES = {"test_migrations.py", "test_tiers.py", "test_history.py", "test_queries.py"}
EDITION_TESTS = {
    # ingest: direct COPY, replays and duplicates, the small-flush path
    "test_batch_is_stored_with_its_side_effects",
    "test_resent_batches_are_counted_as_duplicates_never_stored_twice",
    "test_the_same_batch_sent_concurrently_is_stored_once",
    "test_every_write_path_counts_duplicates_and_records_ranges",
    "test_pre_encoded_copy_rows_equal_what_the_server_emits_and_round_trip",
    # alert evaluation over the raw samples
    "test_metric_rule_fires_after_exactly_the_duration_and_only_once",
    "test_one_sample_or_a_gappy_window_is_not_enough",
    "test_auto_resolve_needs_the_hysteresis_and_flapping_opens_once",
    "test_aggregations_min_and_max",
    "test_late_data_is_judged_in_data_time",
    "test_metrics_upload_answers_alerts_triggered",
    # the server reports its edition
    "test_health_reports_database_edition_and_version",
}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "editions: depends on the storage edition; runs on every edition")
    config.addinivalue_line("markers", "only_editions(*names): applies to these editions only (deselected elsewhere)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    from rts_monitor.core.settings import Settings
    from rts_monitor.db import resolve_database_url
    from tests.fix_db import probe_edition

    scope = os.environ.get("RTS_TEST_SCOPE", "all")
    edition = probe_edition(resolve_database_url(Settings.from_env()))
    keep: list[pytest.Item] = []
    dropped: list[pytest.Item] = []
    for item in items:
        if item.path.name in EDITION_MODULES or item.name.split("[")[0] in EDITION_TESTS:
            item.add_marker(pytest.mark.editions)
        only = item.get_closest_marker("only_editions")
        wrong_edition = only is not None and edition not in only.args
        out_of_scope = scope == "editions" and item.get_closest_marker("editions") is None
        (dropped if wrong_edition or out_of_scope else keep).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep


def pytest_report_header(config: pytest.Config) -> str:
    return f"rts-monitor test scope: {os.environ.get('RTS_TEST_SCOPE', 'all')}"
