"""A caller's deadline bounds the Redis and SQL calls made for it: with a slow
backend a short deadline is answered promptly (UNAVAILABLE, or at worst the
caller's own DEADLINE_EXCEEDED), the half-done work is cut off, and the server
goes on serving once the backend is fast again."""

from __future__ import annotations

import time
from collections.abc import Awaitable
from typing import Any

import grpc
import pytest
import redis.asyncio as aioredis
from seatinventory.v1 import seat_inventory_pb2 as pb
from seatinventory.v1 import types_pb2
from sqlalchemy.engine import make_url

from seat_inventory.config import Settings
from tests.e2e.conftest import start_server, stop_running
from tests.e2e.helpers import create_event
from tests.support.metrics import scrape
from tests.support.server_process import Ledger
from tests.support.services import RedisProcess, free_port
from tests.support.tcp_proxy import TcpProxy

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

CUT = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}


async def cut_short(call: Awaitable[Any]) -> grpc.StatusCode:
    started = time.monotonic()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    print(f"{caught.value.code().name} after {(time.monotonic() - started) * 1000:.0f} ms")
    return caught.value.code()


async def test_short_deadline_with_slow_backends(
    redis_server: RedisProcess, redis_url: str, postgres_url: str
) -> None:
    client = aioredis.Redis.from_url(redis_url)
    await client.flushall()
    await client.aclose()
    database = make_url(postgres_url)
    async with (
        TcpProxy(redis_server.port) as redis_proxy,
        TcpProxy(database.port or 5432, database.host or "127.0.0.1") as sql_proxy,
    ):
        running = await start_server(
            Settings(
                port=0,
                redis_url=f"redis://{redis_proxy.address()}/0",
                database_url=database.set(host="127.0.0.1", port=sql_proxy.port).render_as_string(
                    False
                ),
                metrics_port=(metrics_port := free_port()),
            )
        )
        try:
            event_id = await create_event(running.admin, n=5)
            hold = (
                await running.inventory.Reserve(
                    pb.ReserveRequest(event_id=event_id, seat_ids=["A-1"], holder_id="alice"),
                    timeout=5,
                )
            ).hold

            # Every Redis packet 2 s late; the caller gives the call 0.5 s.
            redis_proxy.slow(2.0)
            code = await cut_short(
                running.inventory.GetAvailability(
                    pb.GetAvailabilityRequest(event_id=event_id), timeout=0.5
                )
            )
            assert code in CUT
            redis_proxy.slow(0)
            if code == grpc.StatusCode.UNAVAILABLE:  # the server's answer: counted
                errors = [
                    v
                    for (name, _), v in (await scrape(metrics_port)).items()
                    if name == "seat_inventory_backend_errors_total"
                ]
                assert sum(errors) >= 1

            # Every SQL packet 2 s late: Confirm is cut off before its commit
            # (the answer may wait for the connection's rollback, so the caller
            # can see its own DEADLINE_EXCEEDED first) and nothing is booked.
            sql_proxy.slow(2.0)
            confirm = pb.ConfirmRequest(hold_id=hold.hold_id, holder_id="alice", order_ref="o-1")
            assert await cut_short(running.inventory.Confirm(confirm, timeout=0.5)) in CUT
            sql_proxy.slow(0)
            assert await Ledger(postgres_url, redis_url).booking_of_hold(hold.hold_id) is None

            # Fast again: the same Confirm books the hold (nothing half-done stands
            # in its way), and reads are served.
            booking = (await running.inventory.Confirm(confirm, timeout=10)).booking
            assert list(booking.seat_ids) == ["A-1"]
            reply = await running.inventory.GetAvailability(
                pb.GetAvailabilityRequest(event_id=event_id), timeout=5
            )
            booked = [s.seat_id for s in reply.seats if s.status == types_pb2.SEAT_STATUS_BOOKED]
            assert booked == ["A-1"]
        finally:
            await stop_running(running)
