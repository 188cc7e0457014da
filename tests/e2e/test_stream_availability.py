"""StreamAvailability over a real channel on real Redis and PostgreSQL: snapshot plus
changes equals the truth, resuming is exact, and the feed copes with trimming,
expiry, other replicas, slow readers, Redis trouble and shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

import grpc
import pytest
import redis.asyncio as aioredis
from seatinventory.v1 import (
    inventory_admin_pb2,
    inventory_admin_pb2_grpc,
    seat_inventory_pb2,
    seat_inventory_pb2_grpc,
    types_pb2,
)

from seat_inventory.config import Settings
from tests.e2e.conftest import Running, start_server, stop_running
from tests.e2e.helpers import create_event, error_info, ttl
from tests.support.server_process import ServerProcess
from tests.support.services import RedisProcess

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

Stub = seat_inventory_pb2_grpc.SeatInventoryStub
EXPECTED_LOSSES = {grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.NOT_FOUND}


@dataclass(frozen=True)
class Change:
    cursor: str
    seat_ids: tuple[str, ...]
    status: int
    reason: int


_open: list[Follower] = []


@pytest.fixture(autouse=True)
async def close_followers() -> AsyncIterator[None]:
    """A failed test still cancels its streams, so no call outlives its test."""
    yield
    while _open:
        await _open.pop().close()


@dataclass
class Follower:
    """Reads one stream in the background and keeps the seat states it implies."""

    call: grpc.aio.UnaryStreamCall  # type: ignore[type-arg]
    state: dict[str, int] = field(default_factory=dict)
    snapshots: list[str] = field(default_factory=list)  # cursor of each snapshot
    snapshot_seats: list[tuple[str, int]] = field(default_factory=list)  # the last one, in order
    updates: list[str] = field(default_factory=list)  # cursor of each update
    changes: list[Change] = field(default_factory=list)
    arrivals: list[float] = field(default_factory=list)  # wall time of each change
    cursor: str = ""
    error: grpc.aio.AioRpcError | None = None
    task: asyncio.Task[None] | None = None

    @classmethod
    def start(cls, stub: Stub, event_id: str, resume_cursor: str = "") -> Follower:
        request = seat_inventory_pb2.StreamAvailabilityRequest(
            event_id=event_id, resume_cursor=resume_cursor
        )
        follower = cls(stub.StreamAvailability(request))
        follower.task = asyncio.create_task(follower._run())
        _open.append(follower)
        return follower

    async def _run(self) -> None:
        try:
            async for update in self.call:
                self.apply(update)
        except grpc.aio.AioRpcError as err:
            self.error = err

    def apply(self, update: types_pb2.AvailabilityUpdate) -> None:
        if update.HasField("snapshot"):
            self.snapshot_seats = [(s.seat_id, s.status) for s in update.snapshot.seats]
            self.state = dict(self.snapshot_seats)
            self.snapshots.append(update.cursor)
        for c in update.changes.changes:
            self.state.update(dict.fromkeys(c.seat_ids, c.status))
            self.changes.append(Change(c.cursor, tuple(c.seat_ids), c.status, c.reason))
            self.arrivals.append(time.time())
        self.updates.append(update.cursor)
        self.cursor = update.cursor

    async def reaches(self, cursor: str, wait_s: float = 10.0) -> None:
        deadline = time.monotonic() + wait_s
        while self.cursor != cursor:
            assert self.error is None, f"stream ended: {self.error}"
            assert time.monotonic() < deadline, f"stuck at {self.cursor!r}, truth is {cursor!r}"
            await asyncio.sleep(0.01)

    async def first(self, wait_s: float = 10.0) -> None:
        """Until the first update (snapshot or changes) has arrived."""
        deadline = time.monotonic() + wait_s
        while not self.updates:
            assert self.error is None, f"stream ended: {self.error}"
            assert time.monotonic() < deadline, "no first update"
            await asyncio.sleep(0.005)

    async def close(self) -> None:
        self.call.cancel()
        if self.task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self.task


async def truth(stub: Stub, event_id: str) -> tuple[dict[str, int], str]:
    reply = await get_availability(stub, event_id)
    return {s.seat_id: s.status for s in reply.seats}, reply.cursor


async def get_availability(stub: Stub, event_id: str) -> seat_inventory_pb2.GetAvailabilityResponse:
    return await stub.GetAvailability(
        seat_inventory_pb2.GetAvailabilityRequest(event_id=event_id), timeout=5
    )


async def agrees_with_truth(follower: Follower, stub: Stub, event_id: str) -> None:
    state, cursor = await truth(stub, event_id)
    await follower.reaches(cursor)
    assert follower.state == state


async def reserve(stub: Stub, event_id: str, seats: Sequence[str], **kw: object) -> types_pb2.Hold:
    request = seat_inventory_pb2.ReserveRequest(
        event_id=event_id, seat_ids=list(seats), holder_id=kw.pop("holder", "alice"), **kw
    )
    return (await stub.Reserve(request, timeout=5)).hold


async def release(stub: Stub, hold: types_pb2.Hold) -> None:
    await stub.Release(
        seat_inventory_pb2.ReleaseRequest(hold_id=hold.hold_id, holder_id=hold.holder_id),
        timeout=5,
    )


async def churn(stub: Stub, event_id: str, seats: Sequence[str], pairs: int) -> None:
    """Reserve and release the same seats ``pairs`` times: two feed entries each."""
    for _ in range(pairs):
        await release(stub, await reserve(stub, event_id, seats))


async def random_workload(
    live: Running, event_id: str, seats: Sequence[str], seconds: float, seed: int
) -> None:
    """Workers racing reserves (some with 1 s ttls that expire), releases, confirms and
    booking cancellations on the same seats."""
    stop_at = time.monotonic() + seconds

    async def worker(n: int) -> None:
        rng = random.Random(seed * 100 + n)
        holds: list[types_pb2.Hold] = []
        bookings: list[str] = []
        while time.monotonic() < stop_at:
            op = rng.random()
            try:
                if op < 0.45 or not holds:
                    picked = rng.sample(list(seats), rng.randint(1, 3))
                    if rng.random() < 0.3:  # abandoned: lapses after 1 s
                        await reserve(live.inventory, event_id, picked, ttl=ttl(1.0))
                    else:
                        holds.append(
                            await reserve(live.inventory, event_id, picked, holder=f"w{n}")
                        )
                elif op < 0.65:
                    await release(live.inventory, holds.pop(rng.randrange(len(holds))))
                elif op < 0.85:
                    hold = holds.pop(rng.randrange(len(holds)))
                    reply = await live.inventory.Confirm(
                        seat_inventory_pb2.ConfirmRequest(hold_id=hold.hold_id, holder_id=f"w{n}"),
                        timeout=10,
                    )
                    bookings.append(reply.booking.booking_id)
                elif bookings:
                    await live.admin.CancelBooking(
                        inventory_admin_pb2.CancelBookingRequest(booking_id=bookings.pop(0)),
                        timeout=10,
                    )
            except grpc.aio.AioRpcError as err:
                if err.code() not in EXPECTED_LOSSES:
                    raise
            await asyncio.sleep(rng.uniform(0, 0.02))

    await asyncio.gather(*(worker(n) for n in range(8)))


@contextlib.asynccontextmanager
async def server_with(settings: Settings) -> AsyncIterator[Running]:
    running = await start_server(settings)
    try:
        yield running
    finally:
        await stop_running(running)


def settings_for(redis_url: str, postgres_url: str, **kw: object) -> Settings:
    return Settings(host="127.0.0.1", port=0, redis_url=redis_url, database_url=postgres_url, **kw)  # type: ignore[arg-type]


async def test_snapshot_plus_changes_equals_get_availability_after_a_random_workload(
    live: Running,
) -> None:
    """Streams opened before, during and after a concurrent mix of reserves, releases,
    expiries, confirms and cancellations each end in exactly GetAvailability's state."""
    event_id = await create_event(live.admin, n=40)
    seats = [f"A-{i}" for i in range(1, 41)]
    early = Follower.start(live.inventory, event_id)
    await early.first()
    workload = asyncio.create_task(random_workload(live, event_id, seats, 3.0, seed=1))
    await asyncio.sleep(1.5)
    during = Follower.start(live.inventory, event_id)
    await workload
    await asyncio.sleep(1.6)  # every 1 s hold has lapsed and been swept onto the feed
    late = Follower.start(live.inventory, event_id)
    for follower in (early, during, late):
        await agrees_with_truth(follower, live.inventory, event_id)
        assert len(follower.snapshots) == 1
    reply = await get_availability(live.inventory, event_id)
    assert late.snapshots == [reply.cursor]  # so its snapshot is GetAvailability's, in form too
    assert late.snapshot_seats == [(s.seat_id, s.status) for s in reply.seats]
    reasons = {c.reason for c in early.changes}
    assert reasons == {
        types_pb2.CHANGE_REASON_HELD,
        types_pb2.CHANGE_REASON_RELEASED,
        types_pb2.CHANGE_REASON_EXPIRED,
        types_pb2.CHANGE_REASON_BOOKED,
        types_pb2.CHANGE_REASON_CANCELLED,
    }
    print(f"\n{len(early.changes)} changes in {len(early.updates) - 1} batches")
    for follower in (early, during, late):
        await follower.close()


