"""Abuse limits: each one reached is answered with its code and reason, and the
server keeps serving everything else."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status
from seatinventory.v1 import inventory_admin_pb2 as admin_pb
from seatinventory.v1 import seat_inventory_pb2 as pb

from seat_inventory.config import Settings
from tests.e2e.conftest import Running, start_server, stop_running
from tests.e2e.helpers import create_event, error_info, new_event_id, seat_map
from tests.support.auth import TestPrincipals

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

StartWith = Callable[..., Awaitable[Running]]


@pytest.fixture
async def server_with(redis_url: str, postgres_url: str) -> AsyncIterator[StartWith]:
    """Starts servers with some settings changed; stops them after the test."""
    started: list[Running] = []

    async def start(**changes: object) -> Running:
        base = Settings(port=0, redis_url=redis_url, database_url=postgres_url)
        running = await start_server(dataclasses.replace(base, **changes))  # type: ignore[arg-type]
        started.append(running)
        return running

    yield start
    for running in started:
        await stop_running(running)


async def health_ok(channel: grpc.aio.Channel) -> bool:
    reply = await health_pb2_grpc.HealthStub(channel).Check(
        health_pb2.HealthCheckRequest(service=""), timeout=5
    )
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


def retry_info(err: grpc.aio.AioRpcError) -> error_details_pb2.RetryInfo:
    status = rpc_status.from_call(err)
    assert status is not None
    for detail in status.details:
        if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            info = error_details_pb2.RetryInfo()
            detail.Unpack(info)
            return info
    raise AssertionError("no RetryInfo detail")


async def test_rate_limit_refuses_with_retry_after_then_serves_again(
    server_with: StartWith,
) -> None:
    """A burst of 3 at 2 requests/s: the first 3 calls pass, a later one is
    RESOURCE_EXHAUSTED RATE_LIMITED with a retry delay; health still answers
    and after that delay the same caller is served again."""
    running: Running = await server_with(rate_limit=2, rate_burst=3)
    answers: list[grpc.StatusCode] = []
    refused: grpc.aio.AioRpcError | None = None
    request = pb.GetAvailabilityRequest(event_id="no-such-event")
    for _ in range(20):
        try:
            await running.inventory.GetAvailability(request, timeout=5)
        except grpc.aio.AioRpcError as err:
            if err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
                refused = err
                break
            answers.append(err.code())
    assert answers[:3] == [grpc.StatusCode.NOT_FOUND] * 3  # served: the event is unknown
    assert refused is not None, "20 calls at once were never rate limited"
    info = error_info(refused)
    assert info.reason == "RATE_LIMITED"
    retry_ms = int(info.metadata["retry_after_ms"])
    assert 0 < retry_ms <= 500
    assert retry_info(refused).retry_delay.ToMilliseconds() == retry_ms
    assert "requests per second" in refused.details()

    assert await health_ok(running.channel)  # the server itself is fine
    await asyncio.sleep(retry_ms / 1000 + 0.05)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await running.inventory.GetAvailability(request, timeout=5)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND  # served again


async def test_stream_limit_refuses_the_extra_stream_and_keeps_the_others(
    server_with: StartWith,
) -> None:
    """With 2 streams per principal a third is RESOURCE_EXHAUSTED STREAM_LIMIT; the
    two open ones keep delivering, unary calls are served, and once one closes a
    new stream opens."""
    running: Running = await server_with(max_streams_per_principal=2)
    event_id = await create_event(running.admin, n=5)
    request = pb.StreamAvailabilityRequest(event_id=event_id)
    first = running.inventory.StreamAvailability(request)
    second = running.inventory.StreamAvailability(request)
    await first.read()
    await second.read()
    assert dict(await first.initial_metadata()).get("x-request-id")

    third = running.inventory.StreamAvailability(request)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await third.read()
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    info = error_info(caught.value)
    assert (info.reason, info.metadata["limit"]) == ("STREAM_LIMIT", "2")

    await running.inventory.Reserve(
        pb.ReserveRequest(event_id=event_id, seat_ids=["A-1"], holder_id="alice"), timeout=5
    )
    for stream in (first, second):
        update = await asyncio.wait_for(stream.read(), 10)
        assert "A-1" in str(update)

    first.cancel()
    deadline = time.monotonic() + 10
    refusals: list[grpc.StatusCode] = []
    while True:
        again = running.inventory.StreamAvailability(request)
        try:
            await again.read()
            break
        except grpc.aio.AioRpcError as err:
            refusals.append(err.code())
        assert set(refusals) == {grpc.StatusCode.RESOURCE_EXHAUSTED}
        assert time.monotonic() < deadline, "the closed stream's slot was never freed"
        await asyncio.sleep(0.05)
    again.cancel()
    second.cancel()


async def test_oversized_message_is_refused_and_others_are_served(
    server_with: StartWith,
) -> None:
    """A CreateEvent larger than --max-message-bytes is RESOURCE_EXHAUSTED (gRPC
    refuses it before it is read); a small one on the same channel succeeds."""
    running: Running = await server_with(max_message_bytes=32 * 1024)
    big = admin_pb.CreateEventRequest(event_id=new_event_id(), name="Big", seats=seat_map(3000))
    assert big.ByteSize() > 32 * 1024
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await running.admin.CreateEvent(big, timeout=10)
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    print(f"refused: {caught.value.details()}")

    event_id = await create_event(running.admin, n=10)
    reply = await running.inventory.GetAvailability(
        pb.GetAvailabilityRequest(event_id=event_id), timeout=5
    )
    assert len(reply.seats) == 10


async def test_limits_are_per_principal(server_with: StartWith, tmp_path: Path) -> None:
    """With authentication on, one principal over its rate or stream limit is
    refused while another is served as usual."""
    principals = TestPrincipals(tmp_path)
    running = await server_with(
        principals_file=str(principals.path),
        rate_limit=1,
        rate_burst=4,
        max_streams_per_principal=1,
    )
    shop_a, shop_b = principals.md("shop-a"), principals.md("shop-b")
    event_id = await create_event_as(running, principals.md("ops"))
    request = pb.StreamAvailabilityRequest(event_id=event_id)

    a_stream = running.inventory.StreamAvailability(request, metadata=shop_a)
    await a_stream.read()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await running.inventory.StreamAvailability(request, metadata=shop_a).read()
    assert error_info(caught.value).reason == "STREAM_LIMIT"
    b_stream = running.inventory.StreamAvailability(request, metadata=shop_b)
    await b_stream.read()  # shop-b has a slot of its own

    # shop-a used 2 of its 4 (the two stream opens): two more, then refused.
    availability = pb.GetAvailabilityRequest(event_id=event_id)
    reasons = []
    for _ in range(10):
        try:
            await running.inventory.GetAvailability(availability, timeout=5, metadata=shop_a)
        except grpc.aio.AioRpcError as err:
            reasons.append(error_info(err).reason)
            break
    assert reasons == ["RATE_LIMITED"]
    reply = await running.inventory.GetAvailability(availability, timeout=5, metadata=shop_b)
    assert len(reply.seats) == 5
    a_stream.cancel()
    b_stream.cancel()


async def create_event_as(running: Running, metadata: tuple[tuple[str, str], ...]) -> str:
    event_id = new_event_id()
    await running.admin.CreateEvent(
        admin_pb.CreateEventRequest(event_id=event_id, name="Test", seats=seat_map(5)),
        timeout=30,
        metadata=metadata,
    )
    return event_id
