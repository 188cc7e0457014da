"""Redis unreachable: calls answer UNAVAILABLE fast and health says NOT_SERVING
until it answers again."""

from __future__ import annotations

import asyncio
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from seatinventory.v1 import seat_inventory_pb2

from seat_inventory.config import Settings
from tests.e2e.conftest import start_server
from tests.e2e.helpers import create_event, error_info
from tests.support.services import RedisProcess, free_port

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


async def health_status(channel: grpc.aio.Channel) -> int:
    stub = health_pb2_grpc.HealthStub(channel)
    reply = await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=2)
    return int(reply.status)


async def wait_health(channel: grpc.aio.Channel, wanted: int, within_s: float = 10) -> None:
    deadline = time.monotonic() + within_s
    while (status := await health_status(channel)) != wanted:
        assert time.monotonic() < deadline, f"health stayed {status}, wanted {wanted}"
        await asyncio.sleep(0.1)


async def test_unreachable_redis_is_unavailable_then_recovers(postgres_url: str) -> None:
    """With nothing on the Redis port, Reserve is UNAVAILABLE BACKEND_UNAVAILABLE within
    its deadline and health is NOT_SERVING; once Redis is up, both recover."""
    port = free_port()
    running = await start_server(
        Settings(
            port=0,
            redis_url=f"redis://127.0.0.1:{port}/0",
            database_url=postgres_url,
            health_interval_s=0.2,
        )
    )
    try:
        await wait_health(running.channel, health_pb2.HealthCheckResponse.NOT_SERVING)
        started = time.monotonic()
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await running.inventory.Reserve(
                seat_inventory_pb2.ReserveRequest(
                    event_id="any", seat_ids=["A-1"], holder_id="alice"
                ),
                timeout=3,
            )
        elapsed = time.monotonic() - started
        print(f"UNAVAILABLE after {elapsed * 1000:.0f} ms")
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        assert error_info(caught.value).reason == "BACKEND_UNAVAILABLE"
        assert "redis" in caught.value.details()

        redis = RedisProcess(port).start()
        try:
            await wait_health(running.channel, health_pb2.HealthCheckResponse.SERVING)
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await running.inventory.Reserve(
                    seat_inventory_pb2.ReserveRequest(
                        event_id="any", seat_ids=["A-1"], holder_id="alice"
                    ),
                    timeout=3,
                )
            assert error_info(caught.value).reason == "EVENT_NOT_FOUND"  # serving again
        finally:
            redis.cleanup()
    finally:
        await running.channel.close()
        await running.server.stop(grace_s=1)


async def test_short_deadline_with_dead_redis_is_not_a_hang(postgres_url: str) -> None:
    """A 300 ms deadline against a dead Redis ends in UNAVAILABLE or DEADLINE_EXCEEDED
    at about that time, never later."""
    running = await start_server(
        Settings(port=0, redis_url=f"redis://127.0.0.1:{free_port()}/0", database_url=postgres_url)
    )
    try:
        # The event reaches SQL even with Redis down; Redis gets it on first use.
        event_id = await create_event(running.admin, n=5)
        started = time.monotonic()
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await running.inventory.GetAvailability(
                seat_inventory_pb2.GetAvailabilityRequest(event_id=event_id), timeout=0.3
            )
        print(f"answered after {(time.monotonic() - started) * 1000:.0f} ms")
        assert caught.value.code() in {
            grpc.StatusCode.UNAVAILABLE,
            grpc.StatusCode.DEADLINE_EXCEEDED,
        }
    finally:
        await running.channel.close()
        await running.server.stop(grace_s=1)
