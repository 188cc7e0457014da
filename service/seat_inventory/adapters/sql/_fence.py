"""The per-event booking fence.

Booking writers (commit) share an event's fence; loading Redis from SQL,
repair and cancelling take it alone, so none of them runs while a booking
of the event is between its Redis claim and its SQL commit.

PostgreSQL: advisory locks keyed by (namespace, hashtext(event_id)); two
events whose hashes collide merely share a fence. Confirm's commit takes the
shared lock itself, in the same message as its BEGIN (``_pg_booking``). SQLite has one writer at a
time anyway: a process-wide lock queues every write (sparing writers the
busy handler's sleep-and-retry) and is the fence; the embedded default is a
single process. Bookings share it (their Redis claims run side by side and
their rows are committed together, see ``repository``); every other write
takes it alone.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
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


class SharedOrAlone:
    """A lock held by many at once (shared) or by one alone, granted first come
    first served: a holder-to-be alone waits for the sharers before it, and
    sharers after it wait for it. Releasing never awaits, so a cancelled
    holder cannot leave it taken."""

    def __init__(self) -> None:
        self._sharers = 0
        self._alone = False
        self._waiting: deque[tuple[bool, asyncio.Future[None]]] = deque()

    def _free_for(self, alone: bool) -> bool:
        return not self._alone and (self._sharers == 0 or not alone)

    def _take(self, alone: bool) -> None:
        if alone:
            self._alone = True
        else:
            self._sharers += 1

    def _release(self, alone: bool) -> None:
        if alone:
            self._alone = False
        else:
            self._sharers -= 1
        while self._waiting:
            wants_alone, waiter = self._waiting[0]
            if waiter.done():  # its caller gave up
                self._waiting.popleft()
                continue
            if not self._free_for(wants_alone):
                break
            self._waiting.popleft()
            self._take(wants_alone)
            waiter.set_result(None)

    @contextlib.asynccontextmanager
    async def hold(self, *, alone: bool) -> AsyncIterator[None]:
        if not self._waiting and self._free_for(alone):
            self._take(alone)
        else:
            waiter = asyncio.get_running_loop().create_future()
            self._waiting.append((alone, waiter))
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():  # granted, then cancelled
                    self._release(alone)
                raise
        try:
            yield
        finally:
            self._release(alone)


class Fence:
    def __init__(self, engine: AsyncEngine) -> None:
        self._postgres = engine.dialect.name == "postgresql"
        self._writes = for_writes(engine)
        self._sqlite = SharedOrAlone()

    def _sqlite_lock(self) -> contextlib.AbstractAsyncContextManager[None]:
        """SQLite: the fence, alone (PostgreSQL: nothing; advisory locks do it)."""
        return contextlib.nullcontext() if self._postgres else self._sqlite.hold(alone=True)

    @contextlib.asynccontextmanager
    async def transaction(
        self, event_id: str | None, *, exclusive: bool = False
    ) -> AsyncIterator[AsyncConnection]:
        """A write transaction; with an event id it holds that event's fence until it ends."""
        async with self._sqlite_lock(), self._writes.begin() as conn:
            if self._postgres and event_id is not None:
                kind = "" if exclusive else "_shared"
                await _advisory(conn, f"pg_advisory_xact_lock{kind}", event_id)
            yield conn

    @contextlib.asynccontextmanager
    async def sqlite_booking(self) -> AsyncIterator[None]:
        """SQLite's fence, shared, without a transaction: for a booking, whose
        rows are committed on another connection (see ``repository``)."""
        if self._postgres:
            raise RuntimeError("PostgreSQL's fence is an advisory lock in a transaction")
        async with self._sqlite.hold(alone=False):
            yield

    @contextlib.asynccontextmanager
    async def session(self, event_id: str) -> AsyncIterator[AsyncConnection]:
        """A connection holding the event's fence alone across several transactions."""
        async with self._sqlite_lock(), self._writes.connect() as conn:
            if not self._postgres:
                yield conn
                return
            try:
                await _advisory(conn, "pg_advisory_lock", event_id)
                await conn.commit()
            except BaseException:
                # Cut off (a timeout, a cancelled call) the lock may still have
                # been granted: a pooled connection must never keep it.
                await conn.invalidate()
                raise
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
