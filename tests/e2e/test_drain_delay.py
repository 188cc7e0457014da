"""``serve --drain-delay S``: on SIGTERM the server reports NOT_SERVING but goes on
answering calls for S seconds, so load balancers and clients' health checks
move away before it refuses any; then the usual drain. A second signal a
moment later ends the delay early (through the supervisor too); the same stop
arriving twice at once (Ctrl-C to the process group, systemd to the cgroup)
does not."""

from __future__ import annotations

import asyncio
import signal
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from seatinventory.v1 import inventory_admin_pb2_grpc, seat_inventory_pb2, seat_inventory_pb2_grpc

from seat_inventory.api.server import SECOND_SIGNAL_AFTER_S
from seat_inventory.config import Settings
from tests.e2e.conftest import start_server
from tests.e2e.helpers import create_event, ttl
from tests.support.server_process import ServerProcess

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

GRACE_S = 5.0
WAIT_S = 15.0  # hang guards, not performance figures


async def health_of(channel: grpc.aio.Channel) -> int:
    stub = health_pb2_grpc.HealthStub(channel)
    reply = await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
    return int(reply.status)


async def until_not_serving(channel: grpc.aio.Channel) -> None:
    async with asyncio.timeout(WAIT_S):
        while True:
            if await health_of(channel) == health_pb2.HealthCheckResponse.NOT_SERVING:
                return
            await asyncio.sleep(0.02)


async def reserve(channel: grpc.aio.Channel, event_id: str, seat: str) -> str:
    """Reserve one seat; the hold id."""
    stub = seat_inventory_pb2_grpc.SeatInventoryStub(channel)
    reply = await stub.Reserve(
        seat_inventory_pb2.ReserveRequest(
            event_id=event_id, seat_ids=[seat], holder_id="drain", ttl=ttl(60)
        ),
        timeout=5,
    )
    return reply.hold.hold_id


async def test_stop_serves_through_the_delay_and_a_cut_short_ends_it(
    redis_url: str, postgres_url: str
) -> None:
    """In process: during the delay health says NOT_SERVING and calls still run;
    setting ``cut_short`` ends the delay and the drain refuses new calls."""
    running = await start_server(
        Settings(host="127.0.0.1", port=0, redis_url=redis_url, database_url=postgres_url)
    )
    event_id = await create_event(running.admin, n=10)
    cut_short = asyncio.Event()
    stopping = asyncio.create_task(
        running.server.stop(grace_s=GRACE_S, drain_delay_s=600, cut_short=cut_short)
    )
    await until_not_serving(running.channel)
    holds = [await reserve(running.channel, event_id, f"A-{i}") for i in range(1, 4)]
    assert len(set(holds)) == 3
    assert not stopping.done()
    cut_short.set()
    await asyncio.wait_for(stopping, WAIT_S)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await reserve(running.channel, event_id, "A-9")
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    await running.channel.close()


async def test_sigterm_twice_at_once_keeps_the_delay_and_the_process_then_exits_0(
    redis_url: str, postgres_url: str
) -> None:
    """One process, --drain-delay 2: two SIGTERMs a few ms apart count as one stop;
    calls go on succeeding while health says NOT_SERVING, then the process drains
    and exits 0 by itself."""
    server = ServerProcess(
        redis_url=redis_url,
        database_url=postgres_url,
        args=["--drain-delay", "2", "--grace", str(GRACE_S)],
    )
    try:
        await server.start()
        assert server.proc is not None
        async with grpc.aio.insecure_channel(server.target) as channel:
            event_id = await create_event(inventory_admin_pb2_grpc.InventoryAdminStub(channel), 10)
            signalled = time.monotonic()
            server.proc.send_signal(signal.SIGTERM)
            await asyncio.sleep(0.01)
            server.proc.send_signal(signal.SIGTERM)
            await until_not_serving(channel)
            await asyncio.sleep(0.5)  # past the moment a second signal would cut it short
            assert server.running, server.logs()
            served = [await reserve(channel, event_id, f"A-{i}") for i in range(1, 4)]
            assert len(set(served)) == 3
            code = await server.wait_exit(WAIT_S + GRACE_S)
            print(f"\nexited {time.monotonic() - signalled:.2f}s after SIGTERM (delay 2 s)")
        assert code == 0, server.logs()
        assert "drain delay cut short" not in server.logs(tail_lines=10_000)
    finally:
        server.cleanup()


async def test_a_second_sigterm_to_the_supervisor_cuts_the_workers_delay_short(
    redis_url: str, postgres_url: str
) -> None:
    """--workers 2, --drain-delay 600: after SIGTERM the workers say NOT_SERVING and
    answer calls; a second SIGTERM to the supervisor, a second later, reaches them
    and every process exits 0 long before the delay is out."""
    server = ServerProcess(
        redis_url=redis_url,
        database_url=postgres_url,
        args=["--workers", "2", "--drain-delay", "600", "--grace", str(GRACE_S)],
    )
    try:
        await server.start()
        assert server.proc is not None
        # start() returns once one worker serves; a worker still starting when the
        # SIGTERM comes just exits (it has nothing in flight), so wait for both.
        await server.wait_logged("all workers serving", WAIT_S)
        async with grpc.aio.insecure_channel(server.target) as channel:
            event_id = await create_event(inventory_admin_pb2_grpc.InventoryAdminStub(channel), 10)
            server.proc.send_signal(signal.SIGTERM)
            await until_not_serving(channel)
            assert await reserve(channel, event_id, "A-1")
            await asyncio.sleep(SECOND_SIGNAL_AFTER_S + 0.2)
            assert server.running, server.logs()
            server.proc.send_signal(signal.SIGTERM)
            code = await server.wait_exit(WAIT_S + GRACE_S)
        assert code == 0, server.logs()
        logs = server.logs(tail_lines=10_000)
        assert logs.count("drain delay cut short") == 2, logs
    finally:
        server.cleanup()
