"""Request messages, built the same way for the async and the sync client."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import timedelta

from google.protobuf import duration_pb2

from seatinventory.v1 import inventory_admin_pb2 as admin_pb
from seatinventory.v1 import seat_inventory_pb2 as inv_pb
from seatinventory.v1 import types_pb2

__all__ = ["Ttl", "new_request_id"]

Ttl = float | timedelta  # seconds, or a timedelta


def new_request_id() -> str:
    """One idempotency key per logical call, reused by each of its retries."""
    return str(uuid.uuid4())


def _duration(ttl: Ttl) -> duration_pb2.Duration:
    seconds = ttl.total_seconds() if isinstance(ttl, timedelta) else float(ttl)
    duration = duration_pb2.Duration()
    duration.FromNanoseconds(round(seconds * 1e9))
    return duration


def reserve(
    event_id: str, seat_ids: Iterable[str], holder_id: str, ttl: Ttl | None, request_id: str | None
) -> inv_pb.ReserveRequest:
    return inv_pb.ReserveRequest(
        event_id=event_id,
        seat_ids=list(seat_ids),
        holder_id=holder_id,
        ttl=None if ttl is None else _duration(ttl),
        request_id=request_id or new_request_id(),
    )


def confirm(
    hold_id: str, holder_id: str, order_ref: str, request_id: str | None
) -> inv_pb.ConfirmRequest:
    return inv_pb.ConfirmRequest(
        hold_id=hold_id,
        holder_id=holder_id,
        order_ref=order_ref,
        request_id=request_id or new_request_id(),
    )


def release(hold_id: str, holder_id: str) -> inv_pb.ReleaseRequest:
    return inv_pb.ReleaseRequest(hold_id=hold_id, holder_id=holder_id)


def extend_hold(hold_id: str, holder_id: str, ttl: Ttl | None) -> inv_pb.ExtendHoldRequest:
    return inv_pb.ExtendHoldRequest(
        hold_id=hold_id, holder_id=holder_id, ttl=None if ttl is None else _duration(ttl)
    )


def get_availability(event_id: str) -> inv_pb.GetAvailabilityRequest:
    return inv_pb.GetAvailabilityRequest(event_id=event_id)


def create_event(
    event_id: str, name: str, seats: Iterable[types_pb2.SeatSpec]
) -> admin_pb.CreateEventRequest:
    return admin_pb.CreateEventRequest(event_id=event_id, name=name, seats=list(seats))


def get_event(event_id: str, include_seats: bool) -> admin_pb.GetEventRequest:
    return admin_pb.GetEventRequest(event_id=event_id, include_seats=include_seats)


def cancel_booking(booking_id: str) -> admin_pb.CancelBookingRequest:
    return admin_pb.CancelBookingRequest(booking_id=booking_id)
