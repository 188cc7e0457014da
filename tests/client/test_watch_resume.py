"""watch_availability across dropped streams: a server restart on the same port
and a reset connection. The caller's reconstructed seat map must equal
GetAvailability afterwards, built from every change exactly once and in order,
without a second snapshot (the server resumed from the client's cursor)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import threading

import grpc
import pytest
from seatinventory.client import (
    AsyncSeatInventoryClient,
    AvailabilityView,
    ChangeReason,
    RetryPolicy,
    SeatInventoryClient,
    SeatInventoryError,
    SeatStatus,
)
from seatinventory.client._resume import Resume
from seatinventory.v1 import types_pb2

from seat_inventory.config import Settings
from tests.client.conftest import until_serving
from tests.e2e.conftest import Running, start_server, stop_running
from tests.e2e.helpers import new_event_id, seat_map
from tests.support.server_process import ServerProcess
from tests.support.tcp_proxy import TcpProxy

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

# Quick to notice a server that is back, and patient enough to outlast its boot
# on a busy machine (unary calls made right after a restart wait for the
# channel to reconnect, too).
PATIENT = RetryPolicy(max_attempts=40, initial_backoff=0.02, max_backoff=0.2, max_reconnects=100)
R = ChangeReason


class Follower:
    """Everything one watch handed to its caller."""

    def __init__(self) -> None:
        self.view = AvailabilityView()
        self.reasons: list[int] = []
        self.cursors: list[str] = []
        self.started = threading.Event()  # the first update (the snapshot) arrived

    def take(self, update: types_pb2.AvailabilityUpdate) -> None:
        self.view.apply(update)
        self.started.set()
        for change in update.changes.changes:
            self.reasons.append(change.reason)
            self.cursors.append(change.cursor)

    async def caught_up(self, client: AsyncSeatInventoryClient, event_id: str) -> None:
        """Until the view is at GetAvailability's cursor, then it must equal its seats."""
        async with asyncio.timeout(15):
            while True:
                truth = await client.get_availability(event_id)
                if self.view.cursor == truth.cursor:
                    assert self.view.seats == AvailabilityView.from_response(truth).seats
                    return
                await asyncio.sleep(0.02)

    async def snapshot_taken(self) -> None:
        """Until the snapshot arrived, so every change made from now on is a change."""
        assert await asyncio.to_thread(self.started.wait, 10), "no snapshot within 10 s"

    def assert_exact(self, *reasons: int) -> None:
        """One snapshot, then exactly these changes, each once, in feed order."""
        assert self.view.snapshots == 1
        assert self.reasons == list(reasons)
        positions = [tuple(map(int, c.split(".")[1].split("-"))) for c in self.cursors]
        assert positions == sorted(set(positions))


@pytest.fixture
def drops(monkeypatch: pytest.MonkeyPatch) -> list[grpc.StatusCode]:
    """The code of every stream drop a watch reconnected after (private hook, test only)."""
    seen: list[grpc.StatusCode] = []
    original = Resume.after_drop

    def after_drop(self: Resume, error: SeatInventoryError | None) -> float:
        seen.append(grpc.StatusCode.OK if error is None else error.code)
        return original(self, error)

    monkeypatch.setattr(Resume, "after_drop", after_drop)
    return seen


async def follow(client: AsyncSeatInventoryClient, event_id: str, into: Follower) -> None:
    async for update in client.watch_availability(event_id):
        into.take(update)


async def test_watch_resumes_across_a_server_restart(
    redis_url: str, postgres_url: str, drops: list[grpc.StatusCode]
) -> None:
    """The server stops mid-watch; while it is down another replica changes seats; a new
    server on the same port (same Redis and database) comes up; the watch resumes."""
    settings = Settings(host="127.0.0.1", port=0, redis_url=redis_url, database_url=postgres_url)
    first, other = await start_server(settings), await start_server(settings)
    second: Running | None = None
    watcher: asyncio.Task[None] | None = None
    try:
        await until_serving(first.channel)
        await until_serving(other.channel)
        async with (
            AsyncSeatInventoryClient(first.target, retry=PATIENT) as client,
            AsyncSeatInventoryClient(other.target) as side,
        ):
            event_id = new_event_id()
            await client.create_event(event_id, "Restart", seat_map(8))
            seen = Follower()
            watcher = asyncio.create_task(follow(client, event_id, seen))
            await seen.snapshot_taken()
            hold = await client.reserve(event_id, ["A-1", "A-2"], "alice")
            await seen.caught_up(client, event_id)

            await first.channel.close()
            await first.server.stop(grace_s=1)  # streams end UNAVAILABLE SERVER_DRAINING
            spare = await side.reserve(event_id, ["A-3"], "bob")
            await side.confirm(hold.hold_id, "alice")
            await side.release(spare.hold_id, "bob")
            second = await start_server(dataclasses.replace(settings, port=first.server.port))
            await until_serving(second.channel)
            await client.reserve(event_id, ["A-5"], "carol")
            await seen.caught_up(client, event_id)
        seen.assert_exact(R.CHANGE_REASON_HELD, R.CHANGE_REASON_HELD, R.CHANGE_REASON_BOOKED,
                          R.CHANGE_REASON_RELEASED, R.CHANGE_REASON_HELD)  # fmt: skip
        assert not watcher.done()  # the caller never saw the restart
        assert drops
        assert set(drops) == {grpc.StatusCode.UNAVAILABLE}
    finally:
        if watcher is not None:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        for running in (other, second):
            if running is not None:
                await stop_running(running)


