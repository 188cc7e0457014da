"""In-memory fakes implementing the same ports as the real adapters."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace

from seat_inventory.domain.errors import (
    BackendUnavailable,
    BookingNotFound,
    EventExists,
    HoldNotFound,
    SeatsUnavailable,
)
from seat_inventory.domain.model import Booking, BookingStatus, Event
from seat_inventory.service_layer.ports import EventSnapshot


class InMemoryEventRepository:
    """EventRepository on dicts: the behaviour of the SQL adapter, no database."""

    def __init__(self) -> None:
        self.events: dict[str, Event] = {}
        self.bookings: dict[str, Booking] = {}
        self.booked: dict[tuple[str, str], str] = {}  # (event, seat) -> booking id
        self.given_up: set[str] = set()  # holds repair settled as never booked
        self.down = False

    def _check(self) -> None:
        if self.down:
            raise BackendUnavailable("database", "fake is down")

    async def create_event(self, event: Event) -> tuple[Event, bool]:
        self._check()
        existing = self.events.get(event.event_id)
        if existing is not None:
            if existing.name == event.name and existing.seats == event.seats:
                return existing, False
            raise EventExists(event.event_id)
        self.events[event.event_id] = event
        return event, True

    async def get_event(self, event_id: str) -> Event | None:
        self._check()
        return self.events.get(event_id)

    async def snapshot(
        self, event_id: str, apply: Callable[[EventSnapshot], Awaitable[None]] | None = None
    ) -> EventSnapshot | None:
        self._check()
        event = self.events.get(event_id)
        if event is None:
            return None
        booked = frozenset(seat for (ev, seat) in self.booked if ev == event_id)
        snapshot = EventSnapshot(event_id, event.seat_ids, booked)
        if apply is not None:
            await apply(snapshot)
        return snapshot

    async def event_ids(self) -> list[str]:
        self._check()
        return list(self.events)

    async def commit_booking(
        self, event_id: str, hold_id: str, claim: Callable[[], Awaitable[Booking]]
    ) -> tuple[Booking, bool]:
        self._check()
        booking = await claim()
        if hold_id in self.given_up:
            raise HoldNotFound(hold_id)
        for existing in self.bookings.values():
            if existing.hold_id == hold_id:
                return existing, False
        taken = [s for s in booking.seat_ids if (event_id, s) in self.booked]
        if taken:
            raise SeatsUnavailable(event_id, taken)
        self.bookings[booking.booking_id] = booking
        for seat in booking.seat_ids:
            self.booked[(event_id, seat)] = booking.booking_id
        return booking, True

    async def settle_unconfirmed(self, event_id: str, hold_id: str, now_ms: int) -> Booking | None:
        self._check()
        booking = await self.booking_by_hold(hold_id)
        if booking is None:
            self.given_up.add(hold_id)
        return booking

    async def booking_by_hold(self, hold_id: str) -> Booking | None:
        self._check()
        return next((b for b in self.bookings.values() if b.hold_id == hold_id), None)

    async def get_booking(self, booking_id: str) -> Booking | None:
        self._check()
        return self.bookings.get(booking_id)

    async def cancel_booking(
        self, booking_id: str, now_ms: int, apply: Callable[[Booking], Awaitable[None]]
    ) -> tuple[Booking, bool]:
        self._check()
        booking = self.bookings.get(booking_id)
        if booking is None:
            raise BookingNotFound(booking_id)
        changed = booking.status is BookingStatus.CONFIRMED
        if changed:
            booking = replace(booking, status=BookingStatus.CANCELLED, cancelled_at_ms=now_ms)
            self.bookings[booking_id] = booking
            for seat in booking.seat_ids:
                self.booked.pop((booking.event_id, seat), None)
        # Like the SQL adapter: only seats nobody has booked since are freed.
        free = tuple(s for s in booking.seat_ids if (booking.event_id, s) not in self.booked)
        await apply(replace(booking, seat_ids=free))
        return booking, changed

    async def ping(self) -> None:
        self._check()
