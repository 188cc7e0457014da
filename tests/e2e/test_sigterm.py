"""SIGTERM to a real server process while clients Reserve, Confirm and Release
on their own connections and a stream is open.

What gRPC gives each call: a call the server had already taken runs to its
end and gets its real answer (the grace is far longer than any call); a call
that reaches the server after the drain began never starts and gets a bare
UNAVAILABLE (no ErrorInfo), as does any call once the process is gone. So the
checks are made against what Redis and SQL hold afterwards: every change that
happened was answered OK, every UNAVAILABLE changed nothing, no hold is left
half-confirmed, and the process exits by itself within the grace.
"""

from __future__ import annotations

import asyncio
import random
import signal
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Iterator
from dataclasses import dataclass, field
from typing import Any, cast

import grpc
import pytest
import redis.asyncio as aioredis
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status
from seatinventory.v1 import inventory_admin_pb2_grpc, seat_inventory_pb2, seat_inventory_pb2_grpc

from seat_inventory.adapters.redis.keys import EventKeys
from seat_inventory.config import Settings
from tests.e2e.conftest import start_server
from tests.e2e.helpers import create_event, error_info, ttl
from tests.support.server_process import Ledger, ServerProcess
from tests.support.services import RedisProcess, postgres_database

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

GRACE_S = 5.0
CLIENTS = 12
SEATS = [f"A-{i}" for i in range(1, 201)]
# What a call gets that never ran: UNAVAILABLE once the server has stopped
# accepting, CANCELLED if it had reached the server but no handler had picked
# it up yet (grpc core answers those CANCELLED: grpc/grpc#41785).
NOT_RUN = ("UNAVAILABLE", "CANCELLED")
# Answers a correct server gives this load; anything else fails the test.
EXPECTED = {
    ("Reserve", "OK", ""),
    ("Reserve", "FAILED_PRECONDITION", "SEATS_UNAVAILABLE"),
    ("Confirm", "OK", ""),
    ("Release", "OK", ""),
} | {(rpc, code, "") for rpc in ("Reserve", "Confirm", "Release") for code in NOT_RUN}


@dataclass
class Outcome:
    rpc: str
    hold_id: str  # the hold asked about; for an OK Reserve, the one made
    status: str
    reason: str
    sent: float
    answered: float = 0.0
    reply: Any = None


@dataclass
class Load:
    outcomes: list[Outcome] = field(default_factory=list)
    sigterm_at: float | None = None

    def ok(self, rpc: str) -> list[Outcome]:
        return [o for o in self.outcomes if o.rpc == rpc and o.status == "OK"]

    def not_run(self, rpc: str) -> list[Outcome]:
        return [o for o in self.outcomes if o.rpc == rpc and o.status in NOT_RUN]


def reason_of(err: grpc.aio.AioRpcError) -> str:
    status = rpc_status.from_call(err)
    for detail in status.details if status else ():
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return info.reason
    return ""


async def attempt(load: Load, rpc: str, hold_id: str, call: Awaitable[Any]) -> Outcome:
    outcome = Outcome(rpc, hold_id, "OK", "", time.monotonic())
    try:
        outcome.reply = await call
    except grpc.aio.AioRpcError as err:
        outcome.status, outcome.reason = err.code().name, reason_of(err)
    outcome.answered = time.monotonic()
    load.outcomes.append(outcome)
    return outcome


async def client(target: str, event_id: str, index: int, load: Load) -> None:
    """Reserve 1-3 random seats, then Confirm or Release the hold, until a call is
    not run (the server is draining or gone)."""
    rng = random.Random(index)
    holder = f"client-{index}"
    async with grpc.aio.insecure_channel(target) as channel:  # a connection of its own
        stub = seat_inventory_pb2_grpc.SeatInventoryStub(channel)
        while True:
            reserved = await attempt(
                load,
                "Reserve",
                "",
                stub.Reserve(
                    seat_inventory_pb2.ReserveRequest(
                        event_id=event_id,
                        seat_ids=rng.sample(SEATS, rng.randint(1, 3)),
                        holder_id=holder,
                        ttl=ttl(120),
                        request_id=uuid.uuid4().hex,
                    ),
                    timeout=15,
                ),
            )
            if reserved.status in NOT_RUN:
                return
            if reserved.status != "OK":
                continue
            hold_id = reserved.reply.hold.hold_id
            reserved.hold_id = hold_id
            if rng.random() < 0.6:
                request = seat_inventory_pb2.ConfirmRequest(
                    hold_id=hold_id, holder_id=holder, order_ref=f"order-{hold_id[-8:]}"
                )
                done = await attempt(load, "Confirm", hold_id, stub.Confirm(request, timeout=15))
            else:
                request_r = seat_inventory_pb2.ReleaseRequest(hold_id=hold_id, holder_id=holder)
                done = await attempt(load, "Release", hold_id, stub.Release(request_r, timeout=15))
            if done.status in NOT_RUN:
                return