async def test_resuming_from_every_cursor_gives_exactly_the_recorded_suffix(
    live: Running,
) -> None:
    """From the snapshot's cursor, every batch's cursor and every single change's
    cursor of a recorded run, a resumed stream sends exactly the changes after it."""
    event_id = await create_event(live.admin, n=12)
    recorder = Follower.start(live.inventory, event_id)
    await recorder.first()

    async def worker(seat: str) -> None:
        for _ in range(6):
            await churn(live.inventory, event_id, [seat], 1)
            await asyncio.sleep(0.005)

    await asyncio.gather(*(worker(f"A-{i}") for i in range(1, 13)))
    await agrees_with_truth(recorder, live.inventory, event_id)
    recorded = recorder.changes
    assert len(recorded) == 144
    assert len(recorder.updates) < 1 + len(recorded), "no batch carried two changes"
    suffix_after = {recorder.snapshots[0]: 0}
    suffix_after.update({c.cursor: i + 1 for i, c in enumerate(recorded)})
    assert set(recorder.updates) <= set(suffix_after)
    limit = asyncio.Semaphore(40)

    async def resume(cursor: str) -> None:
        expected = recorded[suffix_after[cursor] :]
        async with limit:
            follower = Follower.start(live.inventory, event_id, resume_cursor=cursor)
            if expected:
                await follower.reaches(expected[-1].cursor)
            else:
                await asyncio.sleep(0.3)  # nothing follows the newest cursor
            await follower.close()
        assert follower.snapshots == [], f"resume from {cursor} sent a snapshot"
        assert follower.changes == expected, f"resume from {cursor}"

    await asyncio.gather(*(resume(cursor) for cursor in suffix_after))
    await recorder.close()


