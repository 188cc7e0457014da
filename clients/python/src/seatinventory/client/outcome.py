"""What a client reports after each logical call, for metrics and load tests."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from google.protobuf.message import Message

from .errors import SeatInventoryError

__all__ = ["CallObserver", "CallOutcome", "report"]


@dataclass(frozen=True, slots=True)
class CallOutcome:
    """One logical unary call, its retries included."""

    rpc: str  # the RPC's proto name, e.g. "Reserve"
    elapsed_s: float  # from the first attempt to the answer or the final error
    attempts: int
    response_bytes: int  # size of the response message; 0 on error
    error: SeatInventoryError | None


# Called once per logical call, on the caller's thread or event loop; it must
# be quick and must not raise.
CallObserver = Callable[[CallOutcome], None]


def report(
    observer: CallObserver | None,
    rpc: str,
    started: float,
    attempts: int,
    response: Message | None,
    error: SeatInventoryError | None,
) -> None:
    if observer is not None:
        size = 0 if response is None else response.ByteSize()
        observer(CallOutcome(rpc, time.monotonic() - started, attempts, size, error))
