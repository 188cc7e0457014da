"""The standard gRPC pieces every server process offers: health and reflection."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from tests.e2e.conftest import Running

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


async def test_health_is_serving_for_each_service(live: Running) -> None:
    """Health answers SERVING overall and for both services once the backends answer."""
    stub = health_pb2_grpc.HealthStub(live.channel)
    for service in ("", "seatinventory.v1.SeatInventory", "seatinventory.v1.InventoryAdmin"):
        for _ in range(50):
            reply = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=2)
            if reply.status == health_pb2.HealthCheckResponse.SERVING:
                break
            await asyncio.sleep(0.1)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING, service


async def test_reflection_lists_the_services(live: Running) -> None:
    """Server reflection names both services, so grpcurl-style tools work without protos."""
    stub = reflection_pb2_grpc.ServerReflectionStub(live.channel)
    call = stub.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5
    )
    names = set()
    async for reply in call:
        names |= {s.name for s in reply.list_services_response.service}
    assert {"seatinventory.v1.SeatInventory", "seatinventory.v1.InventoryAdmin"} <= names
    assert "grpc.health.v1.Health" in names


@pytest.mark.parametrize("host", ["::1", "[::1]"])
async def test_an_ipv6_host_is_served(host: str, tmp_path: Path) -> None:
    """--host ::1 (or [::1]): the server listens on the IPv6 loopback (gRPC had been
    handed "::1:port" and refused it as an address in use)."""
    import grpc

    from seat_inventory.api.server import Server
    from seat_inventory.bootstrap import build
    from seat_inventory.config import Settings

    settings = Settings(host=host, port=0, database_url=f"sqlite:///{tmp_path / 'v6.db'}")
    server = Server(await build(settings))
    port = await server.start()
    try:
        async with grpc.aio.insecure_channel(f"[::1]:{port}") as channel, asyncio.timeout(10):
            # SERVING once its first backend check passed: watch for it.
            watch = health_pb2_grpc.HealthStub(channel).Watch(
                health_pb2.HealthCheckRequest(service="")
            )
            async for update in watch:
                if update.status == health_pb2.HealthCheckResponse.SERVING:
                    break
            watch.cancel()
    finally:
        await server.stop(grace_s=1)


async def test_open_reflection_streams_hold_no_thread(tmp_path: Path) -> None:
    """Reflection needs no token, so anyone may keep its streams open: ten of them,
    more than the loop's default executor has threads, and a Confirm (a SQLite
    commit, which runs on that executor) still goes through. The blocking
    reflection servicer had held a thread per open stream."""
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
    from seatinventory.v1 import seat_inventory_pb2 as pb

    from seat_inventory.config import Settings
    from tests.e2e.conftest import start_server, stop_running
    from tests.e2e.helpers import create_event

    running = await start_server(
        Settings(host="127.0.0.1", port=0, database_url=f"sqlite:///{tmp_path / 'r.db'}")
    )
    streams = []
    try:
        event_id = await create_event(running.admin, n=4)
        stub = reflection_pb2_grpc.ServerReflectionStub(running.channel)
        for _ in range(10):
            stream = stub.ServerReflectionInfo()
            await stream.write(reflection_pb2.ServerReflectionRequest(list_services=""))
            await stream.read()  # answered; the stream stays open
            streams.append(stream)
        hold = (
            await running.inventory.Reserve(
                pb.ReserveRequest(event_id=event_id, seat_ids=["A-1"], holder_id="al"), timeout=5
            )
        ).hold
        booking = (
            await running.inventory.Confirm(
                pb.ConfirmRequest(hold_id=hold.hold_id, holder_id="al"), timeout=5
            )
        ).booking
        assert list(booking.seat_ids) == ["A-1"]
    finally:
        for stream in streams:
            stream.cancel()
        await stop_running(running)
