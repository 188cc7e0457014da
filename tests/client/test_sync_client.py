"""The blocking twin against a real server: the same RPCs, the same typed errors.
Its calls run on a worker thread, since the server shares the test's event loop."""

from __future__ import annotations

import asyncio

import pytest
from seatinventory.client import (
    AsyncSeatInventoryClient,
    AvailabilityView,
    BookingStatus,
    EventExists,
    EventNotFound,
    HoldNotFound,
    HoldNotOwned,
    InvalidRequest,
    SeatInventoryClient,
    SeatStatus,
    SeatsUnavailable,
)

from tests.e2e.conftest import Running
from tests.e2e.helpers import new_event_id, seat_map

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


def round_trip(target: str) -> None:
    event_id = new_event_id()
    with SeatInventoryClient(target) as client:
        assert client.create_event(event_id, "Sync", seat_map(6)).seat_count == 6
        hold = client.reserve(event_id, ["A-1", "A-2"], "alice", ttl=30)
        assert client.extend_hold(hold.hold_id, "alice", ttl=90).hold_id == hold.hold_id
        spare = client.reserve(event_id, ["A-3"], "bob")
        assert client.release(spare.hold_id, "bob") is True
        booking = client.confirm(hold.hold_id, "alice", order_ref="sync-1")
        assert list(booking.seat_ids) == ["A-1", "A-2"]

        updates = client.watch_availability(event_id)
        view = AvailabilityView()
        view.apply(next(updates))
        client.reserve(event_id, ["A-6"], "carol")
        while view.status("A-6") != SeatStatus.SEAT_STATUS_HELD:
            view.apply(next(updates))
        updates.close()
        assert view.seats == AvailabilityView.from_response(client.get_availability(event_id)).seats

        assert client.get_event(event_id).booked_count == 2
        cancelled = client.cancel_booking(booking.booking_id)
        assert cancelled.status == BookingStatus.BOOKING_STATUS_CANCELLED


def typed_errors(target: str) -> None:
    event_id = new_event_id()
    with SeatInventoryClient(target) as client:
        client.create_event(event_id, "Sync errors", seat_map(4))
        hold = client.reserve(event_id, ["A-1"], "bob")
        with pytest.raises(SeatsUnavailable) as lost:
            client.reserve(event_id, ["A-1", "A-2"], "alice")
        assert lost.value.seat_ids == ("A-1",)
        with pytest.raises(HoldNotOwned):
            client.release(hold.hold_id, "alice")
        client.release(hold.hold_id, "bob")
        with pytest.raises(HoldNotFound):
            client.confirm(hold.hold_id, "bob")
        with pytest.raises(EventNotFound):
            client.get_availability("no-such-event")
        with pytest.raises(EventExists):
            client.create_event(event_id, "Another name", seat_map(4))
        with pytest.raises(InvalidRequest) as invalid:
            client.reserve(event_id, ["A-1", "A-1"], "alice")
        assert [v.field for v in invalid.value.violations] == ["seat_ids[1]"]


async def test_sync_client_round_trips(live: Running, client: AsyncSeatInventoryClient) -> None:
    """Every RPC of both services works the same through the blocking client, watch included."""
    await asyncio.to_thread(round_trip, live.target)


async def test_sync_client_raises_typed_errors(
    live: Running, client: AsyncSeatInventoryClient
) -> None:
    """The blocking client raises the same typed errors as the async one."""
    await asyncio.to_thread(typed_errors, live.target)
