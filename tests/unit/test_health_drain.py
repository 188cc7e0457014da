"""grpc.health.v1 on a real grpc.aio server (no backends): Check, Watch, and the
drain ending every open Watch with NOT_SERVING then UNAVAILABLE."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from seat_inventory.api.server import DrainingHealth

Status = health_pb2.HealthCheckResponse
WATCH_ENDS_WITHIN_S = 10  # a hang guard, not a performance figure


class HealthOnly:
    def __init__(self, server: grpc.aio.Server, health: DrainingHealth, port: int) -> None:
        self.server, self.health = server, health
        self.channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        self.stub = health_pb2_grpc.HealthStub(self.channel)


@pytest.fixture
async def running() -> AsyncIterator[HealthOnly]:
    server = grpc.aio.server()
    health = DrainingHealth()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    target = HealthOnly(server, health, port)
    yield target
    await target.channel.close()
    await server.stop(0)


async def statuses_until_end(
    call: grpc.aio.UnaryStreamCall[health_pb2.HealthCheckRequest, Status],
) -> tuple[list[int], grpc.StatusCode]:
    seen: list[int] = []
    async with asyncio.timeout(WATCH_ENDS_WITHIN_S):
        try:
            while (reply := await call.read()) is not grpc.aio.EOF:
                seen.append(reply.status)
        except grpc.aio.AioRpcError as exc:
            return seen, exc.code()
    return seen, await call.code()


async def test_check_answers_known_services_and_not_found_for_others(
    running: HealthOnly,
) -> None:
    await running.health.set("svc", Status.NOT_SERVING)
    assert (await running.stub.Check(health_pb2.HealthCheckRequest())).status == Status.SERVING
    reply = await running.stub.Check(health_pb2.HealthCheckRequest(service="svc"))
    assert reply.status == Status.NOT_SERVING
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await running.stub.Check(health_pb2.HealthCheckRequest(service="nope"))
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND


async def test_a_watch_hears_every_change_and_nothing_twice(running: HealthOnly) -> None:
    call = running.stub.Watch(health_pb2.HealthCheckRequest(service="svc"))
    assert (await call.read()).status == Status.SERVICE_UNKNOWN
    await running.health.set("svc", Status.SERVING)
    assert (await call.read()).status == Status.SERVING
    await running.health.set("svc", Status.SERVING)  # unchanged: not sent again
    await running.health.set("svc", Status.NOT_SERVING)
    assert (await call.read()).status == Status.NOT_SERVING
    await running.health.set("other", Status.NOT_SERVING)  # another service: not sent
    await running.health.enter_graceful_shutdown()
    seen, code = await statuses_until_end(call)
    assert seen == []  # already NOT_SERVING
    assert code == grpc.StatusCode.UNAVAILABLE


@pytest.mark.parametrize("service", ["", "never-set"])
async def test_the_drain_ends_open_watches_even_with_a_write_in_flight(service: str) -> None:
    """Status changes and the drain land together, again and again, on many open
    watches: each one must end NOT_SERVING then UNAVAILABLE, and none may hang (a
    wrapper that cancelled grpc_health's Watch mid-write left watches open for the
    whole grace: GRPC_CALL_ERROR_TOO_MANY_OPERATIONS on its own write). A service
    never set is watched as SERVICE_UNKNOWN and ends the same way."""
    for _ in range(20):
        health = DrainingHealth()
        server = grpc.aio.server()
        health_pb2_grpc.add_HealthServicer_to_server(health, server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            calls = [stub.Watch(health_pb2.HealthCheckRequest(service=service)) for _ in range(8)]
            for call in calls:
                assert (await call.read()).status in (Status.SERVING, Status.SERVICE_UNKNOWN)
            if not service:
                await health.set(service, Status.NOT_SERVING)
                await health.set(service, Status.SERVING)
            await health.enter_graceful_shutdown()
            ended = await asyncio.gather(*(statuses_until_end(call) for call in calls))
            for seen, code in ended:
                assert seen, "no status before the end"
                assert seen[-1] == Status.NOT_SERVING, seen
                assert code == grpc.StatusCode.UNAVAILABLE
        await server.stop(0)
