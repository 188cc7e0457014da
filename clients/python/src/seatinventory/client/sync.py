"""``SeatInventoryClient``: the blocking twin of ``AsyncSeatInventoryClient``,
on plain grpc, with the same methods, retries, deadlines and errors."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from types import TracebackType
from typing import Any, Self, TypeVar

import grpc
from google.protobuf.message import Message

from seatinventory.v1 import inventory_admin_pb2_grpc, seat_inventory_pb2_grpc, types_pb2
from seatinventory.v1.seat_inventory_pb2 import GetAvailabilityResponse

from . import _requests as req
from ._resume import Resume
from ._status import error_from_rpc
from .channel import Tls, auth_metadata, open_channel
from .errors import SeatInventoryError
from .outcome import CallObserver, report
from .retry import DEFAULT_TIMEOUT, Deadline, RetryPolicy

__all__ = ["SeatInventoryClient"]

Req = TypeVar("Req", bound=Message)
Resp = TypeVar("Resp", bound=Message)


class SeatInventoryClient:
    """A typed blocking client, safe to share between threads; ``with`` closes it."""

    def __init__(
        self,
        target: str,
        *,
        token: str | None = None,
        tls: Tls | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        observer: CallObserver | None = None,
        options: Sequence[tuple[str, Any]] = (),
    ) -> None:
        self.target = target
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self._observer = observer
        self._metadata = auth_metadata(token)
        self._channel = open_channel(target, tls, options)
        self._inventory = seat_inventory_pb2_grpc.SeatInventoryStub(self._channel)
        self._admin = inventory_admin_pb2_grpc.InventoryAdminStub(self._channel)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()

    def _unary(
        self,
        rpc: str,
        method: grpc.UnaryUnaryMultiCallable[Req, Resp],
        request: Req,
        timeout: float | None,
    ) -> Resp:
        """One logical call: attempts until success, a final error or the deadline."""
        deadline = Deadline.after(self.timeout if timeout is None else timeout)
        started, attempt = time.monotonic(), 0
        while True:
            attempt += 1
            try:
                response = method(request, timeout=deadline.remaining(), metadata=self._metadata)
            except grpc.RpcError as err:
                error = error_from_rpc(err)
                delay = self.retry.delay(rpc, attempt, error.code, deadline)
                if delay is None:
                    report(self._observer, rpc, started, attempt, None, error)
                    raise error from err
                time.sleep(delay)
            else:
                report(self._observer, rpc, started, attempt, response, None)
                return response

    def reserve(
        self,
        event_id: str,
        seat_ids: Iterable[str],
        holder_id: str,
        *,
        ttl: req.Ttl | None = None,
        request_id: str | None = None,
        timeout: float | None = None,
    ) -> types_pb2.Hold:
        """Hold every seat or none (SeatsUnavailable names the lost ones)."""
        request = req.reserve(event_id, seat_ids, holder_id, ttl, request_id)
        return self._unary("Reserve", self._inventory.Reserve, request, timeout).hold

    def confirm(
        self,
        hold_id: str,
        holder_id: str,
        *,
        order_ref: str = "",
        request_id: str | None = None,
        timeout: float | None = None,
    ) -> types_pb2.Booking:
        request = req.confirm(hold_id, holder_id, order_ref, request_id)
        return self._unary("Confirm", self._inventory.Confirm, request, timeout).booking

    def release(self, hold_id: str, holder_id: str, *, timeout: float | None = None) -> bool:
        """True if this call released the hold, False if it was already released.

        A retry after an answer lost on the way (UNAVAILABLE) finds the hold
        released by the first attempt and answers False: either way the hold
        is released once this returns."""
        request = req.release(hold_id, holder_id)
        return self._unary("Release", self._inventory.Release, request, timeout).released

    def extend_hold(
        self,
        hold_id: str,
        holder_id: str,
        *,
        ttl: req.Ttl | None = None,
        timeout: float | None = None,
    ) -> types_pb2.Hold:
        request = req.extend_hold(hold_id, holder_id, ttl)
        return self._unary("ExtendHold", self._inventory.ExtendHold, request, timeout).hold

    def get_availability(
        self, event_id: str, *, timeout: float | None = None
    ) -> GetAvailabilityResponse:
        request = req.get_availability(event_id)
        return self._unary("GetAvailability", self._inventory.GetAvailability, request, timeout)

    def watch_availability(
        self, event_id: str, *, resume_cursor: str = "", timeout: float | None = None
    ) -> Iterator[types_pb2.AvailabilityUpdate]:
        """As ``AsyncSeatInventoryClient.watch_availability``, as a blocking iterator;
        ``close()`` it (or leave the ``for`` loop) to end the stream."""
        resume = Resume(event_id, resume_cursor, self.retry, Deadline.after(timeout))
        while True:
            call = self._inventory.StreamAvailability(
                resume.request(), timeout=resume.deadline.remaining(), metadata=self._metadata
            )
            error: SeatInventoryError | None = None
            try:
                for update in call:
                    resume.delivered(update)
                    yield update
            except grpc.RpcError as err:
                error = error_from_rpc(err)
            finally:
                call.cancel()
            time.sleep(resume.after_drop(error))

    def create_event(
        self,
        event_id: str,
        name: str,
        seats: Iterable[types_pb2.SeatSpec],
        *,
        timeout: float | None = None,
    ) -> types_pb2.Event:
        """Create the event, or return it if it exists with the same seats (EventExists if not)."""
        request = req.create_event(event_id, name, seats)
        return self._unary("CreateEvent", self._admin.CreateEvent, request, timeout).event

    def get_event(
        self, event_id: str, *, include_seats: bool = False, timeout: float | None = None
    ) -> types_pb2.Event:
        request = req.get_event(event_id, include_seats)
        return self._unary("GetEvent", self._admin.GetEvent, request, timeout).event

    def cancel_booking(self, booking_id: str, *, timeout: float | None = None) -> types_pb2.Booking:
        request = req.cancel_booking(booking_id)
        return self._unary("CancelBooking", self._admin.CancelBooking, request, timeout).booking
