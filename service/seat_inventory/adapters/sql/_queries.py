"""The repository's reads and writes, each on a connection the caller manages."""

from __future__ import annotations

from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection

from ...domain.errors import BookingNotFound
from ...domain.model import Booking, Event
from ...service_layer.ports import EventSnapshot
from . import _rows
from ._statements import for_connection

_SEAT_CHUNK = 5_000  # seat rows per executemany: bounded memory, few round trips


async def insert_event(conn: AsyncConnection, event: Event) -> bool:
    """Insert the event and its seats; False (and nothing written) when the id is taken."""
    sql = for_connection(conn)
    row = {
        "event_id": event.event_id,
        "name": event.name,
        "created_at_ms": event.created_at_ms,
        "seat_count": len(event.seats),
    }
    if (await conn.execute(sql.insert_event, row)).first() is None:
        return False
    rows = _rows.seat_rows(event)
    for start in range(0, len(rows), _SEAT_CHUNK):
        await conn.execute(sql.insert_seats, rows[start : start + _SEAT_CHUNK])
    return True


async def load_event(conn: AsyncConnection, event_id: str) -> Event | None:
    sql = for_connection(conn)
    row = (await conn.execute(sql.event, {"e": event_id})).first()
    if row is None:
        return None
    return _rows.event_from(row, (await conn.execute(sql.seat_map, {"e": event_id})).all())


async def snapshot(conn: AsyncConnection, event_id: str) -> EventSnapshot | None:
    rows = (await conn.execute(for_connection(conn).snapshot, {"e": event_id})).all()
    if not rows:
        return None
    seat_ids = tuple(r.seat_id for r in rows if r.seat_id is not None)
    booked = frozenset(r.seat_id for r in rows if r.booking_id is not None)
    return EventSnapshot(event_id, seat_ids, booked)


async def booking_by_id(conn: AsyncConnection, booking_id: str) -> Booking | None:
    row = (await conn.execute(for_connection(conn).booking_by_id, {"b": booking_id})).first()
    return None if row is None else _rows.booking_from(row._mapping)


async def booking_by_hold(conn: AsyncConnection, hold_id: str) -> Booking | None:
    row = (await conn.execute(for_connection(conn).booking_by_hold, {"h": hold_id})).first()
    return None if row is None else _rows.booking_from(row._mapping)


# A booking's writes, on a blocking connection: SQLite runs them on a worker
# thread (engine.sqlite_twin); PostgreSQL books through _pg_booking.


def booking_by_hold_now(conn: Connection, hold_id: str) -> Booking | None:
    row = conn.execute(for_connection(conn).booking_by_hold, {"h": hold_id}).first()
    return None if row is None else _rows.booking_from(row._mapping)


def insert_booking_now(conn: Connection, booking: Booking) -> bool:
    """Insert the booking unless its hold is booked already or was given up by repair."""
    stmt = for_connection(conn).insert_booking
    return conn.execute(stmt, _rows.booking_row(booking)).first() is not None


def book_seats_now(conn: Connection, booking: Booking) -> list[str]:
    """Insert the booked seats; return those another active booking holds."""
    # Sorted, so two bookings sharing seats lock them in the same order and
    # wait for each other instead of deadlocking. Executemany still sends one
    # multi-row INSERT.
    rows = [
        {"event_id": booking.event_id, "seat_id": s, "booking_id": booking.booking_id}
        for s in sorted(set(booking.seat_ids))
    ]
    claimed = set(conn.scalars(for_connection(conn).book_seats, rows).all())
    return [s for s in booking.seat_ids if s not in claimed]


async def give_up(conn: AsyncConnection, event_id: str, hold_id: str, now_ms: int) -> None:
    row = {"hold_id": hold_id, "event_id": event_id, "given_up_at_ms": now_ms}
    await conn.execute(for_connection(conn).give_up, row)


async def cancel(conn: AsyncConnection, booking_id: str, now_ms: int) -> tuple[Booking, bool]:
    """Cancel and free the seats; (booking, False) when it was cancelled before."""
    sql = for_connection(conn)
    row = (await conn.execute(sql.cancel, {"b": booking_id, "now": now_ms})).first()
    if row is not None:
        await conn.execute(sql.free_seats, {"b": booking_id})
        return _rows.booking_from(row._mapping), True
    booking = await booking_by_id(conn, booking_id)
    if booking is None:  # bookings are never deleted; kept for the type checker
        raise BookingNotFound(booking_id)
    return booking, False


async def unsold(conn: AsyncConnection, booking: Booking) -> tuple[str, ...]:
    """The booking's seats no active booking holds now."""
    params = {"e": booking.event_id, "seats": list(booking.seat_ids)}
    sold = set((await conn.scalars(for_connection(conn).sold_among, params)).all())
    return tuple(s for s in booking.seat_ids if s not in sold)
