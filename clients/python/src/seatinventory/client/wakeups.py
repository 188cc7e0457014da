"""gRPC's wake-ups of the event loop taken all at once (grpcio 1.85).

grpc.aio hands completions (a call arrived, a message was read, a status was
sent) from gRPC's poller thread to the event loop through a socket pair: the
thread queues the completion and writes one byte; the loop's reader for the
socket (``PollerCompletionQueue._handle_events``) reads *one* byte per
wake-up and then runs every completion queued. Under load the bytes come
faster than one per loop iteration, so they pile up: the loop wakes again and
again for completions it already ran, and once the pair's buffer is full
(~200 KB counts a few hundred one-byte writes) the poller thread blocks in
``write()`` and holds back the next completion until the loop's next
iteration. Seen with h2load at ~6,500 losing Reserves/s: 150-280 bytes
waiting on the loop's side and 120-210 KB of the 208 KB send buffer used.

``drain_wakeups`` puts a reader in front of grpc.aio's own that first takes
every byte waiting but one, then calls grpc.aio's handler, which takes the
last byte and runs the queue. No completion is skipped: each is queued
before its byte is written, so a byte taken here belongs to a completion
already queued, which the handler then runs; one queued afterwards writes a
byte of its own and wakes the loop again. grpcio releases after 1.85 drain
the socket themselves (or use an eventfd); the extra reader then finds at
most one byte and changes nothing.

It relies on grpc.aio's private reader and asyncio's selector loop; when
either is not as known it leaves the loop alone (``False``). The clients'
``open_aio_channel`` (so ``AsyncSeatInventoryClient``) calls it, and so do
the service's server, its load harness and the benchmark's processes; a
program with its own grpc.aio channels or servers can call it once they
exist.
"""

from __future__ import annotations

import asyncio
import functools
import socket
from collections.abc import Callable
from typing import Any

__all__ = ["drain_wakeups"]

_PEEK = 65536
# grpc.aio makes the socket non-blocking; MSG_DONTWAIT (absent on Windows) is a second guard.
_PEEK_FLAGS = socket.MSG_PEEK | getattr(socket, "MSG_DONTWAIT", 0)
_INSTALLED = "_seat_inventory_drains_wakeups"


def _grpc_reader(callback: Any) -> bool:
    """Whether a loop reader callback is grpc.aio's completion-queue handler."""
    func = callback.func if isinstance(callback, functools.partial) else callback
    owner = getattr(func, "__self__", None)
    return (
        getattr(func, "__name__", "") == "_handle_events"
        and type(owner).__name__ == "PollerCompletionQueue"
    )


def drainer(sock: socket.socket, handle: Callable[[], Any]) -> Callable[[], None]:
    """A reader that takes every byte waiting on ``sock`` but one, then calls
    ``handle`` (which takes the last one and runs the completions)."""

    def on_readable() -> None:
        try:
            waiting = len(sock.recv(_PEEK, _PEEK_FLAGS))
        except (BlockingIOError, InterruptedError):
            return  # nothing to read: a wake-up another reader already took
        if waiting > 1:
            try:
                sock.recv(waiting - 1)
            except (BlockingIOError, InterruptedError):
                return  # taken meanwhile by a reader of another loop on the same socket
        handle()

    setattr(on_readable, _INSTALLED, True)
    return on_readable


def drain_wakeups(loop: asyncio.AbstractEventLoop | None = None) -> bool:
    """Put the draining reader in front of grpc.aio's on ``loop`` (the running
    one by default). Call it once grpc.aio made its completion queue (after
    creating a server or a channel). True when it is in place, now or before."""
    loop = loop or asyncio.get_running_loop()
    selector = getattr(loop, "_selector", None)
    if selector is None or not hasattr(selector, "get_map"):
        return False  # not asyncio's selector loop (uvloop, Windows' proactor)
    for key in list(selector.get_map().values()):
        reader = key.data[0] if isinstance(key.data, tuple) and key.data else None
        callback = getattr(reader, "_callback", None)
        if callback is None:
            continue
        if getattr(callback, _INSTALLED, False):
            return True
        if not _grpc_reader(callback) or not isinstance(key.fileobj, socket.socket):
            continue
        args = getattr(reader, "_args", ())
        sock = key.fileobj
        loop.remove_reader(sock)
        loop.add_reader(sock, drainer(sock, functools.partial(callback, *args)))
        return True
    return False
