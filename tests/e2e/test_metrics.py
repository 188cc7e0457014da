"""Prometheus metrics scraped over HTTP after a known workload show exactly the
counts the workload made."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import grpc
import pytest
from seatinventory.v1 import seat_inventory_pb2 as pb

from seat_inventory.config import Settings
from tests.e2e.conftest import Running, start_server, stop_running
from tests.e2e.helpers import create_event, error_info, ttl
from tests.support.metrics import scrape, value
from tests.support.services import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


@pytest.fixture
async def metered(redis_url: str, postgres_url: str) -> AsyncIterator[tuple[Running, int]]:
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(redis_url)
    await client.flushall()
    await client.aclose()
    port = free_port()
    running = await start_server(
        Settings(
            port=0,
            redis_url=redis_url,
            database_url=postgres_url,
            metrics_port=port,
            sweep_interval_s=0.1,
        )
    )
    yield running, port
    await stop_running(running)


async def test_scraped_metrics_match_the_workload(metered: tuple[Running, int]) -> None:
    """5 Reserves, 2 conflicts, 1 Confirm sent twice, 1 Release, 1 hold left to
    lapse and 1 open stream: every counter and gauge says exactly that."""
    running, port = metered
    inventory = running.inventory
    event_id = await create_event(running.admin, n=10)

    holds = []
    for i in range(1, 6):
        reply = await inventory.Reserve(
            pb.ReserveRequest(
                event_id=event_id,
                seat_ids=[f"A-{i}"],
                holder_id="alice",
                # The last one lapses by itself.
                ttl=ttl(1 if i == 5 else 300),
            ),
            timeout=5,
        )
        holds.append(reply.hold.hold_id)
    for seat in ("A-1", "A-2"):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await inventory.Reserve(
                pb.ReserveRequest(event_id=event_id, seat_ids=[seat], holder_id="bob"), timeout=5
            )
        assert error_info(caught.value).reason == "SEATS_UNAVAILABLE"
    for _ in range(2):  # the retry answers the same booking and books nothing more
        await inventory.Confirm(
            pb.ConfirmRequest(hold_id=holds[0], holder_id="alice", order_ref="o-1"), timeout=5
        )
    await inventory.Release(pb.ReleaseRequest(hold_id=holds[1], holder_id="alice"), timeout=5)
    stream = inventory.StreamAvailability(pb.StreamAvailabilityRequest(event_id=event_id))
    await stream.read()  # the snapshot: the stream is open

    deadline = time.monotonic() + 15
    while (samples := await scrape(port)) and value(
        samples, "seat_inventory_hold_expiries_total"
    ) < 1:
        assert time.monotonic() < deadline, "the 1 s hold never expired"
        await asyncio.sleep(0.1)

    rpcs = "seat_inventory_rpcs_total"
    assert value(samples, rpcs, method="Reserve", code="OK", reason="") == 5
    assert (
        value(
            samples,
            rpcs,
            method="Reserve",
            code="FAILED_PRECONDITION",
            reason="SEATS_UNAVAILABLE",
        )
        == 2
    )
    assert value(samples, rpcs, method="Confirm", code="OK", reason="") == 2
    assert value(samples, rpcs, method="Release", code="OK", reason="") == 1
    assert value(samples, rpcs, method="CreateEvent", code="OK", reason="") == 1
    assert (
        value(samples, "seat_inventory_rpc_duration_seconds_count", method="Reserve", code="OK")
        == 5
    )
    assert (
        value(
            samples,
            "seat_inventory_rpc_duration_seconds_count",
            method="Reserve",
            code="FAILED_PRECONDITION",
        )
        == 2
    )
    assert value(samples, "seat_inventory_conflicts_total") == 2
    assert value(samples, "seat_inventory_confirms_total") == 1
    assert value(samples, "seat_inventory_hold_expiries_total") == 1
    # 5 held - 1 confirmed - 1 released - 1 lapsed.
    assert value(samples, "seat_inventory_holds_active") == 2
    assert value(samples, "seat_inventory_stream_subscribers") == 1
    assert not [k for k in samples if k[0] == "seat_inventory_backend_errors_total"]

    stream.cancel()
    deadline = time.monotonic() + 10
    while value(await scrape(port), "seat_inventory_stream_subscribers") != 0:
        assert time.monotonic() < deadline, "the cancelled stream was never counted out"
        await asyncio.sleep(0.05)
    samples = await scrape(port)
    assert value(samples, rpcs, method="StreamAvailability", code="CANCELLED", reason="") == 1
