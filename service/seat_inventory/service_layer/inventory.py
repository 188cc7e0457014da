"""The SeatInventory use cases: reserve, release, extend, availability."""

from __future__ import annotations

from collections.abc import Sequence

from ..domain.errors import EventNotFound, HoldNotFound, InvalidArgument, SeatsUnavailable
from ..domain.ids import event_of_hold, new_hold_id
from ..domain.model import (
    ANONYMOUS_PRINCIPAL,
    Availability,
    Event,
    EventCounts,
    Hold,
    SeatStatus,
)
from ..domain.policy import (
    Limits,
    Violations,
    check_event_id,
    check_holder_id,
    check_request_id,
    reserve_fingerprint,
)
from .catalog import EventCatalog
from .ports import HoldStore, LiveState, ReserveRequest
from .shared_reads import SharedReads
from .telemetry import NO_TELEMETRY, Telemetry

__all__ = ["InventoryService", "hold_event"]


def hold_event(hold_id: str) -> str:
    """The event of a hold id, or INVALID_ARGUMENT when it is not one of ours."""
    event_id = event_of_hold(hold_id)
    if event_id is None:
        raise InvalidArgument.one("hold_id", "is not a hold id issued by this service")
    return event_id


class InventoryService:
    def __init__(
        self,
        holds: HoldStore,
        catalog: EventCatalog,
        limits: Limits,
        telemetry: Telemetry = NO_TELEMETRY,
    ) -> None:
        self._holds = holds
        self._catalog = catalog
        self._limits = limits
        self._telemetry = telemetry
        # Snapshots of one event asked for together share their Redis calls.
        self.live_reads: SharedReads[str, LiveState] = SharedReads(self._read_live)

    async def _read_live(self, event_id: str) -> LiveState:
        return await self._catalog.loaded(event_id, lambda: self._holds.live_state(event_id))

    async def reserve(
        self,
        event_id: str,
        seat_ids: Sequence[str],
        holder_id: str,
        ttl_ms: int | None,
        request_id: str = "",
        principal: str = ANONYMOUS_PRINCIPAL,
    ) -> Hold:
        v = Violations()
        check_event_id(v, event_id)
        v.seat_list("seat_ids", seat_ids, self._limits.max_seats_per_hold)
        check_holder_id(v, holder_id)
        v.ttl("ttl", ttl_ms, self._limits)
        check_request_id(v, request_id)
        v.raise_if_any()
        ttl = self._limits.default_ttl_ms if ttl_ms is None else ttl_ms
        seats = tuple(seat_ids)
        request = ReserveRequest(
            event_id=event_id,
            hold_id=new_hold_id(event_id),
            holder_id=holder_id,
            seat_ids=seats,
            ttl_ms=ttl,
            max_lifetime_ms=self._limits.max_hold_lifetime_ms,
            request_id=request_id,
            # Only a request_id needs it (the store ignores it otherwise).
            fingerprint=reserve_fingerprint(seats, ttl) if request_id else "",
            principal=principal,
            max_held_seats=self._limits.max_seats_per_holder,
        )
        try:
            return await self._catalog.loaded(event_id, lambda: self._holds.reserve(request))
        except SeatsUnavailable:
            self._telemetry.seats_conflicted()
            raise

    def _hold_call_checks(self, hold_id: str, holder_id: str) -> str:
        v = Violations()
        if not hold_id:
            v.add("hold_id", "must not be empty")
        check_holder_id(v, holder_id)
        v.raise_if_any()
        return hold_event(hold_id)

    async def release(
        self, hold_id: str, holder_id: str, principal: str = ANONYMOUS_PRINCIPAL
    ) -> bool:
        event_id = self._hold_call_checks(hold_id, holder_id)
        try:
            return await self._catalog.loaded(
                event_id, lambda: self._holds.release(event_id, hold_id, holder_id, principal)
            )
        except EventNotFound as exc:
            raise HoldNotFound(hold_id) from exc

    async def extend(
        self,
        hold_id: str,
        holder_id: str,
        ttl_ms: int | None,
        principal: str = ANONYMOUS_PRINCIPAL,
    ) -> Hold:
        event_id = self._hold_call_checks(hold_id, holder_id)
        v = Violations()
        v.ttl("ttl", ttl_ms, self._limits)
        v.raise_if_any()
        ttl = self._limits.default_ttl_ms if ttl_ms is None else ttl_ms
        try:
            return await self._catalog.loaded(
                event_id, lambda: self._holds.extend(event_id, hold_id, holder_id, ttl, principal)
            )
        except EventNotFound as exc:
            raise HoldNotFound(hold_id) from exc

    async def live_view(self, event_id: str) -> tuple[Event, LiveState]:
        """The event's seat map and its live state: what a snapshot is made of,
        without a per-seat step (the encoder renders big seat maps from cache)."""
        v = Violations()
        check_event_id(v, event_id)
        v.raise_if_any()
        event = await self._catalog.get(event_id)
        live = await self.live_reads.get(event_id)
        return event, live

    async def availability(self, event_id: str) -> Availability:
        event, live = await self.live_view(event_id)
        seats = tuple((seat_id, live.status(seat_id)) for seat_id in event.seat_ids)
        held = sum(1 for _, status in seats if status is SeatStatus.HELD)
        booked = sum(1 for _, status in seats if status is SeatStatus.BOOKED)
        counts = EventCounts(available=len(seats) - held - booked, held=held, booked=booked)
        return Availability(event_id=event_id, seats=seats, cursor=live.cursor, counts=counts)
