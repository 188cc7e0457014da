"""The ports the service layer needs; adapters implement them, fakes too.

Adapters raise domain errors (``domain.errors``) for outcomes a caller must
hear about and ``BackendUnavailable`` when their backend cannot be reached.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from ..domain.model import (
    ANONYMOUS_PRINCIPAL,
    Booking,
    ChangeReason,
    Event,
    Hold,
    SeatStatus,
)

__all__ = [
    "EventNotLoaded",
    "EventRepository",
    "EventSnapshot",
    "ExpiryPass",
    "FeedEntry",
    "FeedPage",
    "FeedSource",
    "FeedWaiter",
    "HoldStore",
    "LiveState",
    "ReserveRequest",
    "UpdateEncoder",
]


class EventNotLoaded(Exception):
    """The hold store does not have this event (first use, or Redis lost it)."""

    def __init__(self, event_id: str) -> None:
        super().__init__(event_id)
        self.event_id = event_id


@dataclass(frozen=True, slots=True)
class EventSnapshot:
    """What the hold store must know of an event, read from SQL in one transaction."""

    event_id: str
    seat_ids: tuple[str, ...]
    booked_seat_ids: frozenset[str]


class ExpiryPass(NamedTuple):
    """What one ``expire_due`` call did."""

    expired: int  # holds expired (EXPIRED on the feed)
    next_deadline_ms: int | None  # the earliest deadline left, None when nothing is held
    confirming: list[str]  # confirming holds past their confirm deadline, for repair
    more: bool  # the call took as many holds as it may: more may be due at once


@dataclass(frozen=True, slots=True)
class ReserveRequest:
    event_id: str
    hold_id: str
    holder_id: str
    seat_ids: tuple[str, ...]
    ttl_ms: int
    max_lifetime_ms: int
    request_id: str  # "" when the caller sent none
    fingerprint: str  # identifies the payload a request_id was first used with
    # The authenticated caller; the hold is its holder_id's under it alone,
    # and a request_id is scoped to (principal, holder_id).
    principal: str = ANONYMOUS_PRINCIPAL
    # Seats this (principal, holder_id) may hold of the event at once, this
    # request's included; 0 means no limit.
    max_held_seats: int = 0


@dataclass(frozen=True, slots=True)
class LiveState:
    """The non-available seats of an event and the feed cursor, read atomically."""

    held: frozenset[str]
    booked: frozenset[str]
    cursor: str

    def status(self, seat_id: str) -> SeatStatus:
        if seat_id in self.booked:
            return SeatStatus.BOOKED
        if seat_id in self.held:
            return SeatStatus.HELD
        return SeatStatus.AVAILABLE


_STATUS_AFTER = {
    ChangeReason.HELD: SeatStatus.HELD,
    ChangeReason.RELEASED: SeatStatus.AVAILABLE,
    ChangeReason.EXPIRED: SeatStatus.AVAILABLE,
    ChangeReason.CANCELLED: SeatStatus.AVAILABLE,
    ChangeReason.BOOKED: SeatStatus.BOOKED,
}


@dataclass(frozen=True, slots=True)
class FeedEntry:
    """One change on an event's feed; ``entry_id`` is its stream id ("ms-seq")."""

    entry_id: str
    reason: ChangeReason
    seat_ids: tuple[str, ...]

    @property
    def status(self) -> SeatStatus:
        return _STATUS_AFTER[self.reason]


@dataclass(frozen=True, slots=True)
class FeedPage:
    """Entries after a position, read atomically with the feed's epoch.

    ``continuous`` is False when the position is no longer on the feed (trimmed,
    never issued, or of an older epoch's feed): what follows it is unknowable.
    ``tail`` is the id of the feed's newest entry ("0-0" when it is empty)."""

    epoch: str
    continuous: bool
    tail: str
    entries: tuple[FeedEntry, ...] = ()


class FeedWaiter(Protocol):
    """Blocks until an event's feed grows; one per reader, on its own connection."""

    async def wait(self, after: str, timeout_s: float) -> bool:
        """True when an entry after ``after`` exists, False on timeout.
        Raises BackendUnavailable."""
        ...

    async def interrupt(self) -> None:
        """Make a wait in progress (in another task) return or raise now."""
        ...

    async def close(self) -> None:
        """Release the connection; only once no wait is in progress."""
        ...


class FeedSource(Protocol):
    """The per-event change feed that every mutation appends to."""

    async def read(self, event_id: str, after: str | None, count: int) -> FeedPage:
        """Up to ``count`` entries after ``after``; None reads only epoch and tail.
        Raises BackendUnavailable."""
        ...

    def waiter(self, event_id: str) -> FeedWaiter: ...


class UpdateEncoder(Protocol):
    """Builds wire messages of the availability stream, so that the fan-out can
    serialise a tick's changes once for every subscriber."""

    def snapshot(self, event: Event, live: LiveState) -> bytes:
        """The snapshot message: every seat of ``event`` in seat-map order."""
        ...

    def changes(self, event_id: str, epoch: str, entries: Sequence[FeedEntry]) -> bytes: ...


