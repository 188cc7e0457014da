"""Redis configured so that a seat the database sold could be held again
(evicting keys) is named at start-up, on Redis servers this test starts
itself with those settings; saving to disk is not a problem any more."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import pytest

from seat_inventory.adapters.redis.connection import connect_redis, setup_warnings
from tests.support.services import RedisCluster, RedisProcess, free_port

pytestmark = pytest.mark.integration

Start = Callable[..., RedisProcess]


@pytest.fixture
def start_redis() -> Iterator[Start]:
    started: list[RedisProcess] = []

    def start(*args: str) -> RedisProcess:
        server = RedisProcess(extra_args=args).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.cleanup()


async def warnings_of(url: str) -> Sequence[str]:
    client = connect_redis(url, timeout_s=2.0)
    try:
        return await setup_warnings(client)
    finally:
        await client.aclose()


async def test_a_redis_that_keeps_nothing_and_evicts_nothing_is_fine(start_redis: Start) -> None:
    assert await warnings_of(start_redis().url) == []


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("--save", "60 1", "--appendonly", "yes"), []),  # a restart is detected instead
        (("--maxmemory-policy", "volatile-lru"), ["(maxmemory-policy volatile-lru)"]),
        (("--maxmemory-policy", "allkeys-lru"), ["(maxmemory-policy allkeys-lru)"]),
    ],
)
async def test_eviction_is_named_and_persistence_is_not(
    start_redis: Start, args: tuple[str, ...], expected: list[str]
) -> None:
    warnings = await warnings_of(start_redis(*args).url)
    assert len(warnings) == len(expected), warnings
    for warning, wanted in zip(warnings, expected, strict=True):
        assert "evicts keys when full " + wanted in warning
        assert "database still refuses a second sale" in warning


async def test_a_redis_that_refuses_config_is_reported_unchecked(start_redis: Start) -> None:
    (warning,) = await warnings_of(start_redis("--rename-command", "CONFIG", "").url)
    assert "could not read its configuration" in warning


async def test_a_redis_that_refuses_info_to_scripts_is_named(start_redis: Start) -> None:
    """Without INFO the scripts cannot tell a restarted Redis from the one that
    loaded the data."""
    (warning,) = await warnings_of(start_redis("--rename-command", "INFO", "").url)
    assert "refuses INFO to scripts" in warning


async def test_an_unreachable_redis_is_left_to_health() -> None:
    assert await warnings_of(f"redis://127.0.0.1:{free_port()}/0") == []


async def test_every_master_of_a_cluster_is_checked(redis_cluster_server: RedisCluster) -> None:
    """The session's cluster evicts nothing: no warning, and one per master once
    they all may evict."""
    client = connect_redis(redis_cluster_server.url, timeout_s=2.0)
    try:
        assert await setup_warnings(client) == []
        masters = client.get_primaries()
        assert len(masters) == 3
        for node in masters:
            await client.config_set("maxmemory-policy", "allkeys-lru", target_nodes=node)
        try:
            warnings = await setup_warnings(client)
        finally:
            for node in masters:
                await client.config_set("maxmemory-policy", "noeviction", target_nodes=node)
        assert len(warnings) == 3
        assert all("evicts keys when full" in w for w in warnings)
        assert {w.split(" evicts")[0] for w in warnings} == {
            f"Redis {node.host}:{node.port}" for node in masters
        }
    finally:
        await client.aclose()
