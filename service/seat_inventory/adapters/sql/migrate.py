"""Bring the schema to the newest revision; safe at every start-up, from many processes."""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.util.exc import CommandError
from sqlalchemy import exc as sa_exc
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ._errors import database_errors, first_line
from .engine import for_writes, make_engine, try_wal

__all__ = ["alembic_config", "migrate", "migrate_url", "migration_transaction"]

_HERE = Path(__file__).resolve().parent
# Any fixed number works, as long as every process migrating this schema uses it.
_ADVISORY_LOCK_KEY = 0x5EA71_0001
# Alembic keeps the running migration in module globals (alembic.op,
# alembic.context): within one process, migrations take turns.
_IN_PROCESS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
    weakref.WeakKeyDictionary()
)


def alembic_config(connection: Connection | None = None) -> Config:
    """Alembic's configuration; with ``connection``, migrations run on it."""
    config = Config(str(_HERE / "alembic.ini"))
    config.set_main_option("script_location", str(_HERE / "migrations"))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


@asynccontextmanager
async def migration_transaction(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """One transaction that only one migrating process at a time may hold.

    PostgreSQL serialises through an advisory lock released at commit;
    SQLite through BEGIN IMMEDIATE. Both run DDL transactionally, so a
    process that waited sees the finished schema and has nothing to do.
    """
    async with for_writes(engine).begin() as connection:
        if connection.dialect.name == "postgresql":
            await connection.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": _ADVISORY_LOCK_KEY}
            )
        yield connection


def _upgrade(connection: Connection) -> None:
    command.upgrade(alembic_config(connection), "head")


async def migrate(database: AsyncEngine | str) -> None:
    """``alembic upgrade head`` on an engine or a URL (any form ``make_engine`` takes).

    Raises BackendUnavailable when the database cannot be reached.
    """
    if isinstance(database, str):
        engine = make_engine(database)
        try:
            await migrate(engine)
        finally:
            await engine.dispose()
        return
    turn = _IN_PROCESS.setdefault(asyncio.get_running_loop(), asyncio.Lock())
    with database_errors():
        async with turn:
            if database.dialect.name == "sqlite":
                await _ensure_wal(database)
            async with migration_transaction(database) as connection:
                try:
                    await connection.run_sync(_upgrade)
                except CommandError as exc:
                    raise ValueError(
                        f"cannot migrate the database: {exc} (was it migrated by a newer "
                        "seat-inventory?)"
                    ) from None
                except sa_exc.DBAPIError as exc:
                    if not _schema_problem(exc):
                        raise
                    raise ValueError(
                        f"cannot migrate the database: {first_line(exc)} (a database "
                        "of its own, or a user allowed to create tables in it, is needed)"
                    ) from None


def _schema_problem(exc: sa_exc.DBAPIError) -> bool:
    """The schema cannot be made here (another application's tables, a user without
    the right), as opposed to a database that cannot be reached."""
    sqlstate = getattr(exc.orig, "sqlstate", None)
    if isinstance(sqlstate, str):
        return sqlstate.startswith("42")  # syntax error or access rule violation
    text_ = str(exc.orig).lower()
    return "already exists" in text_ or "no such table" in text_ or "readonly" in text_


async def _ensure_wal(engine: AsyncEngine) -> None:
    for delay in (0.01, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0):
        async with engine.connect() as conn:
            if await conn.run_sync(lambda sync: try_wal(sync.connection.cursor())):
                return
        await asyncio.sleep(delay)
    raise TimeoutError("could not switch the SQLite database to WAL: it stays locked")


def migrate_url(url: str) -> None:
    """``migrate`` outside any event loop (scripts, a CLI command)."""
    asyncio.run(migrate(url))