@pytest.fixture
def backends() -> Iterator[tuple[str, str]]:
    """A redis-server and a PostgreSQL database of this test's own."""
    redis_server = RedisProcess().start()
    try:
        with postgres_database() as database_url:
            yield redis_server.url, database_url
    finally:
        redis_server.cleanup()


async def end_of(stream: Any) -> grpc.aio.AioRpcError:
    """Read a stream to its end; the error it ended with."""
    try:
        while True:
            await stream.read()
    except grpc.aio.AioRpcError as err:
        return err


async def holds_in_redis(redis_url: str, event_id: str) -> dict[str, dict[str, str]]:
    keys = EventKeys(event_id)
    redis = aioredis.Redis.from_url(redis_url, decode_responses=True)
    found: dict[str, dict[str, str]] = {}
    try:
        async for key in redis.scan_iter(match=keys.hold("*"), count=500):
            fields = cast(dict[str, str], await redis.hgetall(key))
            if fields:
                found[str(key).removeprefix(keys.hold(""))] = fields
    finally:
        await redis.aclose()
    return found


async def test_sigterm_under_load_answers_every_call_and_leaves_nothing_half_made(
    backends: tuple[str, str],
) -> None:
    """SIGTERM mid-load: the open stream ends UNAVAILABLE SERVER_DRAINING; every call
    gets OK, a domain error or a bare UNAVAILABLE (none hangs, none is cut off with
    CANCELLED or INTERNAL); every booking and every remaining hold was answered OK,
    every UNAVAILABLE left its hold as it was; no hold is left confirming; and the
    process exits 0 within the grace."""
    redis_url, database_url = backends
    server = ServerProcess(
        redis_url=redis_url, database_url=database_url, args=["--grace", str(GRACE_S)]
    )
    try:
        await server.start()
        await run_and_check(server, Ledger(database_url, redis_url))
    finally:
        server.cleanup()


