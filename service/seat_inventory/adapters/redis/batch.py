"""Script calls made while others are on their way go to Redis together.

Sent one by one, every script call pays a pooled connection, a ``send()``, a
``recv()`` and an event-loop wake-up of its own. ``ScriptBatcher`` keeps one
batch in flight on one connection (``lanes``): calls made meanwhile queue and
go out together as the next batch, as one pipeline (EVALSHA after EVALSHA, no
MULTI): one write, the replies read back in order. The busier the server, the
bigger the batches; a lone call goes out in the next loop iteration. Each call
still runs as its own atomic script; batching changes nothing Redis does,
only how the commands travel.

- Each lane keeps a connection taken from the client's pool until it fails
  (so the pool's limit and the client's ``aclose`` still apply).
- Each call has its own future: an error reply (NOSCRIPT, BUSY, a script
  error) fails that call only. A connection failure fails the calls of the
  batch whose replies were not read yet, with the connection's error; the
  connection was closed by redis-py, so it never goes back to the pool with a
  reply unread.
- A caller that gives up (its deadline, a cancelled RPC) only drops its
  future: a call still queued is not sent, one already sent has its reply
  read and thrown away. The other calls of the batch are unaffected.

Only for one Redis server reached through redis-py's own connections:
``for_client`` answers None for a Redis Cluster (a batch would have to be split
by node) and for fakeredis, which then run every call on its own.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.connection import Connection, SSLConnection, UnixDomainSocketConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from ...domain.errors import BackendUnavailable

__all__ = ["ScriptBatcher"]

_REAL_CONNECTIONS = (Connection, SSLConnection, UnixDomainSocketConnection)


class _Call:
    __slots__ = ("command", "future")

    def __init__(self, command: tuple[Any, ...], future: asyncio.Future[Any]) -> None:
        self.command = command
        self.future = future


class _Lane:
    """One batch in flight at a time, on a pooled connection the lane keeps
    between batches (taken again after a failure)."""

    __slots__ = ("connection",)

    def __init__(self) -> None:
        self.connection: Any = None


class ScriptBatcher:
    """Pipelines EVALSHA calls issued in the same event-loop iteration."""

    def __init__(self, pool: Any, *, lanes: int = 1, max_batch: int = 256) -> None:
        self._pool = pool
        self._max_batch = max_batch
        self._pending: list[_Call] = []
        self._lanes = [_Lane() for _ in range(lanes)]
        self._idle = list(self._lanes)
        self._flush_scheduled = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        # Counters for tests and the curious: batches sent, calls sent in them.
        self.batches = 0
        self.calls = 0

    @classmethod
    def for_client(cls, client: Any, **kwargs: Any) -> ScriptBatcher | None:
        """A batcher for a plain redis.asyncio client on a real server, else None."""
        if type(client) is not Redis:  # RedisCluster, fakeredis, anything else
            return None
        pool = client.connection_pool
        if pool.connection_class not in _REAL_CONNECTIONS:
            return None
        return cls(pool, **kwargs)

    def evalsha(self, sha: str, keys: Sequence[str], args: Sequence[Any]) -> asyncio.Future[Any]:
        """Queue one EVALSHA; the future gets its reply, or its error."""
        future = asyncio.get_running_loop().create_future()
        if self._closed:
            future.set_exception(RedisConnectionError("the Redis client is closed"))
            return future
        self._pending.append(_Call(("EVALSHA", sha, len(keys), *keys, *args), future))
        if not self._flush_scheduled and self._idle:
            # Let the other calls of this iteration join before sending.
            self._flush_scheduled = True
            future.get_loop().call_soon(self._flush)
        return future

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self._pending and self._idle:
            lane = self._idle.pop()
            task = asyncio.get_running_loop().create_task(self._drive(lane))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _take(self) -> list[_Call]:
        """The next batch: queued calls whose callers still wait."""
        batch: list[_Call] = []
        pending = self._pending
        while pending and len(batch) < self._max_batch:
            taken = pending[: self._max_batch - len(batch)]
            del pending[: len(taken)]
            batch.extend(call for call in taken if not call.future.done())
        return batch

    async def _drive(self, lane: _Lane) -> None:
        """Send batches on the lane's connection until nothing is queued."""
        batch: list[_Call] = []
        try:
            batch = self._take()
            while batch:
                try:
                    if lane.connection is None:
                        lane.connection = await self._pool.get_connection()
                    await self._exchange(lane.connection, batch)
                except Exception as exc:  # noqa: BLE001 - handed to the callers of the batch
                    # No connection, or it failed (redis-py closed it): back to
                    # the pool; the next batch takes a fresh one.
                    _fail(batch, exc)
                    await self._drop(lane)
                batch = self._take()
        except BaseException as exc:
            _fail(batch, exc)
            await self._drop(lane)
            raise
        finally:
            self._idle.append(lane)
            if self._pending and not self._flush_scheduled and not self._closed:
                self._flush_scheduled = True
                asyncio.get_running_loop().call_soon(self._flush)

    async def _drop(self, lane: _Lane) -> None:
        connection, lane.connection = lane.connection, None
        if connection is not None:
            with contextlib.suppress(Exception):
                await self._pool.release(connection)

    async def _exchange(self, connection: Any, batch: list[_Call]) -> None:
        self.batches += 1
        self.calls += len(batch)
        read = 0
        try:
            await _send(connection, _pack(connection, batch))
            for call in batch:
                try:
                    reply = await connection.read_response()
                except ResponseError as error:  # this call's own error reply
                    read += 1
                    if not call.future.done():
                        call.future.set_exception(error)
                    continue
                read += 1
                if not call.future.done():
                    call.future.set_result(reply)
        except BaseException as exc:
            # redis-py closed the connection (a timeout, a lost connection, a
            # cancelled read): the replies still owed can never be read.
            if connection.is_connected:
                await connection.disconnect(nowait=True)
            _fail(batch[read:], exc)
            raise

    async def aclose(self) -> None:
        """Stop the lanes and give their connections back (callers still
        waiting get a connection error)."""
        self._closed = True
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        _fail(self._pending, asyncio.CancelledError())
        self._pending.clear()
        for lane in self._lanes:
            await self._drop(lane)


