"""A reachable Redis that refuses work for now (full under noeviction, a replica
after a failover) is BACKEND_UNAVAILABLE to the caller, as an unreachable one
is, and writes nothing; on Redis servers this test starts itself."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import redis.asyncio as aioredis

from seat_inventory.adapters.redis import RedisHoldStore, connect_redis
from seat_inventory.domain.errors import BackendUnavailable
from seat_inventory.domain.ids import new_hold_id
from seat_inventory.domain.policy import reserve_fingerprint
from seat_inventory.service_layer.ports import EventSnapshot, ReserveRequest
from tests.support.services import RedisProcess, free_port

pytestmark = pytest.mark.integration

EVENT = "refusing"


def request(seat: str) -> ReserveRequest:
    return ReserveRequest(
        event_id=EVENT,
        hold_id=new_hold_id(EVENT),
        holder_id="alice",
        seat_ids=(seat,),
        ttl_ms=60_000,
        max_lifetime_ms=120_000,
        request_id="",
        fingerprint=reserve_fingerprint((seat,), 60_000),
    )


@pytest.fixture
async def own_redis() -> AsyncIterator[aioredis.Redis]:
    server = RedisProcess(extra_args=("--maxmemory-policy", "noeviction")).start()
    admin = aioredis.Redis.from_url(server.url, decode_responses=True)
    try:
        yield admin
    finally:
        await admin.aclose()
        server.cleanup()


async def make_full(admin: aioredis.Redis) -> str:
    used = int((await admin.info("memory"))["used_memory"])
    await admin.config_set("maxmemory", str(used - 1024))
    return "OOM"


async def make_replica(admin: aioredis.Redis) -> str:
    # Of a master that is not there: the data stays, writes are refused.
    await admin.execute_command("REPLICAOF", "127.0.0.1", str(free_port()))
    return "READONLY"


@pytest.mark.parametrize("refuse", [make_full, make_replica], ids=["full", "replica"])
@pytest.mark.parametrize("batching", [True, False], ids=["batched", "alone"])
async def test_a_redis_refusing_writes_is_backend_unavailable(
    own_redis: aioredis.Redis,
    refuse: Callable[[aioredis.Redis], Awaitable[str]],
    batching: bool,
) -> None:
    """Reserve answers BACKEND_UNAVAILABLE naming Redis's refusal (not INTERNAL),
    leaves no seat held, and works again once Redis takes writes again."""
    url = f"redis://127.0.0.1:{own_redis.connection_pool.connection_kwargs['port']}/0"
    client = connect_redis(url, timeout_s=2.0)
    store = RedisHoldStore(client, batching=batching)
    try:
        await store.load_event(EventSnapshot(EVENT, ("A1", "A2"), frozenset()))
        await store.reserve(request("A2"))  # the script is loaded
        word = await refuse(own_redis)
        with pytest.raises(BackendUnavailable) as refused:
            await store.reserve(request("A1"))
        assert refused.value.metadata == {"backend": "redis"}
        assert f"redis is unavailable: {word} " in str(refused.value)
        assert await own_redis.get(f"{{e:{EVENT}}}:seat:A1") is None
        await own_redis.config_set("maxmemory", "0")
        await own_redis.execute_command("REPLICAOF", "NO", "ONE")
        hold = await store.reserve(request("A1"))
        assert hold.seat_ids == ("A1",)
    finally:
        await store.aclose()
        await client.aclose()


@pytest.mark.parametrize("refuse", [make_full, make_replica], ids=["full", "replica"])
async def test_health_sees_a_redis_refusing_writes(
    own_redis: aioredis.Redis, refuse: Callable[[aioredis.Redis], Awaitable[str]]
) -> None:
    """The health check writes a short-lived key: a Redis that answers PING but refuses
    writes is BACKEND_UNAVAILABLE to it (health NOT_SERVING), named by its refusal."""
    url = f"redis://127.0.0.1:{own_redis.connection_pool.connection_kwargs['port']}/0"
    client = connect_redis(url, timeout_s=2.0)
    store = RedisHoldStore(client)
    try:
        await store.ping()
        word = await refuse(own_redis)
        assert await client.ping() is True  # PING alone would say all is well
        with pytest.raises(BackendUnavailable, match=f"redis is unavailable: {word} "):
            await store.ping()
        await own_redis.config_set("maxmemory", "0")
        await own_redis.execute_command("REPLICAOF", "NO", "ONE")
        await store.ping()
    finally:
        await store.aclose()
        await client.aclose()
