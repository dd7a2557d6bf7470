"""Database access: the pool and its one connection boundary, named SQL queries, migrations."""

from rts_monitor.db.pool import Conn, Pool, availability, connection, ensure_available, open_pool, resolve_database_url
from rts_monitor.db.queries import Queries
from rts_monitor.db.reads import Reads

__all__ = ["Conn", "Pool", "Queries", "Reads", "availability", "connection", "ensure_available", "open_pool",
           "resolve_database_url"]
