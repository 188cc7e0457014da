"""Contract tests of the feed adapter (feed_read.lua and the blocking waiter), run
on fakeredis (the embedded default) and on a real redis-server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from seat_inventory.adapters.redis import RedisHoldStore, connect_redis
from seat_inventory.adapters.redis.feed import RedisFeed
from seat_inventory.domain.errors import BackendUnavailable
from seat_inventory.domain.ids import new_hold_id
from seat_inventory.domain.model import ChangeReason, SeatStatus
from seat_inventory.service_layer.ports import EventSnapshot, ReserveRequest

EVENT = "ev-feed"
SEATS = ("A1", "A2", "A3")


@pytest.fixture(
    params=[
        "fakeredis",
        pytest.param("redis", marks=pytest.mark.integration),
        pytest.param("cluster", marks=pytest.mark.integration),  # 3 masters
    ]
)
async def setup(request: pytest.FixtureRequest) -> AsyncIterator[tuple[RedisHoldStore, RedisFeed]]:
    url = None
    if request.param == "redis":
        url = request.getfixturevalue("redis_url")
    elif request.param == "cluster":
        url = request.getfixturevalue("redis_cluster_server").url
    client: aioredis.Redis = connect_redis(url)
    if url is not None:
        await client.flushdb()
    holds = RedisHoldStore(client)
    await holds.load_event(EventSnapshot(EVENT, SEATS, frozenset()))
    yield holds, RedisFeed(client, url, timeout_s=1.0, max_block_s=1.0)
    await client.aclose()


async def hold(holds: RedisHoldStore, *seats: str) -> None:
    await holds.reserve(
        ReserveRequest(EVENT, new_hold_id(EVENT), "alice", seats, 60_000, 120_000, "", "")
    )


async def test_read_returns_the_entries_after_a_position_with_epoch_and_tail(
    setup: tuple[RedisHoldStore, RedisFeed],
) -> None:
    """An empty feed starts at 0-0; entries after a retained position come back in order,
    with the reason, the seats and the status they lead to."""
    holds, feed = setup
    start = await feed.read(EVENT, None, 0)
    assert (start.tail, start.entries, start.continuous) == ("0-0", (), True)
    assert start.epoch
    await hold(holds, "A1", "A2")
    await hold(holds, "A3")
    page = await feed.read(EVENT, "0-0", 10)
    assert [(e.reason, e.seat_ids) for e in page.entries] == [
        (ChangeReason.HELD, ("A1", "A2")),
        (ChangeReason.HELD, ("A3",)),
    ]
    assert page.entries[0].status is SeatStatus.HELD
    assert page.tail == page.entries[-1].entry_id
    after_first = await feed.read(EVENT, page.entries[0].entry_id, 10)
    assert after_first.entries == page.entries[1:]
    assert (await feed.read(EVENT, "0-0", 1)).entries == page.entries[:1]


async def test_a_position_the_feed_does_not_hold_is_not_continuous(
    setup: tuple[RedisHoldStore, RedisFeed],
) -> None:
    """A never-issued id, and 0-0 once the oldest entry was trimmed, are reported
    as discontinuous rather than answered with whatever follows them."""
    holds, feed = setup
    await hold(holds, "A1")
    await hold(holds, "A2")
    first = (await feed.read(EVENT, "0-0", 10)).entries[0].entry_id
    ms, _, _ = first.partition("-")
    assert not (await feed.read(EVENT, f"{ms}-999", 10)).continuous
    assert not (await feed.read(EVENT, "99999999999999-0", 10)).continuous
    await holds._redis.xtrim(f"{{e:{EVENT}}}:feed", maxlen=1, approximate=False)
    assert not (await feed.read(EVENT, "0-0", 10)).continuous
    assert not (await feed.read(EVENT, first, 10)).continuous


async def test_the_waiter_wakes_on_a_new_entry_and_times_out_without_one(
    setup: tuple[RedisHoldStore, RedisFeed],
) -> None:
    """wait() returns True once an entry follows the position and False after its timeout."""
    holds, feed = setup
    waiter = feed.waiter(EVENT)
    try:
        assert await waiter.wait("0-0", 0.05) is False
        pending = asyncio.create_task(waiter.wait("0-0", 2.0))
        await asyncio.sleep(0.05)
        await hold(holds, "A1")
        assert await asyncio.wait_for(pending, 2.0) is True
    finally:
        await waiter.close()


@pytest.mark.integration
async def test_interrupt_ends_a_blocked_wait_at_once(redis_url: str) -> None:
    """interrupt() from another task makes a blocked wait fail with BackendUnavailable."""
    client = connect_redis(redis_url)
    waiter = RedisFeed(client, redis_url, max_block_s=5.0).waiter("ev-idle")
    try:
        assert await waiter.wait("0-0", 0.01) is False  # connected
        pending = asyncio.create_task(waiter.wait("0-0", 5.0))
        await asyncio.sleep(0.05)
        await waiter.interrupt()
        with pytest.raises(BackendUnavailable):
            await asyncio.wait_for(pending, 1.0)
    finally:
        await waiter.close()
        await client.aclose()
