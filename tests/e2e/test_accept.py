"""The extra accept loops (api/accept.py): calls they take are served like any
other (interceptors, errors, cancellation), they end with the server, and a
grpcio without the internals they use leaves the server as grpc.aio made it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest
import structlog.testing
from seatinventory.v1 import seat_inventory_pb2, types_pb2

from seat_inventory.api import accept
from seat_inventory.api.principal import ANONYMOUS
from seat_inventory.config import Settings
from tests.e2e.conftest import Running, start_server, stop_running
from tests.e2e.helpers import create_event, error_info, ttl
from tests.support.auth import TestPrincipals

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

CALLS = 200


def settings(redis_url: str, postgres_url: str, **kwargs: object) -> Settings:
    return Settings(
        host="127.0.0.1", port=0, redis_url=redis_url, database_url=postgres_url, **kwargs
    )  # type: ignore[arg-type]


async def reserve_each(running: Running, event_id: str, n: int) -> list[str]:
    """n concurrent Reserves of distinct seats; their hold ids."""

    async def one(i: int) -> str:
        reply = await running.inventory.Reserve(
            seat_inventory_pb2.ReserveRequest(
                event_id=event_id, seat_ids=[f"A-{i}"], holder_id=f"h{i}", ttl=ttl(60)
            ),
            timeout=30,
        )
        return str(reply.hold.hold_id)

    return list(await asyncio.gather(*(one(i) for i in range(1, n + 1))))


async def test_the_installed_grpcio_takes_the_fast_path(live: Running) -> None:
    """Concurrent calls are taken by the extra loops and answered as usual:
    every seat held once, then confirmed or released."""
    acceptors = live.server.acceptors
    assert acceptors.active, "this grpcio's internals were not recognised"
    assert acceptors.waiting > 0
    assert live.server.drains_wakeups, (
        "grpc.aio's completion reader was not found (seatinventory.client.wakeups)"
    )
    event_id = await create_event(live.admin, CALLS)
    before = acceptors.accepted
    holds = await reserve_each(live, event_id, CALLS)
    assert len(set(holds)) == CALLS
    assert acceptors.accepted - before >= CALLS // 4  # 16 loops per method against grpc's one

    async def settle(i: int, hold_id: str) -> str:
        if i % 2:
            await live.inventory.Release(
                seat_inventory_pb2.ReleaseRequest(hold_id=hold_id, holder_id=f"h{i}"), timeout=30
            )
            return "released"
        booking = await live.inventory.Confirm(
            seat_inventory_pb2.ConfirmRequest(hold_id=hold_id, holder_id=f"h{i}"), timeout=30
        )
        assert booking.booking.seat_ids == [f"A-{i}"]
        return "booked"

    outcomes = await asyncio.gather(*(settle(i, h) for i, h in enumerate(holds, start=1)))
    assert outcomes.count("booked") == CALLS // 2
    availability = await live.inventory.GetAvailability(
        seat_inventory_pb2.GetAvailabilityRequest(event_id=event_id), timeout=30
    )
    statuses = [seat.status for seat in availability.seats]
    assert statuses.count(types_pb2.SEAT_STATUS_BOOKED) == CALLS // 2
    assert statuses.count(types_pb2.SEAT_STATUS_AVAILABLE) == CALLS // 2


async def test_calls_they_take_pass_the_interceptors(
    redis_url: str, postgres_url: str, tmp_path: Path
) -> None:
    """With authentication on, every call, whichever loop took it, is refused
    without a token and served with one."""
    principals = TestPrincipals(tmp_path)
    running = await start_server(
        settings(redis_url, postgres_url, principals_file=str(principals.path))
    )
    try:
        acceptors = running.server.acceptors
        assert acceptors.active
        event_id = await create_event(running.admin, CALLS, principals.md("ops"))
        before = acceptors.accepted

        async def anonymous(i: int) -> grpc.aio.AioRpcError | None:
            try:
                await running.inventory.Reserve(
                    seat_inventory_pb2.ReserveRequest(
                        event_id=event_id, seat_ids=[f"A-{i}"], holder_id="x"
                    ),
                    timeout=30,
                )
            except grpc.aio.AioRpcError as err:
                return err
            return None

        refused = await asyncio.gather(*(anonymous(i) for i in range(1, CALLS + 1)))
        assert acceptors.accepted - before >= CALLS // 4
        assert all(err is not None for err in refused), "a call without a token was served"
        assert {err.code() for err in refused if err} == {grpc.StatusCode.UNAUTHENTICATED}
        assert {error_info(err).reason for err in refused if err} == {"UNAUTHENTICATED"}

        async def signed(i: int) -> str:
            reply = await running.inventory.Reserve(
                seat_inventory_pb2.ReserveRequest(
                    event_id=event_id, seat_ids=[f"A-{i}"], holder_id=f"h{i}"
                ),
                metadata=principals.md("shop-a"),
                timeout=30,
            )
            return str(reply.hold.hold_id)

        assert len(set(await asyncio.gather(*(signed(i) for i in range(1, CALLS + 1))))) == CALLS
    finally:
        await stop_running(running)


async def read_to_the_end(call: object) -> None:
    while True:
        await call.read()  # type: ignore[attr-defined]


async def test_a_deadline_reaches_the_handlers_of_calls_they_took(
    redis_url: str, postgres_url: str
) -> None:
    """Streams ended by their callers' deadlines give their slots back in the
    server (the handler saw the cancellation), whichever loop took them."""
    running = await start_server(settings(redis_url, postgres_url, max_streams_per_principal=40))
    try:
        event_id = await create_event(running.admin, 4)
        request = seat_inventory_pb2.StreamAvailabilityRequest(event_id=event_id)
        for _ in range(3):  # 120 streams through 40 slots
            calls = [running.inventory.StreamAvailability(request, timeout=1) for _ in range(40)]
            for call in calls:
                assert (await call.read()).HasField("snapshot")
            for call in calls:
                with pytest.raises(grpc.aio.AioRpcError) as ended:
                    await read_to_the_end(call)
                assert ended.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            # Every slot back: each handler saw its call end.
            for _ in range(500):
                if not running.server.calls.open_streams(ANONYMOUS):
                    break
                await asyncio.sleep(0.02)
            assert running.server.calls.open_streams(ANONYMOUS) == 0
        assert running.server.acceptors.accepted > 0
    finally:
        await stop_running(running)


async def test_they_end_with_the_server(redis_url: str, postgres_url: str) -> None:
    running = await start_server(settings(redis_url, postgres_url))
    acceptors = running.server.acceptors
    assert acceptors.waiting > 0
    event_id = await create_event(running.admin, 50)
    await reserve_each(running, event_id, 50)
    await running.channel.close()
    async with asyncio.timeout(20):
        await running.server.stop(grace_s=1)
    assert acceptors.waiting == 0


async def test_zero_leaves_grpc_aio_alone(redis_url: str, postgres_url: str) -> None:
    running = await start_server(settings(redis_url, postgres_url, accepts_per_method=0))
    try:
        assert not running.server.acceptors.active
        event_id = await create_event(running.admin, 50)
        assert len(set(await reserve_each(running, event_id, 50))) == 50
        assert running.server.acceptors.accepted == 0
    finally:
        await stop_running(running)


async def test_another_grpcio_is_served_the_plain_way(
    redis_url: str,
    postgres_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Internals missing: a warning, no extra loops, every call still served."""
    # (Deleting a real one would break grpc.aio's own loop, which uses them too.)
    monkeypatch.setattr(accept, "_PRIVATE", (*accept._PRIVATE, "_gone_in_this_grpcio"))
    with structlog.testing.capture_logs() as logs:
        running = await start_server(settings(redis_url, postgres_url))
    try:
        assert not running.server.acceptors.active
        warnings = [e for e in logs if "new calls are taken one at a time" in e["event"]]
        assert [(e["log_level"], e["missing"]) for e in warnings] == [
            ("warning", ["_gone_in_this_grpcio"])
        ]
        event_id = await create_event(running.admin, 50)
        assert len(set(await reserve_each(running, event_id, 50))) == 50
    finally:
        await stop_running(running)
