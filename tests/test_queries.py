"""The named-query loader: sections, shared fragments by include, and its refusals."""

from __future__ import annotations

import re
from pathlib import Path

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


# ---- every named query parses against the migrated schema, on every edition ----------------------

_EDITION_LINE = re.compile(r"^--\s*edition:\s*(?P<names>[a-z ]+?)\s*$", re.MULTILINE)


def _named_queries() -> list[tuple[str, str, str, frozenset[str] | None]]:
    """(file, name, sql, editions or None for all) of every standalone named query of every concern.

    A section another one includes is a fragment, not a statement: it is checked inside its
    includers. ``-- edition: tsl apache`` in a section marks it as deliberately edition-specific.
    """
    import rts_monitor

    root = Path(rts_monitor.__file__).parent
    out = []
    for path in sorted(root.rglob("*.sql")):
        text = path.read_text()
        parts = re.split(r"^--\s*name:\s*([a-z_][a-z0-9_]*)\s*$", text, flags=re.MULTILINE)[1:]
        sections = dict(zip(parts[::2], parts[1::2], strict=True))
        included = set(re.findall(r"^[ \t]*--\s*include:\s*([a-z_][a-z0-9_]*)\s*$", text, flags=re.MULTILINE))
        expanded = parse(text)
        for name, raw in sections.items():
            if name in included:
                continue
            head = raw.strip().split("\n", 2)[:2]
            m = next((_EDITION_LINE.match(line) for line in head if _EDITION_LINE.match(line)), None)
            editions = frozenset(m["names"].split()) if m else None
            out.append((str(path.relative_to(root)), name, expanded[name], editions))
    return out


def _instances(file: str, sql: str) -> list[str]:
    """A templated query (``{sort}`` …, filled from an allowlist in Python) in every allowed form."""
    if not re.search(r"\{[a-z_]+\}", sql):
        return [sql]
    if file == "devices/queries.sql":
        from rts_monitor.devices.service import SORTS

        return [sql.format(sort=expr, sort_type=kind, cmp=cmp, dir=direction)
                for expr, kind in SORTS.values() for cmp, direction in ((">", "ASC"), ("<", "DESC"))]
    if file == "console/queries.sql":
        from rts_monitor.console.fleet import orders

        return [sql.format(order=order) for order in orders()]
    raise AssertionError(f"{file}: templated query without known values; add them to _instances")


def test_every_named_query_parses_against_the_migrated_schema(db_url: str, server_edition: str) -> None:
    """Parse (the extended protocol's prepare, nothing executed) binds every table, column,
    function and type: a query that names something the edition's schema lacks fails here.
    Placeholders are converted by psycopg itself, exactly as when the query runs; the session's
    temp tables (``CREATE TEMP TABLE`` sections) are created first so queries on them bind."""
    import psycopg
    from psycopg._queries import PostgresQuery

    queries = _named_queries()
    assert len(queries) > 60  # every concern's files were found
    failures = []
    checked = 0
    with psycopg.connect(db_url, autocommit=True) as conn:
        for _file, _name, sql, _ in queries:
            code = "\n".join(line for line in sql.splitlines() if not line.lstrip().startswith("--"))
            if code.lstrip().upper().startswith("CREATE TEMP TABLE"):
                conn.execute(sql.replace("ON COMMIT DROP", "").replace("ON COMMIT DELETE ROWS", "").encode())
        for i, (file, name, template, editions) in enumerate(queries):
            if editions is not None and server_edition not in editions:
                continue
            for j, sql in enumerate(_instances(file, template)):
                pq = PostgresQuery(psycopg.adapt.Transformer(conn))
                pq.convert(sql.encode(), dict.fromkeys(re.findall(r"%\((\w+)\)[sb]", sql)))
                result = conn.pgconn.prepare(f"q{i}_{j}".encode(), pq.query)
                # 42P08: a placeholder used as two types parses only once its value is typed, as
                # psycopg does when the query runs; with untyped NULLs the server cannot tell.
                sqlstate = result.error_field(psycopg.pq.DiagnosticField.SQLSTATE)
                if result.status != psycopg.pq.ExecStatus.COMMAND_OK and sqlstate != b"42P08":
                    failures.append(f"{file}:{name}: {(result.error_message or b'').decode().strip()}")
                checked += 1
    assert not failures, "\n".join(failures)
    assert checked > 50
