"""Every statement of the repository, built once per dialect.

They take their values as parameters: building a statement per call cost
more CPU than its round trip on the booking path.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Delete, Select, Update, bindparam, exists, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.dml import Insert

from ...domain.model import BookingStatus
from .tables import booked_seats, bookings, events, given_up_holds, seats

__all__ = ["Statements", "for_connection"]


@dataclass(frozen=True, slots=True)
class Statements:
    insert_event: Insert  # skips (returns no row) when the id is taken
    insert_seats: Insert
    event: Select[Any]
    seat_map: Select[Any]
    snapshot: Select[Any]
    booking_by_id: Select[Any]
    booking_by_hold: Select[Any]
    insert_booking: Insert  # skips when the hold is booked or was given up
    book_seats: Insert  # returns the seats it could book
    give_up: Insert
    cancel: Update  # returns the booking when it was confirmed until now
    free_seats: Delete
    sold_among: Select[Any]


def for_connection(conn: AsyncConnection | Connection) -> Statements:
    return _build(conn.dialect.name)


@functools.cache
def _build(dialect: str) -> Statements:
    upsert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    given_up = select(given_up_holds.c.hold_id).where(
        given_up_holds.c.hold_id == bindparam("hold_id")
    )
    booking_values = select(*(bindparam(c.name, type_=c.type) for c in bookings.c)).where(
        ~exists(given_up)
    )
    seat_is_booked = (booked_seats.c.event_id == seats.c.event_id) & (
        booked_seats.c.seat_id == seats.c.seat_id
    )
    return Statements(
        insert_event=upsert(events).on_conflict_do_nothing().returning(events.c.event_id),
        insert_seats=insert(seats),
        event=select(events).where(events.c.event_id == bindparam("e")),
        seat_map=select(seats).where(seats.c.event_id == bindparam("e")).order_by(seats.c.position),
        # One statement, so one consistent read even outside a transaction.
        snapshot=select(seats.c.seat_id, booked_seats.c.booking_id)
        .select_from(
            events.outerjoin(seats, seats.c.event_id == events.c.event_id).outerjoin(
                booked_seats, seat_is_booked
            )
        )
        .where(events.c.event_id == bindparam("e"))
        .order_by(seats.c.position),
        booking_by_id=select(bookings).where(bookings.c.booking_id == bindparam("b")),
        booking_by_hold=select(bookings).where(bookings.c.hold_id == bindparam("h")),
        insert_booking=upsert(bookings)
        .on_conflict_do_nothing(index_elements=["hold_id"])
        .from_select([c.name for c in bookings.c], booking_values)
        .returning(bookings.c.booking_id),
        book_seats=upsert(booked_seats).on_conflict_do_nothing().returning(booked_seats.c.seat_id),
        give_up=upsert(given_up_holds).on_conflict_do_nothing(),
        cancel=update(bookings)
        .where(
            bookings.c.booking_id == bindparam("b"),
            bookings.c.status == int(BookingStatus.CONFIRMED),
        )
        .values(status=int(BookingStatus.CANCELLED), cancelled_at_ms=bindparam("now"))
        .returning(*bookings.c),
        free_seats=booked_seats.delete().where(booked_seats.c.booking_id == bindparam("b")),
        sold_among=select(booked_seats.c.seat_id).where(
            booked_seats.c.event_id == bindparam("e"),
            booked_seats.c.seat_id.in_(bindparam("seats", expanding=True)),
        ),
    )