async def test_cursors_the_feed_no_longer_holds_get_a_fresh_snapshot(
    redis_url: str, postgres_url: str
) -> None:
    """With a feed trimmed to ~10 entries, the pre-change cursor, an early change's
    cursor and malformed, unknown or other-epoch cursors get a snapshot equal to the
    truth, while a recent cursor still resumes exactly."""
    async with server_with(settings_for(redis_url, postgres_url, feed_maxlen=10)) as live:
        event_id = await create_event(live.admin, n=5)
        _, start = await truth(live.inventory, event_id)
        await churn(live.inventory, event_id, ["A-1"], 1)
        _, early = await truth(live.inventory, event_id)
        # MAXLEN ~ trims whole stream nodes (100 entries each), so write a few nodes.
        await churn(live.inventory, event_id, ["A-1", "A-2"], 150)
        await reserve(live.inventory, event_id, ["A-3"])
        recent_state, recent = await truth(live.inventory, event_id)
        client = aioredis.Redis.from_url(redis_url, decode_responses=True)
        feed_length = await client.xlen(f"{{e:{event_id}}}:feed")
        await client.aclose()
        assert feed_length < 200, "the feed was not trimmed"
        epoch, _, last_id = recent.partition(".")
        stale = [start, early, "garbage", f"{epoch}.9999999999999-0", f"0badc0de.{last_id}"]
        for cursor in stale:
            follower = Follower.start(live.inventory, event_id, resume_cursor=cursor)
            await follower.reaches(recent)
            assert follower.snapshots == [recent], cursor
            assert follower.state == recent_state
            await follower.close()
        resumed = Follower.start(live.inventory, event_id, resume_cursor=recent)
        await release(live.inventory, await reserve(live.inventory, event_id, ["A-4"]))
        _, newest = await truth(live.inventory, event_id)
        await resumed.reaches(newest)
        assert resumed.snapshots == []
        assert [c.seat_ids for c in resumed.changes] == [("A-4",), ("A-4",)]
        await resumed.close()


