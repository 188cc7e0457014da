"""Script calls made while others are on their way go to Redis together.

Sent one by one, every script call pays a pooled connection, a ``send()``, a
``recv()`` and an event-loop wake-up of its own. ``ScriptBatcher`` keeps one
batch in flight on one connection (``lanes``): calls made meanwhile queue and
go out together as the next batch, as one pipeline (EVALSHA after EVALSHA, no
MULTI): one write, the replies read back in order. Each call still runs as
its own atomic script; batching changes nothing Redis does, only how the
commands travel.

How long a call may wait for company (``linger_s``, ``--redis-batch-linger``,
default 0: never). While calls come densely (an average gap under half of
``linger_s``) from several callers (batches have been averaging more than one
call), the first call of a batch waits up to ``linger_s`` for others, and the
batch goes as soon as it has ``min_batch`` calls; one caller calling in a
loop makes batches of exactly one and never waits, nor does anything when
calls are sparse. It paid while grpc.aio handed the server one new call per
loop iteration (batches of 1.2-1.4 calls sent at once; with a 1 ms linger,
4-7, and Reserve 3,000 -> 4,200-4,800 calls/s). Since the server takes new
calls many at a time (``api/accept.py``) they reach the batcher together
anyway: with 64 callers the 1 ms linger no longer moves Reserve, while 4 and
8 callers calling in a loop lost 28-42 % of their Reserves to it (2 pairs
each, bench/PROFILE.md). Hence the default.

- Each lane keeps a connection taken from the client's pool until it fails
  (so the pool's limit and the client's ``aclose`` still apply).
- Each call has its own future: an error reply (NOSCRIPT, BUSY, a script
  error) fails that call only. A connection failure fails the calls of the
  batch whose replies were not read yet, with the connection's error; the
  connection was closed by redis-py, so it never goes back to the pool with a
  reply unread.
- A batch whose replies do not come in time fails its calls and those queued
  behind it (never sent), so a stalled Redis costs each caller one timeout.
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
from redis.exceptions import TimeoutError as RedisTimeoutError

from ...domain.errors import BackendUnavailable

__all__ = ["ScriptBatcher"]

_HiredisParser: Any = None  # redis-py's hiredis parser, read straight from (see _exchange)
_NOT_ENOUGH_DATA: Any = object()
with contextlib.suppress(ImportError):  # another redis-py: replies read one by one
    from redis._parsers.hiredis import NOT_ENOUGH_DATA as _NOT_ENOUGH_DATA
    from redis._parsers.hiredis import _AsyncHiredisParser as _HiredisParser
# Replies that are not a call's own: a broken stream (as redis-py reports it), or
# a RESP3 push (none is asked for on these connections; skipped if one comes).
_NOT_A_REPLY: tuple[type, ...] = (RedisConnectionError,)
with contextlib.suppress(ImportError, AttributeError):
    from hiredis import PushNotification

    _NOT_A_REPLY = (RedisConnectionError, PushNotification)

# hiredis's RESP writer, in C: a Reserve's script call packs in ~2.5 instead of
# ~7.4 us (this machine). None without hiredis: the batch's own writer packs.
_hiredis_pack: Any = None
with contextlib.suppress(ImportError):
    from hiredis import pack_command as _hiredis_pack

_REAL_CONNECTIONS = (Connection, SSLConnection, UnixDomainSocketConnection)
# Batches averaging at least this many calls mean several callers at once; one
# caller calling in a loop makes batches of exactly one and is never kept waiting.
_CONCURRENT = 1.1


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

    def __init__(
        self,
        pool: Any,
        *,
        lanes: int = 1,
        max_batch: int = 256,
        linger_s: float = 0.0,
        min_batch: int = 16,
    ) -> None:
        self._pool = pool
        self._max_batch = max_batch
        self._linger_s = linger_s
        self._min_batch = min_batch
        self._timer: asyncio.TimerHandle | None = None
        # Moving averages of the gap between calls and of the calls per batch.
        self._gap_s = 4 * linger_s
        self._last_at = 0.0
        self._size = 1.0
        self._pending: list[_Call] = []
        self._lanes = [_Lane() for _ in range(lanes)]
        self._idle = list(self._lanes)
        self._flush_scheduled = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        # Counters for tests and the curious: batches sent, calls sent in them,
        # batches whose first call waited for company, batches whose replies
        # came straight from the hiredis reader.
        self.batches = 0
        self.calls = 0
        self.lingered = 0
        self.direct_reads = 0

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
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        if self._closed:
            future.set_exception(RedisConnectionError("the Redis client is closed"))
            return future
        now = loop.time()
        # A pause counts as a few lingers at most, so density is seen again soon after.
        gap, self._last_at = min(now - self._last_at, 4 * self._linger_s), now
        self._gap_s = 0.9 * self._gap_s + 0.1 * gap
        self._pending.append(_Call(("EVALSHA", sha, len(keys), *keys, *args), future))
        if not self._idle:
            return future  # the lane that is busy takes it next
        if self._timer is not None and len(self._pending) >= self._min_batch:
            self._timer.cancel()  # company enough: go now
            self._timer = None
            self._flush_scheduled = False
        if not self._flush_scheduled:
            self._flush_scheduled = True
            if (
                len(self._pending) == 1
                and 2 * self._gap_s < self._linger_s
                and self._size >= _CONCURRENT
            ):
                # Calls come densely from many callers: wait a little for the next ones.
                self.lingered += 1
                self._timer = loop.call_at(now + self._linger_s, self._flush)
            else:
                # Let the other calls of this iteration join before sending.
                loop.call_soon(self._flush)
        return future

    def _flush(self) -> None:
        self._flush_scheduled = False
        self._timer = None
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
        if batch:
            self._size = 0.9 * self._size + 0.1 * len(batch)
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
                    if isinstance(exc, RedisTimeoutError):
                        # Redis did not answer in time (stopped, swamped): the
                        # calls queued meanwhile, never sent, would each wait as
                        # long again. They fail now; their callers may retry.
                        while self._pending:
                            _fail(self._take(), exc)
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
            parser = connection._parser
            reader: Any = getattr(parser, "_reader", None)
            if _HiredisParser is not None and type(parser) is _HiredisParser and reader is not None:
                # The replies straight from the hiredis reader: redis-py's
                # read_response costs ~3.5 us more per reply (a timeout context
                # and its checks each time); the socket reads keep its timeout.
                self.direct_reads += 1
                for call in batch:
                    reply = reader.gets()
                    if reply is _NOT_ENOUGH_DATA or isinstance(reply, _NOT_A_REPLY):
                        reply = await _next_reply(connection, parser, reader, reply)
                    read += 1
                    _settle(call, reply)
            else:
                for call in batch:
                    try:
                        reply = await connection.read_response()
                    except ResponseError as error:  # this call's own error reply
                        reply = error
                    read += 1
                    _settle(call, reply)
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
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        _fail(self._pending, asyncio.CancelledError())
        self._pending.clear()
        for lane in self._lanes:
            await self._drop(lane)


def _pack(connection: Any, batch: list[_Call], *, hiredis: bool = True) -> list[bytes]:
    """The batch in RESP, as redis-py's ``pack_commands`` would write it: by
    hiredis (str as UTF-8, int, float, bytes), else by our own writer for the
    str and int arguments the scripts take (anything else: redis-py packs)."""
    encoding = connection.encoder.encoding
    errors = connection.encoder.encoding_errors
    if hiredis and _hiredis_pack is not None and encoding == "utf-8" and errors == "strict":
        with contextlib.suppress(TypeError, UnicodeError):  # None, a bool, a lone surrogate
            return [b"".join([_hiredis_pack(call.command) for call in batch])]
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


def _settle(call: _Call, reply: Any) -> None:
    """A call's reply, or its own error reply (a script error, NOSCRIPT, BUSY)."""
    if call.future.done():
        return  # its caller gave up
    if isinstance(reply, ResponseError):
        call.future.set_exception(reply)
    else:
        call.future.set_result(reply)


