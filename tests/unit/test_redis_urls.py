"""Which Redis client a --redis-url makes: one server, or a Redis Cluster for
``redis+cluster://`` / ``rediss+cluster://`` (nothing connects here)."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import SSLConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import MovedError

from seat_inventory.adapters.redis import RedisHoldStore
from seat_inventory.adapters.redis.connection import (
    cluster_url,
    connect_redis,
    is_cluster,
    node_url,
    unavailable,
)
from seat_inventory.adapters.redis.feed import RedisFeed
from seat_inventory.domain.errors import BackendUnavailable
from tests.support.services import free_port


async def test_plain_urls_make_a_one_server_client() -> None:
    for url in ("redis://127.0.0.1:6379/0", "rediss://cache.example:6380/2"):
        client = connect_redis(url)
        assert isinstance(client, aioredis.Redis)
        assert not is_cluster(client)
        assert cluster_url(url) is None
        await client.aclose()


async def test_cluster_url_makes_a_cluster_client_seeded_with_every_named_node() -> None:
    """Several comma-separated nodes seed the discovery (any one may be down); the
    credentials and TLS of the URL apply to every node."""
    client = connect_redis("rediss+cluster://app:s3cret@10.0.0.1:7000,10.0.0.2:7001/0")
    try:
        assert isinstance(client, RedisCluster)
        assert is_cluster(client)
        seeds = {
            (node.host, int(node.port)) for node in client.nodes_manager.startup_nodes.values()
        }
        assert seeds == {("10.0.0.1", 7000), ("10.0.0.2", 7001)}
        for node in client.nodes_manager.startup_nodes.values():
            assert node.connection_class is SSLConnection
            assert node.connection_kwargs["password"] == "s3cret"
            assert node.connection_kwargs["username"] == "app"
    finally:
        await client.aclose()


async def test_a_cluster_url_without_port_means_6379() -> None:
    client = connect_redis("redis+cluster://localhost")
    try:
        assert {int(node.port) for node in client.nodes_manager.startup_nodes.values()} == {6379}
    finally:
        await client.aclose()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis+cluster://127.0.0.1:7000/1", "only database 0"),
        ("redis+cluster://127.0.0.1:7000,:7001", "names no host"),
        ("redis+cluster://127.0.0.1:notaport", "Port"),
        # Options redis-py does not take failed the first command with a TypeError.
        ("redis://127.0.0.1:6379/0?foo=bar", "an option redis-py does not take .*'foo'"),
        ("redis+cluster://127.0.0.1:7000?foo=bar", "an option redis-py does not take .*'foo'"),
    ],
)
def test_bad_cluster_urls_are_refused_with_a_reason(url: str, message: str) -> None:
    """ValueError is what `serve` reports as "cannot start" (no traceback)."""
    with pytest.raises(ValueError, match=message):
        connect_redis(url)


def test_node_url_keeps_credentials_and_options_and_brackets_ipv6() -> None:
    parts = cluster_url("rediss+cluster://u:p@seed:7000/0?ssl_cert_reqs=none")
    assert parts is not None
    assert node_url(parts, "10.1.2.3", 7002) == "rediss://u:p@10.1.2.3:7002?ssl_cert_reqs=none"
    assert node_url(parts, "fd00::5", 7003) == "rediss://u:p@[fd00::5]:7003?ssl_cert_reqs=none"
    plain = cluster_url("redis+cluster://seed:7000")
    assert plain is not None
    assert node_url(plain, "h", 1) == urlsplit("redis://h:1").geturl()


def test_moved_on_a_plain_url_says_to_use_a_cluster_url() -> None:
    """A redis:// URL naming one node of a cluster fails as BACKEND_UNAVAILABLE with
    the fix, not as an internal error."""
    error = unavailable(MovedError("3999 127.0.0.1:7001"))
    assert error.metadata == {"backend": "redis"}
    assert "redis+cluster://" in str(error)
    assert "127.0.0.1" not in str(error)


async def test_an_unreachable_cluster_is_backend_unavailable() -> None:
    """No node answers: ping, the scripts and the feed fail as BACKEND_UNAVAILABLE
    (redis-py's RedisClusterException is not a RedisError, so this is not a given)."""
    url = f"redis+cluster://127.0.0.1:{free_port()}"
    client = connect_redis(url, timeout_s=0.5)
    holds, feed = RedisHoldStore(client), RedisFeed(client, url, timeout_s=0.5)
    waiter = feed.waiter("ev1")
    try:
        for call in (
            holds.ping(),
            holds.live_state("ev1"),
            feed.read("ev1", None, 10),
            waiter.wait("0-0", 0.1),
        ):
            with pytest.raises(BackendUnavailable) as caught:
                await call
            assert caught.value.metadata == {"backend": "redis"}
    finally:
        await waiter.close()
        await client.aclose()


async def test_a_cluster_connection_closed_under_a_command_is_a_lost_connection(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """redis-py's cluster client can write on a connection another command's
    failure has just closed (``'NoneType' object has no attribute 'writelines'``,
    seen while a master restarted): that is a lost connection, answered
    UNAVAILABLE, not an internal error. An AttributeError of anyone else's stays."""
    namespace: dict[str, object] = {"__name__": "redis.asyncio.connection"}
    exec(  # noqa: S102 - a function that fails inside a "redis-py" module
        "async def send(*args, **kwargs):\n    writer = None\n    writer.writelines([])\n",
        namespace,
    )
    monkeypatch.setattr(RedisCluster, "execute_command", namespace["send"])
    client = connect_redis("redis+cluster://127.0.0.1:7000")
    with pytest.raises(RedisConnectionError, match="connection lost") as lost:
        await client.execute_command("GET", "k")
    assert isinstance(lost.value.__cause__, AttributeError)
    assert isinstance(unavailable(lost.value), BackendUnavailable)

    async def ours(*args: object, **kwargs: object) -> None:
        raise AttributeError("a bug of our own")

    monkeypatch.setattr(RedisCluster, "execute_command", ours)
    with pytest.raises(AttributeError, match="a bug of our own"):
        await client.execute_command("GET", "k")
