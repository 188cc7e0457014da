"""Confirm and CancelBooking over a real channel on real Redis and PostgreSQL:
the database decides every sale, checked against SQL directly."""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from seatinventory.v1 import inventory_admin_pb2, seat_inventory_pb2, types_pb2

from tests.e2e.conftest import Running
from tests.e2e.helpers import bad_request, create_event, error_info, ttl
from tests.support.server_process import Ledger

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

AVAILABLE = types_pb2.SEAT_STATUS_AVAILABLE
HELD = types_pb2.SEAT_STATUS_HELD
BOOKED = types_pb2.SEAT_STATUS_BOOKED
CONFIRMED = types_pb2.BOOKING_STATUS_CONFIRMED
CANCELLED = types_pb2.BOOKING_STATUS_CANCELLED


@pytest.fixture
async def ledger(live: Running, postgres_url: str, redis_url: str) -> AsyncIterator[Ledger]:
    """Direct reads of the test database and Redis; no seat is sold twice afterwards."""
    ledger = Ledger(postgres_url, redis_url)
    yield ledger
    await ledger.assert_no_double_sale()


async def reserve(
    live: Running, event_id: str, seats: list[str], holder: str = "alice", ttl_s: float = 60
) -> types_pb2.Hold:
    reply = await live.inventory.Reserve(
        seat_inventory_pb2.ReserveRequest(
            event_id=event_id, seat_ids=seats, holder_id=holder, ttl=ttl(ttl_s)
        ),
        timeout=10,
    )
    return reply.hold


async def confirm(
    live: Running, hold_id: str, holder: str = "alice", order_ref: str = "", request_id: str = ""
) -> types_pb2.Booking:
    reply = await live.inventory.Confirm(
        seat_inventory_pb2.ConfirmRequest(
            hold_id=hold_id, holder_id=holder, order_ref=order_ref, request_id=request_id
        ),
        timeout=10,
    )
    return reply.booking


async def cancel(live: Running, booking_id: str) -> types_pb2.Booking:
    reply = await live.admin.CancelBooking(
        inventory_admin_pb2.CancelBookingRequest(booking_id=booking_id), timeout=10
    )
    return reply.booking


async def statuses(live: Running, event_id: str) -> dict[str, int]:
    reply = await live.inventory.GetAvailability(
        seat_inventory_pb2.GetAvailabilityRequest(event_id=event_id), timeout=10
    )
    return {s.seat_id: s.status for s in reply.seats}


async def rpc_error(call: Awaitable[Any]) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return caught.value


async def test_confirm_then_cancel_round_trip(live: Running, ledger: Ledger) -> None:
    """Confirm books the seats with the order_ref, nobody can hold them, and
    CancelBooking (idempotent) offers them again; unknown bookings are NOT_FOUND."""
    event_id = await create_event(live.admin, n=5)
    hold = await reserve(live, event_id, ["A-1", "A-2"])
    booking = await confirm(live, hold.hold_id, order_ref="order-42", request_id="pay-1")
    assert booking.booking_id.startswith("bk_")
    assert (booking.event_id, booking.hold_id, booking.holder_id, booking.order_ref) == (
        event_id,
        hold.hold_id,
        "alice",
        "order-42",
    )
    assert list(booking.seat_ids) == ["A-1", "A-2"]
    assert booking.status == CONFIRMED
    assert booking.confirmed_at.ToMilliseconds() > 0
    assert await confirm(live, hold.hold_id) == booking, "a retried Confirm answers differently"

    row = await ledger.booking_of_hold(hold.hold_id)
    assert row is not None
    assert (row["booking_id"], row["order_ref"]) == (booking.booking_id, "order-42")
    assert await ledger.booked_seats(event_id) == {
        "A-1": booking.booking_id,
        "A-2": booking.booking_id,
    }
    state = await statuses(live, event_id)
    assert (state["A-1"], state["A-2"], state["A-3"]) == (BOOKED, BOOKED, AVAILABLE)
    err = await rpc_error(
        live.inventory.Reserve(
            seat_inventory_pb2.ReserveRequest(
                event_id=event_id, seat_ids=["A-2", "A-3"], holder_id="bob"
            ),
            timeout=10,
        )
    )
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    info = error_info(err)
    assert (info.reason, info.metadata["seat_ids"]) == ("SEATS_UNAVAILABLE", "A-2")

    cancelled = await cancel(live, booking.booking_id)
    assert cancelled.status == CANCELLED
    assert cancelled.booking_id == booking.booking_id
    assert cancelled.cancelled_at.ToMilliseconds() >= booking.confirmed_at.ToMilliseconds()
    assert await cancel(live, booking.booking_id) == cancelled, "a second cancel differs"
    assert await ledger.booked_seats(event_id) == {}
    assert set((await statuses(live, event_id)).values()) == {AVAILABLE}
    again = await reserve(live, event_id, ["A-1", "A-2"], holder="bob")
    assert list(again.seat_ids) == ["A-1", "A-2"]

    err = await rpc_error(
        live.admin.CancelBooking(
            inventory_admin_pb2.CancelBookingRequest(booking_id="bk_" + "x" * 22), timeout=10
        )
    )
    assert err.code() == grpc.StatusCode.NOT_FOUND
    assert error_info(err).reason == "BOOKING_NOT_FOUND"


