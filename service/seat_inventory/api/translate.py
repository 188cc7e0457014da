"""Protobuf messages <-> domain values. Nothing else."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from google.protobuf import duration_pb2, timestamp_pb2
from seatinventory.v1 import types_pb2

from ..domain.model import (
    Availability,
    Booking,
    Event,
    EventCounts,
    Hold,
    SeatSpec,
    SeatStatus,
)
from ..domain.policy import Violations
from ..service_layer.ports import FeedEntry, LiveState
from .wire import field, varint

__all__ = [
    "ProtoUpdateEncoder",
    "availability_response",
    "availability_seats",
    "booking_to_proto",
    "event_to_proto",
    "hold_to_proto",
    "seat_spec_from_proto",
    "ttl_ms",
]

_MAX_DURATION_S = 315_576_000_000  # the protobuf Duration range


def timestamp(ms: int) -> timestamp_pb2.Timestamp:
    return timestamp_pb2.Timestamp(seconds=ms // 1000, nanos=(ms % 1000) * 1_000_000)


def ttl_ms(v: Violations, field: str, duration: duration_pb2.Duration, present: bool) -> int | None:
    """A Duration field as milliseconds; None when unset. Malformed → violation."""
    if not present:
        return None
    seconds, nanos = duration.seconds, duration.nanos
    if (
        not -_MAX_DURATION_S <= seconds <= _MAX_DURATION_S
        or not -999_999_999 <= nanos <= 999_999_999
    ):
        v.add(field, "is not a valid duration")
        return None
    if seconds < 0 or nanos < 0:
        v.add(field, "must not be negative")
        return None
    return seconds * 1000 + nanos // 1_000_000


def hold_to_proto(hold: Hold) -> types_pb2.Hold:
    return types_pb2.Hold(
        hold_id=hold.hold_id,
        event_id=hold.event_id,
        seat_ids=hold.seat_ids,
        holder_id=hold.holder_id,
        expires_at=timestamp(hold.expires_at_ms),
    )


def booking_to_proto(booking: Booking) -> types_pb2.Booking:
    message = types_pb2.Booking(
        booking_id=booking.booking_id,
        event_id=booking.event_id,
        hold_id=booking.hold_id,
        seat_ids=booking.seat_ids,
        holder_id=booking.holder_id,
        order_ref=booking.order_ref,
        confirmed_at=timestamp(booking.confirmed_at_ms),
        status=int(booking.status),  # type: ignore[arg-type]
    )
    if booking.cancelled_at_ms is not None:
        message.cancelled_at.CopyFrom(timestamp(booking.cancelled_at_ms))
    return message


def seat_spec_from_proto(seat: types_pb2.SeatSpec) -> SeatSpec:
    return SeatSpec(seat_id=seat.seat_id, section=seat.section, row=seat.row, number=seat.number)


def event_to_proto(event: Event, counts: EventCounts, *, include_seats: bool) -> types_pb2.Event:
    message = types_pb2.Event(
        event_id=event.event_id,
        name=event.name,
        seat_count=len(event.seats),
        available_count=counts.available,
        held_count=counts.held,
        booked_count=counts.booked,
        created_at=timestamp(event.created_at_ms),
    )
    if include_seats:
        message.seats.extend(
            types_pb2.SeatSpec(seat_id=s.seat_id, section=s.section, row=s.row, number=s.number)
            for s in event.seats
        )
    return message


def availability_seats(availability: Availability) -> list[types_pb2.SeatState]:
    return [
        types_pb2.SeatState(seat_id=seat_id, status=int(status))  # type: ignore[arg-type]
        for seat_id, status in availability.seats
    ]


def feed_cursor(epoch: str, entry_id: str) -> str:
    """Opaque to clients; service_layer.watch parses it back."""
    return f"{epoch}.{entry_id}"


def snapshot_update(availability: Availability) -> types_pb2.AvailabilityUpdate:
    """The stream's snapshot as a message (``SeatMaps.snapshot`` sends the same bytes)."""
    return types_pb2.AvailabilityUpdate(
        event_id=availability.event_id,
        cursor=availability.cursor,
        snapshot=types_pb2.AvailabilitySnapshot(seats=availability_seats(availability)),
    )


# Wire format (protobuf encoding) of the snapshot messages, written by hand so
# that a 50,000-seat picture costs one copy of cached bytes, not one message
# per seat: GetAvailabilityResponse = seats (1: repeated SeatState), cursor (2);
# AvailabilityUpdate = event_id (1), cursor (2), snapshot (3: AvailabilitySnapshot,
# whose seats are field 1 like GetAvailabilityResponse's); SeatState = seat_id
# (1), status (2: a one-byte varint, statuses being 1..3). tests/unit/
# test_snapshot_encoding.py checks the bytes against the protobuf runtime's.


