"""The named-query loader: sections, shared fragments by include, and its refusals."""

from __future__ import annotations

import pytest

from rts_monitor.db.queries import parse


def test_sections_and_includes_expand_once_written_sql() -> None:
    text = """
-- name: both
WITH a AS (SELECT 1),
-- include: shared
SELECT * FROM b;

-- name: shared
b AS (SELECT 2)
"""
    q = parse(text)
    assert q["both"] == "WITH a AS (SELECT 1),\nb AS (SELECT 2)\nSELECT * FROM b"
    assert q["shared"] == "b AS (SELECT 2)"


def test_unknown_include_and_cycles_are_refused_at_load() -> None:
    with pytest.raises(ValueError, match="unknown section 'nope'"):
        parse("-- name: a\nSELECT 1\n-- include: nope\n")
    with pytest.raises(ValueError, match="cycle"):
        parse("-- name: a\n-- include: b\n-- name: b\n-- include: a\n")


def test_every_concerns_queries_load() -> None:
    import importlib
    import pkgutil

    import rts_monitor

    for mod in pkgutil.walk_packages(rts_monitor.__path__, "rts_monitor."):
        importlib.import_module(mod.name)  # Queries.beside() parses at import: a bad file fails here
