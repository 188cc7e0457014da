"""Bring the schema to the newest revision; safe at every start-up, from many processes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ._errors import database_errors
from .engine import for_writes, make_engine

__all__ = ["alembic_config", "migrate", "migrate_url", "migration_transaction"]

_HERE = Path(__file__).resolve().parent
# Any fixed number works, as long as every process migrating this schema uses it.
_ADVISORY_LOCK_KEY = 0x5EA71_0001


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
    with database_errors():
        async with migration_transaction(database) as connection:
            await connection.run_sync(_upgrade)


def migrate_url(url: str) -> None:
    """``migrate`` outside any event loop (scripts, a CLI command)."""
    asyncio.run(migrate(url))
