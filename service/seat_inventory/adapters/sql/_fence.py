"""The per-event booking fence.

Booking writers (commit) share an event's fence; loading Redis from SQL,
repair and cancelling take it alone, so none of them runs while a booking
of the event is between its Redis claim and its SQL commit.

PostgreSQL: advisory locks keyed by (namespace, hashtext(event_id)); two
events whose hashes collide merely share a fence. Confirm's commit takes the
shared lock itself, in the same message as its BEGIN (``_pg_booking``). SQLite has one writer at a
time anyway: a process-wide lock queues every write (sparing writers the
busy handler's sleep-and-retry) and is the fence; the embedded default is a
single process.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from .engine import for_writes

FENCE_NAMESPACE = 0x5EA7  # first half of every fence's advisory-lock key (see _pg_booking too)


# Built once: statements made per call cost more CPU than their round trip.
_LOCKS = {
    name: text(f"SELECT {name}(:namespace, hashtext(:event_id))")
    for name in (
        "pg_advisory_xact_lock",
        "pg_advisory_xact_lock_shared",
        "pg_advisory_lock",
        "pg_advisory_unlock",
    )
}


async def _advisory(conn: AsyncConnection, function: str, event_id: str) -> None:
    await conn.execute(_LOCKS[function], {"namespace": FENCE_NAMESPACE, "event_id": event_id})


class Fence:
    def __init__(self, engine: AsyncEngine) -> None:
        self._postgres = engine.dialect.name == "postgresql"
        self._writes = for_writes(engine)
        self._sqlite_lock: contextlib.AbstractAsyncContextManager[object] = (
            contextlib.nullcontext() if self._postgres else asyncio.Lock()
        )

    @contextlib.asynccontextmanager
    async def transaction(
        self, event_id: str | None, *, exclusive: bool = False
    ) -> AsyncIterator[AsyncConnection]:
        """A write transaction; with an event id it holds that event's fence until it ends."""
        async with self._sqlite_lock, self._writes.begin() as conn:
            if self._postgres and event_id is not None:
                kind = "" if exclusive else "_shared"
                await _advisory(conn, f"pg_advisory_xact_lock{kind}", event_id)
            yield conn

    @contextlib.asynccontextmanager
    async def sqlite_held(self) -> AsyncIterator[None]:
        """SQLite's fence without a transaction: for writes that run their own
        transaction on another connection (the booking's, on a worker thread)."""
        if self._postgres:
            raise RuntimeError("PostgreSQL's fence is an advisory lock in a transaction")
        async with self._sqlite_lock:
            yield

    @contextlib.asynccontextmanager
    async def session(self, event_id: str) -> AsyncIterator[AsyncConnection]:
        """A connection holding the event's fence alone across several transactions."""
        async with self._sqlite_lock, self._writes.connect() as conn:
            if not self._postgres:
                yield conn
                return
            await _advisory(conn, "pg_advisory_lock", event_id)
            await conn.commit()
            try:
                yield conn
            finally:
                try:
                    await conn.rollback()
                    await _advisory(conn, "pg_advisory_unlock", event_id)
                    await conn.commit()
                except BaseException:
                    # Closing the session is the only other way to drop the
                    # lock; a pooled connection must never keep it.
                    await conn.invalidate()
                    raise
