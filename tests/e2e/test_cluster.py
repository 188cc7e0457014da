"""The service on a three-master Redis Cluster (``redis+cluster://``) that this
test session starts on free ports: the reserve / confirm / stream tests of the
other modules run here again against the cluster, and the tests below check
what only a cluster has: events spread over every master, a master that dies
or comes back empty, and FLUSHALL on every master."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

import grpc
import pytest
import redis
from seatinventory.v1 import inventory_admin_pb2, seat_inventory_pb2, types_pb2

from seat_inventory.adapters.redis import RedisHoldStore, connect_redis
from seat_inventory.adapters.redis.feed import RedisFeed
from seat_inventory.adapters.redis.keys import EventKeys
from seat_inventory.config import Settings
from seat_inventory.domain.errors import BackendUnavailable
from seat_inventory.service_layer.ports import EventSnapshot
from tests.e2e.conftest import Running, start_server, stop_running
from tests.e2e.helpers import error_info, seat_map

# The same tests, collected again in this module, where `live` and `redis_url`
# below mean the cluster.
from tests.e2e.test_confirm_over_grpc import (  # noqa: F401
    ledger,
    test_confirm_then_cancel_round_trip,
    test_ten_concurrent_confirms_make_one_booking,
)
from tests.e2e.test_holds_over_grpc import (  # noqa: F401
    test_conflict_is_failed_precondition_naming_the_seats,
    test_contention_never_double_holds,
    test_idempotent_reserve_over_grpc,
    test_other_holder_gets_permission_denied,
    test_reserve_extend_release_round_trip,
)
from tests.e2e.test_stream_availability import (  # noqa: F401
    Follower,
    agrees_with_truth,
    close_followers,
    test_resuming_from_every_cursor_gives_exactly_the_recorded_suffix,
    test_snapshot_plus_changes_equals_get_availability_after_a_random_workload,
)
from tests.support.services import RedisCluster

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

T = TypeVar("T")
AVAILABLE = types_pb2.SEAT_STATUS_AVAILABLE
HELD = types_pb2.SEAT_STATUS_HELD
BOOKED = types_pb2.SEAT_STATUS_BOOKED


@pytest.fixture
def redis_url(redis_cluster_server: RedisCluster) -> str:
    return redis_cluster_server.url


@pytest.fixture
async def live(redis_cluster_server: RedisCluster, postgres_url: str) -> AsyncIterator[Running]:
    """A server on the Redis Cluster + PostgreSQL; every master is flushed first."""
    client = redis_cluster_server.client()
    await client.flushall()
    await client.aclose()
    running = await start_server(
        Settings(
            host="127.0.0.1",
            port=0,
            redis_url=redis_cluster_server.url,
            database_url=postgres_url,
        )
    )
    yield running
    await stop_running(running)


def events_on_every_master(cluster: RedisCluster) -> dict[int, str]:
    """A fresh event id per master (by port), each hashing to a slot that master serves."""
    found: dict[int, str] = {}
    while len(found) < len(cluster.ports):
        event_id = "cl-" + uuid.uuid4().hex[:10]
        found.setdefault(cluster.node_of(EventKeys(event_id).seats), event_id)
    return found


async def create(live: Running, event_id: str, n: int = 5) -> None:
    await live.admin.CreateEvent(
        inventory_admin_pb2.CreateEventRequest(event_id=event_id, name="Test", seats=seat_map(n)),
        timeout=30,
    )


async def reserve(live: Running, event_id: str, seats: list[str], holder: str = "alice") -> str:
    reply = await live.inventory.Reserve(
        seat_inventory_pb2.ReserveRequest(event_id=event_id, seat_ids=seats, holder_id=holder),
        timeout=10,
    )
    return str(reply.hold.hold_id)


async def confirm(live: Running, hold_id: str, holder: str = "alice") -> None:
    await live.inventory.Confirm(
        seat_inventory_pb2.ConfirmRequest(hold_id=hold_id, holder_id=holder), timeout=10
    )


async def statuses(live: Running, event_id: str) -> dict[str, int]:
    reply = await live.inventory.GetAvailability(
        seat_inventory_pb2.GetAvailabilityRequest(event_id=event_id), timeout=10
    )
    return {s.seat_id: s.status for s in reply.seats}


async def eventually(call: Callable[[], Awaitable[T]], wait_s: float = 20.0) -> T:
    """``call`` until it stops failing with UNAVAILABLE (the client library's retry)."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            return await call()
        except grpc.aio.AioRpcError as err:
            if err.code() != grpc.StatusCode.UNAVAILABLE or time.monotonic() > deadline:
                raise
        await asyncio.sleep(0.1)


def keys_on(port: int, event_id: str) -> int:
    """How many keys of the event's hash slot the master on ``port`` itself stores."""
    with redis.Redis(host="127.0.0.1", port=port, decode_responses=True) as node:
        slot = node.cluster("keyslot", EventKeys(event_id).seats)
        return int(node.cluster("countkeysinslot", slot))


async def test_events_on_every_master_reserve_confirm_and_stream(
    live: Running, redis_cluster_server: RedisCluster
) -> None:
    """Three events whose hash tags fall on three different masters: each one's keys
    live on its own master only, and Reserve, Confirm and a stream of changes work on
    all of them at once (each feed reader blocks on its event's master)."""
    cluster = redis_cluster_server
    events = events_on_every_master(cluster)
    assert len(set(events.values())) == len(cluster.ports) == 3
    for event_id in events.values():
        await create(live, event_id)
    followers = {e: Follower.start(live.inventory, e) for e in events.values()}
    for follower in followers.values():
        await follower.first()
    for port, event_id in events.items():
        for other in cluster.ports:
            stored = keys_on(other, event_id)
            assert stored > 0 if other == port else stored == 0, (event_id, other, stored)

    async def sell(event_id: str) -> None:
        await confirm(live, await reserve(live, event_id, ["A-1", "A-2"]))
        await reserve(live, event_id, ["A-3"], holder="bob")

    await asyncio.gather(*(sell(e) for e in events.values()))
    for event_id, follower in followers.items():
        await agrees_with_truth(follower, live.inventory, event_id)
        assert follower.state == {
            "A-1": BOOKED,
            "A-2": BOOKED,
            "A-3": HELD,
            "A-4": AVAILABLE,
            "A-5": AVAILABLE,
        }
        reasons = [c.reason for c in follower.changes]
        assert reasons == [
            types_pb2.CHANGE_REASON_HELD,
            types_pb2.CHANGE_REASON_BOOKED,
            types_pb2.CHANGE_REASON_HELD,
        ]
        await follower.close()
    assert await live.server.check_backends() is True


async def test_flushall_on_every_master_reloads_every_event(
    live: Running, redis_cluster_server: RedisCluster
) -> None:
    """FLUSHALL on all masters: holds are gone, sold seats stay sold, open streams get
    a fresh snapshot, and every event serves again, on whichever master it lives."""
    events = list(events_on_every_master(redis_cluster_server).values())
    holds = {}
    for event_id in events:
        await create(live, event_id)
        await confirm(live, await reserve(live, event_id, ["A-1"]))
        holds[event_id] = await reserve(live, event_id, ["A-2"])
    followers = [Follower.start(live.inventory, e) for e in events]
    for follower in followers:
        await follower.first()
    client = redis_cluster_server.client()
    await client.flushall()
    await client.aclose()
    for event_id, follower in zip(events, followers, strict=True):
        state = await statuses(live, event_id)
        assert (state["A-1"], state["A-2"]) == (BOOKED, AVAILABLE)
        await reserve(live, event_id, ["A-2"], holder="bob")
        await agrees_with_truth(follower, live.inventory, event_id)
        assert len(follower.snapshots) == 2, "no fresh snapshot after the reload"
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await live.inventory.Release(
                seat_inventory_pb2.ReleaseRequest(hold_id=holds[event_id], holder_id="alice"),
                timeout=10,
            )
        assert error_info(caught.value).reason == "HOLD_NOT_FOUND"
        await follower.close()


async def test_a_master_that_dies_stops_only_its_events_and_comes_back_empty(
    live: Running, redis_cluster_server: RedisCluster
) -> None:
    """While one master is down, its events answer UNAVAILABLE BACKEND_UNAVAILABLE and
    health is NOT_SERVING, but events on the other masters keep their holds and serve.
    It restarts without its data: its events reload from SQL (booked seats stay booked,
    the lost hold is gone), and its open stream gets a fresh snapshot."""
    cluster = redis_cluster_server
    events = events_on_every_master(cluster)
    victim_port = cluster.ports[1]
    victim, others = events[victim_port], [e for p, e in events.items() if p != victim_port]
    for event_id in events.values():
        await create(live, event_id)
        await confirm(live, await reserve(live, event_id, ["A-1"]))
        await reserve(live, event_id, ["A-2"])
    follower = Follower.start(live.inventory, victim)
    await follower.first()

    cluster.kill(victim_port)
    try:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await reserve(live, victim, ["A-3"])
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        info = error_info(caught.value)
        assert (info.reason, info.metadata["backend"]) == ("BACKEND_UNAVAILABLE", "redis")
        assert await live.server.check_backends() is False
        for event_id in others:
            assert (await statuses(live, event_id))["A-2"] == HELD
            await reserve(live, event_id, ["A-3"], holder="bob")
    finally:
        cluster.start_node(victim_port)

    state = await eventually(lambda: statuses(live, victim))
    assert (state["A-1"], state["A-2"], state["A-3"]) == (BOOKED, AVAILABLE, AVAILABLE)
    await eventually(lambda: reserve(live, victim, ["A-2", "A-3"], holder="bob"))
    await agrees_with_truth(follower, live.inventory, victim)
    assert len(follower.snapshots) == 2, "no fresh snapshot after the master came back"
    for event_id in others:
        state = await statuses(live, event_id)
        assert (state["A-1"], state["A-2"], state["A-3"]) == (BOOKED, HELD, HELD)
    assert await live.server.check_backends() is True
    await follower.close()


async def test_a_master_restarted_from_its_snapshot_reloads_its_events_from_sql(
    live: Running, redis_cluster_server: RedisCluster
) -> None:
    """A master saves to disk, a seat of its event is sold after that, and the
    master is killed and restarted from the snapshot (where that seat is free):
    the event counts as not loaded on the restarted process and reloads from
    SQL, so the seat sold since stays sold; the snapshot's hold is kept."""
    cluster = redis_cluster_server
    victim_port = cluster.ports[2]
    event_id = events_on_every_master(cluster)[victim_port]
    await create(live, event_id)
    await confirm(live, await reserve(live, event_id, ["A-1"]))
    await reserve(live, event_id, ["A-2"])
    with redis.Redis(host="127.0.0.1", port=victim_port) as node:
        assert node.save()
    await confirm(live, await reserve(live, event_id, ["A-3"]))

    cluster.kill(victim_port)
    dump = cluster.dir / f"node-{cluster.ports.index(victim_port)}" / "dump.rdb"
    try:
        cluster.start_node(victim_port)  # loads dump.rdb: A-3 is not sold there
    finally:
        dump.unlink(missing_ok=True)  # later restarts of this master come back empty

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await eventually(lambda: reserve(live, event_id, ["A-3", "A-4"], holder="bob"))
    assert error_info(caught.value).reason == "SEATS_UNAVAILABLE"
    assert error_info(caught.value).metadata["seat_ids"] == "A-3"
    state = await statuses(live, event_id)
    assert [state[f"A-{i}"] for i in range(1, 6)] == [BOOKED, HELD, BOOKED, AVAILABLE, AVAILABLE]


async def test_a_plain_url_to_one_cluster_node_says_to_use_a_cluster_url(
    redis_cluster_server: RedisCluster,
) -> None:
    """redis:// naming one master: an event served by another master is
    BACKEND_UNAVAILABLE with the fix in its message, not an internal error."""
    cluster = redis_cluster_server
    first = cluster.ports[0]
    event_id = next(e for p, e in events_on_every_master(cluster).items() if p != first)
    client = connect_redis(f"redis://127.0.0.1:{first}/0")
    try:
        with pytest.raises(BackendUnavailable, match=r"redis\+cluster://"):
            await RedisHoldStore(client).load_event(EventSnapshot(event_id, ("A1",), frozenset()))
    finally:
        await client.aclose()


async def test_interrupt_ends_a_blocked_wait_on_a_cluster_node(
    redis_cluster_server: RedisCluster,
) -> None:
    """The cluster waiter blocks on the event's master; interrupt() from another task
    ends that wait at once with BackendUnavailable, and the waiter can wait again."""
    url = redis_cluster_server.url
    client = connect_redis(url)
    feed = RedisFeed(client, url, max_block_s=5.0)
    waiter = feed.waiter("ev-idle")
    try:
        assert await waiter.wait("0-0", 0.01) is False
        pending = asyncio.create_task(waiter.wait("0-0", 5.0))
        await asyncio.sleep(0.05)
        await waiter.interrupt()
        with pytest.raises(BackendUnavailable):
            await asyncio.wait_for(pending, 1.0)
        assert await waiter.wait("0-0", 0.01) is False
    finally:
        await waiter.close()
        await client.aclose()


async def test_a_burst_beyond_max_connections_queues_instead_of_failing(
    redis_cluster_server: RedisCluster,
) -> None:
    """300 concurrent scripts through a client allowed 4 connections: every one is
    answered (redis-py's cluster client alone fails the excess with
    MaxConnectionsError), and no master got more than 4 connections."""
    client = connect_redis(redis_cluster_server.url, max_connections=4)
    holds = RedisHoldStore(client)
    events = list(events_on_every_master(redis_cluster_server).values())
    try:
        for event_id in events:
            await holds.load_event(EventSnapshot(event_id, ("A1", "A2"), frozenset({"A2"})))
        states = await asyncio.gather(*(holds.live_state(events[i % 3]) for i in range(300)))
        assert all(state.booked == {"A2"} for state in states)
        assert all(len(node._connections) <= 4 for node in client.get_nodes())
    finally:
        await client.aclose()