async def test_a_burst_of_2000_stream_opens_is_served_in_full(live: Running) -> None:
    """2,000 streams opened at once all get their snapshot (grpc's default pending-request
    limit answers a share of them CANCELLED), and closing them stops the event's reader."""
    event_id = await create_event(live.admin, n=50)
    request = seat_inventory_pb2.StreamAvailabilityRequest(event_id=event_id)
    calls = [live.inventory.StreamAvailability(request) for _ in range(2000)]

    async def first(call: grpc.aio.UnaryStreamCall) -> str:  # type: ignore[type-arg]
        try:
            update = await asyncio.wait_for(call.read(), 60)
        except grpc.aio.AioRpcError as err:
            return err.code().name
        return "snapshot" if update.HasField("snapshot") else "other"

    outcomes = await asyncio.gather(*(first(call) for call in calls))
    assert set(outcomes) == {"snapshot"}, Counter(outcomes)
    hub = live.server.app.hub
    assert hub.subscribers(event_id) == 2000
    for call in calls:
        call.cancel()
    deadline = time.monotonic() + 10
    while hub.readers:
        assert time.monotonic() < deadline, f"{hub.subscribers(event_id)} subscribers left"
        await asyncio.sleep(0.02)


async def test_unknown_event_is_not_found(live: Running) -> None:
    """Streaming an event that does not exist fails NOT_FOUND EVENT_NOT_FOUND; an empty
    event id is INVALID_ARGUMENT."""
    follower = Follower.start(live.inventory, "no-such-event")
    assert follower.task is not None
    await follower.task
    assert follower.error is not None
    assert follower.error.code() == grpc.StatusCode.NOT_FOUND
    assert error_info(follower.error).reason == "EVENT_NOT_FOUND"
    assert "no-such-event" in (follower.error.details() or "")
    follower = Follower.start(live.inventory, "")
    assert follower.task is not None
    await follower.task
    assert follower.error is not None
    assert follower.error.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_an_expired_hold_reaches_the_stream_within_a_second(live: Running) -> None:
    """A real 1 s hold shows up as EXPIRED, seats AVAILABLE, within 1 s of its expires_at."""
    event_id = await create_event(live.admin, n=3)
    follower = Follower.start(live.inventory, event_id)
    await follower.first()
    hold = await reserve(live.inventory, event_id, ["A-1", "A-2"], ttl=ttl(1.0))
    expires_at = hold.expires_at.ToMilliseconds() / 1000
    while not any(c.reason == types_pb2.CHANGE_REASON_EXPIRED for c in follower.changes):
        assert time.time() < expires_at + 1.0, "no EXPIRED within 1 s of expires_at"
        await asyncio.sleep(0.005)
    index = next(
        i for i, c in enumerate(follower.changes) if c.reason == types_pb2.CHANGE_REASON_EXPIRED
    )
    change = follower.changes[index]
    print(f"\nexpiry lag: {(follower.arrivals[index] - expires_at) * 1000:.0f} ms after expires_at")
    assert change.seat_ids == ("A-1", "A-2")
    assert change.status == types_pb2.SEAT_STATUS_AVAILABLE
    await follower.close()


async def test_changes_through_one_server_process_reach_subscribers_of_another(
    redis_url: str, postgres_url: str
) -> None:
    """Two server processes on one Redis and database: what is done through either
    reaches the subscribers of both, and both end in the same, true state."""
    servers = [ServerProcess(redis_url=redis_url, database_url=postgres_url) for _ in range(2)]
    try:
        for server in servers:
            await server.start()
        channels = [grpc.aio.insecure_channel(s.target) for s in servers]
        stubs = [Stub(c) for c in channels]
        admin = inventory_admin_pb2_grpc.InventoryAdminStub(channels[0])
        event_id = await create_event(admin, n=10)
        followers = [Follower.start(stub, event_id) for stub in stubs]
        for follower in followers:
            await follower.first()
        held = await reserve(stubs[0], event_id, ["A-1", "A-2"])
        await release(stubs[0], held)
        held = await reserve(stubs[1], event_id, ["A-3"], holder="bob")
        await stubs[0].Confirm(
            seat_inventory_pb2.ConfirmRequest(hold_id=held.hold_id, holder_id="bob"), timeout=10
        )
        await reserve(stubs[0], event_id, ["A-4"])
        for follower, stub in zip(followers, stubs, strict=True):
            await agrees_with_truth(follower, stub, event_id)
            assert [c.reason for c in follower.changes] == [
                types_pb2.CHANGE_REASON_HELD,
                types_pb2.CHANGE_REASON_RELEASED,
                types_pb2.CHANGE_REASON_HELD,
                types_pb2.CHANGE_REASON_BOOKED,
                types_pb2.CHANGE_REASON_HELD,
            ]
        assert followers[0].changes == followers[1].changes
        for follower in followers:
            await follower.close()
        for channel in channels:
            await channel.close()
    finally:
        for server in servers:
            await server.stop()
            server.cleanup()


