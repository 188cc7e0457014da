"""EventRepository on SQLAlchemy Core: the system of record for events and bookings.

Core rather than ORM sessions: the booking transaction is the hot path and
Core reached more than twice the ORM's throughput on it here.
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, Table, and_, delete, insert, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql.dml import Insert

from ...domain.errors import BookingNotFound, EventExists, SeatsUnavailable
from ...domain.model import Booking, BookingStatus, Event
from ...service_layer.ports import EventSnapshot
from . import _rows
from ._errors import database_errors
from .engine import for_writes
from .tables import booked_seats, bookings, events, seats

__all__ = ["SqlEventRepository"]

_SEAT_CHUNK = 5_000  # rows per executemany: bounded memory, few round trips


class SqlEventRepository:
    """``ports.EventRepository`` on PostgreSQL or SQLite."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._postgres = engine.dialect.name == "postgresql"
        self._writes = for_writes(engine)
        # Reads of committed, immutable rows or of one statement need no
        # BEGIN/ROLLBACK round trips on PostgreSQL.
        self._reads = (
            engine.execution_options(isolation_level="AUTOCOMMIT") if self._postgres else engine
        )

    def _insert_or_skip(self, table: Table, *conflict: str) -> Insert:
        if self._postgres:
            return postgresql.insert(table).on_conflict_do_nothing(index_elements=conflict or None)
        return sqlite.insert(table).on_conflict_do_nothing(index_elements=conflict or None)

    async def create_event(self, event: Event) -> tuple[Event, bool]:
        with database_errors():
            async with self._writes.begin() as conn:
                row = {
                    "event_id": event.event_id,
                    "name": event.name,
                    "created_at_ms": event.created_at_ms,
                    "seat_count": len(event.seats),
                }
                stmt = self._insert_or_skip(events).values(row).returning(events.c.event_id)
                if (await conn.execute(stmt)).first() is None:
                    existing = await _load_event(conn, event.event_id)
                    if existing is None or not _rows.same_event(existing, event):
                        raise EventExists(event.event_id)
                    return existing, False
                rows = _rows.seat_rows(event)
                for start in range(0, len(rows), _SEAT_CHUNK):
                    await conn.execute(insert(seats), rows[start : start + _SEAT_CHUNK])
            if self._postgres:
                # Statistics made for an empty table kept the FK checks of
                # booked_seats on sequential scans and halved booking throughput.
                async with self._reads.connect() as conn:
                    await conn.execute(text("ANALYZE events, seats"))
        return event, True

    async def get_event(self, event_id: str) -> Event | None:
        with database_errors():
            async with self._reads.connect() as conn:
                return await _load_event(conn, event_id)

    async def snapshot(self, event_id: str) -> EventSnapshot | None:
        joined = events.outerjoin(seats, seats.c.event_id == events.c.event_id).outerjoin(
            booked_seats,
            and_(
                booked_seats.c.event_id == seats.c.event_id,
                booked_seats.c.seat_id == seats.c.seat_id,
            ),
        )
        stmt = (
            select(seats.c.seat_id, booked_seats.c.booking_id)
            .select_from(joined)
            .where(events.c.event_id == event_id)
            .order_by(seats.c.position)
        )
        with database_errors():
            async with self._reads.connect() as conn:
                rows = (await conn.execute(stmt)).all()
        if not rows:
            return None
        seat_ids = tuple(r.seat_id for r in rows if r.seat_id is not None)
        booked = frozenset(r.seat_id for r in rows if r.booking_id is not None)
        return EventSnapshot(event_id, seat_ids, booked)

    async def event_ids(self) -> list[str]:
        stmt = select(events.c.event_id).order_by(events.c.created_at_ms, events.c.event_id)
        with database_errors():
            async with self._reads.connect() as conn:
                return list((await conn.scalars(stmt)).all())

    async def commit_booking(self, booking: Booking) -> tuple[Booking, bool]:
        stmt = self._insert_or_skip(bookings, "hold_id").values(_rows.booking_row(booking))
        with database_errors():
            async with self._writes.begin() as conn:
                if (await conn.execute(stmt.returning(bookings.c.booking_id))).first() is None:
                    # hold_id is taken, by a committed booking: READ COMMITTED sees it.
                    existing = await _booking_where(conn, bookings.c.hold_id == booking.hold_id)
                    if existing is None:
                        raise RuntimeError(f"hold {booking.hold_id!r} clashed yet has no booking")
                    return existing, False
                taken = await self._claim_seats(conn, booking)
                if taken:
                    raise SeatsUnavailable(booking.event_id, taken)  # rolls back the booking
        return booking, True

    async def _claim_seats(self, conn: AsyncConnection, booking: Booking) -> list[str]:
        """Insert the booked seats; return those another active booking holds."""
        # Sorted, so two bookings sharing seats lock them in the same order
        # and wait for each other instead of deadlocking.
        wanted = sorted(set(booking.seat_ids))
        if not wanted:
            return []
        values = [
            {"event_id": booking.event_id, "seat_id": s, "booking_id": booking.booking_id}
            for s in wanted
        ]
        stmt = self._insert_or_skip(booked_seats).values(values).returning(booked_seats.c.seat_id)
        claimed = set((await conn.scalars(stmt)).all())
        return [s for s in booking.seat_ids if s not in claimed]

    async def booking_by_hold(self, hold_id: str) -> Booking | None:
        with database_errors():
            async with self._reads.connect() as conn:
                return await _booking_where(conn, bookings.c.hold_id == hold_id)

    async def get_booking(self, booking_id: str) -> Booking | None:
        with database_errors():
            async with self._reads.connect() as conn:
                return await _booking_where(conn, bookings.c.booking_id == booking_id)

    async def cancel_booking(self, booking_id: str, now_ms: int) -> tuple[Booking, bool]:
        stmt = (
            update(bookings)
            .where(bookings.c.booking_id == booking_id)
            .where(bookings.c.status == int(BookingStatus.CONFIRMED))
            .values(status=int(BookingStatus.CANCELLED), cancelled_at_ms=now_ms)
            .returning(*bookings.c)
        )
        with database_errors():
            async with self._writes.begin() as conn:
                row = (await conn.execute(stmt)).first()
                if row is not None:
                    await conn.execute(
                        delete(booked_seats).where(booked_seats.c.booking_id == booking_id)
                    )
                    return _rows.booking_from(row), True
                existing = await _booking_where(conn, bookings.c.booking_id == booking_id)
        if existing is None:
            raise BookingNotFound(booking_id)
        return existing, False

    async def ping(self) -> None:
        with database_errors():
            async with self._reads.connect() as conn:
                await conn.execute(text("SELECT 1"))


async def _booking_where(conn: AsyncConnection, where: ColumnElement[bool]) -> Booking | None:
    row = (await conn.execute(select(bookings).where(where))).first()
    return None if row is None else _rows.booking_from(row)


async def _load_event(conn: AsyncConnection, event_id: str) -> Event | None:
    row = (await conn.execute(select(events).where(events.c.event_id == event_id))).first()
    if row is None:
        return None
    stmt = select(seats).where(seats.c.event_id == event_id).order_by(seats.c.position)
    return _rows.event_from(row, (await conn.execute(stmt)).all())
