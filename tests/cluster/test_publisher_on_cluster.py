"""The publisher on a real Redis Cluster: one call spanning partitions on every master lands
each event once, in order per stream, also on nodes whose script cache is empty."""

from __future__ import annotations

from redis.asyncio import RedisCluster

from shared.events import parse_fields
from shared.publisher import Publisher
from shared.redis_cluster_server import LocalCluster
from shared.settings import BaseServiceSettings
from tests.analytics.recorded import recorded_stream
from tests.cluster.test_scripts_after_failover import flush_scripts

CHANNELS = [f"pub{n:02d}" for n in range(9)]


def settings(cluster: LocalCluster, prefix: str) -> BaseServiceSettings:
    return BaseServiceSettings(
        _env_file=None,  # type: ignore[call-arg]
        redis_url=cluster.url,
        redis_cluster=True,
        redis_key_prefix=prefix,
    )


async def test_one_publish_over_many_partitions_lands_once_in_order_after_a_script_flush(
    redis_cluster: LocalCluster, cluster_client: RedisCluster, key_prefix: str
) -> None:
    s = settings(redis_cluster, key_prefix)
    events = [e for ch in CHANNELS for e in recorded_stream(2, seed=3, channel=ch)]
    publisher = Publisher(cluster_client, s, batch_size=50)  # type: ignore[arg-type]
    flush_scripts(redis_cluster)

    first = await publisher.publish_many(events)
    again = await publisher.publish_many(events)

    partitions = {s.partitioning.of(ch) for ch in CHANNELS}
    on_streams = {
        stream: [parse_fields(f).id for _, f in await cluster_client.xrange(stream)]
        for p in sorted(partitions)
        for stream in s.keys.partition_streams(p)
    }
    expected: dict[str, list[str]] = {stream: [] for stream in on_streams}
    for event in events:
        expected[s.keys.channel_stream(event.stream, event.channel)].append(event.id)
    streams_per_master = {}
    for master in redis_cluster.masters():
        node = redis_cluster.node(master.address).client()
        try:
            found = node.scan_iter(match=f"{key_prefix}events:*", count=1000)
            streams_per_master[master.address] = len(list(found))
        finally:
            node.close()
    assert first.published == len(events) and not first.duplicates
    assert again.published == 0 and len(again.duplicates) == len(events)
    assert on_streams == expected
    assert len(streams_per_master) == 3 and min(streams_per_master.values()) > 0
