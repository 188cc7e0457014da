"""Retries through a proxy that loses answers: the first attempt of each RPC
reaches the real server, which acts on it, but the client is told UNAVAILABLE.
The client must retry with the same request_id, so the server still makes one
hold and one booking; it must not retry anything else, nor past the deadline."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest
from seatinventory.client import (
    RETRY_SAFE,
    AsyncSeatInventoryClient,
    CallOutcome,
    RetryPolicy,
    SeatInventoryClient,
    SeatsUnavailable,
    Unavailable,
)
from seatinventory.v1 import seat_inventory_pb2 as pb

from tests.client.grpc_proxy import GrpcProxy
from tests.e2e.conftest import Running
from tests.e2e.helpers import new_event_id, seat_map
from tests.support.server_process import Ledger

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

FAST = RetryPolicy(initial_backoff=0.01, max_backoff=0.05)


@pytest.fixture
async def lossy(live: Running, client: AsyncSeatInventoryClient) -> AsyncIterator[GrpcProxy]:
    """A proxy in front of ``live`` that loses the first answer of every unary RPC."""
    proxy = await GrpcProxy(live.target, fail_first=RETRY_SAFE).start()
    yield proxy
    await proxy.stop()


async def test_lost_answers_are_retried_with_one_request_id(
    lossy: GrpcProxy, postgres_url: str, redis_url: str
) -> None:
    """Reserve and Confirm whose first answers are lost each reach the server twice with
    the same request_id, and the server made exactly one hold and one booking."""
    outcomes: list[CallOutcome] = []
    async with AsyncSeatInventoryClient(lossy.target, retry=FAST, observer=outcomes.append) as c:
        event_id = new_event_id()
        await c.create_event(event_id, "Lossy", seat_map(5))
        hold = await c.reserve(event_id, ["A-1", "A-2"], "alice")
        booking = await c.confirm(hold.hold_id, "alice", order_ref="order-7")

    reserves = [pb.ReserveRequest.FromString(s.request) for s in lossy.attempts("Reserve")]
    assert len(reserves) == 2
    assert reserves[0].request_id == reserves[1].request_id != ""
    lost_hold = pb.ReserveResponse.FromString(lossy.attempts("Reserve")[0].response or b"").hold
    assert lost_hold.hold_id == hold.hold_id  # the retry got the hold the lost answer carried
    confirms = [pb.ConfirmRequest.FromString(s.request) for s in lossy.attempts("Confirm")]
    assert len(confirms) == 2
    assert confirms[0].request_id == confirms[1].request_id != ""
    lost_booking = pb.ConfirmResponse.FromString(lossy.attempts("Confirm")[0].response or b"")
    assert lost_booking.booking.booking_id == booking.booking_id

    bookings = await Ledger(postgres_url, redis_url).bookings(event_id)
    assert [b["booking_id"] for b in bookings] == [booking.booking_id]
    assert [(o.rpc, o.attempts, o.error) for o in outcomes] == [
        ("CreateEvent", 2, None),
        ("Reserve", 2, None),
        ("Confirm", 2, None),
    ]


async def test_a_server_sent_cancelled_is_retried_with_one_request_id(
    live: Running, postgres_url: str, redis_url: str
) -> None:
    """A draining server answers CANCELLED to calls it never started (grpc/grpc#41785):
    the client tries again with the same request_id, so one hold and one booking."""
    proxy = await GrpcProxy(
        live.target, fail_first={"Reserve", "Confirm"}, fail_code=grpc.StatusCode.CANCELLED
    ).start()
    try:
        async with AsyncSeatInventoryClient(proxy.target, retry=FAST) as c:
            event_id = new_event_id()
            await c.create_event(event_id, "Drained", seat_map(3))
            hold = await c.reserve(event_id, ["A-1"], "alice")
            booking = await c.confirm(hold.hold_id, "alice")
    finally:
        await proxy.stop()
    for rpc, message in (("Reserve", pb.ReserveRequest), ("Confirm", pb.ConfirmRequest)):
        sent = [message.FromString(s.request) for s in proxy.attempts(rpc)]
        assert len(sent) == 2
        assert sent[0].request_id == sent[1].request_id != ""
    bookings = await Ledger(postgres_url, redis_url).bookings(event_id)
    assert [b["booking_id"] for b in bookings] == [booking.booking_id]


async def test_every_safe_rpc_is_retried(lossy: GrpcProxy) -> None:
    """Release, ExtendHold, GetAvailability, GetEvent and CancelBooking also survive a lost
    first answer, and two Reserves get two different request_ids."""
    async with AsyncSeatInventoryClient(lossy.target, retry=FAST) as c:
        event_id = new_event_id()
        await c.create_event(event_id, "Lossy", seat_map(5))
        first = await c.reserve(event_id, ["A-1"], "alice")
        second = await c.reserve(event_id, ["A-2"], "alice")
        await c.extend_hold(first.hold_id, "alice", ttl=120)
        assert len((await c.get_availability(event_id)).seats) == 5
        assert (await c.get_event(event_id)).held_count == 2
        # the lost first answer was True; the retry sees the hold already gone
        assert await c.release(second.hold_id, "alice") is False
        booking = await c.confirm(first.hold_id, "alice")
        assert (await c.cancel_booking(booking.booking_id)).booking_id == booking.booking_id
    ids = {pb.ReserveRequest.FromString(s.request).request_id for s in lossy.attempts("Reserve")}
    assert len(ids) == 2  # one per logical call
    for rpc in sorted(RETRY_SAFE):
        assert len(lossy.attempts(rpc)) >= 2, rpc


async def test_the_sync_client_retries_with_one_request_id(lossy: GrpcProxy) -> None:
    """The blocking client also resends a lost Reserve with the same request_id."""

    def reserve() -> str:
        with SeatInventoryClient(lossy.target, retry=FAST) as client:
            client.create_event(event_id, "Lossy sync", seat_map(3))
            return client.reserve(event_id, ["A-3"], "bob").hold_id

    event_id = new_event_id()
    hold_id = await asyncio.to_thread(reserve)
    attempts = lossy.attempts("Reserve")
    ids = {pb.ReserveRequest.FromString(s.request).request_id for s in attempts}
    assert len(attempts) == 2
    assert len(ids) == 1
    assert pb.ReserveResponse.FromString(attempts[0].response or b"").hold.hold_id == hold_id


async def test_errors_other_than_unavailable_are_not_retried(lossy: GrpcProxy) -> None:
    """A SEATS_UNAVAILABLE answer is raised at once: the server sees that Reserve once."""
    async with AsyncSeatInventoryClient(lossy.target, retry=FAST) as c:
        event_id = new_event_id()
        await c.create_event(event_id, "Lossy", seat_map(3))
        await c.reserve(event_id, ["A-1"], "alice")  # attempt 1 lost, attempt 2 answered
        with pytest.raises(SeatsUnavailable):
            await c.reserve(event_id, ["A-1"], "bob")
    assert len(lossy.attempts("Reserve")) == 3


async def test_retries_stop_at_max_attempts_and_the_deadline(live: Running) -> None:
    """Against a server that is always UNAVAILABLE, a call makes at most max_attempts
    tries, none of them with a deadline beyond the call's own, and raises Unavailable."""
    proxy = await GrpcProxy(live.target, fail_always={"GetEvent"}).start()
    try:
        many = RetryPolicy(max_attempts=100, initial_backoff=0.02, max_backoff=0.1)
        async with AsyncSeatInventoryClient(proxy.target, retry=many) as c:
            # 2 s leaves room for ~20 tries and for a loaded machine: the last try
            # must end (UNAVAILABLE) before the deadline, not be cut by it.
            with pytest.raises(Unavailable):
                await c.get_event("any", timeout=2.0)
            attempts = proxy.attempts("GetEvent")
            assert 1 < len(attempts) < 100
            overall = attempts[0].deadline
            assert overall is not None
            # Each try carries what is left of the call's 2 s, never a fresh 2 s; the
            # proxy dates each deadline on arrival, so allow for delivery delay.
            assert all(a.deadline is not None and a.deadline <= overall + 0.25 for a in attempts)

            proxy.seen.clear()
            few = RetryPolicy(max_attempts=3, initial_backoff=0.01, max_backoff=0.01)
            async with AsyncSeatInventoryClient(proxy.target, retry=few) as capped:
                with pytest.raises(Unavailable) as caught:
                    await capped.get_event("any", timeout=10)
            assert len(proxy.attempts("GetEvent")) == 3
            assert "proxy: upstream unreachable" in str(caught.value)
    finally:
        await proxy.stop()