async def test_confirm_retried_after_cancel_leaves_the_seats_free(
    live: Running, ledger: Ledger
) -> None:
    """A Confirm retried after its booking was cancelled answers the cancelled
    booking and does not put the freed seats back into sold."""
    event_id = await create_event(live.admin, n=3)
    hold = await reserve(live, event_id, ["A-1", "A-2"])
    booking = await confirm(live, hold.hold_id)
    cancelled = await cancel(live, booking.booking_id)
    assert await confirm(live, hold.hold_id) == cancelled
    assert await ledger.booked_seats(event_id) == {}
    assert await ledger.sold(event_id) == set()
    assert set((await statuses(live, event_id)).values()) == {AVAILABLE}
    await reserve(live, event_id, ["A-1", "A-2"], holder="bob")


async def test_confirm_errors_a_caller_sees(live: Running, ledger: Ledger) -> None:
    """Confirm of another's hold is HOLD_NOT_OWNED, of a released one HOLD_NOT_FOUND,
    bad ids and a long order_ref INVALID_ARGUMENT; none of them writes a booking."""
    event_id = await create_event(live.admin, n=3)
    hold = await reserve(live, event_id, ["A-1"])
    err = await rpc_error(confirm(live, hold.hold_id, holder="mallory"))
    assert (err.code(), error_info(err).reason) == (
        grpc.StatusCode.PERMISSION_DENIED,
        "HOLD_NOT_OWNED",
    )
    err = await rpc_error(confirm(live, hold.hold_id, order_ref="x" * 129))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert {v.field for v in bad_request(err).field_violations} == {"order_ref"}
    err = await rpc_error(confirm(live, "not-a-hold-id"))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert {v.field for v in bad_request(err).field_violations} == {"hold_id"}
    await live.inventory.Release(
        seat_inventory_pb2.ReleaseRequest(hold_id=hold.hold_id, holder_id="alice"), timeout=10
    )
    err = await rpc_error(confirm(live, hold.hold_id))
    assert (err.code(), error_info(err).reason) == (grpc.StatusCode.NOT_FOUND, "HOLD_NOT_FOUND")
    assert await ledger.bookings(event_id) == []
    err = await rpc_error(cancel(live, "not-a-booking"))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.parametrize("request_ids", ["same", "distinct"])
async def test_ten_concurrent_confirms_make_one_booking(
    live: Running, ledger: Ledger, request_ids: str
) -> None:
    """Ten Confirms of one hold at once (one request_id, or ten) write one booking
    row and all ten callers get the same Booking."""
    event_id = await create_event(live.admin, n=4)
    hold = await reserve(live, event_id, ["A-1", "A-2", "A-3"])
    answers = await asyncio.gather(
        *(
            confirm(
                live,
                hold.hold_id,
                order_ref="order-9",
                request_id="pay-1" if request_ids == "same" else f"pay-{i}",
            )
            for i in range(10)
        )
    )
    assert len({a.SerializeToString(deterministic=True) for a in answers}) == 1, answers
    rows = await ledger.bookings(event_id)
    assert [r["booking_id"] for r in rows] == [answers[0].booking_id]
    assert await ledger.booked_seats(event_id) == dict.fromkeys(
        ["A-1", "A-2", "A-3"], answers[0].booking_id
    )
    state = await statuses(live, event_id)
    assert [state[s] for s in ("A-1", "A-2", "A-3", "A-4")] == [BOOKED] * 3 + [AVAILABLE]


TRIALS = 240  # races, run many at a time
TTL_S = 1.0  # the shortest hold the server allows
SPREAD_S = 3.0  # trials start evenly over this long, so the server is busy, not swamped


@dataclass
class Trial:
    seats: list[str]
    first_hold: str
    first: types_pb2.Booking | grpc.aio.AioRpcError
    offset_ms: float  # when the first Confirm was sent, relative to its hold's expiry
    second_hold: str | None
    second: types_pb2.Booking | None


