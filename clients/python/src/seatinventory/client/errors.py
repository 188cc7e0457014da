"""Typed errors: one root, one class per gRPC code, one subclass per AIP-193 reason.

Each class names the gRPC ``CODE`` and the AIP-193 ``REASON`` it stands for;
``error_from_rpc`` (``_status.py``) picks the class for a failed call.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

import grpc

__all__ = [
    "AlreadyExists",
    "BackendUnavailable",
    "BookingNotFound",
    "DeadlineExceeded",
    "EventExists",
    "EventNotFound",
    "FailedPrecondition",
    "FieldViolation",
    "HoldConfirming",
    "HoldLimit",
    "HoldNotFound",
    "HoldNotOwned",
    "InvalidRequest",
    "NotFound",
    "PermissionDenied",
    "RateLimited",
    "ResourceExhausted",
    "SeatInventoryError",
    "SeatNotFound",
    "SeatsUnavailable",
    "StreamLimit",
    "Unauthenticated",
    "Unavailable",
]


@dataclass(frozen=True, slots=True)
class FieldViolation:
    """One bad field of a request, from ``google.rpc.BadRequest``."""

    field: str
    description: str


class SeatInventoryError(Exception):
    """Root of every error the client raises; ``code``, ``reason``, ``metadata`` as sent."""

    CODE: ClassVar[grpc.StatusCode | None] = None  # the code this class stands for
    REASON: ClassVar[str | None] = None  # the ErrorInfo reason this class stands for

    def __init__(
        self,
        message: str,
        *,
        code: grpc.StatusCode = grpc.StatusCode.UNKNOWN,
        reason: str = "",
        metadata: Mapping[str, str] | None = None,
        violations: tuple[FieldViolation, ...] = (),
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.reason = reason or code.name
        self.metadata: Mapping[str, str] = dict(metadata or {})
        self.violations = violations

    def __str__(self) -> str:
        label = (
            self.code.name if self.reason == self.code.name else f"{self.code.name} {self.reason}"
        )
        return f"{label}: {self.message}"

    def __repr__(self) -> str:  # what logs and Locust's failure table show
        return f"{type(self).__name__}({str(self)!r})"

    @property
    def seat_ids(self) -> tuple[str, ...]:
        """The seats the error names (metadata ``seat_ids``), if any."""
        return tuple(s for s in self.metadata.get("seat_ids", "").split(",") if s)


class InvalidRequest(SeatInventoryError):
    """INVALID_ARGUMENT; ``violations`` lists each bad field."""

    CODE, REASON = grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT"


class NotFound(SeatInventoryError):
    CODE = grpc.StatusCode.NOT_FOUND


class EventNotFound(NotFound):
    REASON = "EVENT_NOT_FOUND"


class SeatNotFound(NotFound):
    """``seat_ids`` names the seats the event does not have."""

    REASON = "SEAT_NOT_FOUND"


class HoldNotFound(NotFound):
    """The hold never existed, lapsed, was released or was confirmed."""

    REASON = "HOLD_NOT_FOUND"


class BookingNotFound(NotFound):
    REASON = "BOOKING_NOT_FOUND"


class FailedPrecondition(SeatInventoryError):
    CODE = grpc.StatusCode.FAILED_PRECONDITION


class SeatsUnavailable(FailedPrecondition):
    """Reserve lost: ``seat_ids`` names the seats that are held or booked."""

    REASON = "SEATS_UNAVAILABLE"


class HoldConfirming(FailedPrecondition):
    REASON = "HOLD_CONFIRMING"


class PermissionDenied(SeatInventoryError):
    CODE = grpc.StatusCode.PERMISSION_DENIED


class HoldNotOwned(PermissionDenied):
    REASON = "HOLD_NOT_OWNED"


class AlreadyExists(SeatInventoryError):
    CODE = grpc.StatusCode.ALREADY_EXISTS


class EventExists(AlreadyExists):
    REASON = "EVENT_EXISTS"


class ResourceExhausted(SeatInventoryError):
    CODE = grpc.StatusCode.RESOURCE_EXHAUSTED


class HoldLimit(ResourceExhausted):
    REASON = "HOLD_LIMIT"


class RateLimited(ResourceExhausted):
    """Too many requests per second from this principal: not retried by the
    client; metadata ``retry_after_ms`` says when a token is there again."""

    REASON = "RATE_LIMITED"


class StreamLimit(ResourceExhausted):
    """This principal already has as many streams open as the server allows."""

    REASON = "STREAM_LIMIT"


class Unauthenticated(SeatInventoryError):
    CODE, REASON = grpc.StatusCode.UNAUTHENTICATED, "UNAUTHENTICATED"


class Unavailable(SeatInventoryError):
    """UNAVAILABLE: the server or the way to it is down; safe calls were retried."""

    CODE = grpc.StatusCode.UNAVAILABLE


class BackendUnavailable(Unavailable):
    """The server is up but its Redis or database is not (metadata ``backend``)."""

    REASON = "BACKEND_UNAVAILABLE"


class DeadlineExceeded(SeatInventoryError):
    CODE = grpc.StatusCode.DEADLINE_EXCEEDED
