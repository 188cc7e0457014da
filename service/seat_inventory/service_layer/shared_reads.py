"""Concurrent reads of one key share backend calls, never answering a caller
with a read that began before it arrived.

A snapshot of an event (GetAvailability, a stream's first message) is one Lua
call during which Redis serves nobody else. When a server drains, every stream
it served reconnects elsewhere at once: a few thousand snapshots of the same
event, all asking the same question. Here the first caller starts a read;
callers arriving while it runs wait for the *next* read, which starts as soon
as the running one ends and answers all of them. So Redis sees at most one
snapshot per event in flight per process, and every caller still gets a state
read after it arrived: a write it saw completed before asking is in it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

__all__ = ["SharedReads"]

K = TypeVar("K")
V = TypeVar("V")


class SharedReads(Generic[K, V]):
    def __init__(self, fetch: Callable[[K], Awaitable[V]]) -> None:
        self._fetch = fetch
        self._running: dict[K, asyncio.Task[V]] = {}
        self._waiting: dict[K, asyncio.Future[V]] = {}
        self.reads = 0  # backend reads made (for tests and metrics)

    async def get(self, key: K) -> V:
        """The value of ``key`` as read after this call began."""
        if key not in self._running:
            return await asyncio.shield(self._start(key))
        waiting = self._waiting.get(key)
        if waiting is None:
            waiting = self._waiting[key] = asyncio.get_running_loop().create_future()
            waiting.add_done_callback(_retrieve)  # every caller may have given up
        # shield: a caller that gives up leaves the shared read to the others
        return await asyncio.shield(waiting)

    def _start(self, key: K) -> asyncio.Task[V]:
        self.reads += 1
        task = asyncio.ensure_future(self._fetch(key))
        self._running[key] = task
        task.add_done_callback(lambda done: self._finished(key, done))
        return task

    def _finished(self, key: K, done: asyncio.Task[V]) -> None:
        del self._running[key]
        _retrieve(done)
        waiting = self._waiting.pop(key, None)
        if waiting is None:
            return
        # Those who arrived during that read get the next one.
        self._start(key).add_done_callback(lambda nxt: _hand_over(nxt, waiting))


def _retrieve(done: asyncio.Future[V]) -> None:
    """Mark an outcome as seen, so an error nobody waited for is not logged."""
    if not done.cancelled():
        done.exception()


def _hand_over(done: asyncio.Task[V], waiting: asyncio.Future[V]) -> None:
    if waiting.done():
        return
    if done.cancelled():
        waiting.cancel()
    elif (error := done.exception()) is not None:
        waiting.set_exception(error)
    else:
        waiting.set_result(done.result())