async def test_a_slow_subscriber_is_dropped_to_a_snapshot_without_slowing_others(
    redis_url: str, postgres_url: str
) -> None:
    """A subscriber that stops reading (tiny flow-control window, queue of 4) does not
    hold back a reading one, and once it reads again a fresh snapshot brings it to the
    true state."""
    settings = settings_for(redis_url, postgres_url, stream_queue_size=4, stream_tick_s=0.005)
    async with server_with(settings) as live:
        event_id = await create_event(live.admin, n=120)
        seats = [f"A-{i}" for i in range(1, 121)]
        slow_channel = grpc.aio.insecure_channel(
            live.target,
            options=[("grpc.http2.lookahead_bytes", 1024), ("grpc.http2.bdp_probe", 0)],
        )
        slow = Stub(slow_channel).StreamAvailability(
            seat_inventory_pb2.StreamAvailabilityRequest(event_id=event_id)
        )
        follower = Follower(slow)
        follower.apply(await slow.read())  # the snapshot; then it stops reading
        fast = Follower.start(live.inventory, event_id)
        await fast.first()
        for i in range(60):  # big changes, so the slow stream's window fills quickly
            held = await reserve(live.inventory, event_id, seats[(i % 3) * 40 : (i % 3 + 1) * 40])
            await release(live.inventory, held)
        await agrees_with_truth(fast, live.inventory, event_id)  # while the slow one sleeps
        state, cursor = await truth(live.inventory, event_id)
        while follower.cursor != cursor:
            follower.apply(await asyncio.wait_for(slow.read(), 10))
        assert len(follower.snapshots) >= 2, "the slow subscriber was never dropped"
        assert follower.state == state
        assert len(fast.snapshots) == 1
        print(f"\nslow subscriber: {len(follower.snapshots)} snapshots; fast one: 1")
        slow.cancel()
        await slow_channel.close()
        await fast.close()


async def test_server_shutdown_ends_open_streams_with_unavailable(
    redis_url: str, postgres_url: str
) -> None:
    """Server.stop ends a stream at once with UNAVAILABLE SERVER_DRAINING, telling the
    client to resume from its last cursor, well before the grace period runs out."""
    live = await start_server(settings_for(redis_url, postgres_url))
    event_id = await create_event(live.admin, n=3)
    follower = Follower.start(live.inventory, event_id)
    await agrees_with_truth(follower, live.inventory, event_id)
    started = time.monotonic()
    await live.server.stop(grace_s=30)
    assert follower.task is not None
    await follower.task
    print(f"\nstream ended and server stopped in {time.monotonic() - started:.2f}s (grace 30 s)")
    assert time.monotonic() - started < 30
    assert follower.error is not None
    assert follower.error.code() == grpc.StatusCode.UNAVAILABLE
    assert error_info(follower.error).reason == "SERVER_DRAINING"
    assert "resume_cursor" in (follower.error.details() or "")
    await live.channel.close()


async def test_redis_losing_its_data_mid_stream_sends_a_fresh_snapshot(
    redis_url: str, postgres_url: str
) -> None:
    """After FLUSHALL the event is reloaded under a new epoch and the open stream gets a
    snapshot of it (the lost hold gone), then changes with the new epoch's cursors."""
    async with server_with(settings_for(redis_url, postgres_url)) as live:
        event_id = await create_event(live.admin, n=3)
        follower = Follower.start(live.inventory, event_id)
        await follower.first()
        await reserve(live.inventory, event_id, ["A-1"])
        await agrees_with_truth(follower, live.inventory, event_id)
        client = aioredis.Redis.from_url(redis_url)
        await client.flushall()
        await client.aclose()
        deadline = time.monotonic() + 10
        while len(follower.snapshots) < 2:
            assert time.monotonic() < deadline, "no snapshot after the reload"
            await asyncio.sleep(0.02)
        assert set(follower.state.values()) == {types_pb2.SEAT_STATUS_AVAILABLE}
        await reserve(live.inventory, event_id, ["A-2"])
        await agrees_with_truth(follower, live.inventory, event_id)
        old_epoch, new_epoch = (c.split(".")[0] for c in follower.snapshots)
        assert old_epoch != new_epoch
        assert follower.changes[-1].cursor.startswith(new_epoch + ".")
        await follower.close()