async def _next_reply(connection: Any, parser: Any, reader: Any, reply: Any) -> Any:
    """Read from the socket until the parser has a whole reply, failing as
    redis-py's own read_response fails: a timeout or a lost connection (the
    caller closes it), or a reply redis-py makes a ConnectionError of (max
    clients reached). Each read is bounded by the socket timeout."""
    while reply is _NOT_ENOUGH_DATA or isinstance(reply, _NOT_A_REPLY):
        if isinstance(reply, RedisConnectionError):
            raise reply  # as redis-py raises it: the stream is broken
        if reply is not _NOT_ENOUGH_DATA:  # a push: not this call's reply
            reply = reader.gets()
            continue
        try:
            async with asyncio.timeout(connection.socket_timeout):
                await parser.read_from_socket()
        except TimeoutError as exc:
            raise RedisTimeoutError(f"Timeout reading from {_describe(connection)}") from exc
        except OSError as exc:
            raise RedisConnectionError(
                f"Error while reading from {_describe(connection)}: {exc.args}"
            ) from exc
        reply = reader.gets()
    return reply


def _describe(connection: Any) -> str:
    describe = getattr(connection, "_host_error", None)
    return str(describe()) if callable(describe) else "Redis"


def _fail(calls: Sequence[_Call], exc: BaseException) -> None:
    if isinstance(exc, asyncio.CancelledError):
        # The lane was cancelled (shutdown), not the callers: they see Redis
        # gone, and do not retry (their scripts may have run).
        exc = BackendUnavailable("redis", "the Redis client is closing")
    for call in calls:
        if not call.future.done():
            call.future.set_exception(exc)
