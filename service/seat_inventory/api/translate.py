"""Protobuf messages <-> domain values. Nothing else."""

from __future__ import annotations

from collections.abc import Sequence

from google.protobuf import duration_pb2, timestamp_pb2
from seatinventory.v1 import types_pb2

from ..domain.model import Availability, Booking, Event, EventCounts, Hold, SeatSpec
from ..domain.policy import Violations
from ..service_layer.ports import FeedEntry

__all__ = [
    "ProtoUpdateEncoder",
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
    """The stream's snapshot: the same seats, order and cursor as GetAvailability."""
    return types_pb2.AvailabilityUpdate(
        event_id=availability.event_id,
        cursor=availability.cursor,
        snapshot=types_pb2.AvailabilitySnapshot(seats=availability_seats(availability)),
    )


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

    def snapshot(self, availability: Availability) -> bytes:
        return snapshot_update(availability).SerializeToString()

    def changes(self, event_id: str, epoch: str, entries: Sequence[FeedEntry]) -> bytes:
        return changes_update(event_id, epoch, entries).SerializeToString()
