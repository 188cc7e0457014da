"""Shared fixtures: real backends owned by this test run, fakes for unit tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.services import (
    RedisCluster,
    RedisProcess,
    postgres_database,
    redis_cluster,
    redis_process,
)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisProcess]:
    """A redis-server on a free port, started for this test session only."""
    with redis_process() as server:
        yield server


@pytest.fixture(scope="session")
def redis_url(redis_server: RedisProcess) -> str:
    return redis_server.url


@pytest.fixture(scope="session")
def redis_cluster_server() -> Iterator[RedisCluster]:
    """A three-master Redis Cluster on free ports, started for this test session only."""
    with redis_cluster() as server:
        yield server


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A plain postgresql:// URL of a database created for this test session."""
    with postgres_database() as url:
        yield url
