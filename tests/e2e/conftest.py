"""A real server on a free port, backed by the real Redis and PostgreSQL, and
generated stubs on a real channel."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
import pytest
from seatinventory.v1 import inventory_admin_pb2_grpc, seat_inventory_pb2_grpc

from seat_inventory.api.server import Server
from seat_inventory.bootstrap import build
from seat_inventory.config import Settings


@dataclass
class Running:
    server: Server
    channel: grpc.aio.Channel
    inventory: seat_inventory_pb2_grpc.SeatInventoryStub
    admin: inventory_admin_pb2_grpc.InventoryAdminStub
    target: str


async def start_server(settings: Settings) -> Running:
    app = await build(settings)
    server = Server(app)
    port = await server.start()
    target = f"127.0.0.1:{port}"
    channel = grpc.aio.insecure_channel(target)
    return Running(
        server,
        channel,
        seat_inventory_pb2_grpc.SeatInventoryStub(channel),
        inventory_admin_pb2_grpc.InventoryAdminStub(channel),
        target,
    )


@pytest.fixture
async def live(redis_url: str, postgres_url: str) -> AsyncIterator[Running]:
    """A server on real Redis + PostgreSQL; Redis is flushed before each test."""
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(redis_url)
    await client.flushall()
    await client.aclose()
    running = await start_server(
        Settings(host="127.0.0.1", port=0, redis_url=redis_url, database_url=postgres_url)
    )
    yield running
    await stop_running(running)


async def stop_running(running: Running) -> None:
    """Stop a test server; a shutdown that hangs fails loudly with every task's stack."""
    import asyncio
    import io

    try:
        async with asyncio.timeout(20):
            await running.channel.close()
            await running.server.stop(grace_s=1)
    except TimeoutError:
        dump = io.StringIO()
        for task in asyncio.all_tasks():
            task.print_stack(file=dump)
        raise AssertionError("server shutdown hung; tasks:\n" + dump.getvalue()) from None
