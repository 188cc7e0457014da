"""The async engine: a fixed, modest pool per process that fails fast when the database is away."""

from __future__ import annotations

import sqlite3
import weakref
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry

from .urls import normalize_url, postgres_connect_options

__all__ = ["for_writes", "make_engine", "sqlite_twin", "try_wal"]

_WRITE_OPTION = "seat_inventory_write"


def make_engine(
    url: str,
    *,
    connect_timeout_s: float = 3.0,
    command_timeout_s: float = 10.0,
    pool_size: int = 15,
) -> AsyncEngine:
    """An engine for ``url`` (any form ``normalize_url`` accepts).

    Nothing connects here; the first query does. Raises ValueError for a URL
    the service cannot use.
    """
    async_url = normalize_url(url)
    if async_url.startswith("sqlite"):
        return _sqlite_engine(async_url, busy_timeout_s=command_timeout_s)
    async_url, options = postgres_connect_options(async_url)
    settings = {"application_name": "seat-inventory", **options.pop("server_settings", {})}
    return create_async_engine(
        async_url,
        # A fixed pool: connections open on demand and stay. Overflow ones were
        # closed whenever a burst of returns found the pool full, and
        # reopening them (a PostgreSQL backend each) cost more than they saved.
        pool_size=pool_size,
        max_overflow=0,
        # A saturated pool answers UNAVAILABLE instead of queueing callers forever.
        pool_timeout=command_timeout_s,
        connect_args={
            "timeout": connect_timeout_s,
            "command_timeout": command_timeout_s,
            "server_settings": settings,
            **options,  # the URL's own connect_timeout and SSL context win
        },
    )


def for_writes(engine: AsyncEngine) -> AsyncEngine:
    """The same pool, for transactions that will write (SQLite locks up front)."""
    return engine.execution_options(**{_WRITE_OPTION: True})


# The busy timeout each SQLite engine was made with, for its twin.
_BUSY_MS: weakref.WeakKeyDictionary[Engine, int] = weakref.WeakKeyDictionary()


def _sqlite_engine(url: str, *, busy_timeout_s: float) -> AsyncEngine:
    engine = create_async_engine(url, pool_timeout=busy_timeout_s)
    busy_ms = int(busy_timeout_s * 1000)
    _BUSY_MS[engine.sync_engine] = busy_ms
    _sqlite_hooks(engine.sync_engine, busy_ms)
    return engine


def sqlite_twin(engine: AsyncEngine) -> Engine:
    """A blocking engine on the same SQLite file, set up alike, for the booking
    transactions run on a worker thread (``repository._SqliteBookings``)."""
    busy_ms = _BUSY_MS.get(engine.sync_engine, 10_000)
    twin = create_engine(engine.url.set(drivername="sqlite"), pool_timeout=busy_ms / 1000)
    _sqlite_hooks(twin, busy_ms)
    return twin.execution_options(**{_WRITE_OPTION: True})


def _sqlite_hooks(sync_engine: Engine, busy_ms: int) -> None:
    @event.listens_for(sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
        # sqlite3 only BEGINs before DML, so reads and DDL would escape the
        # transaction; the begin hook below takes over instead.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {busy_ms}")
            cursor.execute("PRAGMA foreign_keys = ON")
            try_wal(cursor)
        finally:
            cursor.close()

    @event.listens_for(sync_engine, "begin")
    def _on_begin(connection: Connection) -> None:
        # A deferred transaction that reads and then writes gets SQLITE_BUSY at
        # once when another writer got in first; BEGIN IMMEDIATE waits for the
        # lock (busy_timeout) before reading anything.
        write = connection.get_execution_options().get(_WRITE_OPTION, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def try_wal(cursor: Any) -> bool:
    """Switch the database file to WAL; False when another connection holds it now.

    WAL is a property of the file, so one connection succeeding is enough;
    ``migrate`` insists until the switch is made.
    """
    cursor.execute("PRAGMA journal_mode")
    if cursor.fetchone()[0] == "wal":
        return True
    try:
        # Switching needs the file to itself and SQLite may refuse at once
        # rather than wait (busy_timeout does not always apply).
        cursor.execute("PRAGMA journal_mode = WAL")
    except sqlite3.OperationalError as exc:
        if "locked" not in str(exc) and "busy" not in str(exc):
            raise
        return False
    return bool(cursor.fetchone()[0] == "wal")