async def test_watch_resumes_after_a_connection_reset(
    live: Running, client: AsyncSeatInventoryClient, drops: list[grpc.StatusCode]
) -> None:
    """Every connection to the server is reset (RST) twice mid-watch; the watch resumes."""
    proxy = TcpProxy(live.server.port)
    async with proxy, AsyncSeatInventoryClient(proxy.address(), retry=PATIENT) as watching:
        event_id = new_event_id()
        await client.create_event(event_id, "Reset", seat_map(6))
        seen = Follower()
        watcher = asyncio.create_task(follow(watching, event_id, seen))
        try:
            await seen.snapshot_taken()
            await client.reserve(event_id, ["A-1"], "alice")
            await seen.caught_up(client, event_id)
            assert proxy.reset_all() >= 1
            await client.reserve(event_id, ["A-2"], "bob")
            proxy.reset_all()  # again, wherever the watch stands now
            await client.reserve(event_id, ["A-3"], "carol")
            await seen.caught_up(client, event_id)
            assert drops == [grpc.StatusCode.UNAVAILABLE] * len(drops)
            assert len(drops) >= 1
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
    seen.assert_exact(R.CHANGE_REASON_HELD, R.CHANGE_REASON_HELD, R.CHANGE_REASON_HELD)


async def test_sync_watch_resumes_after_a_connection_reset(
    live: Running, client: AsyncSeatInventoryClient, drops: list[grpc.StatusCode]
) -> None:
    """The blocking watch also rides out a reset connection without a gap or a duplicate."""
    event_id = new_event_id()
    await client.create_event(event_id, "Reset sync", seat_map(6))
    seen = Follower()

    def watch(target: str) -> None:
        with SeatInventoryClient(target, retry=PATIENT) as watching:
            for update in watching.watch_availability(event_id, timeout=20):
                seen.take(update)
                if seen.view.status("A-4") == SeatStatus.SEAT_STATUS_HELD:
                    return

    async with TcpProxy(live.server.port) as proxy:
        thread = asyncio.create_task(asyncio.to_thread(watch, proxy.address()))
        await seen.snapshot_taken()
        await client.reserve(event_id, ["A-1"], "alice")
        await seen.caught_up(client, event_id)
        proxy.reset_all()
        await client.reserve(event_id, ["A-2", "A-3"], "bob")
        await client.reserve(event_id, ["A-4"], "carol")
        await asyncio.wait_for(thread, 20)
        assert len(drops) >= 1
    await seen.caught_up(client, event_id)
    seen.assert_exact(R.CHANGE_REASON_HELD, R.CHANGE_REASON_HELD, R.CHANGE_REASON_HELD)


async def test_watch_resumes_after_the_server_process_is_killed(
    redis_url: str, postgres_url: str, drops: list[grpc.StatusCode]
) -> None:
    """The server process is SIGKILLed mid-watch (no drain: the connection just dies) and
    started again on the same port; the watch resumes and misses nothing."""
    server = ServerProcess(redis_url=redis_url, database_url=postgres_url)
    watcher: asyncio.Task[None] | None = None
    try:
        await server.start()
        async with AsyncSeatInventoryClient(server.target, retry=PATIENT) as client:
            event_id = new_event_id()
            await client.create_event(event_id, "Killed", seat_map(6))
            seen = Follower()
            watcher = asyncio.create_task(follow(client, event_id, seen))
            await seen.snapshot_taken()
            hold = await client.reserve(event_id, ["A-1", "A-2"], "alice")
            await seen.caught_up(client, event_id)
            server.kill()
            server.spawn()  # the watch keeps knocking while the new process boots
            await server.wait_serving()
            await client.confirm(hold.hold_id, "alice")
            await seen.caught_up(client, event_id)
            assert not watcher.done()
        seen.assert_exact(R.CHANGE_REASON_HELD, R.CHANGE_REASON_BOOKED)
        assert drops
        assert set(drops) == {grpc.StatusCode.UNAVAILABLE}
    finally:
        if watcher is not None:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        # SIGKILL, not a drain: a freshly started server can take its whole grace
        # period to stop (a shutdown issue of the server, not the client's concern).
        server.cleanup()
