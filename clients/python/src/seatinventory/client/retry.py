"""When a call is tried again: only after UNAVAILABLE (or CANCELLED sent by the
server), only for calls that are safe to repeat, with exponential backoff and
jitter, a bounded number of times and never past the call's overall deadline."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

import grpc

__all__ = ["DEFAULT_TIMEOUT", "RETRY_CODES", "RETRY_SAFE", "Deadline", "RetryPolicy"]

# Seconds a call may take, retries included, unless the client or the call says otherwise.
DEFAULT_TIMEOUT = 5.0

# Codes after which a safe call is tried again. A draining grpc.aio server
# answers CANCELLED to calls it had accepted but not yet started
# (grpc/grpc#41785): they never ran, and the server says so with CANCELLED,
# not UNAVAILABLE. (A call the caller cancels itself ends with
# asyncio.CancelledError, never reaches this policy.)
RETRY_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED})

# Every unary RPC of seatinventory.v1 may be sent again after those codes:
# Reserve and Confirm because the client gives each logical call one
# request_id, which the server deduplicates (the same answer, one hold, one
# booking); Release, ExtendHold and CancelBooking because repeating them
# changes nothing more; CreateEvent because the same payload returns the same
# event; the reads trivially. StreamAvailability is not retried but resumed
# from its last cursor (see ``watch_availability``).
RETRY_SAFE = frozenset(
    {
        "Reserve",
        "Confirm",
        "Release",
        "ExtendHold",
        "GetAvailability",
        "CreateEvent",
        "GetEvent",
        "CancelBooking",
    }
)


@dataclass(frozen=True, slots=True)
class Deadline:
    """An absolute point on the monotonic clock; ``None`` means no deadline."""

    at: float | None

    @classmethod
    def after(cls, seconds: float | None) -> Deadline:
        return cls(None if seconds is None else time.monotonic() + seconds)

    def remaining(self) -> float | None:
        return None if self.at is None else max(0.0, self.at - time.monotonic())


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Retry and reconnect settings; ``RetryPolicy(max_attempts=1)`` turns retries off.

    The n-th retry waits between half and all of
    ``min(max_backoff, initial_backoff * multiplier ** (n - 1))`` seconds
    (equal jitter: spread out, yet always growing).
    """

    # Tries of one unary call, the first included. The default waits, in all,
    # 1.25-2.5 s between tries: enough for a server restart or a replica's
    # failover, within the default 5 s deadline.
    max_attempts: int = 6
    initial_backoff: float = 0.1
    max_backoff: float = 1.0
    multiplier: float = 2.0
    # Reconnects of watch_availability in a row that deliver nothing before it
    # gives up and raises the last error.
    max_reconnects: int = 10

    def __post_init__(self) -> None:
        if self.max_attempts < 1 or self.max_reconnects < 0:
            raise ValueError("max_attempts must be >= 1 and max_reconnects >= 0")
        if not 0 < self.initial_backoff <= self.max_backoff or self.multiplier < 1:
            raise ValueError("need 0 < initial_backoff <= max_backoff and multiplier >= 1")

    def backoff(self, retry: int) -> float:
        """Seconds to wait before the ``retry``-th retry (1 = the first)."""
        ceiling = min(self.max_backoff, self.initial_backoff * self.multiplier ** (retry - 1))
        return ceiling / 2 + random.uniform(0, ceiling / 2)

    def delay(
        self, rpc: str, attempt: int, code: grpc.StatusCode, deadline: Deadline
    ) -> float | None:
        """Seconds to wait before trying ``rpc`` again after ``attempt`` failed with
        ``code``, or ``None`` when it must not be tried again."""
        if rpc not in RETRY_SAFE or code not in RETRY_CODES:
            return None
        if attempt >= self.max_attempts:
            return None
        return fits(self.backoff(attempt), deadline)


def fits(delay: float, deadline: Deadline) -> float | None:
    """``delay``, if waiting it still leaves time for another attempt."""
    remaining = deadline.remaining()
    if remaining is not None and delay >= remaining * 0.9:
        return None
    return delay