async def run_and_check(server: ServerProcess, ledger: Ledger) -> None:
    assert server.proc is not None
    async with grpc.aio.insecure_channel(server.target) as channel:
        event_id = await create_event(
            inventory_admin_pb2_grpc.InventoryAdminStub(channel), n=len(SEATS)
        )
        stream = seat_inventory_pb2_grpc.SeatInventoryStub(channel).StreamAvailability(
            seat_inventory_pb2.StreamAvailabilityRequest(event_id=event_id)
        )
        await stream.read()  # the snapshot: the stream is open
        load = Load()
        clients = [
            asyncio.create_task(client(server.target, event_id, i, load)) for i in range(CLIENTS)
        ]
        deadline = time.monotonic() + 60
        while len(load.ok("Confirm")) < 40:  # well into the load
            assert time.monotonic() < deadline, f"load too slow: {Counter(load.outcomes)}"
            for task in clients:
                if task.done():
                    task.result()
            await asyncio.sleep(0.02)

        server.proc.send_signal(signal.SIGTERM)
        load.sigterm_at = signalled = time.monotonic()
        code = await server.wait_exit(timeout_s=GRACE_S + 10)
        exited_s = time.monotonic() - signalled
        async with asyncio.timeout(30):  # no call hangs
            await asyncio.gather(*clients)
        ended = await end_of(stream)

    seen = Counter(
        (o.rpc, o.status, o.reason, "after" if o.sent >= signalled else "before")
        for o in load.outcomes
    )
    print(f"\nexit code {code} {exited_s:.2f}s after SIGTERM (grace {GRACE_S}s)")
    for key, n in sorted(seen.items()):
        print(f"  {' '.join(k for k in key if k):<45} {n}")
    assert code == 0, server.logs()
    assert ended.code() == grpc.StatusCode.UNAVAILABLE
    assert error_info(ended).reason == "SERVER_DRAINING"
    unexpected = {key for key in seen if key[:3] not in EXPECTED}
    assert not unexpected, f"answers a draining server must not give: {unexpected}"

    in_flight = [o for o in load.outcomes if o.sent < signalled <= o.answered]
    print(f"calls in flight at SIGTERM: {Counter((o.rpc, o.status) for o in in_flight)}")
    assert any(o.status not in NOT_RUN for o in in_flight), "no call was in flight at SIGTERM"

    holds = await holds_in_redis(ledger.redis_url, event_id)
    state = {hold_id: fields.get("state") for hold_id, fields in holds.items()}
    bookings = {row["hold_id"]: row for row in await ledger.bookings(event_id)}
    reserved = {o.hold_id for o in load.ok("Reserve")}
    confirmed = {o.hold_id: o.reply.booking for o in load.ok("Confirm")}
    released = {o.hold_id for o in load.ok("Release")}

    # Every change that happened was answered OK...
    assert set(holds) <= reserved, f"holds nobody was told of: {set(holds) - reserved}"
    assert set(bookings) == set(confirmed), "bookings and OK Confirms differ"
    for hold_id, booking in confirmed.items():
        row = bookings[hold_id]
        assert row["booking_id"] == booking.booking_id
        assert row["status"] == 1
        assert row["seat_ids"].split(",") == list(booking.seat_ids)
    assert {state.get(h, "released") for h in released} == {"released"}
    # ...every call that was not run changed nothing...
    for outcome in load.not_run("Confirm") + load.not_run("Release"):
        assert outcome.hold_id not in bookings, f"{outcome.rpc} {outcome.status} but booked"
        assert state.get(outcome.hold_id) == "held", (
            f"{outcome.rpc} of {outcome.hold_id} answered {outcome.status} but its hold "
            f"is {state.get(outcome.hold_id)}"
        )
    # ...and nothing is half made.
    assert set(state.values()) <= {"held", "released"}, "a hold was left confirming"
    await ledger.assert_no_double_sale()
    sold = await ledger.sold(event_id)
    booked = await ledger.booked_seats(event_id)
    assert sold == set(booked), "Redis's sold seats and SQL's booked seats differ"
    for hold_id, fields in holds.items():
        if fields.get("state") != "held":
            continue
        for seat in fields["seats"].split(","):
            owner = await ledger.seat_key(event_id, seat)
            assert owner is not None
            assert owner.partition("|")[0] == hold_id, f"seat {seat} of {hold_id}: {owner}"


async def test_a_health_watch_hears_not_serving_and_ends_when_the_server_drains(
    redis_url: str, postgres_url: str
) -> None:
    """An open grpc.health.v1 Watch is told NOT_SERVING and then ends UNAVAILABLE,
    so the drain does not wait out the grace for it."""
    running = await start_server(
        Settings(host="127.0.0.1", port=0, redis_url=redis_url, database_url=postgres_url)
    )
    watch = health_pb2_grpc.HealthStub(running.channel).Watch(
        health_pb2.HealthCheckRequest(service="")
    )
    while (await watch.read()).status != health_pb2.HealthCheckResponse.SERVING:
        pass
    # Read on while the server stops, as a client's health checker does: grpc.aio's
    # read() on a call whose status has already arrived raises without handing
    # over the messages before it.
    heard: list[int] = []

    async def listen() -> grpc.aio.AioRpcError:
        try:
            while True:
                heard.append((await watch.read()).status)
        except grpc.aio.AioRpcError as err:
            return err

    listening = asyncio.create_task(listen())
    await asyncio.sleep(0)
    started = time.monotonic()
    await running.server.stop(grace_s=60)
    stopped_s = time.monotonic() - started
    ended = await asyncio.wait_for(listening, timeout=10)
    await running.channel.close()
    print(f"\nstopped in {stopped_s:.2f}s with a Watch open (grace 60 s)")
    assert heard == [health_pb2.HealthCheckResponse.NOT_SERVING]
    assert ended.code() == grpc.StatusCode.UNAVAILABLE
    assert stopped_s < 60