async def race_expiry(live: Running, event_id: str, i: int, jitter_s: float) -> Trial:
    """The first holder confirms at the edge of its hold's expiry; the second keeps
    reserving the same seats from just before then and confirms as soon as it gets them."""
    await asyncio.sleep(i * SPREAD_S / TRIALS)
    seats = [f"A-{2 * i + 1}", f"A-{2 * i + 2}"]
    hold = await reserve(live, event_id, seats, holder=f"first-{i}", ttl_s=TTL_S)
    # expires_at comes from Redis's clock, which is this machine's wall clock.
    expires = hold.expires_at.ToMilliseconds() / 1000
    first_won = asyncio.Event()

    async def first() -> tuple[types_pb2.Booking | grpc.aio.AioRpcError, float]:
        await asyncio.sleep(max(0.0, expires + jitter_s - time.time()))
        offset_ms = (time.time() - expires) * 1000
        try:
            booking = await confirm(live, hold.hold_id, holder=f"first-{i}")
        except grpc.aio.AioRpcError as err:
            return err, offset_ms
        first_won.set()
        return booking, offset_ms

    async def second() -> tuple[str | None, types_pb2.Booking | None]:
        await asyncio.sleep(max(0.0, expires - 0.03 - time.time()))
        give_up_at = time.monotonic() + 10
        while True:
            try:
                got = await reserve(live, event_id, seats, holder=f"second-{i}", ttl_s=30)
            except grpc.aio.AioRpcError as err:
                refused = err
            else:
                return got.hold_id, await confirm(live, got.hold_id, holder=f"second-{i}")
            assert error_info(refused).reason == "SEATS_UNAVAILABLE", refused
            if first_won.is_set():
                return None, None
            assert time.monotonic() < give_up_at, f"seats {seats} never came free"
            await asyncio.sleep(0.004)

    (first_result, offset_ms), (second_hold, second_booking) = await asyncio.gather(
        first(), second()
    )
    return Trial(seats, hold.hold_id, first_result, offset_ms, second_hold, second_booking)


@pytest.mark.slow
async def test_confirm_racing_expiry_sells_each_seat_once(live: Running, ledger: Ledger) -> None:
    """Hundreds of Confirms sent within milliseconds of their hold's expiry, each
    against a rival reserving the same seats the moment they free: every seat is
    sold exactly once in SQL, each Confirm's answer matches SQL, and Redis shows
    every seat SQL sold as BOOKED."""
    event_id = await create_event(live.admin, n=2 * TRIALS)
    rng = random.Random(20261128)
    started = time.monotonic()
    trials = await asyncio.gather(
        *(race_expiry(live, event_id, i, rng.uniform(-0.015, 0.010)) for i in range(TRIALS))
    )
    elapsed = time.monotonic() - started

    rows = {r["hold_id"]: r for r in await ledger.bookings(event_id)}
    booked = await ledger.booked_seats(event_id)
    outcome: Counter[str] = Counter()
    won_offsets, lost_offsets = [], []
    for t in trials:
        if isinstance(t.first, types_pb2.Booking):
            outcome["first confirmed"] += 1
            won_offsets.append(t.offset_ms)
            # Sent after the expiry means it reached Redis after it: that must lose.
            assert t.offset_ms < 0, f"a Confirm sent {t.offset_ms:.1f} ms after expiry won"
            assert t.second_hold is None, f"{t.seats} held again after they were sold"
            assert rows[t.first_hold]["booking_id"] == t.first.booking_id
            sold_by = t.first.booking_id
        else:
            assert t.first.code() == grpc.StatusCode.NOT_FOUND, t.first
            assert error_info(t.first).reason == "HOLD_NOT_FOUND"
            outcome["first lost: HOLD_NOT_FOUND"] += 1
            lost_offsets.append(t.offset_ms)
            assert t.first_hold not in rows, "a Confirm answered HOLD_NOT_FOUND but booked"
            assert t.second_hold is not None
            assert t.second is not None
            assert rows[t.second_hold]["booking_id"] == t.second.booking_id
            sold_by = t.second.booking_id
        assert {booked.get(s) for s in t.seats} == {sold_by}, t
    assert len(rows) == TRIALS, "a booking row belongs to no caller's success"

    state = await statuses(live, event_id)
    assert {s for s, st in state.items() if st == BOOKED} == set(booked)
    assert await ledger.sold(event_id) == set(booked)
    print(
        f"\n{TRIALS} races in {elapsed:.1f}s: {dict(outcome)}; the first Confirm was sent "
        f"{min(won_offsets, default=0):+.1f}..{max(won_offsets, default=0):+.1f} ms after "
        f"expiry when it won, {min(lost_offsets, default=0):+.1f}.."
        f"{max(lost_offsets, default=0):+.1f} ms when it lost"
    )