def _pack(connection: Any, batch: list[_Call]) -> list[bytes]:
    """The batch in RESP, as redis-py's ``pack_commands`` would write it, for
    the str and int arguments the scripts take (anything else: redis-py packs)."""
    encoding = connection.encoder.encoding
    errors = connection.encoder.encoding_errors
    out: list[bytes] = []
    for call in batch:
        parts = [b"*%d\r\n" % len(call.command)]
        for arg in call.command:
            kind = type(arg)
            if kind is str:
                raw = arg.encode(encoding, errors)
            elif kind is int:
                raw = b"%d" % arg
            else:
                return list(connection.pack_commands([c.command for c in batch]))
            parts.append(b"$%d\r\n%b\r\n" % (len(raw), raw))
        out.append(b"".join(parts))
    return [b"".join(out)]


async def _send(connection: Any, packed: list[bytes]) -> None:
    """Write a batch. redis-py's ``send_packed_command`` bounds every write by
    the socket timeout through ``asyncio.wait_for`` (a task per write); a batch
    that fits the socket's buffer needs no waiting, so it is written at once and
    only a write that has to wait for the buffer to drain goes through it."""
    writer = getattr(connection, "_writer", None)
    if writer is None or not connection.is_connected:
        await connection.send_packed_command(packed, check_health=False)  # connects first
        return
    writer.writelines(packed)
    if writer.transport.get_write_buffer_size():
        await connection.send_packed_command(b"", check_health=False)  # drain, bounded


def _fail(calls: Sequence[_Call], exc: BaseException) -> None:
    if isinstance(exc, asyncio.CancelledError):
        # The lane was cancelled (shutdown), not the callers: they see Redis
        # gone, and do not retry (their scripts may have run).
        exc = BackendUnavailable("redis", "the Redis client is closing")
    for call in calls:
        if not call.future.done():
            call.future.set_exception(exc)
