"""Typed clients for the seatinventory.v1 API, written by hand beside the
generated ``seatinventory.v1`` stubs.

``AsyncSeatInventoryClient`` (grpc.aio) and its blocking twin
``SeatInventoryClient`` expose every RPC of SeatInventory and InventoryAdmin,
with a deadline on every call, request ids and retries on UNAVAILABLE for the
calls that are safe to repeat, typed errors under ``SeatInventoryError``, and
an availability watch that resumes from its cursor after a dropped stream.
The Locust user lives in ``seatinventory.client.locust`` (extra ``[locust]``).
"""

from seatinventory.v1.seat_inventory_pb2 import GetAvailabilityResponse
from seatinventory.v1.types_pb2 import (
    AvailabilityUpdate,
    Booking,
    BookingStatus,
    ChangeReason,
    Event,
    Hold,
    SeatSpec,
    SeatState,
    SeatStatus,
)

from ._status import error_from_rpc
from .aio import AsyncSeatInventoryClient
from .channel import Tls
from .errors import (
    AlreadyExists,
    BackendUnavailable,
    BookingNotFound,
    DeadlineExceeded,
    EventExists,
    EventNotFound,
    FailedPrecondition,
    FieldViolation,
    HoldConfirming,
    HoldLimit,
    HoldNotFound,
    HoldNotOwned,
    InvalidRequest,
    NotFound,
    PermissionDenied,
    RateLimited,
    ResourceExhausted,
    SeatInventoryError,
    SeatNotFound,
    SeatsUnavailable,
    StreamLimit,
    Unauthenticated,
    Unavailable,
)
from .outcome import CallObserver, CallOutcome
from .retry import DEFAULT_TIMEOUT, RETRY_SAFE, RetryPolicy
from .sync import SeatInventoryClient
from .view import AvailabilityView

__all__ = [
    "DEFAULT_TIMEOUT",
    "RETRY_SAFE",
    "AlreadyExists",
    "AsyncSeatInventoryClient",
    "AvailabilityUpdate",
    "AvailabilityView",
    "BackendUnavailable",
    "Booking",
    "BookingNotFound",
    "BookingStatus",
    "CallObserver",
    "CallOutcome",
    "ChangeReason",
    "DeadlineExceeded",
    "Event",
    "EventExists",
    "EventNotFound",
    "FailedPrecondition",
    "FieldViolation",
    "GetAvailabilityResponse",
    "Hold",
    "HoldConfirming",
    "HoldLimit",
    "HoldNotFound",
    "HoldNotOwned",
    "InvalidRequest",
    "NotFound",
    "PermissionDenied",
    "RateLimited",
    "ResourceExhausted",
    "RetryPolicy",
    "SeatInventoryClient",
    "SeatInventoryError",
    "SeatNotFound",
    "SeatSpec",
    "SeatState",
    "SeatStatus",
    "SeatsUnavailable",
    "StreamLimit",
    "Tls",
    "Unauthenticated",
    "Unavailable",
    "error_from_rpc",
]
