"""Which storage edition the database is, and what the running server reports about itself.

* ``tsl``: TimescaleDB with the Timescale (Community) license: continuous aggregates,
  compression and policies are native.
* ``apache``: TimescaleDB's Apache build: hypertables and ``drop_chunks``, no caggs or policies;
  the project maintains the rollup tiers itself.

``SHOW timescaledb.license`` tells them apart (``timescale`` or ``apache``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

Edition = Literal["tsl", "apache"]

DESCRIBE_SQL = (
    "SELECT current_setting('server_version') AS pg, "
    "(SELECT extversion FROM pg_extension WHERE extname = 'timescaledb') AS ts, "
    "current_setting('timescaledb.license', true) AS license"
)


def from_license(license_name: str | None) -> Edition:
    return "tsl" if license_name == "timescale" else "apache"


@dataclass(frozen=True)
class DatabaseInfo:
    edition: Edition
    postgres_version: str
    timescaledb_version: str  # "absent" without the extension

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> DatabaseInfo:
        return cls(edition=from_license(row["license"]), postgres_version=row["pg"],
                   timescaledb_version=row["ts"] or "absent")
