"""The async client against a real server on real Redis and PostgreSQL: every RPC
of both services, and the typed error a caller gets for each reason."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import grpc
import pytest
from seatinventory.client import (
    AsyncSeatInventoryClient,
    AvailabilityView,
    BookingNotFound,
    BookingStatus,
    DeadlineExceeded,
    EventExists,
    EventNotFound,
    HoldNotFound,
    HoldNotOwned,
    InvalidRequest,
    NotFound,
    RetryPolicy,
    SeatInventoryError,
    SeatNotFound,
    SeatStatus,
    SeatsUnavailable,
)
from seatinventory.client import BackendUnavailable as BackendUnavailableError

from seat_inventory.config import Settings
from tests.e2e.conftest import start_server, stop_running
from tests.e2e.helpers import new_event_id, seat_map
from tests.support.services import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

AVAILABLE, HELD, BOOKED = (
    SeatStatus.SEAT_STATUS_AVAILABLE,
    SeatStatus.SEAT_STATUS_HELD,
    SeatStatus.SEAT_STATUS_BOOKED,
)


async def new_event(client: AsyncSeatInventoryClient, n: int = 10) -> str:
    event_id = new_event_id()
    await client.create_event(event_id, "Client test", seat_map(n))
    return event_id


async def test_every_rpc_round_trips(client: AsyncSeatInventoryClient) -> None:
    """Create, get, reserve, extend, release, confirm, read, watch and cancel all
    answer with typed messages that agree with each other."""
    event_id = new_event_id()
    event = await client.create_event(event_id, "Round trip", seat_map(10))
    assert (event.event_id, event.seat_count, event.available_count) == (event_id, 10, 10)
    again = await client.create_event(event_id, "Round trip", seat_map(10))
    assert again.event_id == event_id  # same payload: idempotent

    hold = await client.reserve(event_id, ["A-1", "A-2"], "alice", ttl=30)
    assert list(hold.seat_ids) == ["A-1", "A-2"]
    assert hold.holder_id == "alice"
    longer = await client.extend_hold(hold.hold_id, "alice", ttl=timedelta(minutes=5))
    assert longer.expires_at.ToMilliseconds() > hold.expires_at.ToMilliseconds()
    other = await client.reserve(event_id, ["A-3"], "bob")
    assert await client.release(other.hold_id, "bob") is True
    assert await client.release(other.hold_id, "bob") is False

    booking = await client.confirm(hold.hold_id, "alice", order_ref="order-1")
    assert (list(booking.seat_ids), booking.order_ref) == (["A-1", "A-2"], "order-1")
    assert booking.status == BookingStatus.BOOKING_STATUS_CONFIRMED

    availability = await client.get_availability(event_id)
    view = AvailabilityView.from_response(availability)
    assert (view.status("A-1"), view.status("A-3"), len(view.available())) == (BOOKED, AVAILABLE, 8)
    updates = client.watch_availability(event_id)
    first = await anext(updates)
    assert first.HasField("snapshot")
    assert first.cursor == availability.cursor
    await updates.aclose()

    with_seats = await client.get_event(event_id, include_seats=True)
    assert (with_seats.booked_count, len(with_seats.seats)) == (2, 10)
    cancelled = await client.cancel_booking(booking.booking_id)
    assert cancelled.status == BookingStatus.BOOKING_STATUS_CANCELLED
    assert (await client.get_event(event_id)).available_count == 10


async def test_watch_follows_changes(client: AsyncSeatInventoryClient) -> None:
    """A watch delivers a snapshot, then change batches with per-change cursors, and a
    view built from them equals GetAvailability."""
    event_id = await new_event(client)
    view = AvailabilityView()
    updates = client.watch_availability(event_id)
    view.apply(await anext(updates))
    hold = await client.reserve(event_id, ["A-4", "A-5"], "alice")
    await client.confirm(hold.hold_id, "alice")
    while view.status("A-4") != BOOKED:
        update = await asyncio.wait_for(anext(updates), 10)
        assert update.HasField("changes")
        assert all(change.cursor for change in update.changes.changes)
        view.apply(update)
    await updates.aclose()
    truth = await client.get_availability(event_id)
    assert view.seats == AvailabilityView.from_response(truth).seats
    assert view.cursor == truth.cursor


async def test_each_reason_raises_its_typed_error(client: AsyncSeatInventoryClient) -> None:
    """SEATS_UNAVAILABLE, HOLD_NOT_FOUND, HOLD_NOT_OWNED, EVENT_NOT_FOUND, SEAT_NOT_FOUND,
    BOOKING_NOT_FOUND and EVENT_EXISTS each raise their own class, with code, reason,
    metadata and the server's message."""
    event_id = await new_event(client)
    hold = await client.reserve(event_id, ["A-2"], "bob")

    with pytest.raises(SeatsUnavailable) as lost:
        await client.reserve(event_id, ["A-1", "A-2"], "alice")
    assert lost.value.seat_ids == ("A-2",)
    assert (lost.value.code, lost.value.reason) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "SEATS_UNAVAILABLE",
    )
    assert str(lost.value).startswith("FAILED_PRECONDITION SEATS_UNAVAILABLE: seat(s) A-2")

    with pytest.raises(HoldNotOwned) as not_owned:
        await client.confirm(hold.hold_id, "mallory")
    assert not_owned.value.metadata["hold_id"] == hold.hold_id
    await client.release(hold.hold_id, "bob")
    with pytest.raises(HoldNotFound):
        await client.extend_hold(hold.hold_id, "bob", ttl=60)
    with pytest.raises(EventNotFound) as no_event:
        await client.get_event("no-such-event")
    assert isinstance(no_event.value, NotFound)
    with pytest.raises(SeatNotFound) as no_seat:
        await client.reserve(event_id, ["A-1", "Z-9"], "alice")
    assert no_seat.value.seat_ids == ("Z-9",)
    with pytest.raises(BookingNotFound):
        await client.cancel_booking("bk_doesnotexist")
    with pytest.raises(EventExists):
        await client.create_event(event_id, "Client test", seat_map(11))


