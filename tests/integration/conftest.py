"""Redis clients for the hold-store contract tests: fakeredis (unit), a real
redis-server and a 3-master cluster this session started (integration)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from seat_inventory.adapters.redis import connect_redis
from seat_inventory.domain.clock import FakeClock


@pytest.fixture(
    params=[
        "fakeredis",
        pytest.param("redis", marks=pytest.mark.integration),
        pytest.param("cluster", marks=pytest.mark.integration),  # 3 masters
    ]
)
async def raw_redis(request: pytest.FixtureRequest) -> AsyncIterator[aioredis.Redis]:
    if request.param == "fakeredis":
        client = connect_redis(None)
    else:
        url_of = {"redis": "redis_url", "cluster": "redis_cluster_server"}
        server = request.getfixturevalue(url_of[request.param])
        client = connect_redis(server if isinstance(server, str) else server.url)
        await client.flushdb()  # on a cluster: every master
    yield client
    await client.aclose()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()
