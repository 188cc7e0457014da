"""Client tests reuse the e2e server fixtures; ``client`` is a typed async client
on a real server backed by the real Redis and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from seatinventory.client import AsyncSeatInventoryClient

from tests.e2e.conftest import Running, live  # noqa: F401  (the fixture, used by these tests)


async def until_serving(channel: grpc.aio.Channel) -> None:
    """Until the server's first backend check has passed.

    Stopping a server while that first check is still connecting to the
    database can hang Server.stop (the cancellation is lost in the driver), so
    no test ends before it."""
    stub = health_pb2_grpc.HealthStub(channel)
    request = health_pb2.HealthCheckRequest(service="")
    async with asyncio.timeout(10):
        while True:
            reply = await stub.Check(request, timeout=2)
            if reply.status == health_pb2.HealthCheckResponse.SERVING:
                return
            await asyncio.sleep(0.02)


@pytest.fixture
async def client(live: Running) -> AsyncIterator[AsyncSeatInventoryClient]:  # noqa: F811
    await until_serving(live.channel)
    async with AsyncSeatInventoryClient(live.target) as client:
        yield client
