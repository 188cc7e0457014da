"""Value objects of the seat inventory. Times are integer epoch milliseconds."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

__all__ = [
    "ANONYMOUS_PRINCIPAL",
    "Availability",
    "Booking",
    "BookingStatus",
    "ChangeReason",
    "Event",
    "EventCounts",
    "Hold",
    "SeatSpec",
    "SeatStatus",
]


# Who every call runs as while authentication is off (api/principal.py); holds
# stored before principals were recorded belong to it too.
ANONYMOUS_PRINCIPAL = "anonymous"


class SeatStatus(enum.IntEnum):
    """Mirrors seatinventory.v1.SeatStatus numbers."""

    AVAILABLE = 1
    HELD = 2
    BOOKED = 3


class ChangeReason(enum.IntEnum):
    """Mirrors seatinventory.v1.ChangeReason numbers."""

    HELD = 1
    RELEASED = 2
    EXPIRED = 3
    BOOKED = 4
    CANCELLED = 5


class BookingStatus(enum.IntEnum):
    """Mirrors seatinventory.v1.BookingStatus numbers."""

    CONFIRMED = 1
    CANCELLED = 2


@dataclass(frozen=True, slots=True)
class SeatSpec:
    seat_id: str
    section: str = ""
    row: str = ""
    number: str = ""


@dataclass(frozen=True, slots=True)
class Event:
    event_id: str
    name: str
    seats: tuple[SeatSpec, ...]
    created_at_ms: int

    @property
    def seat_ids(self) -> tuple[str, ...]:
        return tuple(seat.seat_id for seat in self.seats)


@dataclass(frozen=True, slots=True)
class EventCounts:
    available: int
    held: int
    booked: int


@dataclass(frozen=True, slots=True)
class Hold:
    hold_id: str
    event_id: str
    seat_ids: tuple[str, ...]
    holder_id: str
    expires_at_ms: int


@dataclass(frozen=True, slots=True)
class Booking:
    booking_id: str
    event_id: str
    hold_id: str
    seat_ids: tuple[str, ...]
    holder_id: str
    order_ref: str
    confirmed_at_ms: int
    status: BookingStatus = BookingStatus.CONFIRMED
    cancelled_at_ms: int | None = None
    principal: str = ANONYMOUS_PRINCIPAL  # whose hold it confirmed


@dataclass(frozen=True, slots=True)
class Availability:
    """Every seat of an event in seat-map order, and the feed cursor it matches."""

    event_id: str
    seats: tuple[tuple[str, SeatStatus], ...]
    cursor: str
    counts: EventCounts = field(default=EventCounts(0, 0, 0))