_AVAILABLE = int(SeatStatus.AVAILABLE)
_HELD = int(SeatStatus.HELD)
_BOOKED = int(SeatStatus.BOOKED)


class _SeatMapBytes:
    """One seat map's repeated SeatState field with every seat AVAILABLE, and
    where each seat's status byte sits in it."""

    __slots__ = ("offsets", "seats", "template")

    def __init__(self, seats: tuple[SeatSpec, ...]) -> None:
        self.seats = seats
        parts: list[bytes] = []
        offsets: dict[str, int] = {}
        end = 0
        tail = bytes((0x10, _AVAILABLE))
        for seat in seats:
            seat_id = seat.seat_id.encode()
            size = len(seat_id)
            if size < 124:  # every valid seat id: both lengths take one byte
                entry = bytes((0x0A, size + 4, 0x0A, size)) + seat_id + tail
            else:
                entry = field(0x0A, field(0x0A, seat_id) + tail)
            parts.append(entry)
            end += len(entry)
            offsets[seat.seat_id] = end - 1  # the status is the entry's last byte
        self.template = b"".join(parts)
        self.offsets = offsets

    def render(self, live: LiveState) -> bytearray:
        """The seats field as ``live`` has them: one copy, then a byte per seat
        that is not available (booked wins, as in ``LiveState.status``)."""
        out = bytearray(self.template)
        offsets = self.offsets
        for status, seat_ids in ((_HELD, live.held), (_BOOKED, live.booked)):
            for seat_id in seat_ids:
                at = offsets.get(seat_id)
                if at is not None:  # a seat of the map, as every held or sold seat is
                    out[at] = status
        return out


class SeatMaps:
    """Snapshot bytes of events, from their seat maps encoded once per process
    (seat maps never change) and kept for the most recently used events."""

    def __init__(self, max_seats: int = 2_000_000) -> None:
        self._max_seats = max_seats
        self._maps: OrderedDict[str, _SeatMapBytes] = OrderedDict()
        self._seats = 0

    def _of(self, event: Event) -> _SeatMapBytes:
        found = self._maps.get(event.event_id)
        if found is not None and found.seats is event.seats:
            self._maps.move_to_end(event.event_id)
            return found
        if found is not None:  # another Event object (re-read): encode again
            self._seats -= len(self._maps.pop(event.event_id).seats)
        made = self._maps[event.event_id] = _SeatMapBytes(event.seats)
        self._seats += len(event.seats)
        while self._seats > self._max_seats and len(self._maps) > 1:
            _, dropped = self._maps.popitem(last=False)
            self._seats -= len(dropped.seats)
        return made

    def availability_response(self, event: Event, live: LiveState) -> bytes:
        """GetAvailabilityResponse, serialised: every seat in seat-map order."""
        return b"".join((self._of(event).render(live), field(0x12, live.cursor.encode())))

    def snapshot(self, event: Event, live: LiveState) -> bytes:
        """AvailabilityUpdate with the snapshot, serialised; same seats and cursor
        as ``availability_response``."""
        seats = self._of(event).render(live)
        return b"".join(
            (
                field(0x0A, event.event_id.encode()),
                field(0x12, live.cursor.encode()),
                b"\x1a",
                varint(len(seats)),
                seats,
            )
        )


_SEAT_MAPS = SeatMaps()


def availability_response(event: Event, live: LiveState) -> bytes:
    """GetAvailabilityResponse, serialised (the server sends these bytes as they are)."""
    return _SEAT_MAPS.availability_response(event, live)


def changes_update(
    event_id: str, epoch: str, entries: Sequence[FeedEntry]
) -> types_pb2.AvailabilityUpdate:
    changes = [
        types_pb2.SeatChange(
            seat_ids=entry.seat_ids,
            status=int(entry.status),  # type: ignore[arg-type]
            reason=int(entry.reason),  # type: ignore[arg-type]
            cursor=feed_cursor(epoch, entry.entry_id),
        )
        for entry in entries
    ]
    return types_pb2.AvailabilityUpdate(
        event_id=event_id,
        cursor=changes[-1].cursor,
        changes=types_pb2.ChangeBatch(changes=changes),
    )


class ProtoUpdateEncoder:
    """UpdateEncoder: AvailabilityUpdate messages, serialised for sending as they are."""

    def __init__(self, seat_maps: SeatMaps | None = None) -> None:
        self._seat_maps = seat_maps or _SEAT_MAPS

    def snapshot(self, event: Event, live: LiveState) -> bytes:
        return self._seat_maps.snapshot(event, live)

    def changes(self, event_id: str, epoch: str, entries: Sequence[FeedEntry]) -> bytes:
        return changes_update(event_id, epoch, entries).SerializeToString()
