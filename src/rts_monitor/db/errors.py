"""Database errors become domain errors here, at one boundary (``db.connection`` and, for anything
that escapes a service, ``api/errors.py``), as procrastinate's connector does.

Services that expect a particular violation (a duplicate name, a row locked elsewhere) still catch
the psycopg class themselves and raise a precise domain error with its field; this translation is
the answer for everything else, so a value the database refuses is a 4xx and an unreachable
database a 503, never a 500.
"""

from __future__ import annotations

import logging

import psycopg
from psycopg import errors as pg

from rts_monitor.core.errors import Conflict, DomainError, Unavailable, ValidationFailed

log = logging.getLogger(__name__)

# Transient: the same request may succeed when retried (another transaction won a race, the server
# is restarting, a connection broke, the pool had none to give within its timeout).
RETRY_SECONDS = 2


def translate(exc: BaseException) -> DomainError | None:
    """The domain error for a database error; None for one that means a bug here (a syntax error,
    a missing table): that stays a 500 with its traceback in the log."""
    if isinstance(exc, DomainError):
        return exc
    if isinstance(exc, pg.UniqueViolation):
        return Conflict(f"already exists ({_constraint(exc)})", code="conflict")
    if isinstance(exc, pg.ForeignKeyViolation):
        return ValidationFailed(f"refers to something that does not exist or is still referenced ({_constraint(exc)})")
    if isinstance(exc, pg.IntegrityError | pg.DataError):
        # The edge validation (core/types.py) should have refused this value naming its field; the
        # database's message says what it refused.
        log.warning("db.value_refused", extra={"sqlstate": exc.sqlstate, "detail": _primary(exc)})
        return ValidationFailed(f"a value was refused by the database: {_primary(exc)}")
    if isinstance(exc, pg.SerializationFailure | pg.DeadlockDetected | pg.LockNotAvailable):
        return Unavailable("a concurrent change got in the way; retry", retry_after=1)
    if isinstance(exc, pg.QueryCanceled):
        return Unavailable("the database took too long to answer; retry", retry_after=RETRY_SECONDS)
    if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
        # PoolTimeout (no connection within the acquisition timeout), a broken connection, a
        # server shutting down or starting up.
        log.warning("db.unavailable", extra={"error": type(exc).__name__, "detail": str(exc)[:200]})
        return Unavailable("the database is not reachable right now; retry", retry_after=RETRY_SECONDS,
                           extra={"dependency": "database"})
    return None


def _primary(exc: psycopg.Error) -> str:
    return (exc.diag.message_primary or str(exc)).splitlines()[0][:300]


def _constraint(exc: psycopg.Error) -> str:
    return exc.diag.constraint_name or exc.diag.table_name or "constraint"
