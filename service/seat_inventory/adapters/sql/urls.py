"""Database URLs as users write them, turned into the async drivers we ship.

Operators paste the URL their other tools use (``postgresql://...``,
``sqlite:///path``); the service, not the user, chooses the asyncio driver.
"""

from __future__ import annotations

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

__all__ = ["SUPPORTED_SCHEMES", "normalize_url"]

SUPPORTED_SCHEMES = (
    "postgresql://",
    "postgres://",
    "postgresql+asyncpg://",
    "postgresql+psycopg2://",
    "postgresql+psycopg://",
    "sqlite:///<file>",
    "sqlite+aiosqlite:///<file>",
)
_POSTGRES = {"postgres", "postgresql"}
_SYNC_POSTGRES_DRIVERS = {"", "asyncpg", "psycopg2", "psycopg", "pg8000"}
_SQLITE_DRIVERS = {"", "aiosqlite", "pysqlite"}


def _unsupported(what: str) -> ValueError:
    return ValueError(
        f"unsupported database URL: {what}; use one of {', '.join(SUPPORTED_SCHEMES)}"
    )


def _postgres(url: URL) -> URL:
    query = dict(url.query)
    # libpq spells it sslmode; asyncpg takes the same values as ``ssl``.
    if "sslmode" in query:
        query.setdefault("ssl", query.pop("sslmode"))
    return url.set(drivername="postgresql+asyncpg", query=query)


def _sqlite(raw: str, url: URL) -> URL:
    database = url.database or ""
    if not database or ":memory:" in database or url.query.get("mode") == "memory":
        raise ValueError(
            f"{raw!r} is an in-memory SQLite database; the service needs a file "
            "(for example sqlite:///./seat-inventory.db) so bookings survive a restart "
            "and every connection sees the same data"
        )
    return url.set(drivername="sqlite+aiosqlite")


def normalize_url(url: str) -> str:
    """The same database, addressed through asyncpg or aiosqlite.

    Raises ValueError for in-memory SQLite and for any other database or driver.
    """
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise _unsupported("it does not parse as a URL") from exc
    backend, _, driver = parsed.drivername.partition("+")
    if backend in _POSTGRES and driver in _SYNC_POSTGRES_DRIVERS:
        normalized = _postgres(parsed)
    elif backend == "sqlite" and driver in _SQLITE_DRIVERS:
        normalized = _sqlite(url, parsed)
    else:
        # Echo only the scheme: the rest of the URL may carry a password.
        raise _unsupported(f"{parsed.drivername}://")
    return normalized.render_as_string(hide_password=False)
