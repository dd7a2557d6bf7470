"""Database access: the connection pool and named SQL queries."""

from rts_monitor.db.pool import open_pool, resolve_database_url
from rts_monitor.db.queries import Queries

__all__ = ["Queries", "open_pool", "resolve_database_url"]
