"""Named SQL queries kept in ``.sql`` files beside the code that runs them.

A file holds sections introduced by ``-- name: some_query``; the text up to the next marker is
the query. A line ``-- include: other`` inside a query is replaced by the named section
``other`` (a shared fragment, e.g. CTEs two statements both need), so SQL is written once.
Loading is done once at import time so a typo in a name fails at start-up, not on the first
request that needs it.
"""

from __future__ import annotations

import re
from pathlib import Path

_MARKER = re.compile(r"^--\s*name:\s*([a-z_][a-z0-9_]*)\s*$", re.MULTILINE)
_INCLUDE = re.compile(r"^[ \t]*--\s*include:\s*([a-z_][a-z0-9_]*)\s*$", re.MULTILINE)


class Queries:
    """Attribute access to the named queries of one ``.sql`` file."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._queries = parse(path.read_text())

    @classmethod
    def beside(cls, module_file: str, name: str = "queries.sql") -> Queries:
        return cls(Path(module_file).with_name(name))

    def __getattr__(self, name: str) -> str:
        try:
            return self._queries[name]
        except KeyError:
            raise AttributeError(f"no query named {name!r} in {self._path}") from None

    def names(self) -> list[str]:
        return list(self._queries)


def parse(text: str) -> dict[str, str]:
    parts = _MARKER.split(text)
    out: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        if name in out:
            raise ValueError(f"query {name!r} defined twice")
        out[name] = body.strip().rstrip(";")
    return {name: _expand(name, out, ()) for name in out}


def _expand(name: str, sections: dict[str, str], seen: tuple[str, ...]) -> str:
    if name in seen:
        raise ValueError("query include cycle: " + " -> ".join((*seen, name)))

    def include(m: re.Match[str]) -> str:
        if m[1] not in sections:
            raise ValueError(f"query {name!r} includes unknown section {m[1]!r}")
        return _expand(m[1], sections, (*seen, name))

    return _INCLUDE.sub(include, sections[name])