async def test_an_open_stream_survives_a_redis_stall_and_restart(postgres_url: str) -> None:
    """Redis stops answering for longer than the reader's socket timeout: the stream
    stays open and, once Redis is back, carries on from where it was, without a snapshot;
    after Redis restarts empty, the same stream gets a snapshot of the reloaded event."""
    redis = RedisProcess().start()
    try:
        settings = settings_for(redis.url, postgres_url, backend_timeout_s=0.5)
        async with server_with(settings) as live:
            event_id = await create_event(live.admin, n=3)
            follower = Follower.start(live.inventory, event_id)
            await follower.first()
            await reserve(live.inventory, event_id, ["A-1"])
            await agrees_with_truth(follower, live.inventory, event_id)
            redis.pause()
            await asyncio.sleep(2.5)  # past the reader's 1.5 s socket timeout
            redis.resume()
            await reserve(live.inventory, event_id, ["A-2"])
            await agrees_with_truth(follower, live.inventory, event_id)
            assert len(follower.snapshots) == 1
            assert [c.seat_ids for c in follower.changes] == [("A-1",), ("A-2",)]
            redis.restart_empty()
            deadline = time.monotonic() + 10
            while len(follower.snapshots) < 2:
                assert time.monotonic() < deadline, "no snapshot after Redis restarted empty"
                await asyncio.sleep(0.02)
            await reserve(live.inventory, event_id, ["A-3"])
            await agrees_with_truth(follower, live.inventory, event_id)
            assert follower.state["A-3"] == types_pb2.SEAT_STATUS_HELD
            assert follower.error is None
            await follower.close()
    finally:
        redis.cleanup()


async def test_a_redis_restarted_from_its_snapshot_sends_streams_a_fresh_snapshot(
    postgres_url: str,
) -> None:
    """Redis comes back from an on-disk snapshot taken before A-2 and A-3 were held:
    the restored feed is a stale copy. An open stream gets a fresh snapshot under a
    new epoch (A-2 and A-3 free, A-1's hold kept), and a stream resuming from before
    the restart gets a snapshot too, not changes from the old history."""
    redis = RedisProcess().start()
    try:
        settings = settings_for(redis.url, postgres_url, backend_timeout_s=0.5)
        async with server_with(settings) as live:
            event_id = await create_event(live.admin, n=4)
            follower = Follower.start(live.inventory, event_id)
            await follower.first()
            before = follower.snapshots[0]
            await reserve(live.inventory, event_id, ["A-1"])
            client = aioredis.Redis.from_url(redis.url, decode_responses=True)
            await client.save()  # on disk: A-1 held
            await client.aclose()
            await reserve(live.inventory, event_id, ["A-2"])
            await reserve(live.inventory, event_id, ["A-3"])
            await follower.reaches((await truth(live.inventory, event_id))[1])
            redis.kill()
            redis.start()  # back from dump.rdb, without
            async with asyncio.timeout(20):
                while len(follower.snapshots) < 2:
                    assert follower.error is None, follower.error
                    await asyncio.sleep(0.05)
            assert follower.snapshots[1].split(".")[0] != before.split(".")[0]
            held, free = types_pb2.SEAT_STATUS_HELD, types_pb2.SEAT_STATUS_AVAILABLE
            assert [follower.state[s] for s in ("A-1", "A-2", "A-3")] == [held, free, free]
            resumed = Follower.start(live.inventory, event_id, resume_cursor=before)
            await resumed.first()
            # Its first update is a snapshot of the new epoch, not old changes.
            assert resumed.updates[0] == resumed.snapshots[0]
            assert resumed.snapshots[0].split(".")[0] == follower.snapshots[1].split(".")[0]
            await follower.close()
            await resumed.close()
    finally:
        redis.cleanup()
