"""EventRepository on SQLAlchemy Core: the system of record for events and bookings.

Core rather than ORM sessions: the booking transaction is the hot path and
Core reached more than twice the ORM's throughput on it here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

from sqlalchemy import exc as sa_exc
from sqlalchemy import select, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.ext.asyncio import AsyncEngine

from ...domain.errors import (
    BackendUnavailable,
    BookingNotFound,
    EventExists,
    HoldNotFound,
    SeatsUnavailable,
)
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


async def _wait_out(work: asyncio.Future[Any]) -> bool:
    """Wait until ``work`` (a transaction on a worker thread) has ended, even when
    the caller is cancelled meanwhile: the fence must stay held until the rows
    are committed or rolled back. True when the caller was cancelled (its
    cancellation is the caller's to raise, once it is done with ``work``)."""
    cancelled = False
    while not work.done():
        try:
            await asyncio.wait((work,))  # raises neither its error nor cancels it
        except asyncio.CancelledError:
            cancelled = True
    return cancelled


class _SqliteBookings:
    """SQLite's booking commits, many in one transaction on a worker thread.

    Through aiosqlite each statement is a hop to its thread and back, and the
    way back waits for the event loop: under load a loop iteration each. Here
    bookings queue; one task takes all that are queued, writes each in a
    savepoint of one transaction (a conflict rolls back that booking alone)
    and commits them with one hop to the thread, then takes the next queue."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._queue: list[tuple[Booking, asyncio.Future[Booking | None]]] = []
        self._writer: asyncio.Task[None] | None = None
        self.transactions = 0  # for tests and the curious: transactions begun

    def book(self, booking: Booking) -> asyncio.Future[Booking | None]:
        """The booking's outcome: None when it was committed, the booking already
        made for its hold, or the error (HoldNotFound, SeatsUnavailable, a
        database failure)."""
        outcome: asyncio.Future[Booking | None] = asyncio.get_running_loop().create_future()
        self._queue.append((booking, outcome))
        if self._writer is None:
            self._writer = asyncio.get_running_loop().create_task(self._write())
        return outcome

    async def _write(self) -> None:
        cancelled = False  # the server is stopping: finish the transaction under way first
        try:
            while self._queue and not cancelled:
                batch, self._queue = self._queue, []
                work = asyncio.get_running_loop().run_in_executor(
                    None, self._commit, [booking for booking, _ in batch]
                )
                cancelled = await _wait_out(work) or cancelled
                failure = work.exception()
                results = work.result() if failure is None else [failure] * len(batch)
                for (_, outcome), result in zip(batch, results, strict=True):
                    if isinstance(result, BaseException):
                        outcome.set_exception(result)
                    else:
                        outcome.set_result(result)
        finally:
            self._writer = None
            queued, self._queue = self._queue, []
            for _, outcome in queued:  # not written: nothing of them is in SQL
                outcome.set_exception(BackendUnavailable("database", "the server is stopping"))
        if cancelled:
            raise asyncio.CancelledError

    def _commit(self, batch: list[Booking]) -> list[Booking | Exception | None]:
        results: list[Booking | Exception | None] = []
        self.transactions += 1
        with self._engine.begin() as conn:
            for booking in batch:
                savepoint = conn.begin_nested()
                try:
                    results.append(self._book(conn, booking))
                except (HoldNotFound, SeatsUnavailable, sa_exc.IntegrityError) as exc:
                    # This booking's own failure: its savepoint goes, the others stay.
                    savepoint.rollback()
                    results.append(exc)
                else:
                    savepoint.commit()
        return results

    @staticmethod
    def _book(conn: Connection, booking: Booking) -> Booking | None:
        if not q.insert_booking_now(conn, booking):
            existing = q.booking_by_hold_now(conn, booking.hold_id)
            if existing is None:  # repair gave the hold up
                raise HoldNotFound(booking.hold_id)
            return existing
        taken = q.book_seats_now(conn, booking)
        if taken:
            raise SeatsUnavailable(booking.event_id, taken)  # and roll the booking back
        return None


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
        # SQLite: bookings committed together on a worker thread.
        self._sqlite_writes: Engine | None = None if self._postgres else sqlite_twin(engine)
        self._sqlite_bookings = (
            None if self._sqlite_writes is None else _SqliteBookings(self._sqlite_writes)
        )

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
        assert self._sqlite_bookings is not None
        with database_errors():
            # The fence, shared with other bookings: taken before the claim,
            # held until the booking's transaction has ended.
            async with self._fence.sqlite_booking():
                booking = await callback(claim())
                if (booking.event_id, booking.hold_id) != (event_id, hold_id):
                    raise ValueError(f"claim answered a booking of another hold: {booking}")
                outcome = self._sqlite_bookings.book(booking)
                if await _wait_out(outcome):
                    raise asyncio.CancelledError
                existing = outcome.result()
        return (booking, True) if existing is None else (existing, False)

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
