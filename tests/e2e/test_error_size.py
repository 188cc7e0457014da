"""A Reserve that loses many long seat ids: every caller gets FAILED_PRECONDITION
SEATS_UNAVAILABLE with its ErrorInfo, never the client's RESOURCE_EXHAUSTED for
trailers too large (50 ids of 64 characters, listed three times over, used to
come back RESOURCE_EXHAUSTED to about 3 calls in 10)."""

from __future__ import annotations

from collections import Counter

import grpc
import pytest
from seatinventory.v1 import inventory_admin_pb2, seat_inventory_pb2, types_pb2

from seat_inventory.config import Settings
from seat_inventory.domain.policy import Limits
from tests.e2e.conftest import start_server, stop_running
from tests.e2e.helpers import error_info, new_event_id

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


def long_ids(n: int) -> list[str]:
    return [f"S{i:05d}".ljust(64, "x") for i in range(n)]


@pytest.mark.parametrize("per_hold", [50, 300])
async def test_losing_many_long_seat_ids_is_always_seats_unavailable(
    redis_url: str, postgres_url: str, per_hold: int
) -> None:
    """The default 50 seats a hold, and 300 (a raised limit: the list is cut at a
    seat in the ErrorInfo and the rest counted in seat_ids_omitted)."""
    limits = Limits(max_seats_per_hold=per_hold, max_seats_per_holder=per_hold)
    running = await start_server(
        Settings(
            host="127.0.0.1",
            port=0,
            redis_url=redis_url,
            database_url=postgres_url,
            limits=limits,
        )
    )
    try:
        event_id = new_event_id()
        seats = long_ids(per_hold)
        await running.admin.CreateEvent(
            inventory_admin_pb2.CreateEventRequest(
                event_id=event_id,
                name="Long ids",
                seats=[types_pb2.SeatSpec(seat_id=s) for s in seats],
            ),
            timeout=30,
        )
        await running.inventory.Reserve(
            seat_inventory_pb2.ReserveRequest(event_id=event_id, seat_ids=seats, holder_id="a"),
            timeout=10,
        )
        codes: Counter[str] = Counter()
        listed: set[tuple[str, str]] = set()
        for _ in range(60):
            with pytest.raises(grpc.aio.AioRpcError) as lost:
                await running.inventory.Reserve(
                    seat_inventory_pb2.ReserveRequest(
                        event_id=event_id, seat_ids=seats, holder_id="b"
                    ),
                    timeout=10,
                )
            codes[lost.value.code().name] += 1
            if lost.value.code() == grpc.StatusCode.FAILED_PRECONDITION:
                info = error_info(lost.value)
                assert info.reason == "SEATS_UNAVAILABLE"
                listed.add((info.metadata["seat_ids"], info.metadata.get("seat_ids_omitted", "0")))
        assert codes == {"FAILED_PRECONDITION": 60}
        ((csv, omitted),) = listed
        names = csv.split(",")
        assert names == seats[: len(names)]
        assert len(names) + int(omitted) == per_hold
        if per_hold == 50:
            assert omitted == "0"
    finally:
        await stop_running(running)
