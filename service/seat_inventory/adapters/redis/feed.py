"""The per-event change feed (a Redis Stream) as the fan-out reads it.

Reads go through one read-only Lua script on the shared pool; the blocking
XREAD that wakes a reader runs on a connection of its own, so a reader parked
for a second never holds a pooled connection that Reserve needs. On a Redis
Cluster that connection goes to the master serving the event's slot.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import resources
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import AskError, RedisError

from ...domain.errors import BackendUnavailable
from ...domain.model import ChangeReason
from ...service_layer.ports import FeedEntry, FeedPage
from .connection import FAILURES, cluster_url, is_cluster, node_url, unavailable
from .keys import EventKeys

__all__ = ["RedisFeed", "RedisFeedWaiter"]


def _entry(raw: Any) -> FeedEntry:
    entry_id, flat = raw
    fields = dict(zip(flat[::2], flat[1::2], strict=True))
    seats = fields.get("s", "")
    return FeedEntry(entry_id, ChangeReason[fields["r"]], tuple(seats.split(",")) if seats else ())


class RedisFeedWaiter:
    """XREAD BLOCK on a dedicated client; ``close`` drops its connection."""

    def __init__(self, client: Any, event_id: str, *, owned: bool) -> None:
        self._client = client
        self._feed = EventKeys(event_id).feed
        self._owned = owned  # False: the embedded fakeredis client is shared, not ours

    async def wait(self, after: str, timeout_s: float) -> bool:
        try:
            reply = await self._client.xread(
                {self._feed: after}, count=1, block=max(1, int(timeout_s * 1000))
            )
        except (RedisError, OSError) as exc:
            raise BackendUnavailable("redis", type(exc).__name__) from exc
        return bool(reply)

    async def interrupt(self) -> None:
        """Ends a wait in progress (it fails with BackendUnavailable) by dropping the
        socket under it; the client itself is closed by ``close`` once the wait is over."""
        connection = self._client.connection if self._owned else None
        if connection is not None:
            await connection.disconnect(nowait=True)

    async def close(self) -> None:
        if self._owned:
            await self._client.aclose()


class ClusterFeedWaiter:
    """XREAD BLOCK on a connection of its own to the master that serves the
    event's feed, found through the shared cluster client's slot map."""

    def __init__(
        self, cluster: Any, url: str, event_id: str, *, timeout_s: float, max_block_s: float
    ) -> None:
        parts = cluster_url(url)
        assert parts is not None
        self._parts = parts
        self._cluster = cluster
        self._feed = EventKeys(event_id).feed
        self._timeout_s, self._max_block_s = timeout_s, max_block_s
        self._node: str | None = None
        self._client: Any = None

    def _connect(self, host: str, port: int) -> Any:
        return aioredis.Redis.from_url(
            node_url(self._parts, host, port),
            decode_responses=True,
            single_connection_client=True,
            socket_connect_timeout=self._timeout_s,
            socket_timeout=self._max_block_s + self._timeout_s,
            retry=Retry(NoBackoff(), 0),
        )

    async def wait(self, after: str, timeout_s: float) -> bool:
        try:
            await self._cluster.initialize()  # a no-op while the slot map is good
            node = self._cluster.get_node_from_key(self._feed)
            if self._client is None or node.name != self._node:
                await self.close()
                self._client, self._node = self._connect(node.host, int(node.port)), node.name
            reply = await self._client.xread(
                {self._feed: after}, count=1, block=max(1, int(timeout_s * 1000))
            )
        except AskError:
            # The slot moved (MOVED) or is moving (ASK): wake the reader, whose read
            # through the cluster client follows the redirect and updates the slot map.
            await self.close()
            return True
        except FAILURES as exc:
            # The next wait asks the slot map again: a replica may have taken over.
            await self.close()
            raise unavailable(exc) from exc
        return bool(reply)

    async def interrupt(self) -> None:
        """As RedisFeedWaiter.interrupt, on the node connection."""
        connection = None if self._client is None else self._client.connection
        if connection is not None:
            await connection.disconnect(nowait=True)

    async def close(self) -> None:
        client, self._client, self._node = self._client, None, None
        if client is not None:
            await client.aclose()


class RedisFeed:
    """FeedSource on Redis. ``url`` None (embedded fakeredis): waiters share ``redis``."""

    def __init__(
        self, redis: Any, url: str | None, *, timeout_s: float = 2.0, max_block_s: float = 1.0
    ) -> None:
        self._redis = redis
        source = resources.files(__package__).joinpath("lua", "feed_read.lua").read_text()
        self._script = redis.register_script(source)
        self._waiter: Callable[[str], RedisFeedWaiter | ClusterFeedWaiter]
        if url is None:
            self._waiter = lambda event_id: RedisFeedWaiter(redis, event_id, owned=False)
        elif is_cluster(redis):
            self._waiter = lambda event_id: ClusterFeedWaiter(
                redis, url, event_id, timeout_s=timeout_s, max_block_s=max_block_s
            )
        else:
            # The socket timeout must outlast the longest BLOCK a waiter asks for.
            # No retries here: the reader has its own backoff, and a read that
            # close() interrupted must fail rather than quietly start again.
            self._waiter = lambda event_id: RedisFeedWaiter(
                aioredis.Redis.from_url(
                    url,
                    decode_responses=True,
                    single_connection_client=True,
                    socket_connect_timeout=timeout_s,
                    socket_timeout=max_block_s + timeout_s,
                    retry=Retry(NoBackoff(), 0),
                ),
                event_id,
                owned=True,
            )

    async def read(self, event_id: str, after: str | None, count: int) -> FeedPage:
        keys = EventKeys(event_id)
        try:
            reply = await self._script(keys=[keys.feed, keys.meta], args=[after or "", count])
        except FAILURES as exc:
            raise unavailable(exc) from exc
        epoch, status, tail = reply[0], reply[1], reply[2]
        entries = tuple(_entry(raw) for raw in reply[3:])
        return FeedPage(epoch=epoch, continuous=status != "GONE", tail=tail, entries=entries)

    def waiter(self, event_id: str) -> RedisFeedWaiter | ClusterFeedWaiter:
        return self._waiter(event_id)