class HoldStore(Protocol):
    """Live holds of every event (Redis in production, fakeredis embedded)."""

    async def load_event(self, snapshot: EventSnapshot) -> None:
        """Load an event's seats and sold seats, unless it is already loaded."""
        ...

    async def reserve(self, request: ReserveRequest) -> Hold:
        """All-or-nothing hold. Raises EventNotLoaded, SeatNotFound,
        SeatsUnavailable, HoldLimitExceeded, InvalidArgument (request_id reused
        with another payload)."""
        ...

    async def release(
        self, event_id: str, hold_id: str, holder_id: str, principal: str = ANONYMOUS_PRINCIPAL
    ) -> bool:
        """True when released now, False when it had been released before.
        Raises EventNotLoaded, HoldNotFound, HoldNotOwned (another holder or
        principal), HoldConfirming."""
        ...

    async def extend(
        self,
        event_id: str,
        hold_id: str,
        holder_id: str,
        ttl_ms: int,
        principal: str = ANONYMOUS_PRINCIPAL,
    ) -> Hold:
        """New expiry = min(now + ttl, the hold's lifetime cap).
        Raises EventNotLoaded, HoldNotFound, HoldNotOwned, HoldConfirming."""
        ...

    async def live_state(self, event_id: str) -> LiveState:
        """Raises EventNotLoaded."""
        ...

    async def expire_due(self, event_id: str) -> ExpiryPass:
        """Expire a bounded batch of the holds of one event whose time is up and
        record EXPIRED on the feed; ``more`` asks the caller to call again.
        Raises EventNotLoaded."""
        ...

    async def claim(
        self, event_id: str, hold_id: str, holder_id: str, principal: str = ANONYMOUS_PRINCIPAL
    ) -> tuple[str, ...]:
        """Confirm step 1: pin a live, owned hold (idempotent); returns its seats.
        Raises EventNotLoaded, HoldNotFound, HoldNotOwned."""
        ...

    async def finalize(self, event_id: str, hold_id: str, seat_ids: Sequence[str]) -> None:
        """Confirm step 3: mirror a committed booking (idempotent)."""
        ...

    async def abort_confirm(
        self, event_id: str, hold_id: str, sold_elsewhere: Sequence[str] = ()
    ) -> None:
        """Drop a claimed hold SQL did not book; seats sold elsewhere go to sold."""
        ...

    async def cancel(self, event_id: str, seat_ids: Sequence[str], hold_id: str = "") -> None:
        """A cancelled booking's seats leave sold (idempotent); its hold
        ``hold_id``, if still confirming (a finalize not done yet), is given up,
        so a late finalize cannot put the seats back into sold."""
        ...

    async def ping(self) -> None:
        """Raises BackendUnavailable when the store cannot be reached."""
        ...


class EventRepository(Protocol):
    """Events, seat maps and bookings: the system of record (SQL)."""

    async def create_event(self, event: Event) -> tuple[Event, bool]:
        """Insert the event and its seats in one transaction.

        Returns (the stored event, True) when created, (the existing event,
        False) when an identical event (same name and seat map) already exists.
        Raises EventExists when the id is taken by a different event."""
        ...

    async def get_event(self, event_id: str) -> Event | None:
        """The event with its seat map in creation order."""
        ...

    async def snapshot(
        self,
        event_id: str,
        apply: Callable[[EventSnapshot], Awaitable[None]] | None = None,
    ) -> EventSnapshot | None:
        """Seat ids (creation order) and actively booked seat ids, read in one
        transaction; None when the event does not exist.

        With ``apply`` (loading Redis), the read and ``apply`` run while the
        event's booking writers are fenced out, so no booking committed during
        the load can be missing from what Redis gets."""
        ...

    async def event_ids(self) -> list[str]: ...

    async def commit_booking(
        self, event_id: str, hold_id: str, claim: Callable[[], Awaitable[Booking]]
    ) -> tuple[Booking, bool]:
        """Confirm step 2. Inside one transaction that holds the event's
        booking fence: ``claim()`` (Confirm step 1, in Redis) returns the
        booking to write; it and its booked seats are inserted.

        Returns (booking, True) when inserted, (the existing booking, False)
        when the hold was confirmed before. Raises what ``claim`` raises (and
        writes nothing), HoldNotFound when repair gave the hold up, and
        SeatsUnavailable when another active booking owns one of the seats."""
        ...

    async def settle_unconfirmed(self, event_id: str, hold_id: str, now_ms: int) -> Booking | None:
        """Repair's decision for a confirming hold past its deadline: its
        booking when one was committed; otherwise None, after recording that
        the hold is given up so that a late commit of it fails."""
        ...

    async def booking_by_hold(self, hold_id: str) -> Booking | None: ...

    async def get_booking(self, booking_id: str) -> Booking | None: ...

    async def cancel_booking(
        self,
        booking_id: str,
        now_ms: int,
        apply: Callable[[Booking], Awaitable[None]],
    ) -> tuple[Booking, bool]:
        """Mark the booking cancelled and free its seats in SQL, then run
        ``apply`` (freeing them in Redis) while the booking fence is held, also
        when it was cancelled before (so a retry heals a failed ``apply``).

        Returns (booking, True) when cancelled now, (booking, False) when it
        was already cancelled. Raises BookingNotFound."""
        ...

    async def ping(self) -> None:
        """Raises BackendUnavailable when the database cannot be reached."""
        ...


def unique(seq: Sequence[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(seq))
