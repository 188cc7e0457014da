"""The SQL adapter: events, seat maps and bookings, the system of record.

SQLAlchemy Core on asyncpg (PostgreSQL) or aiosqlite (the embedded SQLite
default); Alembic migrations run programmatically with ``migrate``.
"""

from ._errors import first_line
from .engine import make_engine
from .migrate import migrate, migrate_url
from .repository import SqlEventRepository
from .tables import metadata
from .urls import normalize_url

__all__ = [
    "SqlEventRepository",
    "first_line",
    "make_engine",
    "metadata",
    "migrate",
    "migrate_url",
    "normalize_url",
]