async def test_invalid_request_lists_field_violations(client: AsyncSeatInventoryClient) -> None:
    """INVALID_ARGUMENT raises InvalidRequest carrying each BadRequest field violation."""
    event_id = await new_event(client)
    with pytest.raises(InvalidRequest) as caught:
        await client.reserve(event_id, [], "")
    assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert {v.field for v in caught.value.violations} == {"seat_ids", "holder_id"}
    assert all(v.description for v in caught.value.violations)


async def test_deadline_without_error_info_is_deadline_exceeded(
    client: AsyncSeatInventoryClient,
) -> None:
    """A deadline that gRPC itself enforces (no ErrorInfo) raises the generic DeadlineExceeded."""
    with pytest.raises(DeadlineExceeded) as caught:
        await client.get_event("any-event", timeout=0.000_001)
    assert isinstance(caught.value, SeatInventoryError)
    assert caught.value.reason == "DEADLINE_EXCEEDED"
    assert caught.value.metadata == {}


async def test_backend_outage_is_backend_unavailable(postgres_url: str) -> None:
    """With Redis unreachable the server answers BACKEND_UNAVAILABLE, retried and then
    raised as BackendUnavailable naming the backend."""
    dead_redis = f"redis://127.0.0.1:{free_port()}/0"
    running = await start_server(Settings(port=0, redis_url=dead_redis, database_url=postgres_url))
    retry = RetryPolicy(max_attempts=2, initial_backoff=0.01, max_backoff=0.01)
    try:
        async with AsyncSeatInventoryClient(running.target, retry=retry, timeout=10) as client:
            with pytest.raises(BackendUnavailableError) as caught:
                await client.reserve("any", ["A-1"], "alice")
        assert caught.value.code == grpc.StatusCode.UNAVAILABLE
        assert caught.value.metadata["backend"] == "redis"
    finally:
        await stop_running(running)
