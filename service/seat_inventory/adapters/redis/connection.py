"""Building the Redis client: a real server or a Redis Cluster from a URL, or
in-process fakeredis.

``redis://`` and ``rediss://`` name one server. ``redis+cluster://`` and
``rediss+cluster://`` name any node of a Redis Cluster (a comma-separated list
of ``host:port`` may name more, in case one is down); the client discovers
the rest. Every key of an event shares the hash tag ``{e:ID}``, so every Lua
script runs on the one master that serves the event's slot.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any
from urllib.parse import SplitResult, urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import (
    ClusterError,
    MovedError,
    NoPermissionError,
    OutOfMemoryError,
    ReadOnlyError,
    RedisClusterException,
    RedisError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ...domain.errors import BackendUnavailable

__all__ = [
    "CLUSTER_SCHEMES",
    "FAILURES",
    "UNREACHABLE",
    "cluster_url",
    "connect_redis",
    "is_cluster",
    "node_url",
    "ping_redis",
    "refusal",
    "refuses_for_now",
    "setup_warnings",
    "unavailable",
]

# scheme of the service's URL -> scheme redis-py takes for one node
CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}

# Errors that mean "Redis cannot answer now" (BACKEND_UNAVAILABLE), also on a
# cluster: CLUSTERDOWN / MASTERDOWN while a master fails over (ClusterError),
# no node reachable or a slot not served (RedisClusterException, which is not
# a RedisError), and MOVED: a redis:// URL that names a node of a cluster.
UNREACHABLE: tuple[type[BaseException], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    ClusterError,
    RedisClusterException,
    MovedError,
    OSError,
)

# Every Redis failure: the feed and the health ping report each as BACKEND_UNAVAILABLE.
FAILURES: tuple[type[BaseException], ...] = (RedisError, *UNREACHABLE)


# Replies by which a reachable Redis refuses work for now: full (OOM, under
# maxmemory-policy noeviction, the policy setup_warnings asks for), a replica
# (READONLY: the URL names a node that was failed over), snapshots failing
# (MISCONF), loading or busy with a script, an ACL without the commands, a
# cluster without a majority. The caller gets BACKEND_UNAVAILABLE, as for an
# unreachable Redis; a script's own error stays an internal error.
_REFUSING_WORD: dict[type[RedisError], str] = {
    OutOfMemoryError: "OOM",
    ReadOnlyError: "READONLY",
    NoPermissionError: "NOPERM",
}
_REFUSING_TYPES = tuple(_REFUSING_WORD)
_REFUSING_WORDS = re.compile(
    r"\b(BUSY|LOADING|MISCONF|OOM|READONLY|NOPERM|MASTERDOWN|NOREPLICAS|CLUSTERDOWN|TRYAGAIN)\b"
)


def refuses_for_now(exc: RedisError) -> bool:
    """Whether ``exc`` is Redis refusing work for now, not a failed call of ours."""
    return isinstance(exc, _REFUSING_TYPES) or _REFUSING_WORDS.search(str(exc)) is not None


def refusal(exc: RedisError) -> str:
    """What to tell the caller of such a refusal (redis-py takes the reply's
    first word off for the errors it has a class for; put it back)."""
    text = re.split(r"\s+script: ", str(exc), maxsplit=1)[0].strip().rstrip(".,")
    prefix = _REFUSING_WORD.get(type(exc))
    return f"{prefix} {text}" if prefix and not text.startswith(prefix) else text


def unavailable(exc: BaseException) -> BackendUnavailable:
    """The BACKEND_UNAVAILABLE error for a Redis failure (no addresses in it)."""
    if isinstance(exc, MovedError):
        return BackendUnavailable(
            "redis", "the server is a Redis Cluster node: use a redis+cluster:// URL"
        )
    return BackendUnavailable("redis", type(exc).__name__)


def cluster_url(url: str) -> SplitResult | None:
    """The URL split, with the scheme redis-py takes, when ``url`` names a
    Redis Cluster; None for one server."""
    parts = urlsplit(url)
    scheme = CLUSTER_SCHEMES.get(parts.scheme.lower())
    return None if scheme is None else parts._replace(scheme=scheme)


def is_cluster(client: Any) -> bool:
    return isinstance(client, RedisCluster)


def node_url(parts: SplitResult, host: str, port: int) -> str:
    """``parts`` (credentials, TLS query options) pointed at one node."""
    userinfo = parts.netloc.rpartition("@")[0]
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    netloc = f"{userinfo}@{address}" if userinfo else address
    return urlunsplit(parts._replace(netloc=netloc, path=""))


def _startup_nodes(parts: SplitResult) -> tuple[str, list[ClusterNode]]:
    """The redis-py URL of the first node the URL names, and every node it names."""
    if parts.path not in ("", "/", "/0"):
        raise ValueError(
            f"a Redis Cluster has only database 0; drop {parts.path!r} from the Redis URL"
        )
    nodes: list[ClusterNode] = []
    for address in parts.netloc.rpartition("@")[2].split(","):
        one = urlsplit(f"//{address.strip()}")
        if not one.hostname:
            raise ValueError(f"the Redis Cluster URL names no host in {address!r}")
        nodes.append(ClusterNode(one.hostname, one.port or 6379))
    return node_url(parts, nodes[0].host, int(nodes[0].port)), nodes


class _QueueingCluster(RedisCluster):
    """A RedisCluster that queues callers when ``max_connections`` commands are
    in flight (like the BlockingConnectionPool of one server) instead of
    failing them with MaxConnectionsError during a burst."""

    def __init__(self, *args: Any, queue_timeout_s: float = 2.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._gate = asyncio.Semaphore(kwargs.get("max_connections", 100))
        self._queue_timeout_s = queue_timeout_s

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        if not self._gate.locked():
            await self._gate.acquire()  # at once: the common case needs no timer
        else:
            try:
                async with asyncio.timeout(self._queue_timeout_s):
                    await self._gate.acquire()
            except TimeoutError:
                raise RedisConnectionError("no Redis Cluster connection became free") from None
        try:
            return await super().execute_command(*args, **kwargs)
        except AttributeError as exc:
            if not _raised_in_redis_py(exc):
                raise
            # redis-py's cluster client can send on a connection that a failure
            # seen by another command has just closed (its writer is None; seen
            # while a master restarts): a lost connection, not a bug here.
            raise RedisConnectionError(f"Redis Cluster connection lost: {exc}") from exc
        finally:
            self._gate.release()


def _raised_in_redis_py(exc: BaseException) -> bool:
    tb = exc.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    return str(tb.tb_frame.f_globals.get("__name__", "")).startswith("redis.")


# One more try on a fresh connection when one fails (a pooled connection the
# server or a proxy closed), not after a timeout: a Redis that does not answer
# in time answers BACKEND_UNAVAILABLE after one timeout, not two.
def _one_retry() -> Retry:
    return Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,))


def _options(timeout_s: float, max_connections: int) -> dict[str, Any]:
    """What every client of ours is made with, on one server or a cluster."""
    return {
        "decode_responses": True,
        "socket_timeout": timeout_s,
        "socket_connect_timeout": timeout_s,
        "retry": _one_retry(),
        "health_check_interval": 30,
        "max_connections": max_connections,
    }


def _connect_cluster(parts: SplitResult, *, timeout_s: float, max_connections: int) -> Any:
    first, nodes = _startup_nodes(parts)
    return _QueueingCluster.from_url(
        first,
        startup_nodes=nodes,
        queue_timeout_s=timeout_s,
        **_options(timeout_s, max_connections),
    )


def connect_redis(url: str | None, *, timeout_s: float = 2.0, max_connections: int = 64) -> Any:
    """A redis.asyncio client for ``url``; None means in-process fakeredis.

    Nothing connects here: the first command does. Timeouts are short and a
    command whose connection failed is retried once at most (a stale pooled
    connection; never after a timeout), so an unreachable or stalled Redis
    turns into BACKEND_UNAVAILABLE well inside a deadline.
    """
    if url is None:
        import fakeredis  # the embedded default only

        return fakeredis.FakeAsyncRedis(decode_responses=True)
    parts = cluster_url(url)
    try:
        if parts is not None:
            return _connect_cluster(parts, timeout_s=timeout_s, max_connections=max_connections)
        # A blocking pool queues callers when every connection is busy instead of
        # failing them with "too many connections" during a burst.
        pool = aioredis.BlockingConnectionPool.from_url(
            url, timeout=timeout_s, **_options(timeout_s, max_connections)
        )
        # redis-py hands the URL's unknown options to each connection, whose
        # first use fails on them: make one now (it connects only when used).
        pool.make_connection()  # type: ignore[no-untyped-call]
    except TypeError as exc:
        raise ValueError(f"Redis URL: an option redis-py does not take ({exc})") from None
    return aioredis.Redis(connection_pool=pool)


# Written by every health check of one server: a Redis that answers PING but
# refuses writes (a replica after a failover, full under noeviction, failing
# snapshots) must not look healthy. Outside every event's keys ({e:...}).
_PROBE_KEY = "seat-inventory:health"


async def ping_redis(client: Any) -> None:
    """PING every master of a cluster (each serves some events); on one server,
    a short-lived write instead, so that one refusing writes is not healthy."""
    try:
        if is_cluster(client):
            await client.ping(target_nodes=RedisCluster.PRIMARIES)
        else:
            try:
                await client.set(_PROBE_KEY, "1", px=10_000)
            except NoPermissionError:  # an ACL that allows our keys only: PING then
                await client.ping()
    except RedisError as exc:
        if refuses_for_now(exc):
            raise BackendUnavailable("redis", refusal(exc)) from exc
        raise unavailable(exc) from exc
    except UNREACHABLE as exc:
        raise unavailable(exc) from exc


# What the scripts' loaded() needs to tell one Redis process from the next.
_CAN_INFO = "if pcall(redis.call, 'INFO', 'server') then return 1 end return 0"


async def setup_warnings(client: Any) -> list[str]:
    """What in the Redis server's configuration (every master's, on a cluster)
    weakens what the service promises, one sentence each; nothing when all is
    well or Redis cannot be reached (health says so).

    A server that evicts keys when full may drop a hold (freeing its seats to a
    second holder) or an event's sold seats (free to hold again until their
    Confirm fails); the database still refuses a second sale. A Redis that
    refuses CONFIG (managed services often do) is reported as unchecked. Saving
    to disk is fine: state brought back by a restart is reloaded from SQL
    first (``loaded()`` in the scripts' prelude), as long as scripts may call
    INFO, which is checked too.
    """
    if is_cluster(client):
        try:
            await client.initialize()  # the masters are known once it has connected
        except UNREACHABLE:
            return []
        nodes: list[tuple[str, Any]] = [
            (f"Redis {node.host}:{node.port}", node) for node in client.get_primaries()
        ]
    else:
        nodes = [("Redis", None)]
    warnings: list[str] = []
    for name, node in nodes:
        on_node = {} if node is None else {"target_nodes": node}
        try:
            if not await client.execute_command("EVAL", _CAN_INFO, 0, **on_node):
                warnings.append(
                    f"{name} refuses INFO to scripts (renamed, or an ACL): a restart from "
                    "an on-disk snapshot cannot be told from the process that loaded the "
                    "data, so seats sold since could be held (the database still refuses "
                    "a second sale, at Confirm); allow INFO, or run it without persistence"
                )
            config = await client.config_get("maxmemory-policy", **on_node)
        except UNREACHABLE:
            continue
        except RedisError as exc:
            warnings.append(
                f"{name}: could not read its configuration ({exc}); make sure it evicts "
                "nothing (maxmemory-policy noeviction)"
            )
            continue
        policy = config.get("maxmemory-policy", "noeviction")
        if policy != "noeviction":
            warnings.append(
                f"{name} evicts keys when full (maxmemory-policy {policy}): an evicted "
                "hold frees its seats to a second holder and evicted sold seats can be "
                "held again (the database still refuses a second sale, at Confirm); run "
                "it with maxmemory-policy noeviction"
            )
    return warnings
