"""Calls as a client saw them (status, ErrorInfo, wall-clock interval), and the
reserve → confirm load the fault tests run while they inject a fault."""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from seatinventory.v1 import inventory_admin_pb2, seat_inventory_pb2, types_pb2

from tests.e2e.helpers import ttl
from tests.reliability.conftest import Client

__all__ = ["Call", "LoadStats", "invoke", "load_client", "wall_ms"]

# A call that has not answered this long after its own deadline is hung.
HANG_SLACK_S = 10.0
UNKNOWN = frozenset({"UNAVAILABLE", "DEADLINE_EXCEEDED"})
# What a correct server answers a reserve/confirm/release/cancel load, faults or not.
EXPECTED = frozenset(
    {
        ("OK", ""),
        ("FAILED_PRECONDITION", "SEATS_UNAVAILABLE"),  # Reserve lost (never Confirm: see below)
        ("FAILED_PRECONDITION", "HOLD_CONFIRMING"),
        ("NOT_FOUND", "HOLD_NOT_FOUND"),
        ("UNAVAILABLE", "BACKEND_UNAVAILABLE"),
        ("UNAVAILABLE", ""),  # the server itself is down (no ErrorInfo from a dead process)
        ("DEADLINE_EXCEEDED", ""),  # the client's own deadline
    }
)


def wall_ms() -> int:
    """Now, floored to the millisecond: never after the true instant."""
    return time.time_ns() // 1_000_000


