"""One process's share of a flash sale: virtual users arriving at a rate,
each reserving, thinking, then confirming, releasing or abandoning."""

from __future__ import annotations

import asyncio
import functools
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf import duration_pb2
from seatinventory.client.channel import Tls, open_aio_channel
from seatinventory.v1 import seat_inventory_pb2 as pb
from seatinventory.v1 import seat_inventory_pb2_grpc as pb_grpc
from seatinventory.v1 import types_pb2

from .scenario import Scenario
from .stats import Sample

__all__ = [
    "Confirmation",
    "Progress",
    "ShareResult",
    "error_outcome",
    "open_channel",
    "run_share",
]

Progress = Callable[[int, int, int], None]  # users done, calls, errors
_LOST_RACE = "FAILED_PRECONDITION SEATS_UNAVAILABLE"


@dataclass(frozen=True, slots=True)
class Confirmation:
    """A Confirm the server answered OK: the booking it named, for which hold."""

    booking_id: str
    seat_ids: tuple[str, ...]
    holder_id: str
    confirmed_at_ms: int


@dataclass
class ShareResult:
    samples: list[Sample] = field(default_factory=list)
    # Keyed by the harness's own hold id, not the server's booking id: a server
    # that hands one booking id to two holds must not hide a double sale.
    confirmed: dict[str, Confirmation] = field(default_factory=dict)
    # Answers that contradict the request (a booking of another hold or other seats).
    wrong_answers: list[str] = field(default_factory=list)
    # Holds the users let lapse, and their seats.
    abandoned_holds: int = 0
    abandoned_seats: int = 0
    # Per stream subscriber: seats it saw expire (EXPIRED changes).
    expired_seen: list[int] = field(default_factory=list)
    stream_messages: int = 0
    duration_s: float = 0.0


def error_outcome(err: grpc.aio.AioRpcError) -> str:
    """ "CODE REASON" from the error's ErrorInfo, or just the code."""
    from google.rpc import error_details_pb2
    from grpc_status import rpc_status

    status = rpc_status.from_call(err)  # type: ignore[arg-type]
    for detail in status.details if status is not None else ():
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return f"{err.code().name} {info.reason}"
    return err.code().name


def open_channel(scenario: Scenario) -> grpc.aio.Channel:
    """The client package's channel to the target (its reconnect, keepalive
    and message-size options; gRPC's wake-ups drained): call it on the
    running event loop."""
    tls = None
    if scenario.uses_tls:
        tls = Tls.from_files(ca=scenario.tls_ca, cert=scenario.tls_cert, key=scenario.tls_key)
    return open_aio_channel(scenario.target, tls)


