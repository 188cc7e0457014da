"""Which database failures mean "the database cannot be reached"."""

from __future__ import annotations

from collections.abc import Awaitable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from sqlalchemy import exc as sa_exc

from ...domain.errors import BackendUnavailable

# SQLSTATE classes a caller cannot fix by changing the request: 08 connection
# exception, 28 bad credentials, 3D no such database, 53 insufficient
# resources (too many connections, disk full), 57P shutdown / starting up;
# and the database's own timeouts, when its operator set them: 55P03 a lock
# not granted within lock_timeout, 57014 a statement cancelled (statement_timeout).
UNAVAILABLE_SQLSTATES = ("08", "28", "3D", "53", "57P", "55P03", "57014")
_CALLBACK_NOTE = "raised by a callback the SQL adapter ran, not by the database"

T = TypeVar("T")


async def callback(call: Awaitable[T]) -> T:
    """Await a caller's callback (a Redis step): its failures stay its own."""
    try:
        return await call
    except (OSError, TimeoutError, sa_exc.SQLAlchemyError) as exc:
        exc.add_note(_CALLBACK_NOTE)  # database_errors lets it through unchanged
        raise


def is_unavailable(exc: BaseException) -> bool:
    if isinstance(exc, OSError | TimeoutError | sa_exc.TimeoutError):
        return True
    if not isinstance(exc, sa_exc.DBAPIError):
        return False
    if exc.connection_invalidated:
        return True
    if isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError):
        return True
    sqlstate = getattr(exc.orig, "sqlstate", None)
    return isinstance(sqlstate, str) and sqlstate.startswith(UNAVAILABLE_SQLSTATES)


def first_line(exc: BaseException) -> str:
    """The driver's own account of a failure, for an operator (a start-up line, a
    load test's report): its type and the first line of its message."""
    cause = exc.orig if isinstance(exc, sa_exc.DBAPIError) and exc.orig is not None else exc
    return f"{type(cause).__name__}: {next(iter(str(cause).strip().splitlines()), '')}"


def _describe(exc: BaseException) -> str:
    """What a caller is told: the kind of failure, never the driver's text (it
    names the database's address, or its user on bad credentials). The whole
    exception stays chained for the server's own log (the health check's)."""
    cause = exc.orig if isinstance(exc, sa_exc.DBAPIError) and exc.orig is not None else exc
    sqlstate = getattr(cause, "sqlstate", None)
    if isinstance(sqlstate, str):
        return _SQLSTATE_TEXT.get(sqlstate, f"SQLSTATE {sqlstate}")
    return type(cause).__name__


# What the SQLSTATEs that mean "unavailable" say to a caller (nothing of the server's).
_SQLSTATE_TEXT = {
    "55P03": "lock timeout: a lock was not granted in time (SQLSTATE 55P03)",
    "57014": "statement timeout: a statement was cancelled (SQLSTATE 57014)",
    "53300": "too many connections (SQLSTATE 53300)",
    "57P01": "the database server is shutting down (SQLSTATE 57P01)",
    "57P03": "the database server is starting up (SQLSTATE 57P03)",
}


@contextmanager
def database_errors() -> Iterator[None]:
    """Turn unreachable-database failures into BackendUnavailable; let the rest through."""
    try:
        yield
    except (OSError, TimeoutError, sa_exc.SQLAlchemyError) as exc:
        if not is_unavailable(exc) or _CALLBACK_NOTE in getattr(exc, "__notes__", ()):
            raise
        raise BackendUnavailable("database", _describe(exc)) from exc
