"""The consumer runner's reclaim round on a real Redis Cluster.

Its reads go in one non-transactional pipeline (XPENDING, XINFO CONSUMERS, XINFO
GROUPS, XREVRANGE of every stream of the partition) and its claim in one MULTI/EXEC
(fence INCRs, XCLAIMs, XINFO CONSUMERS): redis-py's ``ClusterPipeline`` must route
each of them to the partition's node, and an idle round still costs one round trip.
"""

from __future__ import annotations

from typing import Any

from redis.asyncio import RedisCluster

from shared.publisher import Publisher
from shared.redis_cluster_server import LocalCluster
from shared.settings import ConsumerSettings
from tests.shared.test_reclaim import (
    CountingConnection,
    a_dead_consumer_is_forgotten_in_the_round_that_takes_its_last_entries,
    a_round_claims_from_two_streams_at_once,
    events,
    runner_for,
)


def cluster_settings(cluster: LocalCluster, prefix: str, **overrides: Any) -> ConsumerSettings:
    values: dict[str, Any] = {
        "redis_url": cluster.url,
        "redis_cluster": True,
        "redis_key_prefix": prefix,
        "consumer_name": "alive",
        "consumer_claim_min_idle_ms": 50,
        "consumer_forget_idle_ms": 50,
    }
    values.update(overrides)
    return ConsumerSettings(_env_file=None, **values)  # type: ignore[call-arg]


def counting_cluster_client(url: str) -> RedisCluster:
    """A cluster client whose every connection counts its sends.

    ``RedisCluster`` ignores a ``connection_class`` argument (it always passes
    ``Connection`` to its nodes), so the class is set where its nodes read it, before
    the first command opens a connection.
    """
    client = RedisCluster.from_url(url, decode_responses=True)
    client.nodes_manager.connection_kwargs["connection_class"] = CountingConnection
    for node in client.nodes_manager.startup_nodes.values():
        node.connection_class = CountingConnection
    return client


async def test_a_round_on_a_cluster_claims_from_two_streams_at_once(
    redis_cluster: LocalCluster, cluster_client: RedisCluster, key_prefix: str
) -> None:
    settings = cluster_settings(redis_cluster, key_prefix, consumer_forget_idle_ms=3_600_000)
    await a_round_claims_from_two_streams_at_once(cluster_client, settings)  # type: ignore[arg-type]


async def test_a_round_on_a_cluster_forgets_a_dead_consumer_whose_last_entries_it_took(
    redis_cluster: LocalCluster, cluster_client: RedisCluster, key_prefix: str
) -> None:
    settings = cluster_settings(redis_cluster, key_prefix)
    await a_dead_consumer_is_forgotten_in_the_round_that_takes_its_last_entries(
        cluster_client,  # type: ignore[arg-type]
        settings,
    )


async def test_an_idle_round_on_a_cluster_is_one_round_trip(
    redis_cluster: LocalCluster, cluster_client: RedisCluster, key_prefix: str
) -> None:
    settings = cluster_settings(redis_cluster, key_prefix)
    await Publisher(cluster_client, settings).publish_many(events(chats=3, subs=3))  # type: ignore[arg-type]
    counting = counting_cluster_client(redis_cluster.url)
    try:
        runner = runner_for(counting, settings, "unused")  # type: ignore[arg-type]
        await runner.ensure_groups()
        await runner.reclaim()  # the topology is known and the connection open from here on
        before = CountingConnection.sends
        claimed = await runner.reclaim()
        sends = CountingConnection.sends - before
    finally:
        await counting.aclose()
    assert claimed == 0 and sends == 1
