"""EventRepository on SQLAlchemy Core: the system of record for events and bookings.

Core rather than ORM sessions: the booking transaction is the hot path and
Core reached more than twice the ORM's throughput on it here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import TypeVar

from sqlalchemy import select, text
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncEngine

from ...domain.errors import BookingNotFound, EventExists, HoldNotFound, SeatsUnavailable
from ...domain.model import Booking, Event
from ...service_layer.ports import EventSnapshot
from . import _queries as q
from ._errors import callback, database_errors
from ._fence import Fence
from ._pg_booking import NotInserted, booking_transaction
from ._rows import same_event
from .engine import sqlite_twin
from .tables import events

__all__ = ["SqlEventRepository"]

_EVENT_IDS = select(events.c.event_id).order_by(events.c.created_at_ms, events.c.event_id)
# Statistics made for an empty table kept the FK checks of booked_seats on
# sequential scans and halved booking throughput: refresh them after a load.
_ANALYZE = text("ANALYZE events, seats")
_PING = text("SELECT 1")

T = TypeVar("T")


async def _to_the_end(work: Awaitable[T]) -> T:
    """Await ``work`` (a transaction on a worker thread) until it has ended,
    even when the caller is cancelled meanwhile: the fence must stay held
    until the thread has committed or rolled back. The cancellation is
    raised afterwards."""
    task = asyncio.ensure_future(work)
    cancelled = False
    while not task.done():
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            cancelled = True
    if cancelled:
        raise asyncio.CancelledError
    return task.result()


class SqlEventRepository:
    """``ports.EventRepository`` on PostgreSQL or SQLite; see ``_fence`` for the fence."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._postgres = engine.dialect.name == "postgresql"
        self._fence = Fence(engine)
        self._engine = engine
        # One-statement reads, and reads of rows that never change once
        # committed (events, seats), need no BEGIN/ROLLBACK round trips.
        self._reads = (
            engine.execution_options(isolation_level="AUTOCOMMIT") if self._postgres else engine
        )
        # SQLite: the booking's transaction runs whole on a worker thread.
        self._sqlite_writes: Engine | None = None if self._postgres else sqlite_twin(engine)

    def close(self) -> None:
        """Close the worker threads' SQLite connections (the async engine is the caller's)."""
        if self._sqlite_writes is not None:
            self._sqlite_writes.dispose()

    async def create_event(self, event: Event) -> tuple[Event, bool]:
        with database_errors():
            async with self._fence.transaction(None) as conn:
                if not await q.insert_event(conn, event):
                    existing = await q.load_event(conn, event.event_id)
                    if existing is None or not same_event(existing, event):
                        raise EventExists(event.event_id)
                    return existing, False
            if self._postgres:
                async with self._reads.connect() as conn:
                    await conn.execute(_ANALYZE)
        return event, True

    async def get_event(self, event_id: str) -> Event | None:
        with database_errors():
            async with self._reads.connect() as conn:
                return await q.load_event(conn, event_id)

    async def snapshot(
        self, event_id: str, apply: Callable[[EventSnapshot], Awaitable[None]] | None = None
    ) -> EventSnapshot | None:
        with database_errors():
            if apply is None:
                async with self._reads.connect() as conn:
                    return await q.snapshot(conn, event_id)
            async with self._fence.transaction(event_id, exclusive=True) as conn:
                snapshot = await q.snapshot(conn, event_id)
                if snapshot is not None:
                    await callback(apply(snapshot))
                return snapshot

    async def event_ids(self) -> list[str]:
        with database_errors():
            async with self._reads.connect() as conn:
                return list((await conn.scalars(_EVENT_IDS)).all())

    async def commit_booking(
        self, event_id: str, hold_id: str, claim: Callable[[], Awaitable[Booking]]
    ) -> tuple[Booking, bool]:
        if self._postgres:
            return await self._commit_booking_pg(event_id, hold_id, claim)
        with database_errors():
            # The fence is the process-wide write lock: taken before the claim,
            # held until the booking's transaction has ended.
            async with self._fence.sqlite_held():
                booking = await callback(claim())
                if (booking.event_id, booking.hold_id) != (event_id, hold_id):
                    raise ValueError(f"claim answered a booking of another hold: {booking}")
                existing = await _to_the_end(asyncio.to_thread(self._book_sqlite, booking))
        return (booking, True) if existing is None else (existing, False)

    def _book_sqlite(self, booking: Booking) -> Booking | None:
        """The booking and its seats in one transaction (on a worker thread);
        the booking already made for the hold when there is one."""
        assert self._sqlite_writes is not None
        with self._sqlite_writes.begin() as conn:
            if not q.insert_booking_now(conn, booking):
                existing = q.booking_by_hold_now(conn, booking.hold_id)
                if existing is None:  # repair gave the hold up
                    raise HoldNotFound(booking.hold_id)
                return existing
            taken = q.book_seats_now(conn, booking)
            if taken:
                raise SeatsUnavailable(booking.event_id, taken)  # and roll the booking back
        return None

    async def _commit_booking_pg(
        self, event_id: str, hold_id: str, claim: Callable[[], Awaitable[Booking]]
    ) -> tuple[Booking, bool]:
        """``commit_booking`` in two round trips; see ``_pg_booking``."""
        with database_errors():
            async with booking_transaction(self._engine, event_id) as tx:
                booking = await callback(claim())
                if (booking.event_id, booking.hold_id) != (event_id, hold_id):
                    raise ValueError(f"claim answered a booking of another hold: {booking}")
                try:
                    taken = await tx.book(booking)
                except NotInserted:
                    existing = await tx.booking_by_hold(hold_id)
                    if existing is None:  # repair gave the hold up
                        raise HoldNotFound(hold_id) from None
                    return existing, False
                if taken:
                    raise SeatsUnavailable(event_id, taken)  # and roll the booking back
        return booking, True

    async def settle_unconfirmed(self, event_id: str, hold_id: str, now_ms: int) -> Booking | None:
        with database_errors():
            async with self._fence.transaction(event_id, exclusive=True) as conn:
                booking = await q.booking_by_hold(conn, hold_id)
                if booking is None:
                    await q.give_up(conn, event_id, hold_id, now_ms)
                return booking

    async def booking_by_hold(self, hold_id: str) -> Booking | None:
        with database_errors():
            async with self._reads.connect() as conn:
                return await q.booking_by_hold(conn, hold_id)

    async def get_booking(self, booking_id: str) -> Booking | None:
        with database_errors():
            async with self._reads.connect() as conn:
                return await q.booking_by_id(conn, booking_id)

    async def cancel_booking(
        self, booking_id: str, now_ms: int, apply: Callable[[Booking], Awaitable[None]]
    ) -> tuple[Booking, bool]:
        """See the port; ``apply`` gets the booking with only the seats no active
        booking holds, so a retried cancel never frees a seat sold again since."""
        found = await self.get_booking(booking_id)
        if found is None:
            raise BookingNotFound(booking_id)
        with database_errors():
            # The fence is held from before the commit until after apply:
            # Redis frees the seats only once SQL has, and no booking of them
            # slips in between.
            async with self._fence.session(found.event_id) as conn:
                async with conn.begin():
                    booking, cancelled_now = await q.cancel(conn, booking_id, now_ms)
                    free = await q.unsold(conn, booking)
                await callback(apply(replace(booking, seat_ids=free)))
        return booking, cancelled_now

    async def ping(self) -> None:
        with database_errors():
            async with self._reads.connect() as conn:
                await conn.execute(_PING)
