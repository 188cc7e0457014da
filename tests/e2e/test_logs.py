"""JSON logs: one access line per call with its request id (the caller's
``x-request-id`` or a generated one, echoed back in the metadata) and its
principal, and never a token."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from seatinventory.v1 import inventory_admin_pb2, inventory_admin_pb2_grpc, seat_inventory_pb2_grpc
from seatinventory.v1 import seat_inventory_pb2 as pb

from tests.e2e.helpers import new_event_id, seat_map
from tests.support.auth import TestPrincipals, bearer
from tests.support.server_process import ServerProcess

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

WRONG_TOKEN = "tok-wrong-do-not-log-7f3a9c2e51b84d06"


@pytest.fixture
async def json_server(
    redis_url: str, postgres_url: str, tmp_path: Path
) -> AsyncIterator[tuple[ServerProcess, TestPrincipals]]:
    principals = TestPrincipals(tmp_path)
    server = ServerProcess(
        redis_url=redis_url,
        database_url=postgres_url,
        args=("--log-format", "json", "--access-log", "--principals", str(principals.path)),
    )
    try:
        yield await server.start(), principals
    finally:
        await server.stop()
        server.cleanup()


def request_id(metadata: object) -> str | None:
    return dict(metadata or ()).get("x-request-id")  # type: ignore[call-overload, no-any-return]


async def test_json_access_log_with_request_ids_and_no_token(
    json_server: tuple[ServerProcess, TestPrincipals],
) -> None:
    server, principals = json_server
    shop = principals.md("shop-a")
    async with grpc.aio.insecure_channel(server.target) as channel:
        stub = seat_inventory_pb2_grpc.SeatInventoryStub(channel)
        request = pb.GetAvailabilityRequest(event_id="no-such-event")

        # The caller's id is used and echoed back, on an error too.
        call = stub.GetAvailability(
            request, timeout=5, metadata=(("x-request-id", "req-abc-123"), *shop)
        )
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
        assert request_id(caught.value.trailing_metadata()) == "req-abc-123"

        # No id (or an unusable one): a fresh one is made up and echoed back.
        generated = []
        for extra in ((), (("x-request-id", "bad id with spaces"),)):
            call = stub.GetAvailability(request, timeout=5, metadata=(*extra, *shop))
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await call
            made_up = request_id(caught.value.trailing_metadata())
            assert made_up
            assert made_up != "bad id with spaces"
            generated.append(made_up)
        assert generated[0] != generated[1]

        # A successful call echoes it too.
        admin = inventory_admin_pb2_grpc.InventoryAdminStub(channel)
        event_id = new_event_id()
        await admin.CreateEvent(
            inventory_admin_pb2.CreateEventRequest(event_id=event_id, name="L", seats=seat_map(3)),
            timeout=30,
            metadata=principals.md("ops"),
        )
        call = stub.GetAvailability(
            pb.GetAvailabilityRequest(event_id=event_id),
            timeout=5,
            metadata=(("x-request-id", "req-ok-1"), *shop),
        )
        assert len((await call).seats) == 3
        assert request_id(await call.trailing_metadata()) == "req-ok-1"

        # A wrong token is refused, and not logged either.
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.GetAvailability(request, timeout=5, metadata=bearer(WRONG_TOKEN))
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    await server.stop()

    lines = [
        line
        for line in server.logs(tail_lines=100_000).splitlines()
        if line.strip() and not line.startswith("--- ")
    ]
    records = [json.loads(line) for line in lines]  # every line is JSON
    access = {r["request_id"]: r for r in records if r.get("event") == "call"}
    mine = access["req-abc-123"]
    assert mine["method"] == "GetAvailability"
    assert mine["principal"] == "shop-a"
    assert (mine["code"], mine["reason"]) == ("NOT_FOUND", "EVENT_NOT_FOUND")
    assert mine["duration_ms"] >= 0
    assert mine["level"] == "info"
    assert set(generated) <= set(access)
    assert (access["req-ok-1"]["code"], access["req-ok-1"]["principal"]) == ("OK", "shop-a")
    everything = "\n".join(lines)
    for token in (*principals.tokens.values(), WRONG_TOKEN):
        assert token not in everything


async def test_a_redis_that_may_evict_is_named_when_the_server_starts(
    postgres_url: str,
) -> None:
    """The start-up line an operator sees when Redis could drop a hold."""
    from tests.support.services import RedisProcess

    redis = RedisProcess(extra_args=("--maxmemory-policy", "allkeys-lru")).start()
    server = ServerProcess(
        redis_url=redis.url, database_url=postgres_url, args=("--log-format", "json")
    )
    try:
        await server.start()
        await server.wait_logged("redis setup weakens the guarantees")
        lines = [json.loads(line) for line in server.logs().splitlines() if line.startswith("{")]
        (warning,) = [
            line for line in lines if line["event"] == "redis setup weakens the guarantees"
        ]
        assert warning["level"] == "warning"
        assert "evicts keys when full (maxmemory-policy allkeys-lru)" in warning["problem"]
        await server.stop()
    finally:
        server.cleanup()
        redis.cleanup()