def wall_ms_ceil() -> int:
    return -(-time.time_ns() // 1_000_000)


@dataclass(frozen=True, slots=True)
class Call:
    rpc: str
    status: str  # a grpc.StatusCode name, or "HANG"
    reason: str  # the ErrorInfo reason; "" when the error carried none
    infos: int  # how many ErrorInfo details the error carried
    metadata: dict[str, str]
    reply: Any
    invoke_ms: int
    complete_ms: int
    started: float  # time.monotonic()
    ended: float

    @property
    def ok(self) -> bool:
        return self.status == "OK"

    @property
    def unknown(self) -> bool:
        """No answer from the service: the call may or may not have taken effect."""
        return self.status in UNKNOWN or self.status == "HANG"

    @property
    def expected(self) -> bool:
        """An answer a correct server may give; its own errors carry exactly one ErrorInfo."""
        return (self.status, self.reason) in EXPECTED and (not self.reason or self.infos == 1)

    def describe(self) -> str:
        return f"{self.rpc}: {self.status} {self.reason} {self.metadata}".strip()


def error_details(err: grpc.aio.AioRpcError) -> tuple[str, int, dict[str, str]]:
    """(reason of the first ErrorInfo, number of ErrorInfos, its metadata)."""
    try:
        status = rpc_status.from_call(err)  # type: ignore[arg-type]
    except ValueError:  # details that do not match the call's status
        return "MISMATCHED_STATUS_DETAILS", 0, {}
    if status is None:
        return "", 0, {}
    infos = []
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            infos.append(info)
    if not infos:
        return "", 0, {}
    return infos[0].reason, len(infos), dict(infos[0].metadata)


async def invoke(
    rpc: str, method: Callable[..., Awaitable[Any]], request: Any, timeout_s: float | None
) -> Call:
    """Make one call; a call still unanswered ``HANG_SLACK_S`` past its deadline
    (or past 10 s + that with no deadline) is given up and reported as HANG."""
    invoke_ms, started = wall_ms(), time.monotonic()
    reply, reason, infos = None, "", 0
    metadata: dict[str, str] = {}
    try:
        async with asyncio.timeout((timeout_s or 10.0) + HANG_SLACK_S):
            reply = await method(request, timeout=timeout_s)
        status = "OK"
    except grpc.aio.AioRpcError as err:
        status = err.code().name
        reason, infos, metadata = error_details(err)
    except TimeoutError:
        status = "HANG"
    return Call(
        rpc,
        status,
        reason,
        infos,
        metadata,
        reply,
        invoke_ms,
        wall_ms_ceil(),
        started,
        time.monotonic(),
    )


@dataclass
class LoadStats:
    """Everything a load run saw, for the invariant checks afterwards."""

    calls: list[Call] = field(default_factory=list)
    confirmed: dict[str, tuple[str, tuple[str, ...]]] = field(default_factory=dict)  # booking
    cancelled: set[str] = field(default_factory=set)  # bookings a CancelBooking cancelled
    maybe_cancelled: set[str] = field(default_factory=set)  # CancelBooking got no answer
    in_flight: Counter[str] = field(default_factory=Counter)  # rpc -> calls under way

    def unexpected(self) -> list[Call]:
        # Confirm answers SEATS_UNAVAILABLE only when Redis offered a seat SQL had
        # sold, which only Redis losing its data excuses; these faults lose none.
        return [
            c
            for c in self.calls
            if not c.expected or (c.rpc == "Confirm" and c.reason == "SEATS_UNAVAILABLE")
        ]

    def during(self, start: float, end: float) -> list[Call]:
        """Calls made and answered entirely within [start, end] (monotonic)."""
        return [c for c in self.calls if c.started >= start and c.ended <= end]

    def confirms_ok(self) -> int:
        return sum(1 for c in self.calls if c.rpc == "Confirm" and c.ok)


async def _call(stats: LoadStats, rpc: str, method: Any, request: Any, deadline_s: float) -> Call:
    stats.in_flight[rpc] += 1
    try:
        call = await invoke(rpc, method, request, deadline_s)
    finally:
        stats.in_flight[rpc] -= 1
    stats.calls.append(call)
    return call


async def load_client(
    client: Client,
    event_id: str,
    seats: Sequence[str],
    stop: asyncio.Event,
    stats: LoadStats,
    *,
    name: str,
    seed: int,
    ttl_s: float = 1.0,
    deadline_s: float = 1.0,
    think_s: float = 0.05,
    keep: int = 1,
) -> None:
    """Reserve one or two seats, then mostly Confirm, sometimes Release, sometimes
    let the hold lapse. Only the newest ``keep`` bookings stay sold: older ones
    are cancelled, and a Confirm (or cancel) whose answer was lost is retried
    until it answers, as a careful caller would, so seats never run out however
    long the load runs. Until ``stop`` is set."""
    rng = random.Random(seed)
    inv, admin = client.inventory, client.admin
    unanswered: list[seat_inventory_pb2.ConfirmRequest] = []
    kept: list[str] = []  # bookings not cancelled yet, oldest first

    async def confirm(request: seat_inventory_pb2.ConfirmRequest) -> None:
        done = await _call(stats, "Confirm", inv.Confirm, request, deadline_s)
        if done.unknown:
            unanswered.append(request)
            return
        if not done.ok:
            return
        booking = done.reply.booking
        stats.confirmed[booking.booking_id] = (request.hold_id, tuple(booking.seat_ids))
        if booking.status != types_pb2.BOOKING_STATUS_CONFIRMED or booking.booking_id in kept:
            return
        kept.append(booking.booking_id)
        while len(kept) > keep and await cancel(kept[0]):  # the oldest goes back on sale
            kept.pop(0)

    async def cancel(booking_id: str) -> bool:
        """False when the answer was lost: it stays first in line, to cancel again."""
        request = inventory_admin_pb2.CancelBookingRequest(booking_id=booking_id)
        done = await _call(stats, "CancelBooking", admin.CancelBooking, request, deadline_s)
        if done.unknown:
            stats.maybe_cancelled.add(booking_id)
            return False
        if done.ok:
            stats.cancelled.add(booking_id)
            stats.maybe_cancelled.discard(booking_id)
        return True

    n = 0
    while not stop.is_set():
        n += 1
        if unanswered and rng.random() < 0.5:
            await confirm(unanswered.pop(0))
            await asyncio.sleep(rng.uniform(0, think_s) + (0.1 if unanswered else 0))
            continue
        wanted = rng.sample(list(seats), k=rng.choice([1, 1, 2]))
        request = seat_inventory_pb2.ReserveRequest(
            event_id=event_id, seat_ids=wanted, holder_id=name, ttl=ttl(ttl_s)
        )
        reserved = await _call(stats, "Reserve", inv.Reserve, request, deadline_s)
        if reserved.ok:
            hold = reserved.reply.hold
            await asyncio.sleep(rng.uniform(0, think_s * 4))
            roll = rng.random()
            if roll < 0.75:
                await confirm(
                    seat_inventory_pb2.ConfirmRequest(
                        hold_id=hold.hold_id, holder_id=name, request_id=f"{name}-{n}"
                    )
                )
            elif roll < 0.9:
                release = seat_inventory_pb2.ReleaseRequest(hold_id=hold.hold_id, holder_id=name)
                await _call(stats, "Release", inv.Release, release, deadline_s)
        elif reserved.unknown:
            await asyncio.sleep(0.1)  # a backend or the server is away: back off a little
        await asyncio.sleep(rng.uniform(0, think_s))


async def retry_lost_cancels(client: Client, stats: LoadStats, attempts: int = 20) -> None:
    """CancelBooking commits in SQL before it frees the seats in Redis, and a
    retry is how a caller heals an answer lost in between (the port's contract):
    retry every cancel whose answer was lost until it answers."""
    for booking_id in sorted(stats.maybe_cancelled):
        request = inventory_admin_pb2.CancelBookingRequest(booking_id=booking_id)
        for _ in range(attempts):
            call = await invoke("CancelBooking", client.admin.CancelBooking, request, 5.0)
            stats.calls.append(call)
            if not call.unknown:
                break
            await asyncio.sleep(0.25)
        if call.ok:
            stats.cancelled.add(booking_id)
            stats.maybe_cancelled.discard(booking_id)