class _Share:
    def __init__(self, scenario: Scenario, progress: Progress | None) -> None:
        self.s = scenario
        self.progress = progress
        self.rng = random.Random(scenario.seed)
        self.result = ShareResult()
        self.metadata = (("authorization", f"Bearer {scenario.token}"),) if scenario.token else ()
        self.t0 = time.perf_counter()
        self.calls = self.errors = self.users_done = 0
        self.ttl = duration_pb2.Duration()
        self.ttl.FromMilliseconds(int(scenario.hold_ttl_s * 1000))

    async def call(self, rpc: str, fn: Callable[[], Awaitable[Any]]) -> Any:
        reply, _ = await self.call_for_outcome(rpc, fn)
        return reply

    async def call_for_outcome(self, rpc: str, fn: Callable[[], Awaitable[Any]]) -> tuple[Any, str]:
        """The reply (None on an error) and the outcome, "OK" or "CODE REASON"."""
        start = time.perf_counter()
        try:
            reply = await fn()
            outcome = "OK"
        except grpc.aio.AioRpcError as err:
            reply, outcome = None, error_outcome(err)
            self.errors += 1
        self.calls += 1
        self.result.samples.append((rpc, start - self.t0, time.perf_counter() - start, outcome))
        return reply, outcome

    def record_confirmation(self, hold: types_pb2.Hold, holder: str, booking: Any) -> None:
        if booking.hold_id != hold.hold_id or set(booking.seat_ids) != set(hold.seat_ids):
            self.result.wrong_answers.append(
                f"Confirm of hold {hold.hold_id} ({','.join(hold.seat_ids)}) answered booking "
                f"{booking.booking_id} of hold {booking.hold_id} ({','.join(booking.seat_ids)})"
            )
        self.result.confirmed[hold.hold_id] = Confirmation(
            booking.booking_id,
            tuple(booking.seat_ids),
            holder,
            booking.confirmed_at.ToMilliseconds(),
        )

    def pick_seats(self) -> list[str]:
        s = self.s
        k = self.rng.randint(1, s.max_seats)
        if self.rng.random() < s.hot_share and s.hot_seats:
            pool = range(1, s.hot_seats + 1)
        else:
            pool = range(s.hot_seats + 1, s.seats + 1) if s.seats > s.hot_seats else range(1, 2)
        return [f"S{n}" for n in self.rng.sample(pool, min(k, len(pool)))]

    async def user(self, stub: pb_grpc.SeatInventoryAsyncStub, index: int) -> None:
        s, holder = self.s, f"user-{index}-{self.rng.getrandbits(32):08x}"
        hold = None
        for _ in range(s.reserve_attempts):
            request = pb.ReserveRequest(
                event_id=s.event_id, seat_ids=self.pick_seats(), holder_id=holder, ttl=self.ttl
            )
            reply, outcome = await self.call_for_outcome(
                "Reserve",
                functools.partial(
                    stub.Reserve, request, timeout=s.timeout_s, metadata=self.metadata
                ),
            )
            if reply is not None:
                hold = reply.hold
                break
            if outcome != _LOST_RACE:
                break  # only losing seats to others is worth another try with other seats
        if hold is not None:
            await asyncio.sleep(self.rng.uniform(s.think_min_s, s.think_max_s))
            roll = self.rng.random()
            if roll < s.p_confirm:
                req = pb.ConfirmRequest(hold_id=hold.hold_id, holder_id=holder, order_ref=holder)
                reply = await self.call(
                    "Confirm",
                    lambda: stub.Confirm(req, timeout=s.timeout_s, metadata=self.metadata),
                )
                if reply is not None:
                    self.record_confirmation(hold, holder, reply.booking)
            elif roll < s.p_confirm + s.p_release:
                rel = pb.ReleaseRequest(hold_id=hold.hold_id, holder_id=holder)
                await self.call(
                    "Release",
                    lambda: stub.Release(rel, timeout=s.timeout_s, metadata=self.metadata),
                )
            else:
                self.result.abandoned_holds += 1
                self.result.abandoned_seats += len(hold.seat_ids)
        self.users_done += 1
        if self.progress is not None:
            self.progress(self.users_done, self.calls, self.errors)

    async def subscriber(
        self, stub: pb_grpc.SeatInventoryAsyncStub, stop: asyncio.Event, index: int
    ) -> None:
        call = stub.StreamAvailability(
            pb.StreamAvailabilityRequest(event_id=self.s.event_id), metadata=self.metadata
        )
        try:
            async for update in call:
                self.result.stream_messages += 1
                for change in update.changes.changes:
                    if change.reason == types_pb2.CHANGE_REASON_EXPIRED:
                        self.result.expired_seen[index] += len(change.seat_ids)
                if stop.is_set():
                    break
        except grpc.aio.AioRpcError:
            return  # the stream is optional for the load; its end is not an error
        finally:
            call.cancel()

    async def run(self) -> ShareResult:
        s = self.s
        async with open_channel(s) as channel:
            stub = pb_grpc.SeatInventoryStub(channel)
            stop = asyncio.Event()
            self.result.expired_seen = [0] * s.subscribers
            watchers = [
                asyncio.create_task(self.subscriber(stub, stop, index))
                for index in range(s.subscribers)
            ]
            users = []
            for index in range(s.users):
                delay = index / s.arrival_rate - (time.perf_counter() - self.t0)
                if delay > 0:
                    await asyncio.sleep(delay)
                users.append(asyncio.create_task(self.user(stub, index)))
            await asyncio.gather(*users)
            self.result.duration_s = time.perf_counter() - self.t0
            # Let the last abandoned holds lapse and be swept (within a second)
            # so their expiries reach the subscribers.
            if watchers:
                await asyncio.sleep(s.hold_ttl_s + 2.0)
            stop.set()
            for task in watchers:
                task.cancel()
            await asyncio.gather(*watchers, return_exceptions=True)
        return self.result


async def run_share(scenario: Scenario, progress: Progress | None = None) -> ShareResult:
    return await _Share(scenario, progress).run()
