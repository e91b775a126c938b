"""Scripts on nodes that do not know them, as after a failover (Redis does not replicate the
script cache): the runner's commit still applies every entry once, and NOSCRIPT never
counts towards dead-lettering a good entry.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from redis.asyncio import RedisCluster
from redis.asyncio.client import Pipeline
from redis.exceptions import NoScriptError

from services.analytics.handler import GROUP, MetricsHandler
from services.analytics.settings import AnalyticsSettings
from services.analytics.writes import apply_script
from shared.consumer import ConsumerRunner, Delivery
from shared.publisher import Publisher
from shared.redis_cluster_server import LocalCluster
from tests.analytics.recorded import recorded_stream

CHANNEL = "scripted"


def settings(cluster: LocalCluster, prefix: str) -> AnalyticsSettings:
    return AnalyticsSettings(
        _env_file=None,
        redis_url=cluster.url,
        redis_cluster=True,
        redis_key_prefix=prefix,
        consumer_name="scripts",
        consumer_block_ms=20,
        consumer_max_attempts=2,
        channels=[CHANNEL],
    )


def flush_scripts(cluster: LocalCluster) -> None:
    """Empty every node's script cache: what a promoted replica starts with."""
    for master in cluster.masters():
        node = cluster.node(master.address).client()
        try:
            node.script_flush()
        finally:
            node.close()


async def consume(runner: ConsumerRunner, redis: RedisCluster, s: AnalyticsSettings) -> None:
    """Run ``runner`` until its group has no lag and nothing pending on its streams."""

    async def idle() -> bool:
        for stream in runner.streams:
            groups = {g["name"]: g for g in await redis.xinfo_groups(stream)}
            if groups[GROUP]["lag"] or groups[GROUP]["pending"]:
                return False
        return True

    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    try:
        async with asyncio.timeout(30):
            await asyncio.sleep(0.2)
            while not await idle():
                await asyncio.sleep(0.05)
    finally:
        stop.set()
        await task


async def test_the_commit_applies_every_entry_on_nodes_with_an_empty_script_cache(
    redis_cluster: LocalCluster, cluster_client: RedisCluster, key_prefix: str
) -> None:
    s = settings(redis_cluster, key_prefix)
    events = recorded_stream(3, channel=CHANNEL)
    await Publisher(cluster_client, s).publish_many(events)  # type: ignore[arg-type]
    handler = MetricsHandler(s.keys, 3600, apply_script(cluster_client))  # type: ignore[arg-type]
    flush_scripts(redis_cluster)
    runner = ConsumerRunner(
        cluster_client,  # type: ignore[arg-type]
        s,
        GROUP,
        handler,
        partition=s.partitioning.of(CHANNEL),
    )
    await consume(runner, cluster_client, s)

    assert int(await cluster_client.get(s.keys.analytics(CHANNEL).version) or 0) == len(events)
    assert runner.summary.dead_lettered == 0
    assert await cluster_client.xlen(s.keys.channel_dead(CHANNEL)) == 0


class NoScriptFirst:
    """A handler whose first ``misses`` calls meet NOSCRIPT, then applies for real."""

    def __init__(self, inner: MetricsHandler, misses: int) -> None:
        self.inner = inner
        self.misses = misses

    async def handle(self, batch: Sequence[Delivery], tx: Pipeline) -> None:
        if self.misses > 0:
            self.misses -= 1
            raise NoScriptError("No matching script. Please use EVAL.")
        await self.inner.handle(batch, tx)


async def test_noscript_is_retried_and_never_dead_letters_a_good_entry(
    redis_cluster: LocalCluster, cluster_client: RedisCluster, key_prefix: str
) -> None:
    s = settings(redis_cluster, key_prefix)
    events = recorded_stream(1, channel=CHANNEL)
    await Publisher(cluster_client, s).publish_many(events)  # type: ignore[arg-type]
    handler = NoScriptFirst(MetricsHandler(s.keys, 3600), misses=5)  # > consumer_max_attempts
    runner = ConsumerRunner(
        cluster_client,  # type: ignore[arg-type]
        s,
        GROUP,
        handler,
        partition=s.partitioning.of(CHANNEL),
    )
    await consume(runner, cluster_client, s)

    assert handler.misses == 0
    assert int(await cluster_client.get(s.keys.analytics(CHANNEL).version) or 0) == len(events)
    assert runner.summary.dead_lettered == 0
    assert runner.summary.reconnects >= 5
