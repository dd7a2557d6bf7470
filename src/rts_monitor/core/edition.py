"""Which storage edition the database is, and what the running server reports about itself.

* ``tsl``: TimescaleDB with the Timescale (Community) license: continuous aggregates,
  compression and policies are native.
* ``apache``: TimescaleDB's Apache build: hypertables and ``drop_chunks``, no caggs or policies;
  the project maintains the rollup tiers itself.
* ``postgres``: no TimescaleDB at all (Aurora/RDS): ``agent_metrics`` and the tiers are
  declaratively partitioned tables, partitions made ahead and on demand by the project, the tiers
  maintained as on ``apache``, retention by dropping partitions, no compression.

``SHOW timescaledb.license`` tells the first two apart (``timescale`` or ``apache``); a database
without the extension is ``postgres``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

Edition = Literal["tsl", "apache", "postgres"]
EDITIONS: tuple[Edition, ...] = ("tsl", "apache", "postgres")

DESCRIBE_SQL = (
    "SELECT current_setting('server_version') AS pg, "
    "(SELECT extversion FROM pg_extension WHERE extname = 'timescaledb') AS ts, "
    "current_setting('timescaledb.license', true) AS license"
)


def from_license(license_name: str | None, *, extension: bool = True) -> Edition:
    if not extension:
        return "postgres"
    return "tsl" if license_name == "timescale" else "apache"


def has_timescaledb(edition: Edition) -> bool:
    """Hypertables, ``time_bucket``, ``first``/``last`` and ``drop_chunks`` exist."""
    return edition != "postgres"


@dataclass(frozen=True)
class DatabaseInfo:
    edition: Edition
    postgres_version: str
    timescaledb_version: str  # "absent" without the extension

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> DatabaseInfo:
        return cls(edition=from_license(row["license"], extension=row["ts"] is not None),
                   postgres_version=row["pg"], timescaledb_version=row["ts"] or "absent")
