"""gRPC's wake-ups of the event loop taken all at once (seatinventory.client.wakeups)."""

from __future__ import annotations

import asyncio
import socket
from collections import deque

import grpc
import pytest
from seatinventory.client import wakeups


class GrpcLikeQueue:
    """What grpc.aio 1.85 does: one byte written per completion queued; its
    reader takes one byte and runs every completion queued."""

    def __init__(self) -> None:
        self.read_end, self.write_end = socket.socketpair()
        self.read_end.setblocking(False)
        # A full pair fails the test instead of hanging it (one-byte writes
        # fill its ~200 KB after a few hundred: what makes grpc's poller block).
        self.write_end.setblocking(False)
        self.queued: deque[int] = deque()
        self.ran: list[int] = []
        self.wakeups = 0

    def complete(self, n: int) -> None:
        for i in range(n):
            self.queued.append(len(self.ran) + len(self.queued) + i)
            self.write_end.send(b"1")

    def handle_events(self) -> None:
        self.wakeups += 1
        assert self.read_end.recv(1) == b"1"  # raises BlockingIOError when none is left
        while self.queued:
            self.ran.append(self.queued.popleft())

    def waiting(self) -> int:
        try:
            return len(self.read_end.recv(65536, socket.MSG_PEEK | socket.MSG_DONTWAIT))
        except BlockingIOError:
            return 0

    def close(self) -> None:
        self.read_end.close()
        self.write_end.close()


@pytest.fixture
def cq() -> GrpcLikeQueue:
    queue = GrpcLikeQueue()
    yield queue
    queue.close()


def readers(loop: asyncio.AbstractEventLoop) -> list[object]:
    """The callbacks of the loop's readers."""
    return [
        key.data[0]._callback
        for key in loop._selector.get_map().values()  # type: ignore[attr-defined]
        if key.data[0] is not None
    ]


def _drained(loop: asyncio.AbstractEventLoop) -> bool:
    return any(getattr(r, wakeups._INSTALLED, False) for r in readers(loop))


def test_one_wakeup_takes_every_byte_and_runs_every_completion(cq: GrpcLikeQueue) -> None:
    cq.complete(100)
    wakeups.drainer(cq.read_end, cq.handle_events)()
    assert cq.wakeups == 1
    assert len(cq.ran) == 100
    assert cq.waiting() == 0  # nothing left to wake the loop for


def test_grpc_aio_own_reader_leaves_a_byte_per_completion_behind(cq: GrpcLikeQueue) -> None:
    """What the drainer is for: the stock reader runs every completion but
    takes one byte, so the loop would wake 99 more times for nothing."""
    cq.complete(100)
    cq.handle_events()
    assert len(cq.ran) == 100
    assert cq.waiting() == 99


def test_a_wakeup_with_nothing_waiting_calls_nothing(cq: GrpcLikeQueue) -> None:
    wakeups.drainer(cq.read_end, cq.handle_events)()
    assert cq.wakeups == 0
    cq.complete(1)
    wakeups.drainer(cq.read_end, cq.handle_events)()
    assert (cq.wakeups, cq.ran, cq.waiting()) == (1, [0], 0)


def test_bytes_taken_meanwhile_by_another_reader_call_nothing() -> None:
    """Two loops reading one socket: the bytes peeked are gone by the time
    this reader takes them; grpc.aio's handler would fail on the empty socket."""

    class Raced:
        def recv(self, size: int, flags: int = 0) -> bytes:
            if flags & socket.MSG_PEEK:
                return b"111"
            raise BlockingIOError

    called = []
    wakeups.drainer(Raced(), lambda: called.append(1))()  # type: ignore[arg-type]
    assert called == []


def test_a_loop_grpc_never_used_is_left_alone() -> None:
    loop = asyncio.new_event_loop()
    try:
        assert not wakeups.drain_wakeups(loop)
        assert not _drained(loop)
    finally:
        loop.close()


def test_a_loop_without_a_selector_is_left_alone() -> None:
    class Proactorish(asyncio.AbstractEventLoop):
        pass

    assert not wakeups.drain_wakeups(Proactorish())


async def _echo(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
    await asyncio.sleep(0)
    return request


def echo_server() -> tuple[grpc.aio.Server, int]:
    server = grpc.aio.server()
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                "t.Echo", {"Echo": grpc.unary_unary_rpc_method_handler(_echo)}
            ),
        )
    )
    return server, server.add_insecure_port("127.0.0.1:0")


async def test_on_this_grpcio_it_takes_over_the_reader_and_every_call_completes() -> None:
    loop = asyncio.get_running_loop()
    server, port = echo_server()
    await server.start()
    try:
        assert wakeups.drain_wakeups()
        assert _drained(loop)
        assert not any(wakeups._grpc_reader(r) for r in readers(loop))  # grpc's own is behind ours
        assert wakeups.drain_wakeups()  # a second call finds it in place
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            echo = channel.unary_unary("/t.Echo/Echo")
            gate = asyncio.Semaphore(128)

            async def call(i: int) -> bytes:
                async with gate:
                    return await echo(str(i).encode(), timeout=30)  # type: ignore[no-any-return]

            answers = await asyncio.wait_for(
                asyncio.gather(*(call(i) for i in range(3000))), timeout=60
            )
        assert answers == [str(i).encode() for i in range(3000)]
    finally:
        await server.stop(None)


async def test_a_server_started_after_another_stopped_drains_again() -> None:
    """grpc.aio's completion queue (and its socket pair) can be made anew
    once every server and channel is gone; each start installs the reader."""
    for round_ in range(2):
        server, port = echo_server()
        await server.start()
        try:
            assert wakeups.drain_wakeups(), f"round {round_}"
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                echo = channel.unary_unary("/t.Echo/Echo")
                answers = await asyncio.wait_for(
                    asyncio.gather(*(echo(b"%d" % i, timeout=10) for i in range(200))), 30
                )
            assert answers == [b"%d" % i for i in range(200)]
        finally:
            await server.stop(None)


def test_the_async_client_drains_the_loop_it_is_made_on() -> None:
    from seatinventory.client import AsyncSeatInventoryClient

    async def made() -> bool:
        client = AsyncSeatInventoryClient("127.0.0.1:1")
        try:
            return _drained(asyncio.get_running_loop())
        finally:
            await client.close()

    assert asyncio.run(made())  # a loop of its own: nothing else drained it


def test_a_channel_made_outside_a_loop_is_made_and_drains_nothing() -> None:
    from seatinventory.client.channel import open_aio_channel

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)  # grpc.aio binds a channel made outside a loop to this one
    try:
        channel = open_aio_channel("127.0.0.1:1", None)
        assert not _drained(loop)
        loop.run_until_complete(channel.close())
    finally:
        asyncio.set_event_loop(None)
        loop.close()
