"""Building the Redis client: a real server from a URL, or in-process fakeredis."""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

__all__ = ["connect_redis"]


def connect_redis(url: str | None, *, timeout_s: float = 2.0, max_connections: int = 64) -> Any:
    """A redis.asyncio client for ``url``; None means in-process fakeredis.

    Nothing connects here: the first command does. Timeouts are short and a
    failed command is retried once at most (a stale pooled connection), so an
    unreachable Redis turns into BACKEND_UNAVAILABLE well inside a deadline.
    """
    if url is None:
        import fakeredis  # the embedded default only

        return fakeredis.FakeAsyncRedis(decode_responses=True)
    # A blocking pool queues callers when every connection is busy instead of
    # failing them with "too many connections" during a burst.
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        decode_responses=True,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        retry=Retry(NoBackoff(), 1),
        health_check_interval=30,
        max_connections=max_connections,
        timeout=timeout_s,
    )
    return aioredis.Redis(connection_pool=pool)
