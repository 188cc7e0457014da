"""Where a watch stands, and whether and when it reconnects after the stream
dropped: the state both clients' ``watch_availability`` loops keep."""

from __future__ import annotations

import time

import grpc

from seatinventory.v1 import seat_inventory_pb2 as inv_pb
from seatinventory.v1 import types_pb2

from .errors import SeatInventoryError, Unavailable
from .retry import Deadline, RetryPolicy, fits

__all__ = ["Resume"]

# A drop is worth a reconnect when the stream, not the request, failed:
# UNAVAILABLE (server draining or restarting, connection refused or reset) and
# CANCELLED (the server cut the stream off; the caller's own cancellation never
# reaches here, its iteration stops first).
_RESUMABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED})
# A stream that stayed up this long counts as a success, even if it carried no
# update (a resumed stream is silent until the next change).
_STABLE_S = 5.0


class Resume:
    def __init__(self, event_id: str, cursor: str, policy: RetryPolicy, deadline: Deadline) -> None:
        self.event_id = event_id
        self.cursor = cursor  # the position after the last update handed to the caller
        self.policy = policy
        self.deadline = deadline
        self.failures = 0
        self._opened_at = 0.0

    def request(self) -> inv_pb.StreamAvailabilityRequest:
        """The request of the next attempt: from the last cursor, or a snapshot."""
        self._opened_at = time.monotonic()
        return inv_pb.StreamAvailabilityRequest(event_id=self.event_id, resume_cursor=self.cursor)

    def delivered(self, update: types_pb2.AvailabilityUpdate) -> None:
        self.cursor = update.cursor
        self.failures = 0

    def after_drop(self, error: SeatInventoryError | None) -> float:
        """Seconds to wait before reconnecting, or raises when the watch must end.

        ``error`` None means the server ended the stream normally, which it
        does not do by contract; it is treated like a drop."""
        if error is None:
            error = Unavailable("the server ended the stream", code=grpc.StatusCode.UNAVAILABLE)
        if error.code not in _RESUMABLE:
            raise error
        if time.monotonic() - self._opened_at >= _STABLE_S:
            self.failures = 0
        self.failures += 1
        if self.failures > self.policy.max_reconnects:
            raise error
        delay = fits(self.policy.backoff(self.failures), self.deadline)
        if delay is None:
            raise error
        return delay
