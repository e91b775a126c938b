"""Fixtures of the cluster tests: a real six-node Redis Cluster on loopback.

``redis_cluster`` is shared by the tests that only read and write keys under
their own prefix; a test that kills nodes takes ``fresh_cluster``,
its own cluster, so no other test sees the failover. Both stop every node and
delete its directory afterwards (``shared.redis_cluster_server``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from redis.asyncio import RedisCluster

from shared.redis_client import connect_cluster
from shared.redis_cluster_server import LocalCluster, local_cluster


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[LocalCluster]:
    """Three masters with a replica each, shared by every test that does not break it."""
    with local_cluster() as cluster:
        yield cluster


@pytest.fixture
def fresh_cluster() -> Iterator[LocalCluster]:
    """A cluster of this test's own, which it may break."""
    with local_cluster() as cluster:
        yield cluster


@pytest.fixture
async def cluster_client(
    redis_cluster: LocalCluster, key_prefix: str
) -> AsyncIterator[RedisCluster]:
    """A cluster client entering through one node; this test's keys are deleted after."""
    client = connect_cluster(redis_cluster.url)
    yield client
    keys = [key async for key in client.scan_iter(match=f"{key_prefix}*", count=1000)]
    for key in keys:
        await client.delete(key)
    await client.aclose()
