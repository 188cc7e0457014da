"""Confirm and CancelBooking: the database decides every sale (DESIGN §4).

Confirm = claim (Redis, pins the hold) → commit (one SQL transaction, which
the claim runs inside of, under the event's booking fence) → finalize
(Redis mirrors the sale). A crash between any two steps is repaired by the
sweeper; the unique hold_id in SQL makes a commit and a repair exclude each
other.
"""

from __future__ import annotations

import re

import structlog

from ..domain.clock import Clock
from ..domain.errors import (
    BackendUnavailable,
    EventNotFound,
    HoldNotFound,
    HoldNotOwned,
    InvalidArgument,
    SeatsUnavailable,
)
from ..domain.ids import new_booking_id
from ..domain.model import ANONYMOUS_PRINCIPAL, Booking, BookingStatus
from ..domain.policy import Limits, Violations, check_holder_id, check_request_id
from .catalog import EventCatalog
from .failpoints import Failpoints
from .inventory import hold_event
from .ports import EventNotLoaded, EventRepository, HoldStore
from .telemetry import NO_TELEMETRY, Telemetry

__all__ = ["BookingService"]

log = structlog.get_logger(__name__)
_BOOKING_ID = re.compile(r"bk_[A-Za-z0-9_-]{10,40}")


class BookingService:
    def __init__(
        self,
        holds: HoldStore,
        events: EventRepository,
        catalog: EventCatalog,
        limits: Limits,
        clock: Clock,
        failpoints: Failpoints | None = None,
        telemetry: Telemetry = NO_TELEMETRY,
    ) -> None:
        self._holds = holds
        self._events = events
        self._catalog = catalog
        self._limits = limits
        self._clock = clock
        self._failpoints = failpoints or Failpoints()
        self._telemetry = telemetry

    async def confirm(
        self,
        hold_id: str,
        holder_id: str,
        order_ref: str = "",
        request_id: str = "",
        principal: str = ANONYMOUS_PRINCIPAL,
    ) -> Booking:
        v = Violations()
        if not hold_id:
            v.add("hold_id", "must not be empty")
        check_holder_id(v, holder_id)
        check_request_id(v, request_id)
        v.text("order_ref", order_ref, self._limits.max_order_ref_len)
        v.raise_if_any()
        event_id = hold_event(hold_id)
        booking_id = new_booking_id()

        async def claim() -> Booking:
            seats = await self._holds.claim(event_id, hold_id, holder_id, principal)
            self._failpoints.hit("after_claim")
            return Booking(
                booking_id=booking_id,
                event_id=event_id,
                hold_id=hold_id,
                seat_ids=seats,
                holder_id=holder_id,
                order_ref=order_ref,
                confirmed_at_ms=self._clock.now_ms(),
                principal=principal,
            )

        try:
            try:
                booking, inserted = await self._events.commit_booking(event_id, hold_id, claim)
            except EventNotLoaded:
                # Loading takes the event's fence exclusively, so it must not
                # run inside the commit's transaction: load, then try again.
                await self._catalog.load(event_id)
                booking, inserted = await self._events.commit_booking(event_id, hold_id, claim)
            if inserted:
                self._telemetry.booking_confirmed()
        except (HoldNotFound, EventNotFound) as exc:
            booking = await self._already_booked(hold_id, holder_id, principal, exc)
        except SeatsUnavailable as exc:
            # Only after Redis lost data can SQL know a sale Redis did not.
            # Give the hold up as repair does: first in SQL, under the fence,
            # so that no retry of this hold commits after it (one may have
            # committed meanwhile: then its booking is the answer), then in
            # Redis, teaching it those seats are sold.
            settled = await self._events.settle_unconfirmed(event_id, hold_id, self._clock.now_ms())
            if settled is None or settled.status is not BookingStatus.CONFIRMED:
                await self._holds.abort_confirm(event_id, hold_id, exc.seat_ids)
                raise
            booking = settled
        self._failpoints.hit("after_commit")
        if (booking.holder_id, booking.principal) != (holder_id, principal):
            raise HoldNotOwned(hold_id)
        self._failpoints.hit("before_finalize")
        if booking.status is not BookingStatus.CONFIRMED:
            # A late retry of a booking cancelled since: its seats are free in
            # SQL and must not go back into sold. A hold still confirming is
            # given up by repair.
            return booking
        try:
            await self._holds.finalize(event_id, hold_id, booking.seat_ids)
        except BackendUnavailable as exc:
            # The sale is committed; the sweeper mirrors it once Redis is back.
            log.warning("finalize deferred to repair", hold_id=hold_id, error=exc.message)
        return booking

    async def _already_booked(
        self, hold_id: str, holder_id: str, principal: str, cause: Exception
    ) -> Booking:
        """A hold that is gone may have been confirmed before: same answer again,
        to its owner only (the holder id and the principal)."""
        booking = await self._events.booking_by_hold(hold_id)
        if booking is None:
            raise HoldNotFound(hold_id) from cause
        if (booking.holder_id, booking.principal) != (holder_id, principal):
            raise HoldNotOwned(hold_id) from cause
        return booking

    async def cancel(self, booking_id: str) -> Booking:
        if not _BOOKING_ID.fullmatch(booking_id):
            raise InvalidArgument.one("booking_id", "is not a booking id issued by this service")

        async def free_in_redis(booking: Booking) -> None:
            await self._holds.cancel(booking.event_id, booking.seat_ids, booking.hold_id)

        booking, _ = await self._events.cancel_booking(
            booking_id, self._clock.now_ms(), free_in_redis
        )
        return booking

    async def repair(self, event_id: str, hold_id: str) -> bool:
        """Settle a confirming hold past its deadline; True when it was booked."""
        booking = await self._events.settle_unconfirmed(event_id, hold_id, self._clock.now_ms())
        if booking is not None and booking.status is BookingStatus.CONFIRMED:
            await self._holds.finalize(event_id, hold_id, booking.seat_ids)
            return True
        # Never booked, or booked and cancelled since (CancelBooking freed the
        # seats in SQL while they were pinned here): either way, free them.
        await self._holds.abort_confirm(event_id, hold_id)
        return False
