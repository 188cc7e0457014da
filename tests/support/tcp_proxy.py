"""A TCP forwarder that a test can cut and restore, to take a backend away from
a server without touching the backend itself (the machine's PostgreSQL and
Redis are shared and never stopped by tests).

It runs on the test's event loop. Everything it does is bounded: a capped
number of connections, a timeout on every upstream connect, and ``close``
resets whatever is still open.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import Callable, Coroutine
from types import TracebackType
from typing import Any

__all__ = ["TcpProxy"]

_CHUNK = 64 * 1024
# SO_LINGER on, 0 s: closing the socket sends RST instead of FIN, the way a
# crashed peer or a dropped network path looks to the other end.
_LINGER_RESET = struct.pack("ii", 1, 0)


def _reset(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
    writer.transport.abort()


class _Tripwire:
    """Calls ``action`` once, when a client sends ``pattern`` (before it is
    forwarded); with ``lose_reply``, instead lets the bytes through and resets
    the connection when the answer comes back."""

    def __init__(
        self, pattern: bytes, action: Callable[[], object], *, lose_reply: bool = False
    ) -> None:
        self.pattern = pattern
        self.action = action
        self.lose_reply = lose_reply
        self.fired = asyncio.Event()


class _Link:
    """One client connection and its upstream connection."""

    def __init__(self, client: asyncio.StreamWriter) -> None:
        self.client = client
        self.upstream: asyncio.StreamWriter | None = None
        self.tail = b""  # the last bytes the client sent, for patterns split across reads
        self.lose_reply = False  # reset instead of forwarding the next bytes from upstream
        self.reply_lost: asyncio.Event | None = None

    def reset(self) -> None:
        _reset(self.client)
        if self.upstream is not None:
            _reset(self.upstream)


class TcpProxy:
    """Listens on a free 127.0.0.1 port and forwards to ``upstream_host:upstream_port``.

    ``down()`` stops accepting (new connections are refused) and resets every
    live connection; ``down(blackhole=True)`` instead accepts new connections
    and never answers them, so clients wait for their own timeouts, as behind
    a dead network path. ``up()`` forwards again on the same port.
    ``slow(seconds)`` holds every chunk that long before forwarding it, both
    ways, as on a slow network path; ``slow(0)`` (the default) is full speed.
    """

    def __init__(
        self,
        upstream_port: int,
        upstream_host: str = "127.0.0.1",
        *,
        max_connections: int = 256,
        connect_timeout_s: float = 5.0,
    ) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.max_connections = max_connections
        self.connect_timeout_s = connect_timeout_s
        self.port = 0
        self._server: asyncio.Server | None = None
        self._blackhole = False
        self._links: set[_Link] = set()
        self._silent: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._tripwires: list[_Tripwire] = []
        self.delay_s = 0.0
        self.accepted = 0  # client connections taken (for tests counting reconnects)

    async def start(self) -> TcpProxy:
        await self._listen()
        return self

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(
            self._accept, "127.0.0.1", self.port, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]

    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def down(self, *, blackhole: bool = False) -> int:
        """Cut the path; returns the number of live connections reset."""
        self._blackhole = blackhole
        if not blackhole and self._server is not None:
            self._server.close()  # stop accepting: connecting is refused from now on
            self._server = None
        return self.reset_all()

    async def up(self) -> None:
        """Forward again (same port); connections left silent by a blackhole are reset."""
        self._blackhole = False
        for writer in list(self._silent):
            _reset(writer)
        self._silent.clear()
        if self._server is None:
            await self._listen()

    def reset_all(self) -> int:
        links = list(self._links)
        for link in links:
            link.reset()
        self._links.clear()
        return len(links)

    def slow(self, delay_s: float) -> None:
        """Delay every chunk by ``delay_s`` from now on, live connections too."""
        if delay_s < 0:
            raise ValueError("delay must not be negative")
        self.delay_s = delay_s

    def trip_on(self, pattern: bytes, action: Callable[[], object]) -> asyncio.Event:
        """Run ``action`` once, synchronously, as soon as a client sends ``pattern``;
        the bytes are forwarded only after it ran (or dropped, if it cut the path).
        Returns an event that is set when it fired."""
        if not pattern:
            raise ValueError("pattern must not be empty")
        wire = _Tripwire(pattern, action)
        self._tripwires.append(wire)
        return wire.fired

    def lose_reply_to(self, pattern: bytes) -> asyncio.Event:
        """Once: forward what a client sends with ``pattern`` in it, then reset the
        connection (both ways) as the answer comes back, instead of delivering it:
        the backend did the work and the client never hears of it. Returns an event
        that is set when the answer was dropped."""
        if not pattern:
            raise ValueError("pattern must not be empty")
        wire = _Tripwire(pattern, lambda: None, lose_reply=True)
        self._tripwires.append(wire)
        return wire.fired

    async def close(self) -> None:
        self._tripwires.clear()
        if self._server is not None:
            self._server.close()
            self._server = None
        self.reset_all()
        for writer in list(self._silent):
            _reset(writer)
        self._silent.clear()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=5)

    async def __aenter__(self) -> TcpProxy:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        if self._blackhole:
            self._silent.add(writer)
            return  # never read, never answer: the client's own timeout decides
        if self._server is None or len(self._links) >= self.max_connections:
            _reset(writer)
            return
        link = _Link(writer)
        self._links.add(link)
        try:
            up_reader, up_writer = await asyncio.wait_for(
                asyncio.open_connection(*self.upstream), self.connect_timeout_s
            )
        except (OSError, TimeoutError):
            self._links.discard(link)
            _reset(writer)
            return
        if link not in self._links:  # cut while connecting
            _reset(up_writer)
            return
        link.upstream = up_writer
        self._spawn(self._pump(link, reader, up_writer, from_client=True))
        self._spawn(self._pump(link, up_reader, writer, from_client=False))

    def _check_tripwires(self, link: _Link, data: bytes) -> None:
        if not self._tripwires:
            return
        window = link.tail + data
        for wire in list(self._tripwires):
            if wire.pattern in window:
                self._tripwires.remove(wire)
                if wire.lose_reply:
                    link.lose_reply = True
                    link.reply_lost = wire.fired
                    continue
                wire.action()
                wire.fired.set()
        longest = max((len(w.pattern) for w in self._tripwires), default=1)
        link.tail = window[-(longest - 1) :] if longest > 1 else b""

    async def _pump(
        self,
        link: _Link,
        source: asyncio.StreamReader,
        sink: asyncio.StreamWriter,
        *,
        from_client: bool,
    ) -> None:
        try:
            while link in self._links:
                data = await source.read(_CHUNK)
                if not data:
                    break
                if from_client:
                    self._check_tripwires(link, data)
                elif link.lose_reply:
                    self._links.discard(link)
                    link.reset()
                    if link.reply_lost is not None:
                        link.reply_lost.set()
                    return
                if self.delay_s > 0:
                    await asyncio.sleep(self.delay_s)
                if link not in self._links:  # a tripwire or down() cut it
                    return
                sink.write(data)
                await sink.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        # one side closed or failed: close the whole link, as a plain TCP path would
        if link in self._links:
            self._links.discard(link)
            link.client.close()
            if link.upstream is not None:
                link.upstream.close()
