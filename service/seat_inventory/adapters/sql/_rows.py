"""Rows to domain objects and back."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from sqlalchemy import Row

from ...domain.model import ANONYMOUS_PRINCIPAL, Booking, BookingStatus, Event, SeatSpec

SEPARATOR = ","  # seat ids never contain it (domain.ids)


def booking_row(booking: Booking) -> dict[str, Any]:
    return {
        "booking_id": booking.booking_id,
        "event_id": booking.event_id,
        "hold_id": booking.hold_id,
        "holder_id": booking.holder_id,
        "order_ref": booking.order_ref,
        "seat_ids": SEPARATOR.join(booking.seat_ids),
        "status": int(booking.status),
        "confirmed_at_ms": booking.confirmed_at_ms,
        "cancelled_at_ms": booking.cancelled_at_ms,
        "principal": booking.principal,
    }


class ByName(Protocol):
    """A row whose values are looked up by column name: a SQLAlchemy row's
    ``_mapping``, an asyncpg record."""

    def __getitem__(self, key: str, /) -> Any: ...


def booking_from(row: ByName) -> Booking:
    seat_ids = row["seat_ids"]
    return Booking(
        booking_id=row["booking_id"],
        event_id=row["event_id"],
        hold_id=row["hold_id"],
        seat_ids=tuple(seat_ids.split(SEPARATOR)) if seat_ids else (),
        holder_id=row["holder_id"],
        order_ref=row["order_ref"],
        confirmed_at_ms=row["confirmed_at_ms"],
        status=BookingStatus(row["status"]),
        cancelled_at_ms=row["cancelled_at_ms"],
        principal=row["principal"] or ANONYMOUS_PRINCIPAL,
    )


def seat_rows(event: Event) -> list[dict[str, Any]]:
    return [
        {
            "event_id": event.event_id,
            "seat_id": seat.seat_id,
            "position": position,
            "section": seat.section,
            "row": seat.row,
            "number": seat.number,
        }
        for position, seat in enumerate(event.seats)
    ]


def event_from(row: Row[Any], seat_rows: Sequence[Row[Any]]) -> Event:
    return Event(
        event_id=row.event_id,
        name=row.name,
        created_at_ms=row.created_at_ms,
        seats=tuple(SeatSpec(s.seat_id, s.section, s.row, s.number) for s in seat_rows),
    )


def same_event(a: Event, b: Event) -> bool:
    """Equal as far as a retried CreateEvent is concerned: creation time may differ."""
    return a.name == b.name and a.seats == b.seats
