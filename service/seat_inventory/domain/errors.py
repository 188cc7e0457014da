"""One error root for everything a caller can be told.

Each subclass declares the status code and the AIP-193 reason it travels
with; ``api/errors.py`` is the one place that turns them into gRPC statuses.
The domain names codes with its own enum so it never imports grpc.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

__all__ = [
    "BackendUnavailable",
    "BookingNotFound",
    "ErrorCode",
    "EventExists",
    "EventNotFound",
    "FieldViolation",
    "HoldConfirming",
    "HoldLimitExceeded",
    "HoldNotFound",
    "HoldNotOwned",
    "InvalidArgument",
    "InventoryError",
    "RateLimited",
    "RoleRequired",
    "SeatNotFound",
    "SeatsUnavailable",
    "ServerDraining",
    "StreamLimitExceeded",
    "Unauthenticated",
]


class ErrorCode(enum.Enum):
    """The gRPC status codes the service answers with, by their gRPC names."""

    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    NOT_FOUND = "NOT_FOUND"
    ALREADY_EXISTS = "ALREADY_EXISTS"
    FAILED_PRECONDITION = "FAILED_PRECONDITION"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    RESOURCE_EXHAUSTED = "RESOURCE_EXHAUSTED"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    UNAVAILABLE = "UNAVAILABLE"
    DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"
    INTERNAL = "INTERNAL"


@dataclass(frozen=True, slots=True)
class FieldViolation:
    """One bad field of a request (google.rpc.BadRequest.FieldViolation)."""

    field: str
    description: str


class InventoryError(Exception):
    """Root of every error the service reports to a caller."""

    code: ErrorCode = ErrorCode.INTERNAL
    reason: str = "INTERNAL"

    def __init__(self, message: str, *, metadata: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.metadata: dict[str, str] = dict(metadata or {})


class InvalidArgument(InventoryError):
    code = ErrorCode.INVALID_ARGUMENT
    reason = "INVALID_ARGUMENT"

    def __init__(self, violations: Iterable[FieldViolation]) -> None:
        self.violations = tuple(violations)
        summary = "; ".join(f"{v.field}: {v.description}" for v in self.violations)
        super().__init__(
            f"invalid request: {summary}",
            metadata={"fields": ",".join(dict.fromkeys(v.field for v in self.violations))},
        )

    @classmethod
    def one(cls, field: str, description: str) -> InvalidArgument:
        return cls([FieldViolation(field, description)])


# An error travels in the response's trailers, and a gRPC client refuses
# trailers over 8 KB at random and over 16 KB always (RESOURCE_EXHAUSTED, no
# ErrorInfo): 50 seat ids of 64 characters, listed in the message, its copy in
# the status details and the ErrorInfo, came back RESOURCE_EXHAUSTED to 3 calls
# in 10. So the seats are listed once in full (ErrorInfo ``seat_ids``) up to
# this many bytes, cut at a seat beyond it (``seat_ids_omitted`` counts the
# rest), and in the message only when the list is short.
MAX_LISTED_SEAT_BYTES = 4000
MAX_SEATS_IN_MESSAGE = 120  # characters of seat ids a message lists


def _listed_seats(seat_ids: tuple[str, ...]) -> tuple[str, dict[str, str]]:
    """The seats for a message (the list when short, else a count) and for the
    ErrorInfo metadata (``seat_ids``, and ``seat_ids_omitted`` when cut)."""
    listed: list[str] = []
    size = -1  # no comma before the first
    for seat in seat_ids:
        size += len(seat.encode()) + 1
        if size > MAX_LISTED_SEAT_BYTES:
            break
        listed.append(seat)
    csv = ",".join(listed)
    metadata = {"seat_ids": csv}
    if len(listed) < len(seat_ids):
        metadata["seat_ids_omitted"] = str(len(seat_ids) - len(listed))
    if len(listed) == len(seat_ids) and len(csv) <= MAX_SEATS_IN_MESSAGE:
        return f"seat(s) {csv}", metadata
    return f"{len(seat_ids)} seats (see the error's seat_ids)", metadata


class EventNotFound(InventoryError):
    code = ErrorCode.NOT_FOUND
    reason = "EVENT_NOT_FOUND"

    def __init__(self, event_id: str) -> None:
        super().__init__(f"event {event_id!r} does not exist", metadata={"event_id": event_id})


class SeatNotFound(InventoryError):
    code = ErrorCode.NOT_FOUND
    reason = "SEAT_NOT_FOUND"

    def __init__(self, event_id: str, seat_ids: Iterable[str]) -> None:
        self.seat_ids = tuple(seat_ids)
        seats, metadata = _listed_seats(self.seat_ids)
        super().__init__(
            f"event {event_id!r} does not have {seats}",
            metadata={"event_id": event_id, **metadata},
        )


class HoldNotFound(InventoryError):
    code = ErrorCode.NOT_FOUND
    reason = "HOLD_NOT_FOUND"

    def __init__(self, hold_id: str) -> None:
        super().__init__(
            "hold not found: it never existed, lapsed, was released or was confirmed",
            metadata={"hold_id": hold_id},
        )


class BookingNotFound(InventoryError):
    code = ErrorCode.NOT_FOUND
    reason = "BOOKING_NOT_FOUND"

    def __init__(self, booking_id: str) -> None:
        super().__init__(
            f"booking {booking_id!r} does not exist", metadata={"booking_id": booking_id}
        )


class SeatsUnavailable(InventoryError):
    code = ErrorCode.FAILED_PRECONDITION
    reason = "SEATS_UNAVAILABLE"

    def __init__(self, event_id: str, seat_ids: Iterable[str]) -> None:
        self.seat_ids = tuple(seat_ids)
        seats, metadata = _listed_seats(self.seat_ids)
        super().__init__(
            f"{seats} of event {event_id!r} are held or booked",
            metadata={"event_id": event_id, **metadata},
        )


class HoldConfirming(InventoryError):
    """Release of a hold whose Confirm is in flight; the booking decides its fate."""

    code = ErrorCode.FAILED_PRECONDITION
    reason = "HOLD_CONFIRMING"

    def __init__(self, hold_id: str) -> None:
        super().__init__(
            "the hold is being confirmed and can no longer be released or extended",
            metadata={"hold_id": hold_id},
        )


class HoldNotOwned(InventoryError):
    code = ErrorCode.PERMISSION_DENIED
    reason = "HOLD_NOT_OWNED"

    def __init__(self, hold_id: str) -> None:
        super().__init__("the hold belongs to another holder", metadata={"hold_id": hold_id})


class EventExists(InventoryError):
    code = ErrorCode.ALREADY_EXISTS
    reason = "EVENT_EXISTS"

    def __init__(self, event_id: str) -> None:
        super().__init__(
            f"event {event_id!r} already exists with a different name or seat map",
            metadata={"event_id": event_id},
        )


class HoldLimitExceeded(InventoryError):
    """A holder would hold more seats of one event at once than the limit allows."""

    code = ErrorCode.RESOURCE_EXHAUSTED
    reason = "HOLD_LIMIT"

    def __init__(self, event_id: str, *, limit: int, held: int, asked: int) -> None:
        super().__init__(
            f"this holder already holds {held} seat(s) of event {event_id!r}; {asked} more "
            f"would exceed the limit of {limit} held at once (confirm or release some first)",
            metadata={"event_id": event_id, "limit": str(limit), "held": str(held)},
        )


class RateLimited(InventoryError):
    code = ErrorCode.RESOURCE_EXHAUSTED
    reason = "RATE_LIMITED"


class StreamLimitExceeded(InventoryError):
    code = ErrorCode.RESOURCE_EXHAUSTED
    reason = "STREAM_LIMIT"

    def __init__(self, principal: str, limit: int) -> None:
        super().__init__(
            f"{principal!r} already has {limit} open stream(s), the most allowed: close one first",
            metadata={"limit": str(limit)},
        )


class Unauthenticated(InventoryError):
    code = ErrorCode.UNAUTHENTICATED
    reason = "UNAUTHENTICATED"


class RoleRequired(InventoryError):
    """An authenticated caller lacks the role a service needs."""

    code = ErrorCode.PERMISSION_DENIED
    reason = "ROLE_REQUIRED"

    def __init__(self, principal: str, role: str, service: str) -> None:
        super().__init__(
            f"principal {principal!r} lacks the {role!r} role that {service} requires",
            metadata={"principal": principal, "role": role},
        )


class BackendUnavailable(InventoryError):
    code = ErrorCode.UNAVAILABLE
    reason = "BACKEND_UNAVAILABLE"

    def __init__(self, backend: str, detail: str = "") -> None:
        message = f"{backend} is unavailable" + (f": {detail}" if detail else "")
        super().__init__(message, metadata={"backend": backend})


class DeadlineExceeded(InventoryError):
    """The caller's deadline leaves the backends no time at all: answered at once,
    without a backend call, and not counted as a backend failure."""

    code = ErrorCode.DEADLINE_EXCEEDED
    reason = "DEADLINE_EXCEEDED"

    def __init__(self) -> None:
        super().__init__("the call's deadline leaves no time to ask the backends")


class ServerDraining(InventoryError):
    """A stream ended because the server is shutting down; resume elsewhere."""

    code = ErrorCode.UNAVAILABLE
    reason = "SERVER_DRAINING"

    def __init__(self) -> None:
        super().__init__(
            "the server is shutting down: reconnect and pass the last cursor you received "
            "as resume_cursor to continue without a gap"
        )
